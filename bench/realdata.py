#!/usr/bin/env python
"""Rebuild a real shop's catalogue and shopper history for issue #18 ("for you" on real data).

Prototype. Standalone: stdlib only (Pillow is used, when installed, to check that every photo
decodes). No Django. It reads a source -- a bare git mirror (as the ``fetch`` tool leaves one
under /work/.mirror/<owner>+<name>/repo, read with ``git cat-file``, no work tree needed) or a
plain directory -- checks the SHA-256 of every source file it reads against the values pinned
below, and writes, in the format ``manage.py visrec_import`` reads (README, "To evaluate on your
own shop's history"):

    var/realdata/<source>/products.csv   id,name,category,price,image
    var/realdata/<source>/photos/        one image file per product
    var/realdata/<source>/events.csv     user,item,timestamp,event_type,basket
    var/realdata/<source>/stats.json     the statistics printed at the end

Nothing it writes belongs in the repository: the data keep their owners' licences (see each
source's ``licence``); var/ is git-ignored.

    .venv/bin/python bench/realdata.py --list
    .venv/bin/python bench/realdata.py hm50-mewprakarn [--mirror PATH] [--out DIR]
    .venv/bin/python bench/realdata.py ml100k-posters [--mirror PATH] [--min-rating 0]
    .venv/bin/python bench/realdata.py hm-kaggle --mirror /path/to/h-and-m-download \
        [--customers 3000] [--weeks 16]

Sources:

* ``hm-kaggle`` -- the H&M Personalized Fashion Recommendations files (articles.csv,
  transactions_train.csv, images/<3 digits>/<article>.jpg) as Kaggle distributes them, from a
  directory or a mirror holding that layout. Samples customers deterministically (by a hash of
  their id), keeps the last ``--weeks`` weeks, one basket per customer and day. This is the
  source issue #18 needs; its checksums are not pinned yet (no copy was reachable when this was
  written) -- the first run prints them, paste them into SOURCES to pin them.
* ``hm50-mewprakarn`` -- a pinned GitHub snapshot with 2,522 real H&M product thumbnails and, for
  50 real customers, a purchase list before 2020-09-16 and their real purchases of
  2020-09-16..22. No per-purchase dates (the two baskets get nominal timestamps) and the
  "before" list is capped at 12 items and was not cut strictly at the boundary, so it is a
  smoke test of this pipeline and of the importer, NOT a benchmark for issue #18.
* ``ml100k-posters`` -- FALLBACK DOMAIN (movies, not products): a pinned GitHub snapshot holding
  the original MovieLens 100K files (ml-100k/u.data: 100,000 real ratings with unix timestamps,
  943 users, 1,682 movies, 1997-09-20..1998-04-22) and 1,663 TMDB poster thumbnails
  (data/posters/<movie id>.jpg, 92x138). Every rating is written as a ``purchase`` event (a
  rated movie was watched; ``--min-rating`` keeps only ratings >= that), one basket per user and
  UTC day, as the importer's leave-last-basket-out split defines it. 343 users have ratings on
  2+ UTC days (34 of them only because a session crossed 00:00 UTC: < 8 h between baskets); a
  closed catalogue, so almost no last-basket item is globally cold (11 of 7,457): it measures the
  warm "for you" ranking on real histories, not the cold half. The only real-photo +
  real-history source found on GitHub besides the 50-customer H&M one (issue #18 search).
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import os
import subprocess
import sys
from collections import defaultdict
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SOURCES = {
    "hm50-mewprakarn": {
        "repo": "mewprakarn/Product_Personalization_Project",
        "commit": "f4a760b545560edd4e1136e4b49545a682ca0b2a",
        "mirror": "/work/.mirror/mewprakarn+Product_Personalization_Project/repo",
        "licence": "repository Apache-2.0; the H&M data in it fall under the H&M Kaggle "
                   "competition rules (non-commercial research/education, no redistribution)",
        "files": {
            "static/model/articles_v2.csv":
                "01d1f0d93e5e119cc7b193661cea8a74ca0afaa8be9370be8a70af4518b31378",
            "static/model/prediction_v2.csv":
                "047736d611ea09286ed9a112cab89a143c56c398fa4fb0cd8422b21077096617",
        },
        "images": {"dir": "static/images", "count": 2522,
                   # SHA-256 of the sorted lines "<file name> <sha256 of its bytes>\n"
                   "manifest_sha256":
                       "db61fd7f57e05361b90dd6f7c390bbcac12bdfe1750391ebc9f9c5ed1b248042"},
        "benchmark": False,
    },
    "ml100k-posters": {
        "repo": "sadhana937/Movie-recommender-system",
        "commit": "90a9dfcdd62e9de212bb59f13119213cd075b33c",
        "mirror": "/work/.mirror/sadhana937+Movie-recommender-system/repo",
        "licence": "repository has no licence; MovieLens 100K under the GroupLens usage licence "
                   "(research use, acknowledge Harper & Konstan 2015, no redistribution without "
                   "permission); posters from TMDB (TMDB API terms: non-commercial, attribute "
                   "TMDB) -- keep the rebuilt files out of the repository",
        "files": {
            "ml-100k/u.data":
                "06416e597f82b7342361e41163890c81036900f418ad91315590814211dca490",
            "ml-100k/u.item":
                "553841ebc7de3a0fd0d6b62a204ea30c1e651aacfb2814c7a6584ac52f2c5701",
            "ml-100k/u.genre":
                "9757e0d3e6b298159a80dd48eaf938114690e911e39af97a76949ef1663610bb",
        },
        # movie ids are not zero-padded; prices: none (the importer accepts an empty price)
        "images": {"dir": "data/posters", "count": 1663, "id_width": None,
                   "manifest_sha256":
                       "a9ea81ff5395e44a9cc75dba1646c703ab5670d50bc4ca2daf6205420b14ff17"},
        "price_scale": None,
        "domain": "movies (fallback: posters, not product photos)",
        "benchmark": True,
    },
    "hm-kaggle": {
        "repo": None, "commit": None, "mirror": None,
        "licence": "H&M Kaggle competition rules: non-commercial research/education, no "
                   "redistribution -- keep the rebuilt files out of the repository",
        # Not pinned yet: the first run prints the values to paste here.
        "files": {"articles.csv": None, "transactions_train.csv": None},
        "images": {"dir": "images", "count": None, "manifest_sha256": None},
        "benchmark": True,
    },
}


class ChecksumError(RuntimeError):
    pass


class GitTree:
    """Files of one commit of a bare git repository, read with ``git cat-file --batch``."""

    def __init__(self, git_dir: str, commit: str):
        self.git_dir, self.commit = git_dir, commit
        out = subprocess.run(["git", f"--git-dir={git_dir}", "ls-tree", "-r", "-z", commit],
                             check=True, capture_output=True).stdout
        self.blobs = {}
        for entry in out.split(b"\0"):
            if entry:
                meta, path = entry.split(b"\t", 1)
                mode, kind, sha = meta.split()
                if kind == b"blob":
                    self.blobs[path.decode()] = sha.decode()
        self._cat = subprocess.Popen(["git", f"--git-dir={git_dir}", "cat-file", "--batch"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def list(self, prefix: str) -> list[str]:
        prefix = prefix.rstrip("/") + "/"
        return sorted(p for p in self.blobs if p.startswith(prefix))

    def exists(self, path: str) -> bool:
        return path in self.blobs

    def read(self, path: str) -> bytes:
        self._cat.stdin.write(self.blobs[path].encode() + b"\n")
        self._cat.stdin.flush()
        header = self._cat.stdout.readline().split()
        size = int(header[2])
        data = self._cat.stdout.read(size)
        self._cat.stdout.read(1)  # trailing newline
        return data


class DirTree:
    def __init__(self, root: str):
        self.root = Path(root)

    def list(self, prefix: str) -> list[str]:
        base = self.root / prefix
        return sorted(str(p.relative_to(self.root)) for p in base.rglob("*") if p.is_file())

    def exists(self, path: str) -> bool:
        return (self.root / path).is_file()

    def read(self, path: str) -> bytes:
        return (self.root / path).read_bytes()

    def open_text(self, path: str):
        return open(self.root / path, newline="", encoding="utf-8")


def open_tree(mirror: str, commit: str | None):
    if (Path(mirror) / "HEAD").is_file() and (Path(mirror) / "objects").is_dir():
        return GitTree(mirror, commit or "HEAD")
    return DirTree(mirror)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def verified(tree, path: str, expected: str | None, seen: dict) -> bytes:
    data = tree.read(path)
    got = sha256(data)
    seen[path] = got
    if expected is None:
        print(f"  {path}: sha256 {got} (not pinned -- pin it in SOURCES)")
    elif got != expected:
        raise ChecksumError(f"{path}: sha256 {got}, expected {expected}")
    else:
        print(f"  {path}: sha256 ok")
    return data


def file_sha256(tree, path: str, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(tree.root / path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def photo_index(tree, spec: dict) -> dict[str, str]:
    """Article id -> path of its photo in the source."""
    names = {}
    width = spec.get("id_width", 10)  # H&M article ids are 10 digits, zero-padded
    for path in tree.list(spec["dir"]):
        stem, ext = os.path.splitext(os.path.basename(path))
        # photos are named by the numeric item id; skips logos and the like
        if ext.lower() in (".jpg", ".jpeg", ".png", ".webp") and stem.isdigit():
            names.setdefault(stem.zfill(width) if width else str(int(stem)), path)
    return names


def photos(tree, spec: dict, names: dict[str, str], wanted: set[str], out: Path) -> dict[str, str]:
    """Copy the photos of ``wanted`` article ids; check the images' manifest when pinned."""
    out.mkdir(parents=True, exist_ok=True)
    try:
        from PIL import Image
    except ImportError:  # decoding check is optional
        Image = None
    if spec["count"] is not None and len(names) != spec["count"]:
        raise ChecksumError(f"{spec['dir']}: {len(names)} images, expected {spec['count']}")
    manifest, copied, bad = [], {}, 0
    for stem in sorted(names):
        data = tree.read(names[stem])
        manifest.append(f"{os.path.basename(names[stem])} {sha256(data)}\n")
        if stem not in wanted:
            continue
        if Image is not None:
            try:
                with Image.open(io.BytesIO(data)) as im:
                    im.verify()
            except Exception:
                bad += 1
                continue
        name = stem + os.path.splitext(names[stem])[1].lower()
        (out / name).write_bytes(data)
        copied[stem] = name
    got = sha256("".join(manifest).encode())
    if spec["manifest_sha256"] is None or spec["manifest_sha256"] != got:
        note = "not pinned" if spec["manifest_sha256"] is None else "MISMATCH"
        if note == "MISMATCH":
            raise ChecksumError(f"{spec['dir']}: manifest sha256 {got}, expected "
                                f"{spec['manifest_sha256']}")
        print(f"  {spec['dir']}/ ({len(names)} images): manifest sha256 {got} ({note})")
    else:
        print(f"  {spec['dir']}/ ({len(names)} images): manifest sha256 ok")
    if bad:
        print(f"  {bad} photos did not decode and were left out")
    return copied


def read_articles(text: str) -> dict[str, dict]:
    articles = {}
    for row in csv.DictReader(io.StringIO(text)):
        aid = row["article_id"].strip().zfill(10)
        articles[aid] = {"name": row.get("prod_name", "").strip() or aid,
                         "category": (row.get("product_type_name") or
                                      row.get("product_group_name") or "").strip()}
    return articles


def build_mewprakarn(tree, src: dict, args, seen: dict, photo_ids: set[str]):
    articles = read_articles(verified(tree, "static/model/articles_v2.csv",
                                      src["files"]["static/model/articles_v2.csv"], seen).decode())
    pred = verified(tree, "static/model/prediction_v2.csv",
                    src["files"]["static/model/prediction_v2.csv"], seen).decode()
    before, after = {}, {}
    for row in csv.DictReader(io.StringIO(pred)):
        user = row["customer_id"]
        # The ALS rows carry the 12-item history list; other models' rows carry one item.
        items = row["recent_purchase"].split()
        if len(items) > len(before.get(user, [])):
            before[user] = items
        after[user] = row["actual"].split()
    # Nominal times: the source gives no per-purchase dates, only "before the week" and
    # "in the week 2020-09-16..22".
    t_before = datetime(2020, 9, 15, tzinfo=timezone.utc)
    t_after = datetime(2020, 9, 22, tzinfo=timezone.utc)
    events = []
    for user in sorted(after):
        for item in dict.fromkeys(before.get(user, [])):
            events.append((user, item, t_before, "purchase", f"{user[:16]}-1"))
        for item in dict.fromkeys(after[user]):
            events.append((user, item, t_after, "purchase", f"{user[:16]}-2"))
    return articles, {}, events


def build_hm_kaggle(tree, src: dict, args, seen: dict, photo_ids: set[str]):
    if not isinstance(tree, DirTree):
        raise SystemExit("hm-kaggle reads a directory (the 3.5 GB transactions file is not in "
                         "any git snapshot)")
    articles = read_articles(verified(tree, "articles.csv", src["files"]["articles.csv"],
                                      seen).decode("utf-8"))
    path = "transactions_train.csv"
    got = file_sha256(tree, path)
    seen[path] = got
    want = src["files"][path]
    if want is not None and got != want:
        raise ChecksumError(f"{path}: sha256 {got}, expected {want}")
    print(f"  {path}: sha256 {got} ({'ok' if want else 'not pinned'})")
    last = None
    with tree.open_text(path) as f:  # first pass: the last date
        for row in csv.DictReader(f):
            last = row["t_dat"] if last is None or row["t_dat"] > last else last
    start = (date.fromisoformat(last) - timedelta(weeks=args.weeks)).isoformat()
    per_user = defaultdict(list)
    prices = defaultdict(list)
    with tree.open_text(path) as f:
        for row in csv.DictReader(f):
            if row["t_dat"] <= start:
                continue
            user = row["customer_id"]
            # deterministic sample: about 1 customer in --sample-mod
            if int(hashlib.sha1(user.encode()).hexdigest()[:8], 16) % args.sample_mod:
                continue
            aid = row["article_id"].zfill(10)
            if aid not in photo_ids:  # the image path must be able to carry every item
                continue
            per_user[user].append((row["t_dat"], aid))
            prices[aid].append(float(row["price"]))
    eligible = sorted((u for u, rows in per_user.items() if len({d for d, _ in rows}) >= 2),
                      key=lambda u: hashlib.sha1(u.encode()).hexdigest())[:args.customers]
    events = []
    for user in eligible:
        for day, aid in sorted(per_user[user]):
            when = datetime.fromisoformat(day).replace(tzinfo=timezone.utc)
            events.append((user, aid, when, "purchase", f"{user[:16]}-{day}"))
    mean_price = {a: sum(v) / len(v) for a, v in prices.items()}
    return articles, mean_price, events


def build_ml100k(tree, src: dict, args, seen: dict, photo_ids: set[str]):
    """MovieLens 100K: u.item (latin-1, ``|``-separated) as the catalogue, u.data as events."""
    genres = [line.split("|")[0] for line in
              verified(tree, "ml-100k/u.genre", src["files"]["ml-100k/u.genre"], seen)
              .decode("latin-1").splitlines() if line.strip()]
    articles = {}
    for line in verified(tree, "ml-100k/u.item", src["files"]["ml-100k/u.item"],
                         seen).decode("latin-1").splitlines():
        if not line.strip():
            continue
        fields = line.split("|")
        flags = fields[5:5 + len(genres)]
        # the first genre flagged, in u.genre's order ("unknown" when none is)
        category = next((g for g, f in zip(genres, flags) if f == "1"), "unknown")
        articles[str(int(fields[0]))] = {"name": fields[1].strip() or fields[0],
                                         "category": category}
    events = []
    for line in verified(tree, "ml-100k/u.data", src["files"]["ml-100k/u.data"],
                         seen).decode("ascii").splitlines():
        if not line.strip():
            continue
        user, item, rating, stamp = line.split("\t")
        if float(rating) < args.min_rating:
            continue
        when = datetime.fromtimestamp(int(stamp), tz=timezone.utc)
        # a rated movie was watched: the strongest signal the importer knows is "purchase";
        # one basket per user and UTC day, as basket_split() in visrec's evaluation groups them
        events.append((user, str(int(item)), when, "purchase", f"u{user}-{when.date()}"))
    return articles, {}, events


BUILDERS = {"hm50-mewprakarn": build_mewprakarn, "hm-kaggle": build_hm_kaggle,
            "ml100k-posters": build_ml100k}


def statistics(events, with_photo: set[str]) -> dict:
    # a basket is its id; baskets are ordered by their first event (one timestamp per basket
    # for the H&M sources, many for MovieLens)
    first = {}
    for user, item, when, _, basket in events:
        key = (user, basket)
        first[key] = min(first.get(key, when), when)
    users = defaultdict(lambda: defaultdict(set))
    for user, item, when, _, basket in events:
        users[user][(first[(user, basket)], basket)].add(item)
    multi = {u: b for u, b in users.items() if len(b) >= 2}
    train_items, last = set(), {}
    for user, baskets in users.items():
        keys = sorted(baskets)
        if user in multi:
            last[user] = baskets[keys[-1]]
            keys = keys[:-1]
        for k in keys:
            train_items |= baskets[k]
    held = sum(len(v) for v in last.values())
    cold = sum(1 for v in last.values() for i in v if i not in train_items)
    new_to_user = sum(1 for u, v in last.items() for i in v
                      if not any(i in b for k, b in users[u].items() if b is not v))
    times = [e[2] for e in events]
    return {
        "products_with_photo": len(with_photo),
        "products_in_events": len({e[1] for e in events}),
        "users": len(users),
        "interactions": len(events),
        "baskets": sum(len(b) for b in users.values()),
        "first": min(times).isoformat() if times else None,
        "last": max(times).isoformat() if times else None,
        "users_with_2plus_baskets": len(multi),
        "last_basket_items": held,
        "last_basket_items_cold_globally": cold,
        "cold_fraction": round(cold / held, 4) if held else None,
        "last_basket_items_new_to_user": new_to_user,
        "new_to_user_fraction": round(new_to_user / held, 4) if held else None,
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("source", nargs="?", choices=sorted(SOURCES))
    p.add_argument("--list", action="store_true", help="list the sources and exit")
    p.add_argument("--mirror", help="bare git mirror or directory (default: the source's)")
    p.add_argument("--out", help="output directory (default var/realdata/<source>)")
    p.add_argument("--customers", type=int, default=3000, help="hm-kaggle: customers kept")
    p.add_argument("--weeks", type=int, default=16, help="hm-kaggle: weeks of history kept")
    p.add_argument("--sample-mod", type=int, default=50,
                   help="hm-kaggle: keep about 1 customer in this many before the cap")
    p.add_argument("--min-rating", type=float, default=0.0,
                   help="ml100k-posters: keep only ratings >= this (default: all, 1-5)")
    args = p.parse_args(argv)
    if args.list or not args.source:
        for name, s in SOURCES.items():
            print(f"{name}: {s['repo'] or 'local directory'} @ {s['commit'] or '-'}; "
                  f"benchmark={s['benchmark']}; domain={s.get('domain', 'fashion')}; "
                  f"{s['licence']}")
        return 0
    src = SOURCES[args.source]
    mirror = args.mirror or src["mirror"]
    if not mirror or not Path(mirror).exists():
        raise SystemExit(f"{args.source}: no source at {mirror!r}; give --mirror (for a GitHub "
                         f"source, the path the fetch tool returned for github:{src['repo']})")
    out = Path(args.out or ROOT / "var" / "realdata" / args.source)
    print(f"source {args.source}: {mirror}" + (f" @ {src['commit']}" if src["commit"] else ""))
    tree = open_tree(mirror, src["commit"])
    seen: dict[str, str] = {}
    index = photo_index(tree, src["images"])
    articles, price, events = BUILDERS[args.source](tree, src, args, seen, set(index))
    used = {e[1] for e in events}
    # The catalogue: every article with metadata and a photo, bought or not.
    copied = photos(tree, src["images"], index, set(articles), out / "photos")
    events = [e for e in events if e[1] in copied and e[1] in articles]
    dropped = len(used - set(copied))
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "products.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["id", "name", "category", "price", "image"])
        scale = src.get("price_scale", 1000)
        for aid in sorted(copied, key=lambda a: (len(a), a)):
            if aid in articles:
                # H&M prices are normalised (x1000 here), 0 = none; a source without prices
                # writes an empty one (visrec_import accepts it).
                shown = "" if scale is None else f"{price.get(aid, 0) * scale:.2f}"
                w.writerow([aid, articles[aid]["name"], articles[aid]["category"], shown,
                            copied[aid]])
    with open(out / "events.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["user", "item", "timestamp", "event_type", "basket"])
        for user, item, when, kind, basket in sorted(events, key=lambda e: (e[0], e[2], e[1])):
            w.writerow([user, item, when.strftime("%Y-%m-%dT%H:%M:%SZ"), kind, basket])
    stats = statistics(events, set(copied))
    stats.update(source=args.source, repo=src["repo"], commit=src["commit"],
                 benchmark=src["benchmark"], domain=src.get("domain", "fashion"),
                 items_without_photo_dropped=dropped,
                 source_sha256=seen)
    (out / "stats.json").write_text(json.dumps(stats, indent=2) + "\n")
    print(f"wrote {out}/products.csv ({len(copied)} products), photos/ ({len(copied)} files), "
          f"events.csv ({len(events)} events), stats.json")
    for k, v in stats.items():
        if k != "source_sha256":
            print(f"  {k}: {v}")
    if not src["benchmark"]:
        print("  NOTE: smoke-test source, not a benchmark for issue #18 (see --list / docstring)")
    if "domain" in src:
        print(f"  NOTE: domain is {src['domain']} (see --list / docstring)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
