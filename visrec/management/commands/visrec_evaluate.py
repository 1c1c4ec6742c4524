"""``python manage.py visrec_evaluate [--protocol basket|days] [--holdout-days 7] [--output var/eval]
[--withhold-products 0.2] [--dp-epsilons 1,4,8] [--seeds 5]``.

Every "for you" model on one split (leave-last-basket-out or the last days), with the served
blend's paired bootstrap intervals against each; with ``--dp-epsilons``, also the DP-trainable
model without DP and at each epsilon (Recall@20 against epsilon, so a shop can choose);
with ``--seeds``, BPR and VBPR retrained with that many training seeds (the gap between
them against the draw of one training); with ``--withhold-products``, that share of the
products taken out of the past, so that the cold half (what only the images can reach) is
measurable on a history with few new products of its own.
"""
from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from visrec.evaluation.embeddings import results_table
from visrec.services.catalogue.embedders import active_embedder_version
from visrec.services.foryou.evaluation import evaluate, seed_spread
from visrec.services.foryou.interactions import load_dataset
from visrec.services.privacy.dp_training import epsilon_sweep, parse_epsilons

COLUMNS = ["model", "recall@10", "recall@20", "ndcg@20", "hit_rate@20", "coverage@20", "novelty@20", "cold_recall@20"]
DP_COLUMNS = ["epsilon", "epsilon_spent", "delta", "noise_multiplier", "recall@10", "recall@20", "recall@20_sd",
              "ndcg@20", "hit_rate@20", "coverage@20"]


def format_params(params: dict) -> str:
    """``{"reg_bias": 0.1}`` -> ``"reg_bias 0.1"``."""
    return ", ".join(f"{key} {value:g}" if isinstance(value, float) else f"{key} {value}"
                     for key, value in params.items())


class Command(BaseCommand):
    help = ("Evaluates popularity, item-kNN, BPR, the visual hybrid (VBPR), the session model and the blend "
            "on a temporal split of the event log: recall, NDCG, hit rate, coverage, novelty, cold-start recall.")

    def add_arguments(self, parser) -> None:
        parser.add_argument("--protocol", choices=["basket", "days"], default=None,
                            help="leave-last-basket-out per shopper, or the last --holdout-days "
                                 "(default: VISREC['VALIDATION'])")
        parser.add_argument("--holdout-days", type=float, default=None,
                            help="the most recent days held out (--protocol days)")
        parser.add_argument("--withhold-products", type=float, default=0.0, metavar="SHARE",
                            help="take this share of the products (0 to 1, by a hash of their id) out of the "
                                 "past, so that their held-out purchases are cold: measures the cold half on a "
                                 "history with few new products of its own")
        parser.add_argument("--new-product-shares", default=None, metavar="0,0.05,0.2",
                            help="also measure the blend at each of these shares of new-product places "
                                 "(RECOMMENDER_NEW_PRODUCT_SHARE): HR@20 and cold HR@20 against the share")
        parser.add_argument("--output", default=None, help="folder for results.json and recall_at_k.png")
        parser.add_argument("--dp-epsilons", default=None, metavar="1,4,8",
                            help="also train the DP model (dp_itembpr) without DP and with DP-SGD at each epsilon, "
                                 "and print Recall@20 / NDCG@20 against epsilon")
        parser.add_argument("--dp-repeats", type=int, default=1,
                            help="trainings per epsilon, averaged (DP noise differs every training)")
        parser.add_argument("--seeds", type=int, default=0,
                            help="also retrain BPR and VBPR (at their chosen parameters) with this many training "
                                 "seeds and print Recall@20 per seed and on average")

    def handle(self, *args, holdout_days, output, dp_epsilons=None, dp_repeats=1, seeds=0, protocol=None,
               withhold_products=0.0, new_product_shares=None, **options) -> None:
        if dp_repeats < 1:
            raise CommandError("--dp-repeats must be at least 1")
        if seeds < 0:
            raise CommandError("--seeds must be 0 or more")
        if not 0.0 <= withhold_products < 1.0:
            raise CommandError("--withhold-products must be at least 0 and below 1")
        try:
            shares = [float(x) for x in (new_product_shares or "").split(",") if x.strip()]
        except ValueError as exc:
            raise CommandError(f"--new-product-shares: {exc}") from exc
        if any(not 0.0 <= share <= 1.0 for share in shares):
            raise CommandError("--new-product-shares: each share must be between 0 and 1")
        try:
            epsilons = None if dp_epsilons is None else parse_epsilons(dp_epsilons)
        except ValueError as exc:
            raise CommandError(f"--dp-epsilons: {exc}") from exc
        version = active_embedder_version()
        if version is None:
            raise CommandError("no image vectors yet: run visrec_index first")
        out = Path(output or Path(settings.BASE_DIR) / "var" / "eval")
        out.mkdir(parents=True, exist_ok=True)
        dataset = load_dataset(version.name)
        try:
            report = evaluate(dataset, holdout_days=holdout_days, protocol=protocol, withhold=withhold_products,
                              new_product_shares=shares, progress=lambda stage: self.stderr.write(f"  {stage}…"))
        except LookupError as exc:
            raise CommandError(str(exc)) from exc
        split = report["split"]
        when = dt.datetime.fromtimestamp(split["split_time"], tz=dt.timezone.utc)
        if split["protocol"] == "basket":
            self.stdout.write(
                f"Leave-last-basket-out: each of {split['test_shoppers']} returning shoppers' last basket held out "
                f"({split['shoppers_with_cold_purchases']} with cold products), trained on the {split['train_events']} "
                f"other events (baskets up to {when:%Y-%m-%d}). Catalogue: {split['items']} products, "
                f"{split['cold_items']} cold{self._withheld(split)}. Image vectors: {version.name}.\n")
        else:
            self.stdout.write(
                f"Temporal split: trained on {split['train_events']} events before {when:%Y-%m-%d %H:%M} UTC; "
                f"tested on the purchases of the following {split['holdout_days']:g} days by "
                f"{split['test_shoppers']} shoppers ({split['shoppers_with_cold_purchases']} bought cold products). "
                f"Catalogue: {split['items']} products, {split['cold_items']} cold{self._withheld(split)}. "
                f"Image vectors: {version.name}.\n")
        rows = [{"model": name, **metrics} for name, metrics in report["models"].items()]
        self.stdout.write(results_table(rows, COLUMNS))
        self._significance_table(report["significance"])
        if report["new_product_shares"]:
            rows = [{"new-product share": f"{row['share']:g}", **{key: value for key, value in row.items()
                                                                 if key != "share"}}
                    for row in report["new_product_shares"]]
            self.stdout.write("\nthe blend at each share of new-product places (RECOMMENDER_NEW_PRODUCT_SHARE)\n")
            self.stdout.write(results_table(rows, ["new-product share", "ndcg@20", "hit_rate@20", "cold_hit_rate@20"]))
        blend = split.get("blend") or {}
        if blend.get("weights"):
            weights = ", ".join(f"{part} {weight:g}" for part, weight in blend["weights"].items())
            self.stdout.write(f"\nblended = {weights} (chosen on {blend.get('validation_shoppers', 0)} validation "
                              "shoppers' purchases in the days before the test days)")
        for name, chosen in (split.get("params") or {}).items():
            tried = "; ".join(f"{format_params(t['params'])}: {t['recall@20']:.3f}" for t in chosen["tried"])
            self.stdout.write(f"{name}: {format_params(chosen['params']) or 'defaults'}" + (
                f" (chosen on {chosen['validation_shoppers']} validation shoppers' purchases, Recall@20 {tried})"
                if tried else " (no validation shoppers: defaults)"))
        if seeds:
            chosen = {name: c["params"] for name, c in (split.get("params") or {}).items()}
            report["seeds"] = seed_spread(dataset, seeds, holdout_days=holdout_days, params=chosen, protocol=protocol)
            self._seed_table(report["seeds"])
        if epsilons is not None:
            report["dp"] = epsilon_sweep(dataset, epsilons, holdout_days=holdout_days, repeats=dp_repeats, protocol=protocol,
                                         progress=lambda stage: self.stderr.write(f"  {stage}…"))
            self._dp_table(report["dp"])
        (out / "results.json").write_text(json.dumps({**report, "embedder": version.name}, indent=2))
        self._plot(report["curves"], out / "recall_at_k.png", split)
        self.stdout.write(f"\nnumbers: {out / 'results.json'}\nplot: {out / 'recall_at_k.png'}")

    @staticmethod
    def _withheld(split: dict) -> str:
        share = split.get("withheld_share") or 0
        return f" (of them {share:.0%} of the catalogue withheld from the past)" if share else ""

    def _significance_table(self, significance: dict) -> None:
        self.stdout.write("\nblended against each list, paired over the same shoppers: difference [95% bootstrap CI]")
        def cell(values) -> str:
            difference, low, high = values
            mark = " *" if low > 0 or high < 0 else ""
            return f"{difference:+.3f} [{low:+.3f}, {high:+.3f}]{mark}"
        rows = [{"against": name, **{metric: cell(values) for metric, values in metrics.items()}}
                for name, metrics in significance.items()]
        if rows:
            self.stdout.write(results_table(rows, ["against", *[m for m in next(iter(significance.values()))]]))
            self.stdout.write("(* : the interval excludes 0)")

    def _seed_table(self, spread: dict) -> None:
        k, (base, hybrid) = spread["k"], spread["models"]
        self.stdout.write(f"\n{base} and {hybrid} retrained with training seeds 0-{len(spread['rows']) - 1} "
                          f"(same split, chosen parameters): Recall@{k}\n")
        rows = [{"seed": row["seed"], base: row[base], hybrid: row[hybrid],
                 f"{hybrid} / {base}": f"{row[hybrid] / row[base] - 1:+.1%}" if row[base] else "—"}
                for row in spread["rows"]]
        mean = spread["mean"]
        rows.append({"seed": "mean", base: mean[base], hybrid: mean[hybrid],
                     f"{hybrid} / {base}": f"{mean[hybrid] / mean[base] - 1:+.1%}" if mean[base] else "—"})
        self.stdout.write(results_table(rows, ["seed", base, hybrid, f"{hybrid} / {base}"]))

    def _dp_table(self, sweep: dict) -> None:
        self.stdout.write(
            f"\nDP training ({sweep['model']}, one shopper = one DP-SGD sample, {sweep['train_shoppers']} shoppers "
            f"in training; same split; mean of {sweep['repeats']} training(s) per row): Recall@20 against epsilon. "
            f"Untrained: from the pictures and the shopper's own history only\n")
        rows = [{**row, "epsilon": ("no DP" if row["epsilon"] is None else "0 (untrained)" if row["epsilon"] == 0
                                else f"{row['epsilon']:g}"),
                 "delta": None if row["delta"] is None else f"{row['delta']:.1e}"} for row in sweep["rows"]]
        self.stdout.write(results_table(rows, DP_COLUMNS))

    def _plot(self, curves: dict, path: Path, split: dict) -> None:
        from matplotlib.figure import Figure

        figure = Figure(figsize=(8, 5), dpi=120)
        axes = figure.add_subplot()
        for name, values in curves.items():
            axes.plot(range(1, len(values) + 1), values, label=name, linewidth=2.5 if name == "blended" else 1.5)
        axes.set_xlabel("K")
        axes.set_ylabel("Recall@K")
        axes.set_title(f"Recall@K on {split['test_shoppers']} shoppers' held-out purchases")
        axes.grid(alpha=0.3)
        axes.legend()
        figure.tight_layout()
        figure.savefig(path)
