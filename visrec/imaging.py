"""Image decoding and preprocessing: bytes in, a normalised float32 CHW array out.

Pure Pillow + numpy (no Django), so extraction workers, training augmentations and
benchmarks share one definition of "what the backbone sees". Every way an upload can be
unusable (empty, not an image, truncated, too big, a decompression bomb) ends in
:class:`ImageRejected` with a short reason meant to be stored next to the image.

The pipeline is ``decode_image -> enhance -> to_square -> to_array`` (see :func:`preprocess`).
It is thread-safe: no Pillow globals (``Image.MAX_IMAGE_PIXELS``, ``LOAD_TRUNCATED_IMAGES``,
warning filters) are read for our limits or changed.
"""
from __future__ import annotations

import hashlib
import io
import re
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageOps

__all__ = [
    "ALLOWED_FORMATS",
    "ImageRejected",
    "PreprocessConfig",
    "content_hash",
    "decode_image",
    "enhance",
    "median3",
    "preprocess",
    "preprocess_image",
    "to_array",
    "to_rgb",
    "to_square",
]

#: Pillow formats we agree to decode. Plain raster formats only: EPS/PS (which run
#: Ghostscript), XBM/XPM (text), PDF and the rest are refused as "not an image".
#: Formats whose plugin is not installed (e.g. AVIF on older Pillow, HEIF without
#: pillow-heif) are skipped.
ALLOWED_FORMATS: tuple[str, ...] = (
    "JPEG", "PNG", "GIF", "WEBP", "BMP", "DIB", "TIFF", "MPO", "ICO", "PPM", "TGA",
    "AVIF", "HEIF", "JPEG2000",
)

_ORIENTATION_TAG = 0x0112
_BOMB_NUMBERS = re.compile(r"(\d+) pixels")


class ImageRejected(ValueError):
    """An input that is not a usable image.

    Attributes:
        reason: Short human-readable reason, recorded in the database next to the image
            (e.g. ``"empty file"``, ``"truncated or corrupt image: image file is truncated"``).
    """

    reason: str

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class PreprocessConfig:
    """How to turn an image into a backbone input, and which inputs to refuse.

    Attributes:
        size: Output side in pixels; the output is ``size x size``.
        mean: Per-channel RGB mean on the 0..1 scale, subtracted after scaling.
        std: Per-channel RGB standard deviation on the 0..1 scale, divided by.
        autocontrast: Stretch the tonal range (1 % cutoff each end, hue preserved).
        denoise: Apply a 3x3 median filter before resizing.
        max_bytes: Refuse encoded files larger than this.
        max_pixels: Refuse images whose header declares more pixels than this.
        fill: RGB colour for padding and for flattening transparency.
    """

    size: int = 224
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    autocontrast: bool = False
    denoise: bool = False
    max_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 40_000_000
    fill: tuple[int, int, int] = (255, 255, 255)


def content_hash(data: bytes) -> str:
    """SHA-256 hex digest of the encoded bytes; the key that makes extraction idempotent."""
    return hashlib.sha256(data).hexdigest()


def _allowed_formats() -> list[str]:
    """The names in :data:`ALLOWED_FORMATS` whose Pillow plugin is installed."""
    Image.init()  # registers every plugin once; a no-op afterwards
    return [name for name in ALLOWED_FORMATS if name in Image.OPEN]


def _bomb_reason(exc: BaseException, config: PreprocessConfig) -> str:
    """The rejection reason for Pillow's own ``DecompressionBombError``/``Warning``."""
    numbers = [int(n) for n in _BOMB_NUMBERS.findall(str(exc))]
    if len(numbers) < 2:
        return f"image has too many pixels (decompression bomb): {exc}"
    pixels, pillow_limit = numbers[0], numbers[-1]
    limit = config.max_pixels if pixels > config.max_pixels else pillow_limit
    return f"image is {pixels} pixels, over the limit of {limit} (decompression bomb)"


def decode_image(data: bytes, config: PreprocessConfig) -> Image.Image:
    """Decodes encoded image bytes into an upright RGB image, or refuses them.

    Checks run cheapest first: byte count, format sniffing, the pixel count declared in
    the header (``Image.open`` is lazy, so a decompression bomb is refused before any
    pixel is decoded), then a full decode with ``load()``. Animated GIF/WebP/APNG give
    their first frame. JPEGs are decoded with ``draft`` at a reduced scale whose long
    side is still at least ``2 * config.size`` (several times faster on large photos),
    so the result may be smaller than the file's declared size.

    The image is then rotated by its EXIF orientation (a broken EXIF block is ignored)
    and converted to RGB by :func:`to_rgb` (transparency flattened on ``config.fill``).

    Args:
        data: The encoded file.
        config: Limits, target size and fill colour.

    Returns:
        An RGB image (mode ``"RGB"``, uint8 per channel), fully loaded.

    Raises:
        ImageRejected: With a short ``reason`` when the bytes are not a usable image.
    """
    if not data:
        raise ImageRejected("empty file")
    if len(data) > config.max_bytes:
        raise ImageRejected(f"file is {len(data)} bytes, over the limit of {config.max_bytes}")
    try:
        image = Image.open(io.BytesIO(data), formats=_allowed_formats())
    except Image.UnidentifiedImageError:
        raise ImageRejected("not an image: unrecognised file format") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # Pillow's own safety net (2x its global limit, or 1x when warnings are errors).
        raise ImageRejected(_bomb_reason(exc, config)) from exc
    except Exception as exc:  # any plugin error while parsing the header
        raise ImageRejected(f"truncated or corrupt image: {exc}") from exc

    width, height = image.size
    if width <= 0 or height <= 0:
        raise ImageRejected(f"image has no pixels ({width}x{height})")
    if width * height > config.max_pixels:
        raise ImageRejected(
            f"image is {width}x{height} = {width * height} pixels, over the limit of {config.max_pixels}"
        )
    sixteen_bit = image.format == "PNG" and image.mode == "I"  # PNG only makes mode I from 16-bit grey

    if image.format in ("JPEG", "MPO"):
        long_side = max(width, height)
        target = 2 * config.size
        if long_side > target:
            try:
                image.draft("RGB", (max(1, width * target // long_side), max(1, height * target // long_side)))
            except Exception:  # noqa: BLE001 - draft is only an optimisation
                pass
    try:
        image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageRejected(_bomb_reason(exc, config)) from exc
    except MemoryError:
        raise  # the worker's problem, not the file's: must not be recorded as a bad image
    except Exception as exc:  # OSError, SyntaxError, ValueError, EOFError, struct.error...
        raise ImageRejected(f"truncated or corrupt image: {exc}") from exc

    image = _exif_upright(image)
    try:
        return to_rgb(image, config.fill, sixteen_bit=sixteen_bit)
    except (ImageRejected, MemoryError):
        raise
    except Exception as exc:
        raise ImageRejected(f"truncated or corrupt image: {exc}") from exc


def _exif_upright(image: Image.Image) -> Image.Image:
    """The image rotated/flipped by its EXIF orientation; unchanged if none or broken."""
    try:
        orientation = image.getexif().get(_ORIENTATION_TAG, 1)
    except Exception:  # noqa: BLE001 - broken EXIF: keep the pixels as stored
        return image
    if orientation not in (2, 3, 4, 5, 6, 7, 8):
        return image
    try:
        upright = ImageOps.exif_transpose(image)
    except Exception:  # noqa: BLE001
        return image
    return upright if upright is not None else image


def _grey_from_array(values: np.ndarray, kind: str) -> Image.Image:
    """An 8-bit ``L`` image from a 2-D array of wider samples, scaled rather than clipped.

    Args:
        values: ``(H, W)`` samples of a mode ``I;16*``, ``I`` or ``F`` image.
        kind: ``"16bit"`` (divide by 257: 0..65535 -> 0..255), ``"int"`` (0..255 kept,
            0..65535 taken as 16-bit, anything else stretched from min..max) or
            ``"float"`` (0..1 multiplied by 255, 0..255 kept, else min..max).

    Returns:
        An ``L`` image of the same size.
    """
    values = values.astype(np.float32)
    if kind == "float":
        values = np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)
    low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    if kind == "16bit":
        scaled = values / 257.0
    elif kind == "float" and low >= 0 and high <= 1.0:
        scaled = values * 255.0
    elif low >= 0 and high <= 255:
        scaled = values
    elif kind == "int" and low >= 0 and high <= 65535:
        scaled = values / 257.0
    elif high > low:
        scaled = (values - low) * (255.0 / (high - low))
    else:
        scaled = np.zeros_like(values)
    return Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8))


def _flatten(image: Image.Image, alpha: Image.Image, fill: tuple[int, int, int]) -> Image.Image:
    """Alpha-composites an RGB image over a solid ``fill`` background."""
    low, high = alpha.getextrema()
    if low == 255:
        return image
    background = Image.new("RGB", image.size, tuple(fill))
    if high == 0:
        return background
    background.paste(image, (0, 0), alpha)
    return background


def to_rgb(
    image: Image.Image,
    fill: tuple[int, int, int] = (255, 255, 255),
    *,
    sixteen_bit: bool = False,
) -> Image.Image:
    """Converts any Pillow mode to 8-bit RGB, flattening transparency on ``fill``.

    Handles ``1``, ``L``, ``P`` (palette transparency included), ``PA``, ``LA``, ``La``,
    ``RGBA``, ``RGBa``, ``CMYK`` (Pillow's naive CMYK->RGB), ``YCbCr``, ``LAB``, ``HSV``,
    ``I;16*`` (divided by 257, not clipped), ``I`` and ``F`` (scaled by their range, see
    :func:`_grey_from_array`), and ``tRNS``-style ``transparency`` on ``L``/``RGB``.

    Args:
        image: Any loaded Pillow image.
        fill: Background colour for transparent pixels.
        sixteen_bit: For mode ``I``: ``True`` when known to hold 16-bit samples (16-bit
            grey PNGs on older Pillow); otherwise the value range decides.

    Returns:
        A ``"RGB"`` image; ``image`` itself when it already is one without transparency.

    Raises:
        ImageRejected: For a mode that cannot be converted.
    """
    mode = image.mode
    if mode == "P" or ("transparency" in image.info and mode in ("1", "L", "RGB")):
        image = image.convert("RGBA")  # palette alpha (tRNS, RGBA palettes) or a colour key
        mode = "RGBA"
    if mode == "RGB":
        return image
    if mode in ("RGBA", "RGBa", "PA"):
        rgba = image if mode == "RGBA" else image.convert("RGBA")
        return _flatten(rgba.convert("RGB"), rgba.getchannel("A"), fill)
    if mode in ("LA", "La"):
        la = image if mode == "LA" else image.convert("LA")
        return _flatten(la.getchannel("L").convert("RGB"), la.getchannel("A"), fill)
    if mode.startswith("I;16"):
        return _grey_from_array(np.asarray(image), "16bit").convert("RGB")
    if mode == "I":
        return _grey_from_array(np.asarray(image), "16bit" if sixteen_bit else "int").convert("RGB")
    if mode == "F":
        return _grey_from_array(np.asarray(image), "float").convert("RGB")
    if mode == "LAB":
        return _lab_to_rgb(image)
    try:
        return image.convert("RGB")  # 1, L, CMYK, YCbCr, HSV, ...
    except ValueError as exc:
        raise ImageRejected(f"unsupported image mode {mode}: {exc}") from exc


def _lab_to_rgb(image: Image.Image) -> Image.Image:
    try:
        return image.convert("RGB")  # Pillow >= 11
    except ValueError:
        pass
    try:
        return Image.frombytes("RGB", image.size, _lab_transform().apply(image).tobytes())
    except Exception as exc:  # noqa: BLE001 - no littlecms, or a broken transform
        raise ImageRejected(f"unsupported image mode LAB: {exc}") from exc


@lru_cache(maxsize=1)
def _lab_transform():
    from PIL import ImageCms

    return ImageCms.buildTransform(ImageCms.createProfile("LAB"), ImageCms.createProfile("sRGB"), "LAB", "RGB")


def to_square(
    image: Image.Image, size: int, fill: tuple[int, int, int] = (255, 255, 255)
) -> Image.Image:
    """Resizes an image to ``size x size`` without distorting it, padding with ``fill``.

    The long side is scaled to ``size`` (bicubic, with a box pre-reduction for big
    images) and the result is centred on a ``fill`` square, so a wide product stays
    wide. Resizing before padding gives the same picture as padding first, for less work.

    Args:
        image: An RGB image (other modes go through :func:`to_rgb`).
        size: Output side in pixels.
        fill: Padding colour.

    Returns:
        An RGB ``size x size`` image (``image`` itself if it already is one).
    """
    if image.mode != "RGB":
        image = to_rgb(image, fill)
    width, height = image.size
    if (width, height) == (size, size):
        return image
    long_side = max(width, height)
    new_size = (max(1, round(width * size / long_side)), max(1, round(height * size / long_side)))
    resized = image.resize(new_size, Image.Resampling.BICUBIC, reducing_gap=3.0)
    if new_size == (size, size):
        return resized
    canvas = Image.new("RGB", (size, size), tuple(fill))
    canvas.paste(resized, ((size - new_size[0]) // 2, (size - new_size[1]) // 2))
    return canvas


def enhance(image: Image.Image, config: PreprocessConfig) -> Image.Image:
    """Applies the optional clean-up steps switched on in ``config`` (both off by default).

    ``denoise`` runs a 3x3 median filter (removes speckle, keeps edges); ``autocontrast``
    then stretches the tonal range with a 1 % cutoff at each end, on luminance so the
    product's hue is kept (a per-channel stretch would shift colours, which matter for
    similarity). Run before padding so the fill colour does not skew the histogram.

    Args:
        image: An RGB image.
        config: Which steps to run.

    Returns:
        The enhanced RGB image (``image`` itself when no step is on).
    """
    if config.denoise:
        image = median3(image)
    if config.autocontrast:
        image = ImageOps.autocontrast(image, cutoff=1, preserve_tone=True)
    return image


def _med3(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    return np.maximum(np.minimum(a, b), np.minimum(np.maximum(a, b), c))


def median3(image: Image.Image) -> Image.Image:
    """3x3 median filter of an 8-bit image, pixel-identical to ``ImageFilter.MedianFilter(3)``.

    Vectorised with numpy (sort each vertical triple, then the median of nine is the
    median of: the max of the lows, the median of the middles, the min of the highs),
    about 8x faster than Pillow's generic rank filter. Edges are replicated, as in Pillow.

    Args:
        image: An ``RGB`` or ``L`` image (uint8 samples).

    Returns:
        A new image of the same mode and size.
    """
    pixels = np.asarray(image)
    pad = ((1, 1), (1, 1)) + ((0, 0),) * (pixels.ndim - 2)
    padded = np.pad(pixels, pad, mode="edge")  # (H+2, W+2[, C]) uint8
    top, mid, bottom = padded[:-2], padded[1:-1], padded[2:]
    low, high = np.minimum(top, mid), np.maximum(top, mid)
    lows, rest = np.minimum(low, bottom), np.maximum(low, bottom)
    middles, highs = np.minimum(high, rest), np.maximum(high, rest)
    max_low = np.maximum(np.maximum(lows[:, :-2], lows[:, 1:-1]), lows[:, 2:])
    min_high = np.minimum(np.minimum(highs[:, :-2], highs[:, 1:-1]), highs[:, 2:])
    mid_mid = _med3(middles[:, :-2], middles[:, 1:-1], middles[:, 2:])
    return Image.fromarray(_med3(max_low, mid_mid, min_high))


@lru_cache(maxsize=16)
def _normalisation(mean: tuple[float, ...], std: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray]:
    """``(scale, bias)``, float32 ``(3, 1, 1)`` each, with ``x * scale + bias == (x/255 - mean)/std``."""
    std_ = np.asarray(std, dtype=np.float64)
    scale = 1.0 / (255.0 * std_)
    bias = -np.asarray(mean, dtype=np.float64) / std_
    return scale.astype(np.float32).reshape(3, 1, 1), bias.astype(np.float32).reshape(3, 1, 1)


def to_array(image: Image.Image, config: PreprocessConfig) -> np.ndarray:
    """Normalises an RGB image into the backbone's input layout.

    Args:
        image: An RGB image, ``H x W`` (``size x size`` after :func:`to_square`).
        config: ``mean`` and ``std`` on the 0..1 scale.

    Returns:
        float32 ``(3, H, W)``, C-contiguous, ``(pixel / 255 - mean) / std`` per channel.
    """
    if image.mode != "RGB":
        image = to_rgb(image, config.fill)
    pixels = np.asarray(image)  # uint8 (H, W, 3)
    scale, bias = _normalisation(tuple(config.mean), tuple(config.std))
    out = np.empty((3, pixels.shape[0], pixels.shape[1]), dtype=np.float32)
    np.multiply(pixels.transpose(2, 0, 1), scale, out=out)
    out += bias
    return out


def preprocess_image(image: Image.Image, config: PreprocessConfig) -> np.ndarray:
    """Preprocesses an already-decoded image (e.g. a training augmentation's view).

    When an enhancement is on, a large image is first box-reduced by an integer factor
    (long side still at least ``2 * config.size``) so the filters run on few pixels.

    Args:
        image: Any Pillow image; non-RGB modes go through :func:`to_rgb`. No EXIF
            rotation is applied here (:func:`decode_image` already did).
        config: Target size, normalisation and optional steps.

    Returns:
        float32 ``(3, config.size, config.size)``.
    """
    image = to_rgb(image, config.fill)
    if config.autocontrast or config.denoise:
        # Enhance at no more than ~2-4x the output size: same result where it matters, far cheaper.
        factor = max(image.size) // (2 * config.size)
        if factor >= 2:
            image = image.reduce(factor)
    image = enhance(image, config)
    image = to_square(image, config.size, config.fill)
    return to_array(image, config)


def preprocess(data: bytes, config: PreprocessConfig) -> np.ndarray:
    """Turns encoded image bytes into one backbone input.

    ``decode_image -> enhance -> to_square -> to_array``; deterministic (same bytes and
    config give an identical array).

    Args:
        data: The encoded file.
        config: Limits, target size, normalisation and optional steps.

    Returns:
        float32 ``(3, config.size, config.size)``, normalised with ``config.mean/std``.

    Raises:
        ImageRejected: When the bytes are not a usable image (see :func:`decode_image`).
    """
    return preprocess_image(decode_image(data, config), config)
