"""Search by photo with the real CNN: a category is named only when the photo looks like the catalogue."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from visrec.services.serving.photo_search import search_by_image

from .test_finetuning import build_catalogue, shape_png

pytestmark = pytest.mark.django_db


def test_a_category_only_for_a_photo_that_looks_like_the_catalogue(client):
    build_catalogue(per_shape=6)  # circles, squares, ... drawn in several colours, embedded by the CNN
    like = search_by_image(shape_png("circle", (30, 90, 200), 3), 8, with_category=True)
    assert like.predicted_category is not None and like.category_confidence > 0.5 and like.category_note == ""
    noise = np.random.default_rng(0).integers(0, 255, size=(160, 160, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, format="PNG")
    unlike = search_by_image(buffer.getvalue(), 8, with_category=True)
    assert unlike.ranked  # the closest products are still shown
    assert unlike.predicted_category is None and unlike.category_confidence is None and unlike.category_note
    page = client.post("/search/photo/", {"image": _upload(buffer.getvalue())})
    html = page.content.decode()
    assert page.status_code == 200 and 'src="data:image/jpeg;base64,' in html and "Looks like:" not in html
    assert "could not tell what it is" in html


def _upload(data: bytes):
    upload = io.BytesIO(data)
    upload.name = "photo.png"
    return upload
