"""Tests for visrec.imaging: decoding, colour modes, EXIF, padding, normalisation, rejections.

Every image is made in memory with PIL; nothing touches the disk or the database.
"""
from __future__ import annotations

import hashlib
import io
import pickle
import random
import struct
import time
import zlib

import numpy as np
import pytest
from PIL import Image, ImageFile, ImageFilter, ImageOps, features

from visrec import imaging
from visrec.imaging import (
    ImageRejected,
    PreprocessConfig,
    content_hash,
    decode_image,
    enhance,
    median3,
    preprocess,
    preprocess_image,
    to_array,
    to_rgb,
    to_square,
)

CONFIG = PreprocessConfig()
MEAN = np.array(CONFIG.mean, dtype=np.float32)
STD = np.array(CONFIG.std, dtype=np.float32)
WHITE = (255, 255, 255)


def encode(image: Image.Image, fmt: str, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def noise_image(size=(256, 256), low=0, high=256, seed=0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(low, high, (size[1], size[0], 3), dtype=np.uint8))


def centre_pixel(image: Image.Image) -> tuple[int, ...]:
    return image.getpixel((image.width // 2, image.height // 2))


def assert_colour(actual, expected, tolerance=3):
    assert len(actual) == 3
    assert all(abs(a - e) <= tolerance for a, e in zip(actual, expected)), f"{actual} != {expected}"


def png_declaring(width: int, height: int) -> bytes:
    """A PNG of a few dozen bytes whose header claims ``width x height`` RGB pixels."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


# --- colour modes ------------------------------------------------------------------------

def _palette(colours, mode="P", **info) -> Image.Image:
    image = Image.new(mode, (8, 8), 0)
    flat = [c for colour in colours for c in colour]
    image.putpalette(flat + [0] * (768 - len(flat)))
    image.info.update(info)
    return image


def _with_info(image: Image.Image, **info) -> Image.Image:
    image.info.update(info)
    return image


MODE_CASES = {
    # name: (image factory, expected RGB)
    "RGB": (lambda: Image.new("RGB", (8, 8), (10, 200, 30)), (10, 200, 30)),
    "RGBA opaque": (lambda: Image.new("RGBA", (8, 8), (10, 200, 30, 255)), (10, 200, 30)),
    "RGBA transparent": (lambda: Image.new("RGBA", (8, 8), (0, 0, 0, 0)), WHITE),
    "RGBA half red": (lambda: Image.new("RGBA", (8, 8), (255, 0, 0, 128)), (255, 127, 127)),
    "RGBa half red": (lambda: Image.new("RGBA", (8, 8), (255, 0, 0, 128)).convert("RGBa"), (255, 127, 127)),
    "LA transparent": (lambda: Image.new("LA", (8, 8), (0, 0)), WHITE),
    "LA half black": (lambda: Image.new("LA", (8, 8), (0, 128)), (127, 127, 127)),
    "La opaque": (lambda: Image.new("LA", (8, 8), (50, 255)).convert("La"), (50, 50, 50)),
    "La transparent": (lambda: Image.new("LA", (8, 8), (50, 0)).convert("La"), WHITE),
    "P": (lambda: _palette([(200, 0, 0)]), (200, 0, 0)),
    "P transparent index": (lambda: _palette([(200, 0, 0)], transparency=0), WHITE),
    "PA transparent": (lambda: Image.new("RGBA", (8, 8), (255, 0, 0, 0)).convert("PA"), WHITE),
    "CMYK cyan": (lambda: Image.new("CMYK", (8, 8), (255, 0, 0, 0)), (0, 255, 255)),
    "CMYK black": (lambda: Image.new("CMYK", (8, 8), (0, 0, 0, 255)), (0, 0, 0)),
    "I;16 mid grey": (lambda: Image.new("I;16", (8, 8), 32896), (128, 128, 128)),
    "I;16B mid grey": (lambda: Image.new("I;16B", (8, 8), 32896), (128, 128, 128)),
    "I 16-bit range": (lambda: Image.new("I", (8, 8), 32896), (128, 128, 128)),
    "I 8-bit range": (lambda: Image.new("I", (8, 8), 100), (100, 100, 100)),
    "F unit range": (lambda: Image.new("F", (8, 8), 0.5), (128, 128, 128)),
    "F 8-bit range": (lambda: Image.new("F", (8, 8), 100.0), (100, 100, 100)),
    "1 white": (lambda: Image.new("1", (8, 8), 1), WHITE),
    "1 black": (lambda: Image.new("1", (8, 8), 0), (0, 0, 0)),
    "L": (lambda: Image.new("L", (8, 8), 77), (77, 77, 77)),
    "L colour key": (lambda: _with_info(Image.new("L", (8, 8), 77), transparency=77), WHITE),
    "RGB colour key": (lambda: _with_info(Image.new("RGB", (8, 8), (1, 2, 3)), transparency=(1, 2, 3)), WHITE),
    "YCbCr": (lambda: Image.new("RGB", (8, 8), (200, 30, 30)).convert("YCbCr"), (200, 30, 30)),
    "LAB": (lambda: Image.new("RGB", (8, 8), (200, 30, 30)).convert("LAB"), (200, 30, 30)),
    "HSV": (lambda: Image.new("RGB", (8, 8), (200, 30, 30)).convert("HSV"), (200, 30, 30)),
}
#: Cases PIL cannot write as TIFF (mode or colour key); they are checked in memory only.
NOT_TIFF = {
    "RGBa half red", "La opaque", "La transparent", "HSV", "L colour key", "RGB colour key", "P transparent index",
}


@pytest.mark.parametrize("case", sorted(MODE_CASES))
def test_every_mode_becomes_rgb_with_the_right_colour(case):
    factory, expected = MODE_CASES[case]
    rgb = to_rgb(factory())
    assert rgb.mode == "RGB"
    assert_colour(centre_pixel(rgb), expected, tolerance=6 if case == "LAB" else 3)


@pytest.mark.parametrize("case", sorted(set(MODE_CASES) - NOT_TIFF))
def test_every_mode_decodes_from_a_file_with_the_right_colour(case):
    factory, expected = MODE_CASES[case]
    data = encode(factory(), "TIFF")
    image = decode_image(data, CONFIG)
    assert image.mode == "RGB"
    assert_colour(centre_pixel(image), expected, tolerance=6 if case == "LAB" else 3)


@pytest.mark.parametrize("case", sorted(MODE_CASES))
def test_preprocess_image_accepts_every_mode(case):
    factory, expected = MODE_CASES[case]
    array = preprocess_image(factory(), PreprocessConfig(size=16))
    assert array.shape == (3, 16, 16)
    pixel = array[:, 8, 8] * STD + MEAN
    np.testing.assert_allclose(pixel * 255, expected, atol=7)


def test_sixteen_bit_png_is_scaled_not_clipped():
    data = encode(Image.new("I;16", (8, 8), 32896), "PNG")
    assert_colour(centre_pixel(decode_image(data, CONFIG)), (128, 128, 128), tolerance=1)


def test_sixteen_bit_mode_i_png_is_scaled_even_when_dark():
    # Older Pillow opens 16-bit grey PNGs as mode "I"; a dark one must not be read as 8-bit.
    assert_colour(centre_pixel(to_rgb(Image.new("I", (4, 4), 200), sixteen_bit=True)), (1, 1, 1), 1)


def test_mode_i_outside_16_bit_range_is_stretched():
    values = np.array([[-1000, 0], [500_000, 1_000_000]], dtype=np.int32)
    rgb = to_rgb(Image.fromarray(values))
    assert rgb.getpixel((0, 0)) == (0, 0, 0)
    assert rgb.getpixel((1, 1)) == WHITE


def test_palette_png_with_transparency_flattens_on_white():
    image = _palette([(200, 0, 0), (0, 200, 0)], transparency=0)
    image.paste(1, (4, 0, 8, 8))  # right half opaque green
    decoded = decode_image(encode(image, "PNG"), CONFIG)
    assert decoded.getpixel((1, 4)) == WHITE
    assert decoded.getpixel((6, 4)) == (0, 200, 0)


def test_rgb_colour_key_transparency_flattens():
    image = Image.new("RGB", (8, 8), (1, 2, 3))
    image.paste((9, 9, 9), (4, 0, 8, 8))
    decoded = decode_image(encode(image, "PNG", transparency=(1, 2, 3)), CONFIG)
    assert decoded.getpixel((1, 4)) == WHITE
    assert decoded.getpixel((6, 4)) == (9, 9, 9)


def test_flattening_uses_the_configured_fill():
    config = PreprocessConfig(fill=(0, 0, 255))
    decoded = decode_image(encode(Image.new("RGBA", (8, 8), (0, 0, 0, 0)), "PNG"), config)
    assert centre_pixel(decoded) == (0, 0, 255)


def test_cmyk_jpeg_is_cyan():
    data = encode(Image.new("CMYK", (16, 16), (255, 0, 0, 0)), "JPEG", quality=95)
    r, g, b = centre_pixel(decode_image(data, CONFIG))
    assert r < 40 and g > 215 and b > 215


# --- EXIF orientation --------------------------------------------------------------------

def _left_half_red(orientation: int | None) -> tuple[Image.Image, Image.Exif]:
    image = Image.new("RGB", (80, 40), WHITE)
    image.paste((255, 0, 0), (0, 0, 40, 40))
    exif = Image.Exif()
    if orientation is not None:
        exif[0x0112] = orientation
    return image, exif


def _red_side(image: Image.Image) -> str:
    """Which side of the image holds the red half, from the centroid of the red pixels."""
    pixels = np.asarray(image).astype(int)
    rows, cols = np.nonzero((pixels[..., 0] > 200) & (pixels[..., 1] < 60))
    assert 0.4 < len(rows) / (image.width * image.height) < 0.6  # half the picture is red
    dx, dy = cols.mean() / image.width - 0.5, rows.mean() / image.height - 0.5
    if abs(dx) > abs(dy):
        return "left" if dx < 0 else "right"
    return "top" if dy < 0 else "bottom"


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
@pytest.mark.parametrize(("orientation", "side", "size"), [
    (None, "left", (80, 40)),
    (1, "left", (80, 40)),
    (3, "right", (80, 40)),   # rotated 180
    (6, "top", (40, 80)),     # stored rotated; displayed turned 90 degrees clockwise
    (8, "bottom", (40, 80)),  # displayed turned 90 degrees counter-clockwise
])
def test_exif_orientation_is_applied(fmt, orientation, side, size):
    image, exif = _left_half_red(orientation)
    decoded = decode_image(encode(image, fmt, exif=exif), CONFIG)
    assert decoded.size == size
    assert _red_side(decoded) == side


def _with_app1(jpeg: bytes, payload: bytes) -> bytes:
    segment = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    return jpeg[:2] + segment + jpeg[2:]


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")
@pytest.mark.filterwarnings("ignore:Tag data larger than file")
@pytest.mark.parametrize("payload", [
    b"Exif\x00\x00garbage!!",
    b"Exif\x00\x00II*\x00\xff\xff\xff\x7f",
    b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\x00\x02\x01\x12\x00\x03\xff\xff\xff\xff\x00\x00\x00\x06",
])
def test_broken_exif_does_not_crash(payload):
    image, _ = _left_half_red(None)
    decoded = decode_image(_with_app1(encode(image, "JPEG"), payload), CONFIG)
    assert decoded.mode == "RGB"
    assert decoded.size == (80, 40)


def test_exif_transpose_failure_keeps_the_image_unrotated(monkeypatch):
    def broken(*args, **kwargs):
        raise SyntaxError("broken EXIF")

    monkeypatch.setattr(ImageOps, "exif_transpose", broken)
    image, exif = _left_half_red(6)
    decoded = decode_image(encode(image, "JPEG", exif=exif), CONFIG)
    assert decoded.size == (80, 40)
    assert _red_side(decoded) == "left"


def test_unreadable_exif_keeps_the_image_unrotated(monkeypatch):
    def broken(self):
        raise struct.error("unpack requires a buffer of 12 bytes")

    monkeypatch.setattr(Image.Image, "getexif", broken)
    image, exif = _left_half_red(6)
    assert decode_image(encode(image, "PNG", exif=exif), CONFIG).size == (80, 40)


# --- padding and resizing ----------------------------------------------------------------

def test_to_square_pads_a_wide_bar_without_stretching():
    bar = Image.new("RGB", (200, 50), (255, 0, 0))
    square = to_square(bar, 64)
    assert square.size == (64, 64)
    pixels = np.asarray(square)
    assert (pixels[:20] == 255).all()  # top rows: fill colour
    assert (pixels[-20:] == 255).all()  # bottom rows: fill colour
    red_rows = np.flatnonzero((pixels[:, 32, 0] > 200) & (pixels[:, 32, 1] < 50))
    assert 15 <= len(red_rows) <= 17  # 50/200 of 64 = 16 rows, still a bar
    assert red_rows[0] in (23, 24)  # centred


def test_to_square_pads_a_tall_image_on_the_sides_with_fill():
    tall = Image.new("RGB", (30, 120), (0, 0, 255))
    square = to_square(tall, 40, fill=(0, 255, 0))
    assert square.getpixel((0, 20)) == (0, 255, 0)
    assert square.getpixel((39, 20)) == (0, 255, 0)
    assert square.getpixel((20, 20)) == (0, 0, 255)


def test_preprocess_keeps_aspect_ratio():
    config = PreprocessConfig(size=64)
    array = preprocess(encode(Image.new("RGB", (200, 50), (255, 0, 0)), "PNG"), config)
    white = (1 - MEAN) / STD
    np.testing.assert_allclose(array[:, :20, :], np.broadcast_to(white[:, None, None], (3, 20, 64)), atol=1e-5)
    red = (np.array([1, 0, 0], dtype=np.float32) - MEAN) / STD
    np.testing.assert_allclose(array[:, 32, 32], red, atol=1e-5)


def test_large_jpeg_is_decoded_in_draft_mode_close_to_full_decode():
    image = Image.new("RGB", (3000, 2000), WHITE)
    image.paste((30, 90, 200), (600, 400, 2400, 1600))
    data = encode(image, "JPEG", quality=90)
    decoded = decode_image(data, CONFIG)
    assert 2 * CONFIG.size <= max(decoded.size) < 3000
    assert decoded.size[0] / decoded.size[1] == pytest.approx(1.5, rel=0.01)
    full = preprocess_image(Image.open(io.BytesIO(data)).convert("RGB"), CONFIG)
    assert np.abs(preprocess(data, CONFIG) - full).mean() < 0.02


# --- output array ------------------------------------------------------------------------

def test_white_image_normalises_to_one_minus_mean_over_std():
    array = preprocess(encode(Image.new("RGB", (50, 30), WHITE), "PNG"), CONFIG)
    assert array.shape == (3, 224, 224)
    assert array.dtype == np.float32
    assert array.flags["C_CONTIGUOUS"]
    expected = (1 - MEAN) / STD
    np.testing.assert_allclose(array, np.broadcast_to(expected[:, None, None], array.shape), atol=1e-5)


def test_to_array_matches_the_reference_formula():
    image = noise_image((20, 10))
    config = PreprocessConfig(mean=(0.5, 0.4, 0.3), std=(0.2, 0.3, 0.4))
    expected = ((np.asarray(image, np.float64) / 255 - config.mean) / config.std).transpose(2, 0, 1)
    array = to_array(image, config)
    assert array.shape == (3, 10, 20)
    assert array.dtype == np.float32
    np.testing.assert_allclose(array, expected, atol=1e-5)


def test_output_size_follows_the_config():
    assert preprocess(encode(noise_image((90, 60)), "PNG"), PreprocessConfig(size=32)).shape == (3, 32, 32)


def test_preprocess_is_deterministic():
    data = encode(noise_image((300, 200)), "JPEG")
    config = PreprocessConfig(autocontrast=True, denoise=True)
    first, second = preprocess(data, config), preprocess(data, config)
    assert np.array_equal(first, second)
    assert np.array_equal(preprocess(data, CONFIG), preprocess(data, CONFIG))


def test_content_hash_is_sha256_hex():
    data = encode(noise_image((8, 8)), "PNG")
    assert content_hash(data) == hashlib.sha256(data).hexdigest()
    assert len(content_hash(b"x")) == 64


# --- optional enhancement ----------------------------------------------------------------

def test_enhance_is_a_no_op_by_default():
    image = noise_image((32, 32), 100, 150)
    assert enhance(image, CONFIG) is image


def test_autocontrast_changes_the_output_only_when_on():
    data = encode(noise_image((64, 64), 100, 150), "PNG")
    off = preprocess(data, CONFIG)
    on = preprocess(data, PreprocessConfig(autocontrast=True))
    assert np.array_equal(off, preprocess(data, PreprocessConfig(autocontrast=False)))
    assert not np.allclose(off, on)
    assert np.ptp(on) > np.ptp(off)  # the range was stretched


@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_median3_matches_pillows_median_filter(mode):
    image = noise_image((61, 47), seed=3).convert(mode)
    assert np.array_equal(np.asarray(median3(image)), np.asarray(image.filter(ImageFilter.MedianFilter(3))))
    assert median3(image).mode == mode


def test_enhancement_of_a_large_image_matches_full_resolution_closely():
    rng = np.random.default_rng(4)
    y, x = np.mgrid[0:1200, 0:1800]
    photo = np.stack([x / 1800 * 120 + 60, y / 1200 * 120 + 60, (x + y) / 3000 * 100 + 80], -1)
    photo += rng.normal(0, 6, photo.shape)  # a smooth low-contrast "photo" with sensor noise
    image = Image.fromarray(np.clip(photo, 0, 255).astype(np.uint8))
    config = PreprocessConfig(size=64, autocontrast=True, denoise=True)
    full = to_array(to_square(enhance(image, config), 64), config)
    assert np.abs(preprocess_image(image, config) - full).mean() < 0.05


def test_denoise_changes_the_output_only_when_on():
    rng = np.random.default_rng(1)
    pixels = np.full((64, 64, 3), 128, dtype=np.uint8)
    pixels[rng.random((64, 64)) < 0.05] = 255  # salt noise
    data = encode(Image.fromarray(pixels), "PNG")
    config = PreprocessConfig(size=64)
    off = preprocess(data, config)
    on = preprocess(data, PreprocessConfig(size=64, denoise=True))
    assert np.array_equal(off, preprocess(data, PreprocessConfig(size=64, denoise=False)))
    assert not np.allclose(off, on)
    assert on.std() < off.std()  # speckle removed


# --- rejections --------------------------------------------------------------------------

def rejection(data: bytes, config: PreprocessConfig = CONFIG) -> str:
    with pytest.raises(ImageRejected) as info:
        preprocess(data, config)
    assert isinstance(info.value, ValueError)
    return info.value.reason


def test_empty_bytes_are_rejected():
    assert rejection(b"") == "empty file"


def test_random_bytes_are_rejected():
    assert rejection(random.Random(0).randbytes(4096)).startswith("not an image: ")


def test_text_file_is_rejected():
    assert rejection(b"Dear customer,\nthis is not a picture.\n" * 20).startswith("not an image: ")


@pytest.mark.parametrize("text", [b"#define im_width 8\n#define im_height 8\n", b"%!PS-Adobe-3.0 EPSF-3.0\n"])
def test_text_based_formats_are_not_decoded(text):
    assert rejection(text).startswith("not an image: ")


def test_truncated_jpeg_is_rejected():
    data = encode(noise_image((256, 256)), "JPEG")
    assert rejection(data[: len(data) // 2]).startswith("truncated or corrupt image: ")


def test_truncated_png_is_rejected():
    data = encode(noise_image((128, 128)), "PNG")
    assert rejection(data[: len(data) // 2]).startswith("truncated or corrupt image: ")


def test_file_over_max_bytes_is_rejected():
    data = encode(noise_image((64, 64)), "PNG")
    reason = rejection(data, PreprocessConfig(max_bytes=1000))
    assert reason == f"file is {len(data)} bytes, over the limit of 1000"


def test_image_over_max_pixels_is_rejected():
    data = encode(Image.new("RGB", (3000, 3000), WHITE), "PNG")
    reason = rejection(data, PreprocessConfig(max_pixels=1_000_000))
    assert reason == "image is 3000x3000 = 9000000 pixels, over the limit of 1000000"


def test_decompression_bomb_is_refused_before_decoding(monkeypatch):
    loads = []
    original = ImageFile.ImageFile.load
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: loads.append(self) or original(self))
    data = png_declaring(8000, 8000)  # 64 Mpx in ~70 bytes
    assert len(data) < 200
    started = time.perf_counter()
    reason = rejection(data)  # default limit: 40 Mpx
    assert time.perf_counter() - started < 0.5
    assert reason == "image is 8000x8000 = 64000000 pixels, over the limit of 40000000"
    assert loads == []


def test_huge_bomb_caught_by_pillow_is_rejected_with_a_reason():
    # Over twice Pillow's own limit, Image.open itself raises DecompressionBombError.
    reason = rejection(png_declaring(30000, 30000), PreprocessConfig(max_pixels=10**10))
    assert reason == f"image is 900000000 pixels, over the limit of {2 * Image.MAX_IMAGE_PIXELS} (decompression bomb)"
    reason = rejection(png_declaring(30000, 30000))
    assert reason == "image is 900000000 pixels, over the limit of 40000000 (decompression bomb)"


def test_a_declared_size_within_limits_but_missing_pixels_is_corrupt():
    assert rejection(png_declaring(500, 500)).startswith("truncated or corrupt image: ")


def test_rejection_does_not_touch_pillow_globals():
    before = (Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES)
    rejection(png_declaring(8000, 8000))
    rejection(b"junk")
    assert (Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES) == before


def test_image_rejected_keeps_its_reason_through_pickle():
    error = pickle.loads(pickle.dumps(ImageRejected("empty file")))
    assert isinstance(error, ValueError)
    assert error.reason == "empty file"
    assert str(error) == "empty file"


# --- animated images ---------------------------------------------------------------------

def _frames() -> list[Image.Image]:
    return [Image.new("RGB", (32, 32), colour) for colour in [(255, 0, 0), (0, 255, 0), (0, 0, 255)]]


def test_animated_gif_gives_its_first_frame():
    first, *rest = _frames()
    data = encode(first, "GIF", save_all=True, append_images=rest, duration=100, loop=0)
    assert Image.open(io.BytesIO(data)).n_frames == 3
    assert_colour(centre_pixel(decode_image(data, CONFIG)), (255, 0, 0))
    assert preprocess(data, CONFIG).shape == (3, 224, 224)


@pytest.mark.skipif(not features.check("webp"), reason="Pillow built without WebP")
def test_animated_webp_gives_its_first_frame():
    first, *rest = _frames()
    data = encode(first, "WEBP", save_all=True, append_images=rest, duration=100, lossless=True)
    assert Image.open(io.BytesIO(data)).n_frames == 3
    assert_colour(centre_pixel(decode_image(data, CONFIG)), (255, 0, 0))


def test_module_has_no_django_imports():
    source = open(imaging.__file__, encoding="utf-8").read()
    assert "django" not in source


def test_preprocess_is_thread_safe():
    from concurrent.futures import ThreadPoolExecutor

    payloads = [encode(noise_image((300, 200), seed=seed), "JPEG") for seed in range(8)]
    payloads += [png_declaring(8000, 8000), b"junk"]

    def run(data: bytes):
        try:
            return preprocess(data, CONFIG)
        except ImageRejected as exc:
            return exc.reason

    expected = [run(data) for data in payloads]
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(run, payloads * 3))
    for got, want in zip(results, expected * 3):
        assert got == want if isinstance(want, str) else np.array_equal(got, want)
