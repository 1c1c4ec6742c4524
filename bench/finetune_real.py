#!/usr/bin/env python
"""Fine-tuning on a real labelled catalogue (issue #18 item 5): pretrained vs fine-tuned precision@10.

Runs visrec's own commands on a catalogue rebuilt by bench/catalogues.py, in an embedded
PostgreSQL of its own (``VISREC_VAR_DIR=var/ftreal/<run>``, so the dev database under var/ is
left alone and every run starts from an empty shop):

1. ``bench/catalogues.py <name> --limit N --seed S``       (real photos + real categories)
2. ``manage.py migrate``; ``manage.py visrec_import --products ... --images ...``
3. ``manage.py visrec_index``                              (timed: extraction images/second)
4. ``manage.py visrec_train_embedder``                     (timed, wall clock; VISREC_TORCH_THREADS)
5. ``finetune_real.py --measure``  (inside Django): precision@10 of same category for every embedder
   version, with visrec's functions (``is_held_out``, ``in_selection_half``, ``precision_at_k``,
   ``nearest_neighbours``, ``evaluate_embeddings``), on
   * the judged held-out products -- the products visrec's promotion judges (held out of training
     and of the choice of fusion weights), neighbours among themselves: the promotion metric;
   * the same products as queries against the whole catalogue (what a new product's "similar
     products" sees in the shop);
   * the whole catalogue (``evaluate_embeddings``: in-sample for the fine-tuned head, flattering);
   and the random baseline (the category prior: the chance that a random other judged product
   shares the category).

    .venv/bin/python bench/finetune_real.py myntra-ruturaj --limit 1000
    .venv/bin/python bench/finetune_real.py myntra-ruturaj            # every product kept
    .venv/bin/python bench/finetune_real.py hm-mewprakarn --threads 2
    .venv/bin/python bench/finetune_real.py --demo 20000   # timing at 20,000 products: the drawn demo
                                                           # catalogue (steps 1-2: visrec_seed_demo)

Writes ``var/ftreal/<run>/result.json`` and prints a table.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT))  # shop_demo, visrec (the --measure child runs Django)
PY = sys.executable
K = 10


def _env(var_dir: Path, threads: int) -> dict:
    env = dict(os.environ)
    env.update(DJANGO_SETTINGS_MODULE="shop_demo.settings", VISREC_VAR_DIR=str(var_dir),
               VISREC_TORCH_THREADS=str(threads), OMP_NUM_THREADS=str(threads),
               CELERY_TASK_ALWAYS_EAGER="1", PYTHONUNBUFFERED="1")
    return env


def _run(cmd: list[str], env: dict, log: Path) -> float:
    """Runs a command (output appended to ``log``) and returns its wall-clock seconds."""
    print("$", " ".join(cmd), flush=True)
    start = time.perf_counter()
    with open(log, "a") as out:
        out.write(f"\n$ {' '.join(cmd)}\n")
        out.flush()
        done = subprocess.run(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - start
    if done.returncode:
        print(open(log).read()[-4000:])
        raise SystemExit(f"failed ({done.returncode}): {' '.join(cmd)}; log {log}")
    return seconds


def measure() -> dict:
    """Inside Django: the precision@10 figures of every embedder version (see module docstring)."""
    import django

    django.setup()
    import numpy as np

    from visrec.evaluation.embeddings import nearest_neighbours, precision_at_k
    from visrec.models import ModelKind, ModelVersion, ProductEmbedding
    from visrec.services.catalogue.embedders import active_embedder_version
    from visrec.services.catalogue.embedding_evaluation import evaluate_embeddings
    from visrec.services.catalogue.finetuning import is_held_out, judging_split, product_categories

    versions = list(ModelVersion.objects.filter(kind=ModelKind.EMBEDDER).order_by("created_at"))

    def fine_tuned(version) -> bool:  # a pretrained backbone's version is its own base
        return (version.metrics or {}).get("base_version", version.name) != version.name

    with_vectors = [v for v in versions if ProductEmbedding.objects.filter(model_version=v.name).exists()]
    products = sorted(ProductEmbedding.objects.filter(model_version=with_vectors[0].name)
                      .values_list("product_id", flat=True))
    categories = product_categories(products)
    held = [p for p in products if is_held_out(p)]
    _, split, judged_set = judging_split(set(held))  # as train_embedder's judge
    judged = [p for p in held if p in judged_set]
    labels_all = [categories.get(p) for p in products]
    labels_judged = [categories.get(p) for p in judged]
    counts = Counter(labels_judged)
    n = len(judged)
    prior = sum(c * (c - 1) for c in counts.values()) / (n * (n - 1))
    # The best any embedder can do among the judged products: a category with c of them offers c - 1 hits.
    k_judged = min(K, n - 1)
    ceiling = sum(min(counts[c] - 1, k_judged) / k_judged for c in labels_judged) / n
    counts_all = Counter(labels_all)
    prior_all = sum(c * (c - 1) for c in counts_all.values()) / (len(products) * (len(products) - 1))
    prior_vs = sum((counts_all[c] - 1) / (len(products) - 1) for c in labels_judged) / n
    position = {p: i for i, p in enumerate(products)}
    judged_rows = np.array([position[p] for p in judged])
    codes = np.array([hash(c) for c in labels_all])
    rows, per_query = [], {}
    for version in with_vectors:
        found = dict(ProductEmbedding.objects.filter(model_version=version.name).values_list("product_id", "vector"))
        if set(found) != set(products):
            continue
        x = np.stack([np.asarray(found[p], dtype=np.float32) for p in products])
        neighbours, _ = nearest_neighbours(x, K)
        among, _ = nearest_neighbours(x[judged_rows], K)
        judged_codes = codes[judged_rows]
        per_query[version.name] = (judged_codes[among] == judged_codes[:, None]).mean(axis=1)
        vs_catalogue = float((codes[neighbours[judged_rows]] == codes[judged_rows, None]).mean())
        rows.append({"version": version.name,
                     "fine_tuned": fine_tuned(version),
                     f"judged_P@{K}": precision_at_k(x[judged_rows], labels_judged, k=K),
                     f"judged_vs_catalogue_P@{K}": vs_catalogue})
    # Paired bootstrap over the judged products of (fine-tuned - pretrained) precision@10.
    bootstrap = None
    tuned = [x["version"] for x in rows if x["fine_tuned"]]
    plain = [x["version"] for x in rows if not x["fine_tuned"]]
    if tuned and plain:
        diff = per_query[tuned[-1]] - per_query[plain[0]]
        draws = np.random.default_rng(0).integers(0, n, size=(2000, n))
        means = diff[draws].mean(axis=1)
        bootstrap = {"mean_difference": float(diff.mean()), "ci95": [float(np.percentile(means, 2.5)),
                                                                     float(np.percentile(means, 97.5))],
                     "products_better": int((diff > 0).sum()), "products_worse": int((diff < 0).sum())}
    whole = evaluate_embeddings(k=K, output_dir=None)
    active = active_embedder_version()
    trained = [v for v in versions if fine_tuned(v)]
    return {"products": len(products), "categories": len(counts_all), "held_out": len(held),
            "judged": n, "judged_categories": len(counts), "split": split,
            "category_prior_judged": prior, "ceiling_judged": ceiling, "category_prior_catalogue": prior_all,
            "category_prior_judged_vs_catalogue": prior_vs,
            "rows": rows, "bootstrap_judged": bootstrap, "whole_catalogue": whole.rows, "active": active.name if active else None,
            "trained": [{"name": v.name, "notes": v.notes,
                         "metrics": {k: m for k, m in v.metrics.items() if k != "hnsw"}} for v in trained]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("catalogue", nargs="?")
    p.add_argument("--demo", type=int, metavar="N", default=None,
                   help="instead of a real catalogue: the demo shop's N drawn products (visrec_seed_demo "
                        "--shoppers 0), to time fine-tuning at a size no real labelled catalogue here has")
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--min-per-category", type=int, default=20)
    p.add_argument("--label", default=None)
    p.add_argument("--threads", type=int, default=2, help="VISREC_TORCH_THREADS for indexing and training")
    p.add_argument("--epochs", type=int, default=None, help="visrec_train_embedder --epochs (default its own)")
    p.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--remeasure", metavar="RUN", help="measure an earlier run's database again (var/ftreal/RUN)")
    args = p.parse_args(argv)
    if args.remeasure:
        var_dir = ROOT / "var" / "ftreal" / args.remeasure
        result = json.loads((var_dir / "result.json").read_text())
        env = _env(var_dir, args.threads)
        try:
            out = subprocess.run([PY, __file__, "--measure"], cwd=ROOT, env=env, capture_output=True, text=True)
        finally:
            subprocess.run([PY, "-m", "shop_demo.devservices", "stop"], cwd=ROOT, env=env, capture_output=True)
        if out.returncode:
            raise SystemExit(out.stderr[-4000:])
        result.update(json.loads(out.stdout.strip().splitlines()[-1]))
        (var_dir / "result.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
        report(result)
        return 0
    if args.measure:
        print(json.dumps(measure(), default=str))
        return 0
    from catalogues import SOURCES, build

    if args.demo:
        run = f"demo-drawn-n{args.demo}-s{args.seed}"
    elif args.catalogue not in SOURCES:
        p.error(f"catalogue: one of {', '.join(SOURCES)}, or --demo N")
    else:
        run = f"{args.catalogue}-{args.label or 'default'}-n{args.limit or 'all'}-s{args.seed}"
    var_dir = ROOT / "var" / "ftreal" / run
    env = _env(var_dir, args.threads)
    if var_dir.exists():  # every run starts from an empty shop
        subprocess.run([PY, "-m", "shop_demo.devservices", "stop"], cwd=ROOT, env=env, capture_output=True)
        shutil.rmtree(var_dir)
    var_dir.mkdir(parents=True)
    log = var_dir / "run.log"
    if not args.demo:
        data = build(args.catalogue, limit=args.limit, seed=args.seed, min_per_category=args.min_per_category,
                     label=args.label, out=ROOT / "var" / "realdata" / run)
        stats = json.loads((data / "stats.json").read_text())
    else:
        stats = {"products": args.demo, "source": "demo shop, drawn products (visrec_seed_demo)"}
    timings: dict[str, float] = {}
    try:
        _run([PY, "manage.py", "migrate", "--noinput", "-v", "0"], env, log)
        if args.demo:
            timings["import_s"] = _run([PY, "manage.py", "visrec_seed_demo", "--products", str(args.demo),
                                        "--shoppers", "0", "--seed", str(args.seed)], env, log)
        else:
            timings["import_s"] = _run([PY, "manage.py", "visrec_import", "--products",
                                        str(data / "products.csv"), "--images", str(data / "photos")], env, log)
        timings["index_s"] = _run([PY, "manage.py", "visrec_index"], env, log)
        train = [PY, "manage.py", "visrec_train_embedder"] + (["--epochs", str(args.epochs)] if args.epochs else [])
        timings["train_s"] = _run(train, env, log)
        (var_dir / "timings.json").write_text(json.dumps(timings) + "\n")
        out = subprocess.run([PY, __file__, "--measure"], cwd=ROOT, env=env, capture_output=True, text=True)
        if out.returncode:
            raise SystemExit(out.stderr[-4000:])
        result = json.loads(out.stdout.strip().splitlines()[-1])
    finally:
        subprocess.run([PY, "-m", "shop_demo.devservices", "stop"], cwd=ROOT, env=env, capture_output=True)
    result.update(run=run, timings=timings, threads=args.threads, catalogue=stats,
                  command=" ".join([".venv/bin/python", "bench/finetune_real.py", *(argv or sys.argv[1:])]),
                  index_images_per_s=stats["products"] / timings["index_s"],
                  nproc=os.cpu_count(), load_avg=os.getloadavg())
    (var_dir / "result.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    report(result)
    return 0


def report(r: dict) -> None:
    trained = r["trained"][-1] if r["trained"] else {}
    ev = (trained.get("metrics") or {}).get("evaluation", {})
    tr = (trained.get("metrics") or {}).get("training", {})
    fusion = (trained.get("metrics") or {}).get("fusion", {})
    pre = next((x for x in r["rows"] if not x["fine_tuned"]), None)
    ft = next((x for x in r["rows"] if x["fine_tuned"]), None)
    print(f"\n{r['run']}: {r['products']} products, {r['categories']} categories; held out {r['held_out']}, "
          f"judged {r['judged']} ({r['judged_categories']} categories)")
    print(f"best possible among the judged products (small categories): {r['ceiling_judged']:.4f}")
    print(f"{'':44} {'random':>8} {'pretrained':>10} {'fine-tuned':>10} {'ratio':>6}")

    def line(label, prior, a, b):
        ratio = f"{b / a:6.2f}" if a and b is not None else "     -"
        bs = f"{b:10.4f}" if b is not None else "         -"
        print(f"{label:44} {prior:8.4f} {a:10.4f} {bs} {ratio}")

    line(f"judged held-out, among themselves (promotion)", r["category_prior_judged"],
         ev.get("old", pre and pre[f"judged_P@{K}"]), ev.get("new", ft and ft[f"judged_P@{K}"]))
    if pre:
        line("judged held-out queries vs whole catalogue", r["category_prior_judged_vs_catalogue"],
             pre[f"judged_vs_catalogue_P@{K}"], ft and ft[f"judged_vs_catalogue_P@{K}"])
    whole = {row["method"]: row for row in r["whole_catalogue"]}
    col = f"P@{K} category"
    names = [x["version"] for x in r["rows"]]
    if names and col in whole.get(names[0], {}):
        line("whole catalogue (fine-tuned: in-sample)", r["category_prior_catalogue"], whole[names[0]][col],
             whole[names[1]][col] if len(names) > 1 else None)
    hist = next((row for m, row in whole.items() if "histogram" in m), None)
    if hist and col in hist:
        print(f"{'colour histogram, whole catalogue':44} {hist[col]:8.4f}")
    b = r.get("bootstrap_judged")
    if b:
        print(f"fine-tuned - pretrained, judged: {b['mean_difference']:+.4f}, 95% CI "
              f"[{b['ci95'][0]:+.4f}, {b['ci95'][1]:+.4f}] (paired bootstrap); better for "
              f"{b['products_better']} products, worse for {b['products_worse']}")
    t = r["timings"]
    print(f"\nvisrec_index: {t['index_s']:.0f} s ({r['index_images_per_s']:.1f} images/s); visrec_train_embedder: "
          f"{t['train_s']:.0f} s wall clock, {r['threads']} torch threads, epochs run {tr.get('epochs_run')}, "
          f"viewed images {tr.get('viewed_images')}; fusion colour {fusion.get('colour')} category "
          f"{fusion.get('category')}")
    print(f"outcome: {trained.get('notes')}")
    print(f"command: {r['command']}  (load average at the end {r['load_avg']})")


if __name__ == "__main__":
    sys.exit(main())
