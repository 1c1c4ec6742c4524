"""Extraction throughput: JPEG files on disk -> vectors committed in PostgreSQL, beside the
bare model forward pass on ready tensors (same backbone, batch size and threads), per backbone.

    .venv/bin/python bench/extract.py [--images 256] [--batch-size 32] [--threads 2]
                                      [--backbones efficientnet_lite0,mobilenet_v3_large,resnet50]

Each backbone runs in its own process so its peak memory (max RSS) is its own. The
torchvision backbones use randomly initialised weights written to a temporary file when
their ImageNet weights are not in the torch cache: speed does not depend on the values.
Runs against a throw-away database ``visrec_bench`` on the embedded PostgreSQL (or
``DATABASE_URL``'s server).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def setup_django(db_name: str) -> None:
    os.environ["DJANGO_SETTINGS_MODULE"] = "shop_demo.settings_test"
    os.environ["VISREC_TEST_DATABASE_NAME"] = db_name
    import django
    import psycopg

    from shop_demo import devservices

    if not os.environ.get("DATABASE_URL"):
        params = devservices.ensure_postgres()
        conninfo = dict(host=params["HOST"], port=params["PORT"], user=params["USER"], dbname="postgres")
        with psycopg.connect(**conninfo, autocommit=True) as conn:
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [db_name]).fetchone():
                conn.execute(f"CREATE DATABASE {db_name}")
    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def draw_photo(rng):
    """A 512x512 "product photo": two drawn shapes in random colours on a light background."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (512, 512), tuple(int(c) for c in rng.integers(225, 250, 3)))
    draw = ImageDraw.Draw(image)
    colour = tuple(int(c) for c in rng.integers(0, 255, 3))
    x0, y0 = (int(v) for v in rng.integers(40, 160, 2))
    draw.ellipse((x0, y0, x0 + 260, y0 + 300), fill=colour)
    draw.rectangle((x0 + 60, y0 + 120, x0 + 330, y0 + 200), fill=tuple(255 - c for c in colour))
    return image


def make_catalogue(n: int, media_root: Path) -> list[int]:
    """``n`` product photos (512x512 JPEG, drawn shapes on a light background) on disk and in the DB."""
    import numpy as np

    from shop_demo.catalog.models import Category, Product, ProductImage

    ProductImage.objects.all().delete()
    Product.objects.all().delete()
    category, _ = Category.objects.get_or_create(slug="bench", defaults={"name": "Bench"})
    (media_root / "products").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    products = Product.objects.bulk_create(
        Product(name=f"Bench {i}", slug=f"bench-{i}", price="9.99", stock=1, category=category) for i in range(n)
    )
    images = []
    for i, product in enumerate(products):
        name = f"products/bench-{i}.jpg"
        draw_photo(rng).save(media_root / name, format="JPEG", quality=88)
        images.append(ProductImage(product=product, image=name, position=0))
    return [img.pk for img in ProductImage.objects.bulk_create(images)]


def run_one(args) -> dict:
    """Measures one backbone in this process; prints a JSON line."""
    import numpy as np
    import torch

    media_root = Path(tempfile.mkdtemp(prefix="visrec-bench-"))
    os.environ["DJANGO_MEDIA_ROOT"] = str(media_root)
    setup_django(args.db)
    from django.conf import settings

    from visrec.backbones import load_backbone, torchvision_cache_path
    from visrec.models import ImageEmbedding, ModelVersion, ProductEmbedding

    weights_note = "ImageNet"
    visrec = {**settings.VISREC, "BACKBONE": args.one, "EXTRACTION_BATCH_SIZE": args.batch_size,
              "TORCH_THREADS": args.threads, "DECODE_WORKERS": args.decode_workers}
    if args.one != "efficientnet_lite0" and not torchvision_cache_path(args.one).exists():
        import torchvision

        path = media_root / f"{args.one}-random.pth"
        torch.save(getattr(torchvision.models, args.one)(weights=None).state_dict(), path)
        visrec["BACKBONE_WEIGHTS"] = {args.one: str(path)}
        weights_note = "random init (speed only)"
    settings.VISREC = visrec
    from visrec.conf import visrec_settings

    visrec_settings.reload()
    torch.set_num_threads(args.threads)
    ids = make_catalogue(args.images, media_root)
    ModelVersion.objects.all().delete()
    ImageEmbedding.objects.all().delete()
    ProductEmbedding.objects.all().delete()

    backbone = load_backbone(args.one)
    batch = np.random.default_rng(0).normal(size=(args.batch_size, 3, backbone.input_size, backbone.input_size)).astype(np.float32)
    backbone.embed(batch)  # warm-up
    from visrec.services.catalogue import extraction

    extraction.embed_images(ids[: args.batch_size], force=True)  # warm-up (loads, creates the version row)

    # Bare forward on ready tensors: as many images as the end-to-end run.
    n_batches = max(1, len(ids) // args.batch_size)
    start = time.perf_counter()
    for _ in range(n_batches):
        backbone.embed(batch)
    bare = n_batches * args.batch_size / (time.perf_counter() - start)

    start = time.perf_counter()
    report = extraction.embed_images(ids[: n_batches * args.batch_size], force=True)
    e2e = report.embedded / (time.perf_counter() - start)
    assert report.failed == 0, report.failures
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result = {"backbone": args.one, "dims": backbone.dimensions, "weights": weights_note, "batch": args.batch_size,
              "threads": args.threads, "decode_workers": args.decode_workers, "images": report.embedded,
              "bare_img_s": round(bare, 1), "e2e_img_s": round(e2e, 1), "ratio": round(e2e / bare, 3),
              "peak_rss_mb": round(peak_mb), "device": str(backbone.device)}
    print(json.dumps(result))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--decode-workers", type=int, default=2)
    parser.add_argument("--backbones", default="efficientnet_lite0,mobilenet_v3_large,resnet50")
    parser.add_argument("--db", default="visrec_bench")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        run_one(args)
        return
    rows = []
    for name in args.backbones.split(","):
        cmd = [sys.executable, __file__, "--one", name, "--images", str(args.images), "--batch-size",
               str(args.batch_size), "--threads", str(args.threads), "--decode-workers", str(args.decode_workers),
               "--db", args.db]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True,
                             env={**os.environ, "OMP_NUM_THREADS": str(args.threads)}).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
    columns = ["backbone", "dims", "weights", "device", "batch", "threads", "decode_workers", "images",
               "bare_img_s", "e2e_img_s", "ratio", "peak_rss_mb"]
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for row in rows:
        print("| " + " | ".join(str(row[c]) for c in columns) + " |")


if __name__ == "__main__":
    main()
