"""Read-only parts of a request on several connections at once (the "for you" first request)."""
from __future__ import annotations

import contextvars
import threading

import pytest
from django.db import connection, transaction

from visrec.pseudonyms import subject_key
from visrec.services.db import concurrent_queries
from visrec.services.foryou import recommend as foryou
from visrec.services.foryou import training as recommender_training

from .test_foryou import shop  # noqa: F401 - fixture

tenant: contextvars.ContextVar[str] = contextvars.ContextVar("tenant", default="none")


@pytest.fixture
def persistent(monkeypatch):
    """Persistent connections, as overlapping needs, whatever the test settings say (conftest
    shuts the pool down after each test, closing its threads' connections)."""
    monkeypatch.setitem(connection.settings_dict, "CONN_MAX_AGE", 60)


def backend() -> tuple[str, int]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return threading.current_thread().name, cursor.fetchone()[0]


@pytest.mark.django_db(transaction=True)
def test_the_second_part_runs_on_a_pool_thread_with_its_own_connection(persistent, settings):
    (main_thread, main_pid), (other_thread, other_pid) = concurrent_queries.run_all(backend, backend)
    assert main_thread == threading.current_thread().name and other_thread.startswith("visrec-query")
    assert main_pid != other_pid
    # The pool thread is free again as soon as run_all returns.
    _, _, free = concurrent_queries._the_pool()
    assert free._value == settings.VISREC.get("QUERY_THREADS", 2)
    # Errors of either part reach the caller; the first's when both fail.
    with pytest.raises(ZeroDivisionError):
        concurrent_queries.run_all(backend, lambda: 1 / 0)
    with pytest.raises(KeyError):
        concurrent_queries.run_all(lambda: {}["missing"], backend)
    with pytest.raises(KeyError):
        concurrent_queries.run_all(lambda: {}["missing"], lambda: 1 / 0)
    # The caller's context variables go with the work (a tenant set by middleware, say).
    tenant.set("shop-a")
    assert concurrent_queries.run_all(backend, tenant.get)[1] == "shop-a"
    # Not overlapped: inside a transaction (another connection would not see its rows), when
    # asked not to, without persistent connections, with no thread free, or switched off.
    here = threading.current_thread().name
    with transaction.atomic():
        assert concurrent_queries.run_all(backend, backend)[1][0] == here
    assert concurrent_queries.run_all(backend, backend, overlap=False)[1][0] == here
    _, _, free = concurrent_queries._the_pool()
    taken = 0
    while free.acquire(blocking=False):
        taken += 1
    try:
        assert concurrent_queries.run_all(backend, backend)[1][0] == here
    finally:
        for _ in range(taken):
            free.release()
    settings.VISREC = {**settings.VISREC, "CANDIDATE_SQL_SECONDS": 0}  # a request-dependent product manager
    assert concurrent_queries.run_all(backend, backend)[1][0] == here
    settings.VISREC = {**settings.VISREC, "CANDIDATE_SQL_SECONDS": 60, "QUERY_THREADS": 0}
    assert concurrent_queries.run_all(backend, backend)[1][0] == here


@pytest.mark.django_db(transaction=True)
def test_three_parts_use_both_pool_threads_and_a_part_without_a_free_thread_runs_here(persistent, settings):
    settings.VISREC = {**settings.VISREC, "QUERY_THREADS": 2}
    here = threading.current_thread().name
    results = concurrent_queries.run_all(backend, backend, backend)
    assert results[0][0] == here and all(name.startswith("visrec-query") for name, _ in results[1:])
    assert len({pid for _, pid in results}) == 3
    _, _, free = concurrent_queries._the_pool()
    assert free.acquire(blocking=False)  # one thread busy elsewhere: the third part runs here
    try:
        results = concurrent_queries.run_all(backend, backend, backend)
        assert [name == here for name, _ in results] == [True, False, True]
        assert results[0][1] == results[2][1]  # the caller's connection
    finally:
        free.release()
    assert free._value == 2
    # The earliest failing part's error, once every part ended; a failing caller part stops its later ones.
    ran = []
    with pytest.raises(ZeroDivisionError):
        concurrent_queries.run_all(backend, lambda: 1 / 0, lambda: {}["missing"])
    with pytest.raises(ZeroDivisionError):
        concurrent_queries.run_all(lambda: 1 / 0, lambda: ran.append(1), lambda: {}["missing"])
    assert ran == [1] and free._value == 2


@pytest.mark.django_db
def test_no_overlap_without_persistent_connections(monkeypatch):
    monkeypatch.setitem(connection.settings_dict, "CONN_MAX_AGE", 0)
    assert not concurrent_queries.can_overlap()


def recorded_threads(monkeypatch, name: str) -> list[str]:
    """The names of the threads that call ``foryou.<name>`` from now on, in order."""
    threads = []
    real = getattr(foryou, name)

    def recording(*args, **kwargs):
        threads.append(threading.current_thread().name)
        return real(*args, **kwargs)

    monkeypatch.setattr(foryou, name, recording)
    return threads


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_first_for_you_request_runs_the_session_list_beside_the_trained_list(shop, persistent, settings,  # noqa: F811
                                                                               monkeypatch):
    settings.VISREC = {**settings.VISREC, "RECOMMENDER": "vbpr", "VALIDATION": "days"}  # a blend with item-kNN
    recommender_training.train_recommender()
    subject = subject_key("demo", 2)
    threads = recorded_threads(monkeypatch, "session_list")
    knn_threads = recorded_threads(monkeypatch, "neighbours_list")
    settings.VISREC = {**settings.VISREC, "QUERY_THREADS": 2}
    overlapped = foryou.recommend_for_subject(subject, 8)
    assert overlapped[1] == "blended" and threads[-1].startswith("visrec-query")
    # Item-kNN's list (the saved model knows the shopper) on the pool's other thread.
    weights = foryou.blend_weights(foryou.served_version(foryou.ModelKind.RECOMMENDER))
    assert weights["itemknn"] > 0, weights
    assert knn_threads and knn_threads[-1].startswith("visrec-query") and knn_threads[-1] != threads[-1]
    # Again with the shopper's model lists cached: only the session query runs, on this thread.
    assert foryou.recommend_for_subject(subject, 8) == overlapped
    assert threads[-1] == threading.current_thread().name
    # The same list as one after the other.
    foryou.forget_shoppers([subject])
    settings.VISREC = {**settings.VISREC, "QUERY_THREADS": 0}
    assert foryou.recommend_for_subject(subject, 8) == overlapped
    assert threads[-1] == threading.current_thread().name
