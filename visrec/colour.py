"""Colour descriptors of product photos: what a CNN's pooled features hardly keep.

Pure numpy, no ORM. ImageNet features are trained to be robust to colour, so two mugs
of one shape in red and in blue sit close together; shoppers looking for "similar"
products care about colour. These descriptors give the fine-tuned embedder (and the
evaluation's baseline) the colour of the *product*, not of its background:

* :func:`foreground_pixels` drops near-white pixels (studio backgrounds, the padding of
  :func:`visrec.imaging.to_square`) and pixels close to the photo's own background colour,
  estimated from its border;
* :func:`colour_histogram` is a joint RGB histogram with soft (trilinear) binning,
  L1-normalised then square-rooted and L2-normalised (Hellinger): the cosine of two
  descriptors is the Bhattacharyya coefficient of the two colour distributions.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
from PIL import Image

#: Pixels whose three channels are all above this are background (product photos on white).
WHITE_THRESHOLD = 235
#: A pixel within this distance (max over channels, 0-255) of the border colour is background.
BORDER_TOLERANCE = 24
#: Images are shrunk to at most this many pixels a side before their histogram is taken.
MAX_SIDE = 128
#: Bins per channel of the default descriptor (8**3 = 512 dimensions).
DEFAULT_BINS = 8
#: Below this share of foreground pixels, the whole image is used (a white product, a full-bleed photo).
MIN_FOREGROUND = 0.02


def _near_white(rgb: np.ndarray) -> np.ndarray:
    return (rgb > WHITE_THRESHOLD).all(axis=-1)


def _strip_white_margins(rgb: np.ndarray) -> np.ndarray:
    """The image without the all-white rows and columns at its edges (padding, studio margins)."""
    white = _near_white(rgb)
    rows = np.flatnonzero(~white.all(axis=1))
    cols = np.flatnonzero(~white.all(axis=0))
    if not len(rows) or not len(cols):
        return rgb
    return rgb[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]


def foreground_pixels(rgb: np.ndarray) -> np.ndarray:
    """The product's pixels of an image: uint8 ``(P, 3)`` from uint8 ``(H, W, 3)``.

    Background is near-white (studio white, the padding of a squared photo) and, when the
    photo has a backdrop of another colour, that colour: after the white margins are cut
    off, a backdrop is the colour that most of the photo's border has. If almost nothing
    is left, every pixel of the photo counts (a white product, a product filling the frame).
    """
    photo = _strip_white_margins(rgb)
    background = _near_white(photo)
    if min(photo.shape[:2]) >= 8:
        frame = np.concatenate([photo[:2].reshape(-1, 3), photo[-2:].reshape(-1, 3),
                                photo[:, :2].reshape(-1, 3), photo[:, -2:].reshape(-1, 3)]).astype(np.int16)
        backdrop = np.median(frame, axis=0)
        if not (backdrop > WHITE_THRESHOLD).all():
            on_frame = np.abs(frame - backdrop).max(axis=1) <= BORDER_TOLERANCE
            if on_frame.mean() >= 0.6:  # a backdrop surrounds the product
                background |= np.abs(photo.astype(np.int16) - backdrop).max(axis=2) <= BORDER_TOLERANCE
    pixels = photo.reshape(-1, 3)
    foreground = pixels[~background.reshape(-1)]
    return foreground if len(foreground) >= MIN_FOREGROUND * len(pixels) else pixels


def _soft_bins(channel: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Linear interpolation of 0-255 values between the two nearest bin centres.

    Returns:
        ``(lower, upper, upper_weight)``: int64, int64 and float64 arrays shaped like
        ``channel``; the lower bin gets ``1 - upper_weight``.
    """
    position = channel.astype(np.float64) * (bins / 256.0) - 0.5  # bin centres at 0..bins-1
    lower = np.floor(position)
    upper_weight = position - lower
    lower = lower.astype(np.int64)
    upper = np.clip(lower + 1, 0, bins - 1)
    lower = np.clip(lower, 0, bins - 1)
    return lower, upper, upper_weight


def colour_histogram(pixels: np.ndarray, bins: int = DEFAULT_BINS) -> np.ndarray:
    """Hellinger-normalised joint RGB histogram of uint8 ``(P, 3)`` pixels: float32 ``(bins**3,)``.

    Each pixel's vote is split between the two nearest bin centres on every channel, so
    two close shades are not orthogonal just because they fall either side of a bin edge.
    """
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    parts = [_soft_bins(pixels[:, c], bins) for c in range(3)]
    histogram = np.zeros(bins**3, dtype=np.float64)
    for corner in range(8):  # the 2x2x2 neighbouring bins of each pixel
        index = np.zeros(len(pixels), dtype=np.int64)
        weight = np.ones(len(pixels), dtype=np.float64)
        for c, (lower, upper, w_upper) in enumerate(parts):
            use_upper = (corner >> c) & 1
            index = index * bins + (upper if use_upper else lower)
            weight *= w_upper if use_upper else 1.0 - w_upper
        histogram += np.bincount(index, weights=weight, minlength=bins**3)
    histogram /= max(histogram.sum(), 1e-12)
    histogram = np.sqrt(histogram)
    histogram /= max(np.linalg.norm(histogram), 1e-12)
    return histogram.astype(np.float32)


def _flat_rgb(image: Image.Image) -> Image.Image:
    """RGB with transparency flattened on white."""
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        flat = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        flat.alpha_composite(rgba)
        image = flat
    return image.convert("RGB")


def image_descriptors(images: Iterable[Image.Image], bins: int = DEFAULT_BINS) -> np.ndarray:
    """Colour descriptors of PIL images of any mode and size: float32 ``(N, bins**3)``, unit rows."""
    rows = []
    for image in images:
        rgb = _flat_rgb(image)
        if max(rgb.size) > MAX_SIDE:
            rgb = rgb.copy()
            rgb.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.BILINEAR)
        rows.append(colour_histogram(foreground_pixels(np.asarray(rgb, dtype=np.uint8)), bins))
    return np.stack(rows) if rows else np.zeros((0, bins**3), dtype=np.float32)


def batch_descriptors(
    batch: np.ndarray, mean: Sequence[float], std: Sequence[float], bins: int = DEFAULT_BINS
) -> np.ndarray:
    """Colour descriptors of a preprocessed backbone batch: float32 ``(N, bins**3)``, unit rows.

    Args:
        batch: float32 ``(N, 3, H, W)`` normalised with ``mean``/``std`` (what
            :func:`visrec.imaging.preprocess` returns, stacked).
    """
    batch = np.asarray(batch, dtype=np.float32)
    mean_ = np.asarray(mean, dtype=np.float32)[None, :, None, None]
    std_ = np.asarray(std, dtype=np.float32)[None, :, None, None]
    rgb = np.clip((batch * std_ + mean_) * 255.0 + 0.5, 0, 255).astype(np.uint8).transpose(0, 2, 3, 1)
    step = max(1, -(-rgb.shape[1] // MAX_SIDE))  # cheap subsampling to at most MAX_SIDE a side
    rows = [colour_histogram(foreground_pixels(np.ascontiguousarray(image[::step, ::step])), bins) for image in rgb]
    return np.stack(rows) if rows else np.zeros((0, bins**3), dtype=np.float32)
