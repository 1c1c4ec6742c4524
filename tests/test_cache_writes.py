"""Deferred cache writes: a "similar" miss's write goes out with the next read or after the response."""
from __future__ import annotations

import logging

import pytest
from django.conf import settings
from django.core.cache import cache

from visrec.cache import RedisCache
from visrec.services.db import cache_writes
from visrec.services.serving.generation import GENERATION_KEY, bump_embeddings_generation, generation_and_entry
from visrec.services.serving.similar import similar_list

from .test_similar import catalogue  # noqa: F401 - fixture

pytestmark = pytest.mark.django_db


def similar_key_count() -> int:
    client = cache._cache.get_client(None)
    return len(client.keys(cache.make_key("visrec:similar:*")))


def test_set_many_then_get_many_writes_first_then_reads_in_one_pipeline():
    backend = RedisCache(settings.CACHES["default"]["LOCATION"], {"KEY_PREFIX": "visrec-writes-test"})
    backend.set("gone", 1, 30)
    found = backend.set_many_then_get_many({30: {"a": {"n": 1}}, None: {"b": [2]}, 0: {"gone": 5}},
                                           ["a", "b", "gone", "missing"])
    assert found == {"a": {"n": 1}, "b": [2]}  # written before the read; timeout 0 deletes
    client = backend._cache.get_client(None)
    assert 0 < client.ttl(backend.make_key("a")) <= 30
    assert client.ttl(backend.make_key("b")) == -1  # no expiry
    assert backend.set_many_then_get_many({}, ["a"]) == {"a": {"n": 1}}
    backend.delete_many(["a", "b"])


def test_a_miss_is_written_with_the_next_read_and_then_hits(catalogue, django_assert_num_queries):  # noqa: F811
    p = catalogue
    first = similar_list(p[0].pk, 3)
    assert cache_writes.pending_count() == 1 and similar_key_count() == 0  # not written yet
    similar_list(p[5].pk, 3)  # its read sends the first list's write
    assert similar_key_count() == 1 and cache_writes.pending_count() == 1
    with django_assert_num_queries(0):
        assert similar_list(p[0].pk, 3) == first


def test_the_write_goes_out_after_the_response(catalogue, client):  # noqa: F811
    response = client.get(f"/api/visrec/products/{catalogue[0].pk}/similar/?limit=3")
    assert response.status_code == 200
    assert cache_writes.pending_count() == 0 and similar_key_count() == 1


def test_the_cards_read_of_the_same_request_sends_the_write(catalogue, monkeypatch):  # noqa: F811
    """A missed list's write rides on the product cards' read: no round trip of its own."""
    from visrec.services.serving.presentation import product_cards

    p = catalogue
    calls = []
    real = cache.set_many_then_get_many
    monkeypatch.setattr(cache, "set_many_then_get_many", lambda *a, **kw: calls.append(a) or real(*a, **kw))
    found = similar_list(p[0].pk, 3)
    assert cache_writes.pending_count() == 1
    assert [c["pk"] for c in product_cards(found.ranked)] == [pid for pid, _ in found.ranked]
    assert cache_writes.pending_count() == 0 and similar_key_count() == 1 and len(calls) == 1


def test_a_write_that_goes_out_after_a_bump_is_a_miss(catalogue):  # noqa: F811
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    p = catalogue
    similar_list(p[0].pk, 3)
    bump_embeddings_generation()  # e.g. a new vector, while the write still waits
    cache_writes.flush()
    assert similar_key_count() == 1
    with CaptureQueriesContext(connection) as queries:
        similar_list(p[0].pk, 3)
    assert any("hnsw.ef_search" in q["sql"] for q in queries.captured_queries)  # not served from the stale entry


def test_other_cache_backends_are_written_at_once(settings):
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    cache_writes.defer("visrec:test:entry", ("payload",), 30)
    assert cache_writes.pending_count() == 0 and cache.get("visrec:test:entry") == ("payload",)
    generation, entry = generation_and_entry("visrec:test:entry")
    assert entry == ("payload",) and generation == cache.get(GENERATION_KEY)


def test_a_cache_that_is_down_loses_the_writes_not_the_caller(monkeypatch, caplog):
    def down(*args, **kwargs):
        raise ConnectionError("redis is down")

    cache_writes.defer("visrec:test:entry", 1, 30)
    monkeypatch.setattr(cache, "set_many", down)
    with caplog.at_level(logging.WARNING, logger="visrec"):
        cache_writes.flush()  # nothing raised: the cache guard drops the writes and says so
    assert "cache unavailable (set_many: ConnectionError: redis is down)" in caplog.text
    assert cache_writes.pending_count() == 0


def test_the_queue_is_bounded(monkeypatch):
    monkeypatch.setattr(cache_writes, "MAX_PENDING", 3)
    for i in range(3):
        cache_writes.defer(f"visrec:test:{i}", i, 30)
    assert cache_writes.pending_count() == 0
    assert cache.get_many([f"visrec:test:{i}" for i in range(3)]) == {f"visrec:test:{i}": i for i in range(3)}
