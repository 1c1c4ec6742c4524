""""For you" training and serving at scale: accuracy and time against Cornac's VBPR and
implicit's BPR, training at 1M events, GET /for-you latency, event ingestion.

    pip install -r bench/requirements.txt        # cornac, implicit (+ powerlaw): benchmark only
    python bench/train.py [--parts accuracy,scale,foryou,ingest] [--scale-events 1000000]
                          [--scale-items 100000] [--scale-shoppers 100000] [--keep]
    python bench/train.py --parts fit            # the scale part's fit alone (no database work)
    python bench/train.py --report var/bench-train.json   # the tables of a saved (or interrupted) run

The peers are not runtime dependencies of visrec. To keep them out of the project's
environment, install them into a folder of their own and put it on ``PYTHONPATH``::

    .venv/bin/pip install --no-deps --target .benchlib cornac==3.0.1 implicit==0.7.3 powerlaw==2.0.0
    PYTHONPATH=.benchlib .venv/bin/python bench/train.py

(``--no-deps`` so that they cannot replace the project's numpy/scipy; their other
dependencies -- numpy, scipy, tqdm, threadpoolctl, torch, matplotlib, mpmath -- are already in
the project's environment.) Without them the accuracy part says so and measures visrec only.

One run, four parts, against a throw-away database ``visrec_bench_train`` on the embedded
PostgreSQL (dropped at the end unless ``--keep``):

1. **accuracy** -- on the same data and the same temporal split (visrec's own
   ``temporal_split``: the last ``HOLDOUT_DAYS`` are the future, test shoppers are those who
   bought something new then), visrec's hybrid (``fit_model("vbpr")``, the nightly
   training's call, default hyper-parameters) and BPR, Cornac's ``VBPR`` with the same image
   vectors, implicit's ``BayesianPersonalizedRanking``, each library at its own defaults.
   Every model gets the summed event weight of each (shopper, product) pair of the training
   days; every list is scored from the model's own parameters, what the shopper bought
   before is excluded the same way, and Recall@20 / NDCG@20 / cold-product Recall@20 come
   from :mod:`visrec.evaluation.recommendations`. Data sets: the demo's simulated shoppers
   (exported read-only from ``--demo-db`` through ``load_dataset``) and a synthetic catalogue
   with planted tastes (see :func:`synthetic_dataset`).
2. **scale** -- a synthetic log of ``--scale-events`` events over ``--scale-items`` products
   and ``--scale-shoppers`` shoppers (128-d clustered image vectors): (a) ``fit_model("vbpr")``
   alone in a child process, (b) the whole nightly ``train_recommender`` service (load the
   window from PostgreSQL, fit, measure on the held-out days, refit, publish the shopper and
   product vectors, build the HNSW index) in a child process; wall time, CPU time and peak
   RSS of each.
3. **foryou** -- the shop under gunicorn on loopback, ``wrk`` requesting GET
   /api/visrec/for-you/ with the session cookies of ``--foryou-shoppers`` shoppers who have a
   stored vector (each request a different shopper, none with cached model lists): p50/p99
   at 1 and at ``--connections`` connections, then a browsing run (``PAGES`` requests per
   shopper in a row: the first misses, the rest find the shopper's model lists cached), and
   where the lists came from (blended, model, ...). Then the reference for running a first
   request's parts at once (trained list, session list, item-kNN's list): a second server
   with ``QUERY_THREADS`` 0, each of
   ``--ab-shoppers`` shoppers' first request sent to both servers in turn.
4. **ingest** -- ``--ingest-threads`` Python clients POST batches of ``--ingest-batch``
   events to /api/visrec/events/ for ``--ingest-seconds``, each shopper staying inside the
   default per-day contribution bounds (so a drop would be a bug, and the privacy dropped
   counter is reported beside); events sent, accepted and rows stored are counted.

The machine's 1-minute load average is printed with every timed phase: other work on the
same cores inflates every time here. All numbers also go to ``--json``
(``var/bench-train.json``).
"""
from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import os
import resource
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import similar as similar_bench  # noqa: E402  (bench/similar.py: database, catalogue, gunicorn helpers)

K = 20
DAY = 86400.0
DIMS = 128
TARGET_TRAIN_S = 600.0
TARGET_RSS_MB = 4096.0
TARGET_FORYOU_P50_MS = 20.0
TARGET_INGEST_EPS = 2000.0
SOURCE_TAG = "bench-ingest"
CHILD_PREFIX = "CHILDJSON "


# --- data -----------------------------------------------------------------------------------

def synthetic_dataset(n_events: int, n_items: int, n_users: int, seed: int, *, dims: int = DIMS,
                      days: float = 56.0, end: float | None = None):
    """A shop log with planted tastes, as a :class:`visrec.services.foryou.interactions.Dataset`.

    Products fall into ``n_items // 100`` (at least 4) visual styles; a product's image vector
    is its style's random centre plus noise (unit norm). Each shopper likes two styles (70/30);
    an event picks a shopper by activity (log-normal), a style from their tastes (10% of
    events, always views, from a random style), then a product of that style by popularity
    (log-normal). Event types: 75% view, 15% cart, 10% purchase. 80% of the products exist from
    the start, the others launch at a uniform time inside the ``days`` window and are touched
    only after launch, so the last days hold purchases of products nobody touched before (cold).
    """
    from visrec.pseudonyms import subject_key
    from visrec.services.foryou.interactions import Dataset

    rng = np.random.default_rng(seed)
    end = time.time() - 3600.0 if end is None else end
    start = end - days * DAY
    styles = max(4, n_items // 100)
    style = rng.integers(0, styles, n_items)
    popularity = rng.lognormal(0.0, 1.0, n_items)
    launch = np.where(rng.random(n_items) < 0.8, start, rng.uniform(start, end, n_items))
    activity = rng.lognormal(0.0, 1.0, n_users)
    tastes = rng.integers(0, styles, (n_users, 2))

    users = rng.choice(n_users, n_events, p=activity / activity.sum())
    chosen = tastes[users, (rng.random(n_events) >= 0.7).astype(np.int64)]
    noise = rng.random(n_events) < 0.1
    chosen[noise] = rng.integers(0, styles, int(noise.sum()))
    # Popularity-weighted pick inside the style: one global CDF whose style s spans (s, s + 1].
    order = np.argsort(style, kind="stable")
    sorted_style = style[order]
    cumulative = np.cumsum(popularity[order])
    first = np.searchsorted(sorted_style, np.arange(styles))
    before = np.where(first > 0, cumulative[np.maximum(first - 1, 0)], 0.0)
    totals = np.bincount(sorted_style, weights=popularity[order], minlength=styles)
    cdf = sorted_style + (cumulative - before[sorted_style]) / totals[sorted_style]
    draws = chosen + rng.random(n_events)
    items = order[np.minimum(np.searchsorted(cdf, draws), n_items - 1)]
    times = launch[items] + rng.random(n_events) * (end - launch[items])
    kinds = np.array(["view", "cart", "purchase"], dtype=object)
    types = kinds[np.searchsorted([0.75, 0.90], rng.random(n_events), side="right")]
    types[noise] = "view"

    centres = rng.standard_normal((styles, dims)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    features = centres[style] + rng.standard_normal((n_items, dims)).astype(np.float32) * np.float32(0.06)
    features /= np.linalg.norm(features, axis=1, keepdims=True)

    by_time = np.argsort(times, kind="stable")
    subjects = np.array([subject_key("session", f"bench-shopper-{i}") for i in range(n_users)])
    return Dataset(subjects=subjects, products=np.arange(1, n_items + 1, dtype=np.int64),
                   users=users[by_time].astype(np.int64), items=items[by_time].astype(np.int64),
                   types=types[by_time], times=times[by_time], features=features)


def save_dataset(dataset, path: Path) -> None:
    np.savez(path, subjects=dataset.subjects.astype(str), products=dataset.products, users=dataset.users,
             items=dataset.items, types=dataset.types.astype(str), times=dataset.times, features=dataset.features)


def read_dataset(path: Path):
    from visrec.services.foryou.interactions import Dataset

    with np.load(path, allow_pickle=False) as data:
        return Dataset(subjects=data["subjects"], products=data["products"], users=data["users"],
                       items=data["items"], types=data["types"].astype(object), times=data["times"],
                       features=data["features"])


def export_demo(db: str, out: Path) -> dict:
    """The demo's events and served image vectors, read from database ``db`` by a child process
    (Django pointed at ``db`` through ``DATABASE_URL``; nothing is written there)."""
    env = {k: v for k, v in os.environ.items() if k not in ("VISREC_TEST_DATABASE_NAME", "DJANGO_SETTINGS_MODULE")}
    host = similar_bench.admin_conninfo()["host"].replace("/", "%2F")
    port = similar_bench.admin_conninfo()["port"]
    env["DATABASE_URL"] = f"postgres://postgres@{host}:{port}/{db}"
    env["DJANGO_SETTINGS_MODULE"] = "shop_demo.settings"
    return run_child(["export", str(out)], env)


# --- children (timed in their own process for peak RSS) ---------------------------------------

def run_child(argv: list[str], env: dict | None = None) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", *argv]
    proc = subprocess.run(cmd, env=env or os.environ.copy(), capture_output=True, text=True, cwd=ROOT)
    sys.stderr.write(proc.stderr[-4000:])
    lines = [x for x in proc.stdout.splitlines() if x.startswith(CHILD_PREFIX)]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"child {argv[0]} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][len(CHILD_PREFIX):])


def child_main(argv: list[str]) -> None:
    import django

    if "DJANGO_SETTINGS_MODULE" not in os.environ:
        os.environ["DJANGO_SETTINGS_MODULE"] = "shop_demo.settings_test"
    django.setup()
    mode = argv[0]
    out: dict = {}
    if mode == "export":
        from visrec.services.catalogue.embedders import active_embedder_version
        from visrec.services.foryou.interactions import load_dataset

        version = active_embedder_version()
        if version is None:
            raise SystemExit("the demo database has no active image embedder")
        dataset = load_dataset(version.name)
        save_dataset(dataset, Path(argv[1]))
        out = {"embedder": version.name, "events": int(len(dataset.users)), "items": int(len(dataset.products)),
               "shoppers": int(len(dataset.subjects))}
    elif mode == "fit":
        from visrec.services.foryou.evaluation import fit_model

        dataset = read_dataset(Path(argv[1]))
        t0 = time.perf_counter()
        model = fit_model("vbpr", dataset, None, progress=_epoch_printer("fit"))
        out = {"seconds": time.perf_counter() - t0, "params": model.get_params()}
    elif mode == "train":
        from visrec.services.foryou.training import train_recommender

        t0 = time.perf_counter()
        version = train_recommender("vbpr", progress=_epoch_printer("train"))
        out = {"seconds": time.perf_counter() - t0, "version": version.name, "metrics": version.metrics,
               "notes": version.notes, "active": version.is_active}
    usage = resource.getrusage(resource.RUSAGE_SELF)
    out["peak_rss_mb"] = usage.ru_maxrss / 1024.0
    out["cpu_s"] = usage.ru_utime + usage.ru_stime  # this process's CPU time: what the load did not inflate
    print(CHILD_PREFIX + json.dumps(out), flush=True)


def _epoch_printer(label: str):
    start = time.perf_counter()

    def progress(epoch, loss):
        print(f"[{label}] epoch {epoch} loss {loss} at {time.perf_counter() - start:.0f}s", file=sys.stderr,
              flush=True)
    return progress


# --- part 1: accuracy against the peers --------------------------------------------------------

def pair_matrix(dataset, mask):
    """Summed event weights per (shopper, product) of the masked events: float32 CSR."""
    return dataset.interactions(mask).matrix()


def peers_available() -> str | None:
    try:
        import cornac  # noqa: F401
        import implicit  # noqa: F401
    except ImportError as exc:
        return f"peers not installed ({exc}); see the docstring: pip install -r bench/requirements.txt"
    return None


def top_from_scores(score_rows, split, n: int) -> np.ndarray:
    """int64 (U, n) top lists from a callable giving float32 (B, n_items) scores of test users."""
    from visrec.recommenders import top_n

    out = np.full((len(split.users), n), -1, dtype=np.int64)
    step = 256
    for start in range(0, len(split.users), step):
        rows = np.arange(start, min(start + step, len(split.users)))
        scores = np.array(score_rows(split.users[rows]), dtype=np.float32)
        for r, row in enumerate(rows):
            scores[r, split.exclude[row]] = -np.inf
        out[rows], _ = top_n(scores, n)
    return out


def run_cornac_vbpr(dataset, split, seed: int, params: dict) -> tuple[float, list[tuple[str, np.ndarray]]]:
    """Cornac's VBPR on the training pairs (rating = summed event weight) and the image vectors.

    Cornac knows only the products of its training set; its own ``score`` ranks those (the
    "as shipped" row, products nobody touched get no score). The second row also scores
    untouched products as the VBPR paper does (``beta_i = gamma_i = 0``, the learned
    ``theta_u . E f_i + beta' . f_i``), from Cornac's learned parameters.
    """
    import cornac
    import torch
    from cornac.data import ImageModality

    # One torch thread: on the shared 2-core host torch's intra-op threads made Cornac's
    # 100-triple steps 3x slower (measured), see visrec/recommenders/bpr.py's docstring.
    torch.set_num_threads(1)
    matrix = pair_matrix(dataset, split.train).tocoo()
    triples = list(zip(matrix.row.tolist(), matrix.col.tolist(), matrix.data.astype(float).tolist()))
    t0 = time.perf_counter()
    train_set = cornac.data.Dataset.from_uir(triples, seed=seed)
    item_ids = list(range(len(dataset.products)))
    image = ImageModality(features=dataset.features, ids=item_ids)
    image.build(id_map=train_set.iid_map)
    train_set.add_modalities(item_image=image)
    model = cornac.models.VBPR(seed=seed, verbose=False, **params)
    with quiet():
        model.fit(train_set)
    seconds = time.perf_counter() - t0
    n_items = len(dataset.products)
    known = np.array([train_set.iid_map[i] for i in item_ids if i in train_set.iid_map], dtype=np.int64)
    ours = np.array([i for i in item_ids if i in train_set.iid_map], dtype=np.int64)
    uid = train_set.uid_map

    def shipped(users):
        scores = np.full((len(users), n_items), -np.inf, dtype=np.float32)
        for r, u in enumerate(users):
            if int(u) in uid:
                scores[r, ours] = model.score(uid[int(u)])[known]
        return scores

    theta_all = dataset.features @ model.emb_matrix
    bias_all = (dataset.features @ model.beta_prime).ravel()
    gamma_all = np.zeros((n_items, model.gamma_item.shape[1]), dtype=np.float32)
    beta_all = np.zeros(n_items, dtype=np.float32)
    gamma_all[ours], beta_all[ours] = model.gamma_item[known], model.beta_item[known]
    beta_all[ours] -= beta_all[ours].mean()  # a cold product sits at an average warm product's bias

    def with_cold(users):
        rows = np.array([uid.get(int(u), -1) for u in users])
        gu = np.where(rows[:, None] >= 0, model.gamma_user[np.maximum(rows, 0)], 0)
        tu = np.where(rows[:, None] >= 0, model.theta_user[np.maximum(rows, 0)], 0)
        return beta_all + bias_all + gu @ gamma_all.T + tu @ theta_all.T

    return seconds, [("Cornac VBPR", top_from_scores(shipped, split, K)),
                     ("Cornac VBPR, cold products scored", top_from_scores(with_cold, split, K))]


def run_implicit_bpr(dataset, split, seed: int, params: dict) -> tuple[float, np.ndarray]:
    """implicit's BPR on the training pairs; scores are its factors' inner products (bias inside)."""
    from implicit.cpu.bpr import BayesianPersonalizedRanking

    matrix = pair_matrix(dataset, split.train)
    t0 = time.perf_counter()
    model = BayesianPersonalizedRanking(random_state=seed, **params)
    with quiet():
        model.fit(matrix, show_progress=False)
    seconds = time.perf_counter() - t0
    users_f, items_f = np.asarray(model.user_factors), np.asarray(model.item_factors)
    return seconds, top_from_scores(lambda users: users_f[users] @ items_f.T, split, K)


class quiet:
    """Silences the peers' prints and progress bars (stdout) inside the block."""

    def __enter__(self):
        self.saved = os.dup(1)
        devnull = os.open(os.devnull, os.O_WRONLY)
        sys.stdout.flush()
        os.dup2(devnull, 1)
        os.close(devnull)

    def __exit__(self, *exc):
        sys.stdout.flush()
        os.dup2(self.saved, 1)
        os.close(self.saved)


def accuracy(dataset, label: str, args) -> dict:
    from visrec.evaluation.recommendations import all_metrics
    from visrec.services.foryou.evaluation import fit_model, model_top, temporal_split

    split = temporal_split(dataset)
    info = {"data": label, "events": int(len(dataset.users)), "train_events": int(split.train.sum()),
            "items": int(len(dataset.products)), "shoppers": int(len(dataset.subjects)),
            "test_shoppers": int(len(split.users)), "cold_items": int((split.item_counts == 0).sum()),
            "shoppers_with_cold_purchases": int(sum(1 for c in split.cold_relevant if c)), "rows": []}
    print(f"[accuracy {label}] {json.dumps({k: v for k, v in info.items() if k != 'rows'})}", flush=True)

    def add(name: str, seconds: float | None, top: np.ndarray, note: str = "") -> None:
        metrics = all_metrics(top, split.relevant, split.cold_relevant, split.item_counts, (K,))
        row = {"model": name, "seconds": seconds, "recall": metrics[f"recall@{K}"], "ndcg": metrics[f"ndcg@{K}"],
               "cold_recall": metrics[f"cold_recall@{K}"], "note": note}
        info["rows"].append(row)
        print(f"[accuracy {label}] {json.dumps(row)}, {similar_bench.load_average()}", flush=True)

    for name in ("vbpr", "bpr"):
        t0 = time.perf_counter()
        model = fit_model(name, dataset, split.train)
        seconds = time.perf_counter() - t0
        add(f"visrec {'hybrid (VBPR)' if name == 'vbpr' else 'BPR'}", seconds, model_top(model, split, K),
            json.dumps(model.get_params()))
    missing = peers_available()
    if missing:
        print(missing, flush=True)
        info["peers_missing"] = missing
        return info
    cornac_params = json.loads(args.cornac_params)
    seconds, tops = run_cornac_vbpr(dataset, split, args.seed, cornac_params)
    for name, top in tops:
        add(name, seconds, top, json.dumps(cornac_params) or "defaults")
    implicit_params = json.loads(args.implicit_params)
    seconds, top = run_implicit_bpr(dataset, split, args.seed, implicit_params)
    add("implicit BPR", seconds, top, json.dumps(implicit_params))
    return info


# --- part 2: training at scale -----------------------------------------------------------------

def reset_bench_tables() -> None:
    """Empties the bench database: catalogue, events, sessions, every model version's vectors."""
    from django.contrib.sessions.models import Session
    from django.db import connection

    from visrec.models import ModelKind, ModelVersion, ShopperVector
    from visrec.services.foryou.training import drop_vectors

    for name in ModelVersion.objects.filter(kind=ModelKind.RECOMMENDER).values_list("name", flat=True):
        drop_vectors(name)
    similar_bench.reset_catalogue(DIMS)
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {ShopperVector._meta.db_table}, {Session._meta.db_table}")


def load_events(dataset, product_ids: np.ndarray) -> None:
    """The dataset's events into ``InteractionEvent`` by COPY, item index i -> ``product_ids[i]``."""
    from django.db import connection
    from tqdm import tqdm

    from visrec.models import InteractionEvent

    table = InteractionEvent._meta.db_table
    sql = f"COPY {table} (subject_key, product_id, event_type, occurred_at, source, public, created_at) FROM STDIN"
    now = dt.datetime.now(dt.timezone.utc)
    subjects = dataset.subjects.tolist()
    step = 100_000
    connection.ensure_connection()
    with connection.connection.cursor() as cursor:
        for start in tqdm(range(0, len(dataset.users), step), desc="events", unit="chunk"):
            stop = min(start + step, len(dataset.users))
            with cursor.copy(sql) as copy:
                for u, i, kind, when in zip(dataset.users[start:stop].tolist(), dataset.items[start:stop].tolist(),
                                            dataset.types[start:stop].tolist(), dataset.times[start:stop].tolist()):
                    copy.write_row((subjects[u], int(product_ids[i]), kind,
                                    dt.datetime.fromtimestamp(when, dt.timezone.utc), "", True, now))
    with connection.cursor() as cursor:
        cursor.execute(f"VACUUM ANALYZE {table}")


def scale_fit(args, workdir: Path, fit: bool = True):
    """The scale data set, and ``fit_model("vbpr")`` on all of it timed in a child process."""
    print(f"[scale] generating {args.scale_events:,} events, {args.scale_items:,} products, "
          f"{args.scale_shoppers:,} shoppers", flush=True)
    dataset = synthetic_dataset(args.scale_events, args.scale_items, args.scale_shoppers, args.seed + 1)
    path = workdir / "scale.npz"
    save_dataset(dataset, path)
    out: dict = {"events": args.scale_events, "items": args.scale_items, "shoppers": args.scale_shoppers}
    if not fit:
        return dataset, out
    print(f"[scale] fit only (child process), {similar_bench.load_average()}", flush=True)
    out["fit"] = run_child(["fit", str(path)])
    out["fit"]["load_after"] = similar_bench.load_average()
    print(f"[scale] fit {json.dumps(out['fit'])}", flush=True)
    return dataset, out


def scale(args, workdir: Path, fit: bool = True) -> dict:
    dataset, out = scale_fit(args, workdir, fit)

    t0 = time.perf_counter()
    reset_bench_tables()
    ids, _ = similar_bench.insert_products(args.scale_items, args.seed)
    similar_bench.copy_embeddings(ids, dataset.features, similar_bench.version_name(DIMS))
    load_events(dataset, ids)
    build_s, _ = similar_bench.build_and_activate(
        DIMS, argparse.Namespace(maintenance_work_mem="1GB", parallel_workers=2),
        {"size": args.scale_items, "vectors": "train-scale", "seed": args.seed})
    out["load_s"] = time.perf_counter() - t0
    print(f"[scale] database loaded in {out['load_s']:.0f}s (image HNSW {build_s:.0f}s), "
          f"{similar_bench.load_average()}", flush=True)
    print(f"[scale] nightly training service (child process), {similar_bench.load_average()}", flush=True)
    out["train"] = run_child(["train"])
    out["train"]["load_after"] = similar_bench.load_average()
    print(f"[scale] train {json.dumps(out['train'])}", flush=True)
    out["product_ids"] = ids
    out["subjects"] = dataset.subjects
    return out


# --- part 3: GET /for-you ----------------------------------------------------------------------

#: Requests in a row per shopper in the browsing run (pages of a visit that show "for you").
PAGES = 5

FORYOU_LUA = r"""
local threads = {}
local counter = 0
function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
  table.insert(threads, thread)
end
function init(args)
  keys = {}
  for line in io.lines(args[1]) do keys[#keys + 1] = line end
  stride = tonumber(args[2])
  idx = tid + 1
  blended, model, session, trending, other = 0, 0, 0, 0, 0
end
function request()
  local key = keys[idx]
  idx = idx + stride
  if idx > #keys then idx = idx - #keys end
  return wrk.format("GET", "/api/visrec/for-you/?limit=8", {["Cookie"] = "sessionid=" .. key})
end
function response(status, headers, body)
  local source = body:match('"source":"(%a+)"')
  if source == "blended" then blended = blended + 1
  elseif source == "model" then model = model + 1
  elseif source == "session" then session = session + 1
  elseif source == "trending" then trending = trending + 1
  else other = other + 1 end
end
function done(summary, latency, requests)
  local b, m, s, t, o = 0, 0, 0, 0, 0
  for _, thread in ipairs(threads) do
    b = b + thread:get("blended"); m = m + thread:get("model"); s = s + thread:get("session")
    t = t + thread:get("trending"); o = o + thread:get("other")
  end
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests": %d, "duration_us": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d, '
    .. '"errors": %d, "blended": %d, "model": %d, "session": %d, "trending": %d, "other": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, e.connect + e.read + e.write + e.status + e.timeout, b, m, s, t, o))
end
"""


def make_sessions(subjects: list[str], *, rekey: bool = False) -> tuple[list[str], list[str]]:
    """A Django session per subject; their session keys and the shoppers' pseudonyms.

    visrec derives a session's pseudonym from its token (HMAC), so a new session cannot be
    given an existing pseudonym: with ``rekey`` each subject's stored shopper vectors and
    events are moved to its new session's pseudonym, and the active version's saved model
    learns the new names too (in this benchmark's database only), so that serving sees the
    shoppers as a training on those pseudonyms would have left them.
    """
    from importlib import import_module

    from django.conf import settings

    from visrec.models import InteractionEvent, ShopperVector
    from visrec.pseudonyms import subject_key
    from visrec.services.privacy.tracking import SESSION_KEY, SINCE_KEY

    SessionStore = import_module(settings.SESSION_ENGINE).SessionStore  # the shop's session engine
    keys, pseudonyms = [], []
    for subject in subjects:
        store = SessionStore()
        store.create()
        token = secrets.token_hex(16)  # as visrec gives an anonymous shopper on their first event
        pseudonym = subject_key("anon", token)
        store[SESSION_KEY], store[SINCE_KEY] = token, int(time.time()) - 86400
        store.save()
        if rekey:
            ShopperVector.objects.filter(subject_key=subject).update(subject_key=pseudonym)
            InteractionEvent.objects.filter(subject_key=subject).update(subject_key=pseudonym)
        keys.append(store.session_key)
        pseudonyms.append(pseudonym)
    if rekey:
        import dataclasses

        from django.core.files.base import ContentFile

        from visrec.models import ModelKind
        from visrec.services.foryou import recommend as foryou_service
        from visrec.services.foryou.training import load_bundle
        from visrec.services.serving.versions import active_version

        version = active_version(ModelKind.RECOMMENDER)
        bundle = load_bundle(version)
        moves = dict(zip(subjects, pseudonyms))
        bundle = dataclasses.replace(bundle, subjects=np.array([moves.get(s, s) for s in bundle.subjects.tolist()],
                                                               dtype="U64"))
        # A new file each run (the storage picks a free name). Server processes keep a loaded
        # model by version name: this runs before any "for you" request reaches them.
        version.artefact.save(Path(version.artefact.name).name, ContentFile(bundle.to_bytes()), save=True)
        foryou_service._BUNDLES.clear()
        # The updates left dead rows in both tables and their indexes: measure without them.
        from django.db import connection

        with connection.cursor() as cursor:
            for model in (ShopperVector, InteractionEvent):
                cursor.execute(f"VACUUM ANALYZE {model._meta.db_table}")
    return keys, pseudonyms


def run_wrk(port: int, script: Path, keys_file: Path, connections: int, seconds: int) -> dict:
    threads = min(2, connections)
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "-s", str(script),
           f"http://127.0.0.1:{port}", "--", str(keys_file), str(threads)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    stats = json.loads(next(x for x in out.splitlines() if x.startswith("WRKJSON "))[len("WRKJSON "):])
    stats["rps"] = stats["requests"] / (stats["duration_us"] / 1e6)
    for key in ("p50", "p90", "p99", "max"):
        stats[f"{key}_ms"] = stats.pop(f"{key}_us") / 1000
    return stats


def server_args(args) -> argparse.Namespace:
    """The options of bench/similar.py's Server helper for this bench's gunicorn."""
    return argparse.Namespace(workers=args.workers, worker_class="gthread", threads=args.threads, ef_search=None)


def foryou(server, args, workdir: Path, ready_product: int) -> dict:
    from visrec.models import ModelKind, ShopperVector
    from visrec.services.foryou.recommend import forget_shoppers
    from visrec.services.foryou.training import load_bundle
    from visrec.services.serving.versions import active_version

    version = active_version(ModelKind.RECOMMENDER)
    if version is None:
        raise RuntimeError("no active recommender: run the scale part first")
    # Shoppers the saved model knows by their stored name (earlier runs re-keyed others).
    known = set(load_bundle(version).subjects.tolist())
    subjects = [s for s in ShopperVector.objects.filter(model_version=version.name).order_by("?")
                .values_list("subject_key", flat=True)[: 3 * args.foryou_shoppers] if s in known]
    subjects = subjects[: args.foryou_shoppers]
    keys, subjects = make_sessions(subjects, rekey=True)
    keys_file = workdir / "sessions.txt"
    keys_file.write_text("\n".join(keys) + "\n")
    script = workdir / "foryou.lua"
    script.write_text(FORYOU_LUA)
    # A shopper browsing: each key PAGES times in a row (one connection walks the file in order).
    browse_file = workdir / "sessions-browsing.txt"
    browse_file.write_text("".join(f"{key}\n" * PAGES for key in keys))
    breakdown = service_breakdown(subjects[: args.breakdown_shoppers])
    print(f"[foryou] in-process ms per call {json.dumps(breakdown)}", flush=True)
    # Warm-up on enough connections to reach every worker process (each loads the saved model
    # on its first request, ~2 s, and its first requests after that are slower): the rows are
    # a running server's, not a starting one's.
    warm_up = 2 * args.workers * args.threads
    run_wrk(server.port, script, keys_file, warm_up, 5)
    runs = []
    # Every run starts with no shopper's model lists cached (FOR_YOU_CACHE_SECONDS), so each
    # request of the first three is a shopper's first; the last walks PAGES requests per shopper.
    # From the third: every product card cached beforehand (a shop's cards are shared by many
    # lists; before it, most of the 2,000 shoppers' cards are read from the database).
    from visrec.models import RecommenderItemVector

    for connections, cards, pages in ((1, "as they come", 1), (args.connections, "as they come", 1),
                                      (1, "all cached", 1), (1, "all cached", PAGES)):
        if cards == "all cached":
            similar_bench.warm_cards(np.array(RecommenderItemVector.objects.filter(model_version=version.name)
                                              .values_list("product_id", flat=True)))
        forget_shoppers(subjects)
        stats = run_wrk(server.port, script, browse_file if pages > 1 else keys_file, connections, args.http_duration)
        stats.update(connections=connections, cards=cards, pages=pages, shoppers=len(keys),
                     load=similar_bench.load_average())
        print(f"[foryou] {json.dumps(stats)}", flush=True)
        runs.append(stats)
    # The reference: the same first requests on a server whose parts run one after the
    # other. Interleaved per shopper (each shopper's first request on both servers, which one
    # first alternating; cards cached), since runs one after the other drift more than the change.
    ab = None
    if args.conn_max_age == 0:
        print("[foryou] no interleaved reference: with CONN_MAX_AGE 0 both servers run the queries one "
              "after the other", flush=True)
    else:
        reference = similar_bench.Server(workdir, server_args(args), conn_max_age=args.conn_max_age,
                                         query_threads=0)
        try:
            reference.wait_ready(ready_product)
            run_wrk(reference.port, script, keys_file, warm_up, 5)  # warm-up, as above
            pairs = list(zip(keys, subjects))[-args.ab_shoppers:]  # the file's last shoppers (lists forgotten)
            ab = interleaved_first_requests({"at once": server.port, "one after the other": reference.port}, pairs)
            print(f"[foryou] interleaved {json.dumps(ab)}", flush=True)
        finally:
            reference.stop()
    return {"version": version.name, "dimensions": version.dimensions, "runs": runs, "breakdown": breakdown,
            "interleaved": ab}


def interleaved_first_requests(ports: dict[str, int], pairs: list[tuple[str, str]]) -> dict:
    """p50/p90 ms of each shopper's first GET /for-you on each server (one keep-alive
    connection per server, one request at a time; which server goes first alternates)."""
    from visrec.services.foryou.recommend import forget_shoppers

    connections = {name: http.client.HTTPConnection("127.0.0.1", port) for name, port in ports.items()}
    times: dict[str, list[float]] = {name: [] for name in ports}
    errors = {name: 0 for name in ports}
    order = list(ports)
    for i, (key, subject) in enumerate(pairs):
        for name in (order if i % 2 == 0 else order[::-1]):
            forget_shoppers([subject])
            t0 = time.perf_counter()
            connections[name].request("GET", "/api/visrec/for-you/?limit=8", headers={"Cookie": f"sessionid={key}"})
            response = connections[name].getresponse()
            response.read()
            if response.status == 200:
                times[name].append((time.perf_counter() - t0) * 1000)
            else:
                errors[name] += 1
    for connection in connections.values():
        connection.close()
    out = {name: {"requests": len(v), "errors": errors[name],
                  "p50_ms": float(np.percentile(v, 50)) if v else float("nan"),
                  "p90_ms": float(np.percentile(v, 90)) if v else float("nan")}
           for name, v in times.items()}
    out["load"] = similar_bench.load_average()
    return out


def service_breakdown(subjects: list[str]) -> dict:
    """p50 ms, in this process, of ``recommend_for_subject`` (a shopper's first request, then
    again with their model lists cached) and of its parts for the same shoppers: the trained
    model's pgvector query, the session query, and the product cards."""
    from visrec.services.foryou.recommend import (
        DEPTH,
        forget_shoppers,
        recommend_for_subject,
        session_list,
        trained_list,
    )
    from visrec.services.serving import presentation
    from visrec.services.serving.similar import SimilarFilters

    filters = SimilarFilters()
    lists: dict[str, list] = {}
    forget_shoppers(subjects)
    steps = {
        "recommend_for_subject": lambda s: lists.__setitem__(s, recommend_for_subject(s, 8, filters)[0]),
        "recommend_for_subject_again": lambda s: recommend_for_subject(s, 8, filters),
        "trained_list": lambda s: trained_list(s, DEPTH, filters, []),
        "session_list": lambda s: session_list(s, DEPTH, filters, []),
        "product_cards": lambda s: presentation.product_cards(lists[s]),  # the list just served
    }
    times: dict[str, list[float]] = {name: [] for name in steps}
    for i, subject in enumerate(subjects):
        for name, step in steps.items():
            t0 = time.perf_counter()
            step(subject)
            if i >= 3:  # the first calls warm caches and connections
                times[name].append(time.perf_counter() - t0)
    out = {name: float(np.percentile(v, 50) * 1000) for name, v in times.items() if v}
    out["calls"] = max(0, len(subjects) - 3)
    out["load"] = similar_bench.load_average()
    return out


# --- part 4: ingestion -------------------------------------------------------------------------

def ingest(server, args, product_ids: np.ndarray) -> dict:
    """Threads POSTing event batches for ``--ingest-seconds``; counts sent, accepted and stored."""
    from visrec.conf import visrec_settings
    from visrec.models import InteractionEvent
    from visrec.pseudonyms import subject_key
    from visrec.services.privacy.shopper_data import dropped_events

    per_subject = min(visrec_settings.MAX_EVENTS_PER_DAY, 400) // args.ingest_batch * args.ingest_batch
    if per_subject <= 0:
        raise ValueError("--ingest-batch exceeds the per-day contribution bound")
    needed = int(args.ingest_seconds * 10_000 / per_subject) + args.ingest_threads  # room for 10k events/s
    keys, _ = make_sessions([subject_key("session", f"bench-ingest-{i}") for i in range(needed)])
    dropped_before = dropped_events()
    stored_before = InteractionEvent.objects.filter(source=SOURCE_TAG).count()
    kinds = ["view"] * 6 + ["click", "cart", "cart", "impression"]  # a storefront posts no purchases
    lock = threading.Lock()
    totals = {"requests": 0, "sent": 0, "accepted": 0, "errors": 0, "sessions_used": 0}
    log: list[tuple[float, int]] = []
    stop_at = time.perf_counter() + args.ingest_seconds
    next_key = iter(keys)

    def client(seed: int) -> None:
        rng = np.random.default_rng(seed)
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        key, left = None, 0
        while time.perf_counter() < stop_at:
            if left == 0:
                with lock:
                    key = next(next_key, None)
                    totals["sessions_used"] += key is not None
                if key is None:
                    break
                left = per_subject
            products = rng.choice(product_ids, args.ingest_batch, replace=False)
            body = json.dumps({"events": [
                {"type": kinds[int(rng.integers(0, len(kinds)))], "product": int(p), "source": SOURCE_TAG}
                for p in products]})
            try:
                conn.request("POST", "/api/visrec/events/", body=body,
                             headers={"Content-Type": "application/json", "Cookie": f"sessionid={key}"})
                response = conn.getresponse()
                payload = response.read()
                ok = response.status == 202
                accepted = json.loads(payload)["accepted"] if ok else 0
            except (OSError, http.client.HTTPException, ValueError):
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
                ok, accepted = False, 0
            left -= args.ingest_batch
            with lock:
                totals["requests"] += 1
                totals["sent"] += args.ingest_batch
                totals["accepted"] += accepted
                totals["errors"] += not ok
                log.append((time.perf_counter(), accepted))
        conn.close()

    load_before = similar_bench.load_average()
    started = time.perf_counter()
    workers = [threading.Thread(target=client, args=(args.seed + 100 + i,)) for i in range(args.ingest_threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - started
    stored = InteractionEvent.objects.filter(source=SOURCE_TAG).count() - stored_before
    times = np.array([t - started for t, _ in log])
    counts = np.array([a for _, a in log])
    window = 5.0
    rates = [counts[(times >= s) & (times < s + window)].sum() / window
             for s in np.arange(0.0, max(elapsed - window, 0.0) + 1e-9, window)]
    out = {**totals, "seconds": elapsed, "stored": int(stored), "dropped": dropped_events() - dropped_before,
           "stored_per_s": stored / elapsed, "min_5s_rate": float(min(rates)) if rates else 0.0,
           "batch": args.ingest_batch, "threads": args.ingest_threads, "per_subject": per_subject,
           "load": f"{load_before} -> {similar_bench.load_average()}"}
    print(f"[ingest] {json.dumps(out)}", flush=True)
    return out


# --- report ------------------------------------------------------------------------------------

def mark(ok: bool) -> str:
    return "✓" if ok else "✗"


def print_report(results: dict, args) -> None:
    print()
    for info in results.get("accuracy", []):
        print(f"## accuracy and training time: {info['data']} ({info['events']:,} events, {info['items']:,} products, "
              f"{info['shoppers']:,} shoppers; trained on {info['train_events']:,} events; "
              f"{info['test_shoppers']:,} test shoppers, {info['shoppers_with_cold_purchases']} of them bought "
              f"products nobody touched before; {info['cold_items']:,} such products)")
        print()
        rows = info["rows"]
        ref = next((r for r in rows if r["model"] == "Cornac VBPR"), None)
        print(f"| model | Recall@{K} | × Cornac VBPR | NDCG@{K} | cold Recall@{K} | train s | × Cornac VBPR time |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for r in rows:
            ratio = f"{r['recall'] / ref['recall']:.2f}" if ref and ref["recall"] else "—"
            time_ratio = f"{r['seconds'] / ref['seconds']:.2f}" if ref and r["seconds"] else "—"
            print(f"| {r['model']} | {r['recall']:.3f} | {ratio} | {r['ndcg']:.3f} | {r['cold_recall']:.3f} "
                  f"| {r['seconds']:.1f} | {time_ratio} |")
        if info.get("peers_missing"):
            print(f"\n{info['peers_missing']}")
        print()
    sc = results.get("scale")
    if sc:
        fit, train = sc.get("fit"), sc.get("train")
        print(f"## training at scale: {sc['events']:,} events, {sc['items']:,} products, {sc['shoppers']:,} shoppers, "
              f"{DIMS}-d image vectors")
        print()
        print("| what | wall s (ref < 600) | CPU s of the process | peak RSS MB (ref < 4096) | load after |")
        print("|---|---:|---:|---:|---|")
        for label, r in (("fit_model(\"vbpr\") alone", fit),
                         ("train_recommender (load, fit, measure, refit, publish, index)", train)):
            if r is None:
                continue
            cpu = f"{r['cpu_s']:.0f}" if "cpu_s" in r else "—"
            print(f"| {label} | {r['seconds']:.0f} {mark(r['seconds'] < TARGET_TRAIN_S)} | {cpu} "
                  f"| {r['peak_rss_mb']:.0f} {mark(r['peak_rss_mb'] < TARGET_RSS_MB)} | {r['load_after']} |")
        if train:
            print(f"\ntrain_recommender: {train['version']} active={train['active']}, "
                  f"metrics {json.dumps(train['metrics'])}")
        print()
    fy = results.get("foryou")
    if fy:
        print(f"## GET /api/visrec/for-you/ at that scale (gunicorn {args.workers} × gthread × {args.threads}, "
              f"CONN_MAX_AGE {args.conn_max_age}, wrk on the same cores, {args.http_duration} s per run, "
              f"model {fy['version']}, {fy['dimensions']}-d)")
        print()
        print(f"| connections | product cards | requests per shopper | requests | req/s "
              f"| p50 ms (ref ≤ {TARGET_FORYOU_P50_MS:g}) | p90 ms | p99 ms | errors "
              f"| blended / model / session / trending |")
        print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---|")
        for r in fy["runs"]:
            print(f"| {r['connections']} | {r.get('cards', '—')} | {r.get('pages', 1)} | {r['requests']} "
                  f"| {r['rps']:.0f} "
                  f"| {r['p50_ms']:.1f} "
                  f"{mark(r['p50_ms'] <= TARGET_FORYOU_P50_MS)} | {r['p90_ms']:.1f} | {r['p99_ms']:.1f} "
                  f"| {r['errors']} | {r['blended']} / {r['model']} / {r['session']} / {r['trending']} |")
        ab = fy.get("interleaved")
        if ab:
            a, b = ab["at once"], ab["one after the other"]
            print(f"\nA shopper's first request (cards cached), interleaved on two servers, {a['requests']} "
                  f"shoppers (errors {a['errors']} / {b['errors']}), one request at a time from Python's http.client ({ab['load']}): the model's "
                  f"parts and the session list at once p50 {a['p50_ms']:.1f} / p90 {a['p90_ms']:.1f} ms, one after the "
                  f"other (reference, QUERY_THREADS 0) p50 {b['p50_ms']:.1f} / p90 {b['p90_ms']:.1f} ms: "
                  f"ratio {a['p50_ms'] / b['p50_ms']:.2f}.")
        b = fy["breakdown"]
        print(f"\nIn-process p50 ms over {b['calls']} shoppers ({b['load']}): "
              + ", ".join(f"{k} {v:.1f}" for k, v in b.items() if k not in ("calls", "load")))
        print()
    ing = results.get("ingest")
    if ing:
        lost = ing["accepted"] - ing["stored"]
        print(f"## event ingestion: POST /api/visrec/events/, {ing['threads']} client threads, batches of "
              f"{ing['batch']}, {ing['seconds']:.0f} s")
        print()
        print(f"| requests | events sent | accepted | rows stored | lost (accepted − stored) | dropped by bounds "
              f"| errors | events/s stored (ref ≥ {TARGET_INGEST_EPS:g}) | slowest 5 s window ev/s |")
        print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        print(f"| {ing['requests']} | {ing['sent']} | {ing['accepted']} | {ing['stored']} | {lost} {mark(lost == 0)} "
              f"| {ing['dropped']} | {ing['errors']} | {ing['stored_per_s']:.0f} "
              f"{mark(ing['stored_per_s'] >= TARGET_INGEST_EPS)} | {ing['min_5s_rate']:.0f} |")
        print()


# --- main --------------------------------------------------------------------------------------

def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child_main(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", default="accuracy,scale,foryou,ingest",
                        help="any of accuracy, scale, foryou, ingest; fit: the scale part's fit alone; "
                        "service: the scale part without it")
    parser.add_argument("--demo-db", default="visrec", help="database the demo's events are read from (read-only); "
                        "'' to skip the demo data")
    parser.add_argument("--synthetic", default="20000,2000,2000",
                        help="events,products,shoppers of the synthetic accuracy data ('' to skip)")
    parser.add_argument("--cornac-params", default="{}", help="JSON keyword arguments of cornac.models.VBPR")
    parser.add_argument("--implicit-params", default="{}", help="JSON keyword arguments of implicit's BPR")
    parser.add_argument("--scale-events", type=int, default=1_000_000)
    parser.add_argument("--scale-items", type=int, default=100_000)
    parser.add_argument("--scale-shoppers", type=int, default=100_000)
    parser.add_argument("--foryou-shoppers", type=int, default=2000)
    parser.add_argument("--ab-shoppers", type=int, default=400,
                        help="shoppers whose first request is timed on both servers (its parts at once or not)")
    parser.add_argument("--breakdown-shoppers", type=int, default=50,
                        help="shoppers timed in-process, per part of the for-you service")
    parser.add_argument("--http-duration", type=int, default=20)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--conn-max-age", type=int, default=60)
    parser.add_argument("--ingest-seconds", type=float, default=30.0)
    parser.add_argument("--ingest-threads", type=int, default=8)
    parser.add_argument("--ingest-batch", type=int, default=50)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--db", default="visrec_bench_train")
    parser.add_argument("--keep", action="store_true", help="keep the throw-away database")
    parser.add_argument("--json", type=Path, default=ROOT / "var" / "bench-train.json")
    parser.add_argument("--report", type=Path, default=None,
                        help="print the tables of a saved --json file (an interrupted run's too) and exit")
    args = parser.parse_args()
    if args.report:
        print_report(json.loads(args.report.read_text()), args)
        return
    parts = set(args.parts.split(","))
    print("command: " + " ".join([Path(sys.executable).name, "bench/train.py", *sys.argv[1:]]), flush=True)
    print(f"{os.cpu_count()} CPUs, load {Path('/proc/loadavg').read_text().strip()}", flush=True)
    workdir = Path(tempfile.mkdtemp(prefix="visrec-bench-train-"))
    results: dict = {}
    start = time.perf_counter()
    try:
        similar_bench.setup_django()
        similar_bench.use_database(args.db)
        if parts & {"scale", "service"}:  # service: the scale part without the fit-alone child
            results["scale"] = scale(args, workdir, fit="scale" in parts)
        elif "fit" in parts:  # the scale part's fit alone, without the database and the service
            results["scale"] = scale_fit(args, workdir)[1]
        if parts & {"foryou", "ingest"}:
            from visrec.models import ModelKind
            from visrec.services.serving.versions import active_version

            if active_version(ModelKind.RECOMMENDER) is None:
                raise SystemExit("foryou/ingest need the scale part's database (run with scale, or --keep it)")
            from django.db import connection

            with connection.cursor() as cursor:
                cursor.execute("SELECT product_id FROM visrec_productembedding ORDER BY product_id")
                product_ids = np.array([r[0] for r in cursor.fetchall()], dtype=np.int64)
            server = similar_bench.Server(workdir, server_args(args), conn_max_age=args.conn_max_age)
            try:
                server.wait_ready(int(product_ids[0]))
                if "foryou" in parts:
                    results["foryou"] = foryou(server, args, workdir, int(product_ids[0]))
                if "ingest" in parts:
                    results["ingest"] = ingest(server, args, product_ids)
            finally:
                server.stop()
        if "accuracy" in parts:
            results["accuracy"] = []
            if args.demo_db:
                demo_path = workdir / "demo.npz"
                print(f"[accuracy] demo export {json.dumps(export_demo(args.demo_db, demo_path))}", flush=True)
                results["accuracy"].append(accuracy(read_dataset(demo_path), f"demo shoppers ({args.demo_db})", args))
            if args.synthetic:
                n_events, n_items, n_users = (int(x) for x in args.synthetic.split(","))
                data = synthetic_dataset(n_events, n_items, n_users, args.seed)
                results["accuracy"].append(accuracy(data, "synthetic planted tastes", args))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        saved = {k: v for k, v in results.items() if k != "scale"}
        if "scale" in results:
            saved["scale"] = {k: v for k, v in results["scale"].items() if k not in ("product_ids", "subjects")}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(saved, indent=1, default=str))
        if not args.keep and "DJANGO_SETTINGS_MODULE" in os.environ:
            similar_bench.drop_database(args.db)
    print_report(results, args)
    print(f"total {time.perf_counter() - start:.0f}s")


if __name__ == "__main__":
    main()
