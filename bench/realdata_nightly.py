"""A real history's nights, as a shop would run them: purge, train, train again, serve.

Issue #18's "done when": a real history imported with the documented command trains on
default settings, is kept, and serves its shoppers. This runs visrec's own nightly tasks
(``visrec.purge_expired_events`` and ``visrec.train_recommender``, called in-process as a
Celery worker would run them) on the database ``bench/realdata_eval.py`` imported, with the
shop's default settings, and then asks the serving layer for every imported shopper's
"for you" list:

    .venv/bin/python bench/realdata.py ml100k-posters
    PYTHONPATH=.benchlib .venv/bin/python bench/realdata_eval.py ml100k-posters   # imports, indexes
    .venv/bin/python bench/realdata_nightly.py ml100k-posters --from-scratch

Prints what each night did (events before and after the purge, the training's verdict and
whether it was promoted; the second night compares like with like against the first's
served configuration) and, for the shoppers, where their lists came from (``blended`` =
the trained model's blend; ``session``/``trending`` = fallbacks), how many distinct lists
they got, and whether any list offered something the shopper had already bought.
Writes ``var/eval/realdata-nightly-<source>.json``.
"""
from __future__ import annotations

import json
import os
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", help="a source bench/realdata_eval.py has imported")
    parser.add_argument("--shoppers", type=int, default=0, help="serve only this many shoppers (0: all)")
    parser.add_argument("--from-scratch", action="store_true",
                        help="first delete every 'for you' version of that database (a shop's first night)")
    args = parser.parse_args()
    from realdata_eval import database_url

    os.environ.setdefault("DATABASE_URL", database_url(f"visrec_real_{args.source.replace('-', '_')}"))
    os.environ["DJANGO_SETTINGS_MODULE"] = "shop_demo.settings"
    os.environ.setdefault("VISREC_TORCH_THREADS", "2")
    import django

    django.setup()
    from django.core.management import call_command

    from visrec import tasks
    from visrec.conf import visrec_settings
    from visrec.models import InteractionEvent, ModelKind
    from visrec.services.foryou.recommend import recommend_for_subject
    from visrec.services.serving.versions import active_version

    call_command("migrate", verbosity=0)  # a database imported by an older visrec
    if not InteractionEvent.objects.exists():
        sys.exit(f"no events: run bench/realdata_eval.py {args.source} first (it imports the history)")
    if args.from_scratch:
        from visrec.models import ModelVersion
        from visrec.services.foryou.training import drop_vectors

        for name in ModelVersion.objects.filter(kind=ModelKind.RECOMMENDER).values_list("name", flat=True):
            drop_vectors(name)
        ModelVersion.objects.filter(kind=ModelKind.RECOMMENDER).delete()
    report: dict = {"source": args.source, "settings": {
        name: getattr(visrec_settings, name) for name in (
            "RETENTION_DAYS", "RETENTION_INCLUDES_IMPORTS", "TRAINING_WINDOW_DAYS", "VALIDATION", "RECOMMENDER",
            "GUARD_MIN_SHOPPERS", "RECOMMENDER_NEW_PRODUCT_SHARE")}, "nights": []}
    for night in (1, 2):
        before = InteractionEvent.objects.count()
        t0 = time.perf_counter()
        deleted = tasks.purge_expired_events()
        trained = tasks.train_recommender()
        report["nights"].append({
            "night": night, "events_before": before, "purged": deleted,
            "events_after": InteractionEvent.objects.count(), "version": trained.get("version"),
            "promoted": trained.get("promoted"), "notes": trained.get("notes") or trained.get("reason"),
            "seconds": round(time.perf_counter() - t0, 1)})
        print(f"night {night}: {before} events, {deleted} purged; {trained.get('version')} "
              f"{'promoted' if trained.get('promoted') else 'not promoted'}: "
              f"{trained.get('notes') or trained.get('reason')} ({report['nights'][-1]['seconds']} s)", flush=True)
    served = active_version(ModelKind.RECOMMENDER)
    report["served_version"] = served.name if served else None
    subjects = sorted(InteractionEvent.objects.values_list("subject_key", flat=True).distinct())
    if args.shoppers:
        subjects = subjects[:args.shoppers]
    bought = {}
    for subject, product in InteractionEvent.objects.filter(event_type="purchase").values_list(
            "subject_key", "product_id"):
        bought.setdefault(subject, set()).add(product)
    sources, lists, offered_bought = Counter(), set(), 0
    t0 = time.perf_counter()
    for subject in subjects:
        ranked, source = recommend_for_subject(subject, k=20)
        sources[source] += 1
        lists.add(tuple(p for p, _ in ranked))
        offered_bought += bool({p for p, _ in ranked} & bought.get(subject, set()))
    seconds = time.perf_counter() - t0
    report["serving"] = {"shoppers": len(subjects), "sources": dict(sources), "distinct_lists": len(lists),
                         "lists_offering_a_purchase": offered_bought,
                         "ms_per_shopper": round(1000 * seconds / max(1, len(subjects)), 1)}
    print(f"served by {report['served_version']}: {len(subjects)} imported shoppers, lists from "
          f"{dict(sources)}; {len(lists)} distinct lists; {offered_bought} offered something already bought "
          f"(EXCLUDE_PURCHASED {visrec_settings.EXCLUDE_PURCHASED}); "
          f"{report['serving']['ms_per_shopper']} ms a shopper, in-process")
    out = ROOT / "var" / "eval" / f"realdata-nightly-{args.source}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=str))
    print(f"numbers: {out}")


if __name__ == "__main__":
    main()
