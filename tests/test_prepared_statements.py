"""Nearest-neighbour queries as prepared statements of the connection (outside transactions)."""
from __future__ import annotations

import pytest
from django.db import DatabaseError, connection, transaction
from django.db.models import F
from django.test.utils import CaptureQueriesContext

from visrec.services.db import prepared_statements
from visrec.services.serving.similar import SimilarFilters, similar_products

from .test_similar import catalogue, ids  # noqa: F401 - fixture

pytestmark = pytest.mark.django_db(transaction=True)


def server_statements() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT name FROM pg_prepared_statements WHERE name LIKE 'visrec_%%' ORDER BY prepare_time")
        return [row[0] for row in cursor.fetchall()]


def searches(queries) -> list[str]:
    return [q["sql"] for q in queries.captured_queries if "hnsw.ef_search" in q["sql"]]


def test_placeholders_are_numbered_and_percent_signs_kept():
    assert prepared_statements.positional("a = %s AND b LIKE 'x%%' AND c <> %s") == "a = $1 AND b LIKE 'x%%' AND c <> $2"


def test_a_query_is_prepared_once_per_connection_and_answers_as_unprepared(catalogue, settings):
    p = catalogue
    with CaptureQueriesContext(connection) as first:
        prepared = similar_products(p[2].pk, k=4, use_cache=False)
    with CaptureQueriesContext(connection) as second:
        again = similar_products(p[6].pk, k=4, use_cache=False)
    (sent_first,), (sent_second,) = searches(first), searches(second)
    assert "PREPARE visrec_" in sent_first and "EXECUTE visrec_" in sent_first
    assert "PREPARE" not in sent_second and "EXECUTE visrec_" in sent_second and "<=>" not in sent_second
    name = prepared_statements.held(connection)[-1]
    assert name in server_statements() and f"EXECUTE {name}(" in sent_second

    settings.VISREC = {**settings.VISREC, "PREPARED_QUERIES": False}
    with CaptureQueriesContext(connection) as plain:
        assert similar_products(p[2].pk, k=4, use_cache=False) == prepared
        assert similar_products(p[6].pk, k=4, use_cache=False) == again
    assert all("<=>" in sql and "EXECUTE" not in sql for sql in searches(plain))
    assert ids(prepared) == [p[1].pk, p[0].pk, p[4].pk, p[5].pk]


def test_filter_values_and_k_make_their_own_statements_products_do_not(catalogue):
    """The shop's filter values are written into the text (PostgreSQL plans with them); the
    query product is a parameter, so one statement serves every product."""
    p = catalogue
    assert ids(similar_products(p[10].pk, k=3, filters=SimilarFilters(category="same"), use_cache=False)) == \
        [p[8].pk, p[12].pk, p[6].pk]
    assert ids(similar_products(p[8].pk, k=3, filters=SimilarFilters(category="same"), use_cache=False)) == \
        [p[6].pk, p[10].pk, p[4].pk]
    assert len(prepared_statements.held(connection)) == 1  # another product, the same category
    assert ids(similar_products(p[9].pk, k=3, filters=SimilarFilters(category="same"), use_cache=False)) == \
        [p[7].pk, p[11].pk, p[5].pk]
    similar_products(p[10].pk, k=2, use_cache=False)
    assert len(prepared_statements.held(connection)) == len(set(server_statements())) == 3


def test_a_connection_that_lost_its_statements_gets_them_again(catalogue):
    """A pooler's other server connection, or DISCARD ALL: EXECUTE fails, PREPARE is sent again."""
    p = catalogue
    expected = similar_products(p[2].pk, k=4, use_cache=False)
    with connection.cursor() as cursor:
        cursor.execute("DEALLOCATE ALL")
    assert server_statements() == []
    assert similar_products(p[2].pk, k=4, use_cache=False) == expected
    assert server_statements() == prepared_statements.held(connection) != []


def test_a_statement_the_process_forgot_is_executed_without_preparing_twice(catalogue):
    p = catalogue
    expected = similar_products(p[2].pk, k=4, use_cache=False)
    held = prepared_statements.held(connection)
    prepared_statements.forget(connection)
    assert prepared_statements.held(connection) == []
    assert similar_products(p[2].pk, k=4, use_cache=False) == expected  # PREPARE: 42P05, then EXECUTE alone
    assert prepared_statements.held(connection) == held and server_statements() == held


def test_a_text_postgresql_cannot_prepare_runs_unprepared(catalogue):
    """A parameter of no inferable type ($1 IS NOT NULL): refused once, then never tried again."""
    sql = "SELECT %s IS NOT NULL"
    with connection.cursor() as cursor:
        assert prepared_statements.run_after(cursor, "SELECT 1", [], sql, ["any"]) is None
        with CaptureQueriesContext(connection) as queries:
            assert prepared_statements.run_after(cursor, "SELECT 1", [], sql, ["any"]) is None
    assert queries.captured_queries == []  # not sent again
    assert server_statements() == prepared_statements.held(connection) == []
    prepared_statements.forget()


def test_a_hooks_values_keep_their_type_when_prepared(catalogue, settings):
    """Left as parameters, PREPARE would type them from their context: in ``stock + $1``
    0.4 becomes an integer, 0, and the hook keeps other products (it once returned none)."""
    p = catalogue

    def hook(queryset):  # stock 5 + 0.4 > 5 keeps the products in stock
        return queryset.alias(x=F("stock") + 0.4).filter(x__gt=5)

    with CaptureQueriesContext(connection) as queries:
        prepared = similar_products(p[2].pk, k=4, queryset_hook=hook)
    (sent,) = searches(queries)
    assert "EXECUTE visrec_" in sent
    settings.VISREC = {**settings.VISREC, "PREPARED_QUERIES": False}
    plain = similar_products(p[2].pk, k=4, queryset_hook=hook)
    assert prepared == plain and len(plain) == 4


def test_a_message_failing_after_its_prepare_leaves_the_list_as_the_server_has_it(catalogue, monkeypatch):
    """PREPARE and DEALLOCATE stay done when the EXECUTE after them fails (a timeout, here a
    division by zero): the process reads the server's list again instead of drifting from it."""
    monkeypatch.setattr(prepared_statements, "MAX_STATEMENTS", 2)
    p = catalogue

    def failing(queryset):  # every product of the catalogue has stock 5 or 0
        return queryset.extra(where=["100 / (stock - 5) > 0"])

    for k in (2, 3):
        similar_products(p[2].pk, k=k, use_cache=False)
    oldest = prepared_statements.held(connection)[0]
    with pytest.raises(DatabaseError):
        similar_products(p[2].pk, k=4, queryset_hook=failing)  # DEALLOCATE, PREPARE done; EXECUTE fails
    held = prepared_statements.held(connection)
    assert held == server_statements() and len(held) == 2 and oldest not in held
    with pytest.raises(DatabaseError):
        similar_products(p[2].pk, k=4, queryset_hook=failing)  # EXECUTE alone: nothing to read again
    for k in (5, 6, 2):
        assert len(similar_products(p[2].pk, k=k, use_cache=False)) == k
    assert prepared_statements.held(connection) == server_statements() and len(server_statements()) == 2


def test_inside_a_transaction_queries_run_unprepared(catalogue):
    p = catalogue
    with transaction.atomic(), CaptureQueriesContext(connection) as queries:
        similar_products(p[2].pk, k=4, use_cache=False)
    (sent,) = searches(queries)
    assert "PREPARE" not in sent and "EXECUTE" not in sent
    assert server_statements() == []


def test_a_connection_keeps_at_most_max_statements(catalogue, monkeypatch):
    monkeypatch.setattr(prepared_statements, "MAX_STATEMENTS", 2)
    p = catalogue
    for k in (2, 3, 4):  # k is written into the text: three statements
        assert len(similar_products(p[2].pk, k=k, use_cache=False)) == k
    held = prepared_statements.held(connection)
    assert len(held) == 2 and server_statements() == held
    assert len(similar_products(p[2].pk, k=2, use_cache=False)) == 2  # the evicted one, prepared again
    assert len(prepared_statements.held(connection)) == 2


def test_the_least_recently_used_statement_is_deallocated(catalogue, monkeypatch):
    """One-off texts (price bands, say) push out each other, not the statement in steady use."""
    monkeypatch.setattr(prepared_statements, "MAX_STATEMENTS", 2)
    p = catalogue
    similar_products(p[2].pk, k=2, use_cache=False)
    steady = prepared_statements.held(connection)[-1]
    similar_products(p[2].pk, k=3, use_cache=False)
    similar_products(p[6].pk, k=2, use_cache=False)  # the steady one used again
    similar_products(p[2].pk, k=4, use_cache=False)  # evicts k=3's, prepared after it
    held = prepared_statements.held(connection)
    assert len(held) == 2 and held[0] == steady and set(held) == set(server_statements())
