"""Admin integration: the host's product page shows embedding status and look-alikes; versions switch."""
from __future__ import annotations

import pytest

from visrec.models import ImageEmbedding, ModelKind, ModelVersion
from visrec.services.catalogue.embedders import active_embedder_version

from .factories import ProductImageFactory
from .test_similar import catalogue, make_version, plant  # noqa: F401 - fixtures

pytestmark = pytest.mark.django_db


def test_product_change_page_shows_status_and_similar_thumbnails(admin_client, catalogue):
    p = catalogue
    for product in p[:4]:
        ProductImageFactory(product=product, alt_text=f"pic {product.name}")
    image = p[1].images.first()
    ImageEmbedding.objects.create(image=image, product=p[1], model_version="planted@1", status="failed",
                                  error="truncated or corrupt image: boom")
    page = admin_client.get(f"/admin/catalog/product/{p[1].pk}/change/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "0 done, 1 failed under <code>planted@1</code>" in html
    assert "truncated or corrupt image: boom" in html
    assert f'alt="pic {p[0].name}"' in html and f'alt="pic {p[2].name}"' in html
    assert admin_client.get("/admin/visrec/imageembedding/").status_code == 200
    assert admin_client.get("/admin/visrec/modelversion/").status_code == 200
    assert admin_client.get("/admin/visrec/interactionevent/").status_code == 200


def test_promote_action_switches_version_and_refuses_incomplete(admin_client, catalogue):
    p = catalogue
    old = active_embedder_version()
    new = ModelVersion.objects.create(kind=ModelKind.EMBEDDER, name="planted@2", dimensions=16)
    response = admin_client.post("/admin/visrec/modelversion/", {"action": "promote", "_selected_action": [new.pk]},
                                 follow=True)
    assert "is now served" in response.content.decode()  # no images: coverage complete
    assert active_embedder_version() == new
    ProductImageFactory(product=p[0])  # now one image without a vector under planted@1
    response = admin_client.post("/admin/visrec/modelversion/", {"action": "promote", "_selected_action": [old.pk]},
                                 follow=True)
    assert "index it first" in response.content.decode()
    assert active_embedder_version() == new
