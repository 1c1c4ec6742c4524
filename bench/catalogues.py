#!/usr/bin/env python
"""Rebuild a real, labelled product-photo catalogue for issue #18 item 5 (fine-tuning on real photos).

Standalone: stdlib + Pillow, no Django. Reads pinned GitHub snapshots (bare git mirrors as the
``fetch`` tool leaves them under /work/.mirror/<owner>+<name>/repo), checks the SHA-256 of the
label file and of the image manifest against the values pinned below, and writes, in the format
``manage.py visrec_import`` reads:

    var/realdata/<name>/products.csv   id,name,category,price,image   (price empty: none known)
    var/realdata/<name>/photos/        one image file per product
    var/realdata/<name>/stats.json     sources, checksums, sample, category counts

Nothing written belongs in the repository (var/ is git-ignored); the data keep their owners'
licences (``licence`` below).

    .venv/bin/python bench/catalogues.py --list
    .venv/bin/python bench/catalogues.py myntra-ruturaj [--limit 1000] [--seed 0] \
        [--min-per-category 20] [--label articleType]
    .venv/bin/python bench/catalogues.py hm-mewprakarn [--limit N]

Catalogues:

* ``myntra-ruturaj`` -- 2,946 real product photos (225x300 JPEG, Myntra's catalogue shots) of the
  Kaggle "Fashion Product Images Dataset" (paramaggarwal), as a sampled subset committed by
  RuturajChitale/Fassion-Recommendation-System, labelled by that dataset's ``styles.csv`` (all
  44,446 rows, without productDisplayName) as committed by
  animmala3942/FashionProductRecommendationSystem. Category = ``articleType`` (Tshirts, Watches,
  Casual Shoes, Handbags ... as the shop catalogued them); ``--label subCategory`` for coarser.
  Names are built from gender, colour and article type (the display names are not in that file).
* ``hm-mewprakarn`` -- 2,522 real H&M article thumbnails with H&M's ``product_type_name``
  (Trousers, Sweater, Dress ...), the snapshot bench/realdata.py pins as ``hm50-mewprakarn``.

Both keep only categories with at least ``--min-per-category`` products (default 20: a category
of 3 cannot fill 10 neighbours) and drop "Unknown"/empty labels: real categories only.
``--limit N`` draws a stratified sample: each category gets its share of N (largest remainder),
the products inside a category ordered by a seeded hash of their id.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from realdata import ChecksumError, open_tree, photo_index, photos, verified  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
NOT_A_CATEGORY = {"", "unknown", "na", "n/a", "none", "other"}

SOURCES = {
    "myntra-ruturaj": {
        "images": {
            "repo": "RuturajChitale/Fassion-Recommendation-System",
            "commit": "8229bfd9dadcec71d6313bcf126b43b82a0c98ef",
            "mirror": "/work/.mirror/RuturajChitale+Fassion-Recommendation-System/repo",
            "dir": "images", "count": 2946, "id_width": None,
            # SHA-256 of the sorted lines "<file name> <sha256 of its bytes>\n" (as realdata.py)
            "manifest_sha256": "ad08ac9feae4a212cc21254f31916b00ab81b003d3840709ceddd9081edee2e8",
        },
        "labels": {
            "repo": "animmala3942/FashionProductRecommendationSystem",
            "commit": "91e8036739fe4f903aaa4a95009a13d4bc7cb542",
            "mirror": "/work/.mirror/animmala3942+FashionProductRecommendationSystem/repo",
            "path": "styles.csv",
            "sha256": "b5451284ea74ad2b93cc7bbfbfa8334457661a3cb898fc590a1de80f0a1a18de",
        },
        "label_default": "articleType",
        "licence": "image repository has no licence file; the data are Kaggle's 'Fashion Product "
                   "Images Dataset' (Param Aggarwal, scraped from Myntra), whose Kaggle page gives "
                   "its licence (MIT as far as we know -- not verifiable from here); styles.csv's "
                   "repository has no licence file either. Keep the rebuilt files out of the "
                   "repository.",
    },
    "hm-mewprakarn": {
        "images": {
            "repo": "mewprakarn/Product_Personalization_Project",
            "commit": "f4a760b545560edd4e1136e4b49545a682ca0b2a",
            "mirror": "/work/.mirror/mewprakarn+Product_Personalization_Project/repo",
            "dir": "static/images", "count": 2522,
            "manifest_sha256": "db61fd7f57e05361b90dd6f7c390bbcac12bdfe1750391ebc9f9c5ed1b248042",
        },
        "labels": {
            "repo": "mewprakarn/Product_Personalization_Project",
            "commit": "f4a760b545560edd4e1136e4b49545a682ca0b2a",
            "mirror": "/work/.mirror/mewprakarn+Product_Personalization_Project/repo",
            "path": "static/model/articles_v2.csv",
            "sha256": "01d1f0d93e5e119cc7b193661cea8a74ca0afaa8be9370be8a70af4518b31378",
        },
        "label_default": "product_type_name",
        "licence": "repository Apache-2.0; the H&M data in it fall under the H&M Kaggle "
                   "competition rules (non-commercial research/education, no redistribution)",
    },
}


def read_labels(name: str, text: str, label: str) -> dict[str, dict]:
    """Product id -> {"name", "category"} from the source's label file."""
    out = {}
    for row in csv.DictReader(io.StringIO(text)):
        if name == "myntra-ruturaj":
            pid = row["id"].strip()
            title = " ".join(v for v in (row.get("gender"), row.get("baseColour"), row.get("articleType")) if v)
        else:
            pid = row["article_id"].strip().zfill(10)
            title = (row.get("prod_name") or "").strip()
        category = (row.get(label) or "").strip()
        out[pid] = {"name": title or pid, "category": category}
    return out


def stratified_sample(ids_by_category: dict[str, list[str]], limit: int | None, seed: int) -> list[str]:
    """``limit`` ids with each category's share (largest remainder), seeded order inside a category."""
    def key(pid: str) -> str:
        return hashlib.sha256(f"{seed}:{pid}".encode()).hexdigest()

    ordered = {c: sorted(ids, key=key) for c, ids in ids_by_category.items()}
    total = sum(len(v) for v in ordered.values())
    if not limit or limit >= total:
        return sorted(p for ids in ordered.values() for p in ids)
    quotas = {c: limit * len(v) / total for c, v in ordered.items()}
    take = {c: int(q) for c, q in quotas.items()}
    for c in sorted(quotas, key=lambda c: (-(quotas[c] - take[c]), c))[: limit - sum(take.values())]:
        take[c] += 1
    return sorted(p for c, ids in ordered.items() for p in ids[: take[c]])


def build(name: str, *, limit: int | None = None, seed: int = 0, min_per_category: int = 20,
          label: str | None = None, out: str | Path | None = None) -> Path:
    """Writes the catalogue and returns its folder."""
    src = SOURCES[name]
    label = label or src["label_default"]
    out = Path(out or ROOT / "var" / "realdata" / name)
    seen: dict[str, str] = {}
    lab = src["labels"]
    for spec in (src["images"], lab):
        if not Path(spec["mirror"]).exists():
            raise SystemExit(f"{name}: no mirror at {spec['mirror']}; fetch github:{spec['repo']}")
    print(f"labels: {lab['repo']} @ {lab['commit']}")
    labels = read_labels(name, verified(open_tree(lab["mirror"], lab["commit"]), lab["path"],
                                        lab["sha256"], seen).decode("utf-8"), label)
    img = src["images"]
    print(f"images: {img['repo']} @ {img['commit']}")
    tree = open_tree(img["mirror"], img["commit"])
    index = photo_index(tree, img)
    real = {p for p in index if p in labels and labels[p]["category"].lower() not in NOT_A_CATEGORY}
    counts = Counter(labels[p]["category"] for p in real)
    kept = {c for c, n in counts.items() if n >= min_per_category}
    by_category: dict[str, list[str]] = {}
    for p in real:
        if labels[p]["category"] in kept:
            by_category.setdefault(labels[p]["category"], []).append(p)
    wanted = stratified_sample(by_category, limit, seed)
    if out.exists():  # a rebuild replaces the previous sample, never adds to it
        for old in (out / "photos").glob("*"):
            old.unlink()
    copied = photos(tree, img, index, set(wanted), out / "photos")
    seen[f"{img['dir']}/ manifest"] = img["manifest_sha256"]
    rows = [p for p in wanted if p in copied]
    with open(out / "products.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["id", "name", "category", "price", "image"])
        for p in rows:
            w.writerow([p, labels[p]["name"], labels[p]["category"], "", copied[p]])
    final = Counter(labels[p]["category"] for p in rows)
    stats = {
        "catalogue": name, "label": label, "limit": limit, "seed": seed,
        "min_per_category": min_per_category, "products": len(rows), "categories": len(final),
        "category_counts": dict(final.most_common()),
        "photos_in_source": len(index), "labelled_with_real_category": len(real),
        "in_categories_kept": sum(len(v) for v in by_category.values()),
        "images": {k: img[k] for k in ("repo", "commit", "dir", "count")},
        "labels_file": {k: lab[k] for k in ("repo", "commit", "path")},
        "sha256": seen, "licence": src["licence"],
        "products_csv_sha256": hashlib.sha256((out / "products.csv").read_bytes()).hexdigest(),
    }
    (out / "stats.json").write_text(json.dumps(stats, indent=2) + "\n")
    print(f"wrote {out}/products.csv: {len(rows)} products in {len(final)} categories "
          f"(of {len(index)} photos; {len(real)} with a real category; "
          f"categories under {min_per_category} products dropped)")
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("catalogue", nargs="?", choices=sorted(SOURCES))
    p.add_argument("--list", action="store_true")
    p.add_argument("--limit", type=int, default=None, help="stratified sample of N products")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--min-per-category", type=int, default=20)
    p.add_argument("--label", default=None, help="label column (default: the source's)")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    if args.list or not args.catalogue:
        for name, s in SOURCES.items():
            print(f"{name}: images {s['images']['repo']} @ {s['images']['commit'][:12]}, labels "
                  f"{s['labels']['repo']}:{s['labels']['path']}; {s['licence']}")
        return 0
    try:
        build(args.catalogue, limit=args.limit, seed=args.seed, min_per_category=args.min_per_category,
              label=args.label, out=args.out)
    except ChecksumError as exc:
        raise SystemExit(f"checksum: {exc}") from exc
    return 0


if __name__ == "__main__":
    sys.exit(main())
