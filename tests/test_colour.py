"""visrec.colour: the product's colour, not its background, as a unit descriptor."""
import numpy as np
import pytest
from PIL import Image, ImageDraw

from visrec.colour import DEFAULT_BINS, batch_descriptors, colour_histogram, foreground_pixels, image_descriptors
from visrec.imaging import PreprocessConfig, preprocess_image

RED, BLUE = (200, 30, 30), (30, 40, 200)


def photo(colour, background=(250, 250, 250), size=(96, 128)):
    image = Image.new("RGB", size, background)
    ImageDraw.Draw(image).ellipse((20, 30, size[0] - 20, size[1] - 30), fill=colour)
    return image


def test_white_and_uniform_backdrops_are_not_the_product():
    for background in [(250, 250, 250), (128, 128, 128), (30, 120, 60)]:
        pixels = foreground_pixels(np.asarray(photo(RED, background)))
        assert len(pixels) > 0
        assert (np.abs(pixels.astype(int) - RED).max(axis=1) <= 40).mean() > 0.95, background


def test_a_full_bleed_photo_keeps_its_pixels():
    """No uniform border: nothing is taken for a backdrop."""
    rng = np.random.default_rng(0)
    noisy = rng.integers(0, 200, size=(64, 64, 3), dtype=np.uint8)
    assert len(foreground_pixels(noisy)) == 64 * 64


def test_an_all_white_product_still_has_a_descriptor():
    white = np.full((32, 32, 3), 255, dtype=np.uint8)
    descriptor = colour_histogram(foreground_pixels(white))
    assert descriptor.shape == (DEFAULT_BINS**3,)
    assert np.linalg.norm(descriptor) == pytest.approx(1.0, abs=1e-5)


def test_same_colour_on_other_backdrops_matches_and_other_colours_do_not():
    red_white, red_grey, blue_white = image_descriptors(
        [photo(RED), photo(RED, (128, 128, 128)), photo(BLUE)])
    assert red_white @ red_grey > 0.95
    assert red_white @ blue_white < 0.2


def test_batch_descriptors_of_preprocessed_arrays_agree_with_the_photos():
    """Extraction sees normalised, padded backbone inputs: their colour is still the product's."""
    config = PreprocessConfig(size=112, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    images = [photo(RED), photo(BLUE, (128, 128, 128))]
    batch = np.stack([preprocess_image(image, config) for image in images])
    from_batch = batch_descriptors(batch, config.mean, config.std)
    from_photos = image_descriptors(images)
    assert from_batch.shape == (2, DEFAULT_BINS**3) and from_batch.dtype == np.float32
    assert np.allclose(np.linalg.norm(from_batch, axis=1), 1.0, atol=1e-5)
    assert (from_batch * from_photos).sum(axis=1).min() > 0.9
    assert from_batch[0] @ from_batch[1] < 0.2
