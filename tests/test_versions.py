"""Served versions: one flag switched atomically; the request paths' memo never outlives a switch."""
from __future__ import annotations

import pytest

from visrec.models import ModelKind, ModelVersion
from visrec.services.serving import versions
from visrec.services.serving.generation import bump_embeddings_generation, embeddings_generation
from visrec.services.serving.versions import served_version

pytestmark = pytest.mark.django_db


def embedder(name: str, active: bool = False) -> ModelVersion:
    return ModelVersion.objects.create(kind=ModelKind.EMBEDDER, name=name, dimensions=4, is_active=active)


def switch_elsewhere(to: ModelVersion) -> None:
    """What another process's switch looks like from here: rows changed without this process's signals."""
    ModelVersion.objects.filter(kind=to.kind).update(is_active=False)
    ModelVersion.objects.filter(pk=to.pk).update(is_active=True)


def test_memo_answers_without_a_query_until_the_generation_changes(django_assert_num_queries):
    first, second = embedder("a@1", active=True), embedder("b@1")
    assert served_version(ModelKind.EMBEDDER) == first
    with django_assert_num_queries(0):
        assert served_version(ModelKind.EMBEDDER) == first
    switch_elsewhere(second)
    assert served_version(ModelKind.EMBEDDER) == first  # nobody said so yet
    bump_embeddings_generation()  # the other process's switch, through the shared cache
    assert served_version(ModelKind.EMBEDDER) == second


def test_memo_expires_for_hosts_without_a_shared_cache(monkeypatch):
    first, second = embedder("a@1", active=True), embedder("b@1")
    assert served_version(ModelKind.EMBEDDER) == first
    switch_elsewhere(second)
    monkeypatch.setattr(versions, "SERVED_MEMO_SECONDS", 0.0)
    assert served_version(ModelKind.EMBEDDER) == second


def test_saving_or_deleting_a_version_in_this_process_forgets_the_memo():
    assert served_version(ModelKind.EMBEDDER) is None
    first = embedder("a@1", active=True)
    assert served_version(ModelKind.EMBEDDER) == first
    first.delete()
    assert served_version(ModelKind.EMBEDDER) is None


def test_generation_starts_anew_after_the_cache_is_cleared():
    from django.core.cache import cache

    before = embeddings_generation()
    bump_embeddings_generation()
    assert embeddings_generation() == before + 1
    cache.clear()
    assert embeddings_generation() not in (before, before + 1)  # no memo or entry comes back


@pytest.mark.django_db(transaction=True)
def test_a_product_deleted_after_a_rolled_back_deletion_still_bumps_the_generation():
    from django.db import transaction

    from .factories import ProductFactory

    first, second = ProductFactory(), ProductFactory()
    before = embeddings_generation()
    try:
        with transaction.atomic():
            first.delete()  # its bump is dropped with the transaction
            raise RuntimeError
    except RuntimeError:
        pass
    assert embeddings_generation() == before
    with transaction.atomic():  # the same (no) savepoints as the one rolled back
        second.delete()
    assert embeddings_generation() == before + 1
