"""The model version pages: the verdict in words, tables and charts instead of raw JSON, and
serving a version in one click (the action's checks and messages)."""
from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission

from visrec.models import ModelKind, ModelVersion
from visrec.services.foryou import training as recommender_training
from visrec.services.serving.versions import active_version

from .factories import ProductImageFactory
from .test_foryou import shop  # noqa: F401 - fixture

pytestmark = pytest.mark.django_db


def change_url(version: ModelVersion) -> str:
    return f"/admin/visrec/modelversion/{version.pk}/change/"


@pytest.fixture
def trained(shop):  # noqa: F811 - fixture
    first = recommender_training.train_recommender("vbpr")
    second = recommender_training.train_recommender("bpr")
    assert second.is_active, second.notes
    return first, second


def test_the_change_page_shows_the_verdict_tables_and_charts_and_keeps_the_json(admin_client, trained):
    first, second = trained
    html = admin_client.get(change_url(second)).content.decode()
    assert '<p id="visrec-verdict-title" class="visrec-headline">Promoted</p>' in html
    assert "vs the served" in html and "shoppers&#x27; last baskets" in html
    assert html.count('<svg xmlns="http://www.w3.org/2000/svg" class="visrec-chart" role="img"') >= 2
    assert "Lists measured on the held-out shoppers" in html and "Blend weights" in html
    assert "<summary>Raw metrics (JSON)</summary>" in html and "&quot;guard&quot;" in html
    assert "Served now." in html and 'id="visrec-serve-button"' not in html  # served: nothing to click
    assert 'name="_save"' not in html  # nothing on the page is editable
    older = admin_client.get(change_url(first)).content.decode()
    assert "Roll back to this version" in older and f"{second.name} is served now" in older
    assert "nothing was served to compare with" in older


def test_one_click_rollback_and_back(admin_client, trained):
    first, second = trained
    response = admin_client.post(f"/admin/visrec/modelversion/{first.pk}/serve/", follow=True)
    assert response.redirect_chain[-1][0] == change_url(first)
    assert f"{first.name.capitalize()[0]}{first.name[1:]} is now served." in response.content.decode()  # capfirst
    assert active_version(ModelKind.RECOMMENDER) == first
    first.refresh_from_db()
    assert first.notes == "switched in the admin by admin"
    assert "Last switch: switched in the admin by admin." in response.content.decode()
    assert "Promoted" in response.content.decode()  # the verdict survives the overwritten notes
    admin_client.post(f"/admin/visrec/modelversion/{second.pk}/serve/")
    assert active_version(ModelKind.RECOMMENDER) == second


def test_the_button_refuses_what_the_action_refuses_with_the_same_words(admin_client, trained):
    _, second = trained
    unpublished = ModelVersion.objects.create(kind=ModelKind.RECOMMENDER, name="bpr-unpublished",
                                              metrics={"guard": {"candidate": 0.1}})
    by_button = admin_client.post(f"/admin/visrec/modelversion/{unpublished.pk}/serve/", follow=True)
    by_action = admin_client.post("/admin/visrec/modelversion/", {"action": "promote",
                                  "_selected_action": [unpublished.pk]}, follow=True)
    words = "Bpr-unpublished was never published (kept out by its guardrail or failed)."
    assert words in by_button.content.decode() and words in by_action.content.decode()
    assert active_version(ModelKind.RECOMMENDER) == second
    ProductImageFactory()  # an image without a vector under any embedder
    embedder = ModelVersion.objects.create(kind=ModelKind.EMBEDDER, name="other@1", dimensions=16)
    response = admin_client.post(f"/admin/visrec/modelversion/{embedder.pk}/serve/", follow=True)
    assert "Other@1 covers 0 of 1 images; index it first." in response.content.decode()
    assert active_version(ModelKind.EMBEDDER).name == "planted@1"


def test_serving_needs_a_post_and_the_change_permission(client, admin_client, django_user_model, trained):
    first, second = trained
    assert admin_client.get(f"/admin/visrec/modelversion/{first.pk}/serve/").status_code == 405
    viewer = django_user_model.objects.create_user("viewer", password="pw", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_modelversion"))
    client.force_login(viewer)
    page = client.get(change_url(first)).content.decode()
    assert "Roll back to this version" not in page and "Promoted" in page
    assert client.post(f"/admin/visrec/modelversion/{first.pk}/serve/").status_code == 403
    assert active_version(ModelKind.RECOMMENDER) == second
    from django.test import Client

    strict = Client(enforce_csrf_checks=True)
    strict.force_login(django_user_model.objects.get(username="admin"))
    assert strict.post(f"/admin/visrec/modelversion/{first.pk}/serve/").status_code == 403  # no CSRF token
    assert active_version(ModelKind.RECOMMENDER) == second


def test_the_list_shows_a_readable_verdict_column(admin_client, trained):
    html = admin_client.get("/admin/visrec/modelversion/").content.decode()
    assert "<th" in html and "Verdict" in html
    assert "<strong>Promoted</strong>: " in html and "<strong>Pretrained backbone</strong>" in html


@pytest.mark.parametrize("metrics", [{}, {"guard": "odd", "hnsw": [1]}, {"recall@20": None, "blend": "x"}])
def test_pages_of_old_or_odd_versions_render(admin_client, metrics):
    for kind in ModelKind.values:
        version = ModelVersion.objects.create(kind=kind, name=f"old-{kind}", metrics=metrics)
        assert admin_client.get(change_url(version)).status_code == 200
    assert admin_client.get("/admin/visrec/modelversion/").status_code == 200


def test_an_embedder_page_shows_before_after_and_the_hnsw_curve(admin_client):
    version = ModelVersion.objects.create(kind=ModelKind.EMBEDDER, name="effnet@1+ft1", metrics={
        "backbone": "efficientnet_lite0", "base_version": "effnet@1",
        "evaluation": {"new": 0.5, "old": 0.4555, "metric": "held-out precision@10 (same category)",
                       "old_version": "effnet@1", "held_out_products": 18},
        "training": {"images": 42, "epochs_run": 3, "final_loss": 5.858, "loss_history": [6.1, 5.9, 5.858]},
        "hnsw": {"ef_search": 80, "target": 0.98, "reached": True, "recall": {"40": 0.95, "80": 0.99}}})
    html = admin_client.get(change_url(version)).content.decode()
    assert "Better: held-out precision@10 (same category) 0.500 vs 0.456 of effnet@1" in html
    for title in ("Before and after fine-tuning (held-out precision@10 (same category))",
                  "HNSW recall@10 by ef_search", "Training loss by epoch"):
        assert f">{title}</title>" in html
    assert "Serve this version" in html  # nothing served: not a roll-back


def test_the_served_version_cannot_be_deleted(admin_client):
    from visrec.models import ModelKind, ModelVersion
    from visrec.services.serving.versions import activate_version

    served = ModelVersion.objects.create(kind=ModelKind.RECOMMENDER, name="served-one")
    old = ModelVersion.objects.create(kind=ModelKind.RECOMMENDER, name="old-one")
    activate_version(served)
    assert admin_client.get(f"/admin/visrec/modelversion/{served.pk}/delete/").status_code == 403
    assert admin_client.post(f"/admin/visrec/modelversion/{old.pk}/delete/", {"post": "yes"}).status_code == 302
    assert not ModelVersion.objects.filter(pk=old.pk).exists() and ModelVersion.objects.filter(pk=served.pk).exists()
