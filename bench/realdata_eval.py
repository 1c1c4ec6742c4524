"""visrec on a real history: import, index, then every "for you" list and the peers,
leave-last-basket-out, with the served blend's paired bootstrap intervals against each.

    .venv/bin/python bench/realdata.py ml100k-posters          # rebuilds var/realdata/<source>/
    .venv/bin/pip install --no-deps --target .benchlib -r bench/requirements.txt   # the peers
    PYTHONPATH=.benchlib .venv/bin/python bench/realdata_eval.py ml100k-posters [--reuse]
    PYTHONPATH=.benchlib .venv/bin/python bench/realdata_eval.py ml100k-posters --reuse --withhold-products 0.2

The data go into a database of their own (``visrec_real_<source>`` on the embedded server,
or the server of ``DATABASE_URL``), through the demo's ``visrec_import`` (shoppers under the
import's pseudonyms) and ``visrec_index`` (EfficientNet-Lite0, as a shop would start).
Rows: visrec's popularity, item-kNN, BPR, VBPR, the session model (visual kNN of the
shopper's history in image space), the served blend; implicit's BPR and Cornac's VBPR (at
visrec's 64 + 32 factors) on the same split. Prints a table (NDCG@20, HR@20, cold HR@20,
Recall@20) and the paired differences, and writes ``var/eval/realdata-<source>.json``.
``--withhold-products 0.2`` takes a fifth of the products out of the past (``visrec_evaluate
--withhold-products``: by a hash of their id, for every shopper), so that the cold half is
measured on real shoppers' real choices: their purchases of those products in the held-out
baskets are what only the image path can reach (``-withheld20`` is added to the file's name).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]
K = 20


def database_url(name: str) -> str:
    """A URL of database ``name`` on the embedded PostgreSQL, created if missing."""
    import psycopg

    from shop_demo import devservices

    params = devservices.ensure_postgres()
    host, port, user = params["HOST"], params.get("PORT") or 5432, params.get("USER") or "postgres"
    with psycopg.connect(host=host, port=port, user=user, dbname="postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')
    return f"postgres://{user}@{host.replace('/', '%2F')}:{port}/{name}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", help="a folder of var/realdata/ (bench/realdata.py --list)")
    parser.add_argument("--reuse", action="store_true", help="the database is imported and indexed already")
    parser.add_argument("--no-peers", action="store_true", help="skip implicit and Cornac")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--withhold-products", type=float, default=0.0, metavar="SHARE")
    parser.add_argument("--new-product-shares", default="", metavar="0,0.05,0.1",
                        help="also measure the served blend at each share of new-product places, and plot "
                             "HR@20 and cold HR@20 against it (docs/foryou-new-product-share-<source>.png)")
    args = parser.parse_args()
    data = ROOT / "var" / "realdata" / args.source
    if not (data / "products.csv").is_file():
        sys.exit(f"{data} has no products.csv: run bench/realdata.py {args.source} first")
    os.environ.setdefault("DATABASE_URL", database_url(f"visrec_real_{args.source.replace('-', '_')}"))
    os.environ["DJANGO_SETTINGS_MODULE"] = "shop_demo.settings"
    os.environ.setdefault("DJANGO_MEDIA_ROOT", str(ROOT / "var" / "realdata-media" / args.source))
    os.environ.setdefault("VISREC_TORCH_THREADS", "2")
    import django

    django.setup()
    from django.core.management import call_command

    from visrec.services.catalogue.embedders import active_embedder_version
    from visrec.services.foryou.evaluation import evaluate
    from visrec.services.foryou.interactions import load_dataset

    t0 = time.perf_counter()
    if not args.reuse:
        call_command("migrate", verbosity=0)
        call_command("visrec_import", "--products", str(data / "products.csv"), "--images", str(data / "photos"),
                     "--events", str(data / "events.csv"), "--index")
    version = active_embedder_version()
    dataset = load_dataset(version.name)
    peers = {} if args.no_peers else peer_lists(args.seed)
    shares = [float(x) for x in args.new_product_shares.split(",") if x.strip()]
    report = evaluate(dataset, protocol="basket", peers=peers, withhold=args.withhold_products,
                      new_product_shares=shares, progress=lambda s: print(f"  {s}", flush=True))
    report["data"] = {"source": args.source, "stats": json.loads((data / "stats.json").read_text()),
                      "embedder": version.name, "seconds": round(time.perf_counter() - t0, 1)}
    print_tables(report)
    if shares:
        print_shares(report, ROOT / "docs" / f"foryou-new-product-share-{args.source}.png")
    suffix = f"-withheld{round(args.withhold_products * 100)}" if args.withhold_products else ""
    out = ROOT / "var" / "eval" / f"realdata-{args.source}{suffix}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=str))
    print(f"\nnumbers: {out}")


def peer_lists(seed: int) -> dict:
    """implicit's BPR and Cornac's VBPR (bench/train.py's runners) as ``evaluate`` peers."""
    import train as train_bench

    missing = train_bench.peers_available()
    if missing:
        print(missing, flush=True)
        return {}

    def implicit_bpr(dataset, split, n):
        return train_bench.run_implicit_bpr(dataset, split, seed, {})[1]

    def cornac_vbpr(dataset, split, n):
        tops = dict(train_bench.run_cornac_vbpr(dataset, split, seed, {"k": 64, "k2": 32})[1])
        return tops["Cornac VBPR, cold products scored"]

    return {"implicit BPR": implicit_bpr, "Cornac VBPR (64+32)": cornac_vbpr}


def print_shares(report: dict, png: Path) -> None:
    """The blend at each share of new-product places, beside the visual baselines' cold HR@20."""
    models = report["models"]
    visual = {name: models[name][f"cold_hit_rate@{K}"] for name in ("session", "vbpr", "Cornac VBPR (64+32)")
              if name in models}
    print("\nthe served blend at each share of new-product places (RECOMMENDER_NEW_PRODUCT_SHARE)\n")
    print(f"| share | places of {K} | NDCG@{K} | HR@{K} | cold HR@{K} |")
    print("|---|---|---|---|---|")
    for row in report["new_product_shares"]:
        print(f"| {row['share']:g} | {int(row['share'] * K + 0.5)} | {row[f'ndcg@{K}']:.4f} | "
              f"{row[f'hit_rate@{K}']:.4f} | {row[f'cold_hit_rate@{K}']:.4f} |")
    print("visual baselines' cold HR@20: " + ", ".join(f"{n} {v:.4f}" for n, v in visual.items()))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["new_product_shares"]
    x = [r["share"] for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.6))
    left.plot(x, [r[f"hit_rate@{K}"] for r in rows], "o-", label="served blend")
    left.axhline(models["popularity"][f"hit_rate@{K}"], color="grey", ls="--", label="popularity")
    left.set(xlabel="share of new-product places", ylabel=f"HR@{K}", title="all held-out purchases")
    right.plot(x, [r[f"cold_hit_rate@{K}"] for r in rows], "o-", label="served blend")
    for (name, value), style in zip(visual.items(), (":", "-.", "--")):
        right.axhline(value, color="grey", ls=style, label=name if name != "session" else "visual kNN (session)")
    right.set(xlabel="share of new-product places", ylabel=f"cold HR@{K}", title="purchases of new products")
    for ax in (left, right):
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    split = report["split"]
    fig.suptitle(f"{report['data']['source']}: {split['test_shoppers']} shoppers' last baskets, "
                 f"{split.get('withheld_share', 0):.0%} of products withheld", fontsize=10)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)
    print(f"plot: {png}")


def print_tables(report: dict) -> None:
    split = report["split"]
    print(f"\n{report['data']['source']}: leave-last-basket-out, {split['test_shoppers']} test shoppers "
          f"({split['shoppers_with_cold_purchases']} with cold products), {split['items']} products, "
          f"{split['train_events']} training events; embedder {report['data']['embedder']}"
          + (f"; {split['withheld_share']:.0%} of the products withheld from the past ({split['cold_items']} cold)"
             if split.get("withheld_share") else "") + "\n")
    print(f"| list | NDCG@{K} | HR@{K} | cold HR@{K} | Recall@{K} |")
    print("|---|---|---|---|---|")
    for name, metrics in report["models"].items():
        print(f"| {name} | {metrics[f'ndcg@{K}']:.4f} | {metrics[f'hit_rate@{K}']:.4f} | "
              f"{metrics[f'cold_hit_rate@{K}']:.4f} | {metrics[f'recall@{K}']:.4f} |")
    print(f"\nblended minus each list, paired over the same shoppers (95% bootstrap interval; * excludes 0)\n")
    print(f"| against | NDCG@{K} | HR@{K} | cold HR@{K} |")
    print("|---|---|---|---|")
    for name, metrics in report["significance"].items():
        cells = []
        for metric in (f"ndcg@{K}", f"hit_rate@{K}", f"cold_hit_rate@{K}"):
            d, low, high = metrics[metric]
            cells.append(f"{d:+.4f} [{low:+.4f}, {high:+.4f}]{' *' if low > 0 or high < 0 else ''}")
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
