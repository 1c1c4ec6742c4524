"""HNSW indexes per embedding model version, and the nearest-neighbour query that uses them.

visrec's vector columns have no fixed dimension (backbones range from 512 to 2048), so
each model version gets a partial expression index, as pgvector documents for mixed
dimensions::

    CREATE INDEX ... USING hnsw ((vector::vector(1280)) vector_cosine_ops)
        WHERE model_version = 'efficientnet_lite0@imagenet'

A query uses the index when it orders by the same expression and filters on the same
version, which :func:`nearest_products` does.
"""
from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Iterable, Sequence

import numpy as np
from django.db import connection, transaction

try:
    from psycopg import ClientCursor as _ClientCursor
except ImportError:  # psycopg2
    _ClientCursor = None

from ...conf import MAX_EF_SEARCH, visrec_settings
from ...models import ImageEmbedding, ModelVersion, ProductEmbedding
from . import prepared_statements

VERSION_PATTERN = re.compile(r"^[A-Za-z0-9_.:@+-]{1,100}$")
#: HNSW on ``vector`` supports up to 2,000 dimensions; wider models use ``halfvec``.
MAX_VECTOR_DIMENSIONS = 2000
#: ``hnsw.ef_search`` of a version that was never calibrated, when ``HNSW_EF_SEARCH`` is None.
DEFAULT_EF_SEARCH = 100


def validate_version(model_version: str) -> str:
    """Returns the version if it is safe to embed in DDL, else raises ``ValueError``."""
    if not VERSION_PATTERN.match(model_version):
        raise ValueError(
            f"Model version {model_version!r} must be 1-100 characters of letters, digits and _.:@+-"
        )
    return model_version


def vector_cast(dimensions: int) -> str:
    """The SQL type a vector of this length is indexed and compared as."""
    kind = "vector" if dimensions <= MAX_VECTOR_DIMENSIONS else "halfvec"
    return f"{kind}({int(dimensions)})"


def _opclass(dimensions: int, metric: str = "cosine") -> str:
    kind = "vector" if dimensions <= MAX_VECTOR_DIMENSIONS else "halfvec"
    return f"{kind}_{metric}_ops"


def index_name(model, model_version: str) -> str:
    digest = hashlib.sha1(model_version.encode()).hexdigest()[:10]
    return f"{model._meta.db_table[:30]}_hnsw_{digest}"


def ensure_hnsw_index(model, model_version: str, dimensions: int, metric: str = "cosine") -> str:
    """Creates (if missing) the HNSW index of one model version; returns its name.

    Its graph parameters are ``VISREC["HNSW_M"]`` and ``VISREC["HNSW_EF_CONSTRUCTION"]``.

    Args:
        model: a visrec model with ``vector`` and ``model_version`` columns.
        model_version: the version whose rows the partial index covers.
        dimensions: the vector length of that version.
        metric: ``"cosine"`` (embeddings) or ``"ip"`` (inner product: "for you" scores).
    """
    if metric not in {"cosine", "ip"}:
        raise ValueError(f"metric must be 'cosine' or 'ip', not {metric!r}")
    validate_version(model_version)
    name = index_name(model, model_version)
    table = model._meta.db_table
    with connection.cursor() as cursor:
        # Django's foreign keys are deferred; DDL cannot run while their checks are pending.
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute(
            f"CREATE INDEX IF NOT EXISTS {name} ON {table} USING hnsw "
            f"((vector::{vector_cast(dimensions)}) {_opclass(dimensions, metric)}) "
            f"WITH (m = {int(visrec_settings.HNSW_M)}, "
            f"ef_construction = {int(visrec_settings.HNSW_EF_CONSTRUCTION)}) "
            f"WHERE model_version = '{model_version}'"
        )
    return name


def drop_hnsw_index(model, model_version: str) -> None:
    """Drops the HNSW index of one model version, if any."""
    validate_version(model_version)
    with connection.cursor() as cursor:
        cursor.execute(f"DROP INDEX IF EXISTS {index_name(model, model_version)}")


def ensure_version_indexes(model_version: str, dimensions: int) -> None:
    """The HNSW indexes a model version needs on both embedding tables."""
    for model in (ProductEmbedding, ImageEmbedding):
        ensure_hnsw_index(model, model_version, dimensions)


def vector_literal(vector: Sequence[float] | np.ndarray) -> str:
    """A pgvector text literal, ``'[0.1,0.2,...]'``."""
    return "[" + ",".join(f"{float(x):.7g}" for x in np.asarray(vector, dtype=np.float32).ravel()) + "]"


@functools.lru_cache(maxsize=256)
def nearest_products_sql(model_version: str, dimensions: int, where: str = "", *, k: int, by_product: bool = False,
                         with_vectors: bool = False) -> str:
    """The raw SQL of a k-nearest-products query on the version's HNSW index.

    Parameters, in order: the query vector (text literal), those of ``where``, then the
    query vector again (:func:`nearest_products_params` puts them in order). Returns rows
    ``(product_id, cosine_distance)``. Memoized: a function of its arguments only.

    Args:
        k: the ``LIMIT``, written into the text (as a parameter, a prepared statement's
            generic plan would not know it, and PostgreSQL would keep planning per call).
        by_product: the query vector is a product's stored vector of this version, read by
            the query itself: pass the product's id in place of each literal. (PostgreSQL runs
            the subquery once, as an init plan, and still walks the index; without a stored
            vector the index is not scanned at all and no rows come back.)
        with_vectors: rows get a third column, the product's vector in pgvector's binary
            form (``vector_send``; decode with :func:`vector_from_binary`).
    """
    validate_version(model_version)
    cast = vector_cast(dimensions)
    table = ProductEmbedding._meta.db_table
    extra = f" AND {where}" if where else ""
    if by_product:
        query = (f"(SELECT q.vector::{cast} FROM {table} q "
                 f"WHERE q.product_id = %s AND q.model_version = '{model_version}')")
    else:
        query = f"%s::{cast}"
    columns = ", vector_send(e.vector)" if with_vectors else ""
    gate = f" AND {query} IS NOT NULL" if by_product else ""
    return (
        f"SELECT e.product_id, (e.vector::{cast}) <=> {query} AS distance{columns} "
        f"FROM {table} e "
        f"WHERE e.model_version = '{model_version}'{gate}{extra} "
        f"ORDER BY (e.vector::{cast}) <=> {query} LIMIT {int(k)}"
    )


def nearest_products_params(query, where_params: Sequence = (), *, by_product: bool = False) -> list:
    """The parameters of :func:`nearest_products_sql`, in order; ``query`` is the vector literal,
    or the product id with ``by_product``."""
    return [query, *([query] if by_product else []), *where_params, query]


def id_array(ids: Iterable) -> str:
    """Ids as a PostgreSQL array's text, ``'{1,2,3}'``, for a ``%s::bigint[]`` (or ``uuid[]``,
    :func:`~visrec.services.catalogue.products.pk_array_type`) parameter: for 200 ids 0.06 ms
    to build and bind, against 0.33 ms for psycopg to adapt a list (timed ad hoc here)."""
    return "{" + ",".join(str(i) for i in ids) + "}"


def vector_from_binary(data: bytes) -> np.ndarray:
    """A vector from pgvector's binary form (``vector_send``): int16 length, int16 unused,
    then big-endian float4s."""
    dimensions = int.from_bytes(data[:2], "big")
    return np.frombuffer(data, dtype=">f4", count=dimensions, offset=4).astype(np.float32)


def vectors_from_binary(values: Sequence[bytes], dimensions: int) -> np.ndarray:
    """Many vectors of one length from pgvector's binary form at once (see
    :func:`vector_from_binary`): float32, shape ``(len(values), dimensions)``."""
    layout = np.dtype([("dimensions", ">i2"), ("unused", ">i2"), ("vector", ">f4", (dimensions,))])
    if not values:
        return np.zeros((0, dimensions), dtype=np.float32)
    records = np.frombuffer(b"".join(bytes(v) for v in values), dtype=layout)
    if (records["dimensions"] != dimensions).any():
        raise ValueError(f"vectors of another length than {dimensions} in the rows")
    return records["vector"].astype(np.float32)


def nearest_products(model_version: str, vector, k: int = 10, *, ef_search: int | None = None) -> list[tuple[int, float]]:
    """The ``k`` products whose vectors are nearest (cosine) to ``vector`` under a version.

    Args:
        model_version: the embedding version to search.
        vector: float array of shape ``(dimensions,)``.
        k: how many products to return.
        ef_search: HNSW candidate list size for this query (default: the version's, see
            :func:`ef_search_for`; clamped by :func:`scan_settings`).

    Returns:
        ``[(product_id, cosine_distance), ...]``, nearest first.
    """
    vector = np.asarray(vector, dtype=np.float32)
    sql = nearest_products_sql(model_version, vector.shape[0], k=k)
    literal = vector_literal(vector)
    version = None if ef_search else ModelVersion.objects.filter(name=model_version).first()
    setup, setup_params = scan_settings(k, version, ef_search=ef_search)
    with connection.cursor() as cursor:
        # set_config(..., true) lasts one transaction: settings and query go together.
        _, rows = run_with_settings(cursor, setup, setup_params, sql, [literal, literal])
    rows = sorted(rows, key=lambda row: row[1])  # relaxed order: make it exact
    return [(row[0], float(row[1])) for row in rows]


_iterative: dict[str, bool] = {}


def supports_iterative_scan() -> bool:
    """Whether the server's pgvector has iterative index scans (0.8.0+); asked once per database."""
    alias = connection.alias + ":" + str(connection.settings_dict.get("NAME"))
    if alias not in _iterative:
        with connection.cursor() as cursor:
            cursor.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
            row = cursor.fetchone()
        parts = tuple(int(p) for p in (row[0] if row else "0.0.0").split(".")[:2])
        _iterative[alias] = parts >= (0, 8)
    return _iterative[alias]


def ef_search_for(version=None) -> int:
    """The ``hnsw.ef_search`` that queries of a version's HNSW index start from.

    ``VISREC["HNSW_EF_SEARCH"]`` when it is an integer (a fixed override); else the version's
    calibrated value (``metrics["hnsw"]["ef_search"]``, written by
    :func:`~visrec.services.db.index_calibration.calibrate_ef_search` when the version was
    switched on), else ``DEFAULT_EF_SEARCH``. :func:`scan_settings` clamps it per query.

    Args:
        version: the :class:`~visrec.models.ModelVersion` whose index is queried, or None.
    """
    fixed = visrec_settings.HNSW_EF_SEARCH
    if fixed is not None:
        return int(fixed)
    calibrated = ((getattr(version, "metrics", None) or {}).get("hnsw") or {}).get("ef_search")
    return int(calibrated) if calibrated else DEFAULT_EF_SEARCH


#: The pgvector setting of iterative index scans (in :func:`scan_settings`'s statement when the server has them).
ITERATIVE_SETTING = "hnsw.iterative_scan"


def scan_settings(k: int, version=None, *, ef_search: int | None = None) -> tuple[str, list]:
    """A ``SELECT set_config(...)`` statement and its parameters for one filtered HNSW query.

    ``hnsw.ef_search`` is ``ef_search`` if given, else :func:`ef_search_for` ``(version)``; at
    least ``2 k`` (a shorter candidate list cannot hold k good results), at most 1000
    (pgvector's maximum). With pgvector 0.8+, iterative index scans in relaxed order, so that
    a selective filter still returns ``k`` rows. Settings are local to the transaction
    (``true``). Every HNSW query of visrec gets its settings here.
    """
    ef = min(max(int(ef_search or ef_search_for(version)), 2 * k), MAX_EF_SEARCH)
    setup = "SELECT set_config('hnsw.ef_search', %s, true)"
    if supports_iterative_scan():
        setup += (f", set_config('{ITERATIVE_SETTING}', 'relaxed_order', true)"
                  ", set_config('hnsw.max_scan_tuples', '100000', true)")
    return setup, [str(ef)]


def run_with_settings(cursor, setup: str, setup_params: list, sql: str, params: list) -> tuple[object, list]:
    """Runs ``setup`` (``set_config(..., true)`` calls) then ``sql`` in one transaction; returns the
    last column of ``setup``'s row and the rows of ``sql``.

    With psycopg 3's client-side binding cursors (Django's default) both go in one message,
    one round trip: PostgreSQL runs the statements of a message as one implicit transaction,
    which scopes the settings to the query; there ``sql`` runs as a prepared statement of
    the connection where it can (:mod:`~visrec.services.db.prepared_statements`). Otherwise,
    an explicit transaction.
    """
    if _ClientCursor is not None and isinstance(getattr(cursor, "cursor", None), _ClientCursor):
        if prepared_statements.usable(cursor.db):
            done = prepared_statements.run_after(cursor, setup, setup_params, sql, params)
            if done is not None:
                return done
        cursor.execute(f"{setup}; {sql}", [*setup_params, *params])
        flag = cursor.fetchone()[-1]
        cursor.nextset()
        return flag, cursor.fetchall()
    with transaction.atomic(using=connection.alias):
        cursor.execute(setup, setup_params)
        flag = cursor.fetchone()[-1]
        cursor.execute(sql, params)
        return flag, cursor.fetchall()


def nearest_by_inner_product_sql(table: str, model_version: str, dimensions: int, where: str = "", *, k: int,
                                 query_table: str | None = None) -> str:
    """Raw SQL of a top-k inner-product query on a version's HNSW ``ip`` index.

    Parameters, in order: the query vector, those of ``where``, then the query vector
    again. Returns rows ``(product_id, inner_product)``, highest first.

    Args:
        k: the ``LIMIT``, written into the text (see :func:`nearest_products_sql`).
        query_table: the query vector is a shopper's stored vector of this version in this
            table (``subject_key``, ``model_version``, ``vector``), read by the query itself:
            pass the subject key in place of each vector (an init plan; a shopper without a
            vector gets no rows and no index scan).
    """
    validate_version(model_version)
    cast = vector_cast(dimensions)
    extra = f" AND {where}" if where else ""
    gate = ""
    if query_table:
        query = (f"(SELECT q.vector::{cast} FROM {query_table} q "
                 f"WHERE q.subject_key = %s AND q.model_version = '{model_version}')")
        gate = f" AND {query} IS NOT NULL"
    else:
        query = f"%s::{cast}"
    return (
        f"SELECT e.product_id, -((e.vector::{cast}) <#> {query}) AS score FROM {table} e "
        f"WHERE e.model_version = '{model_version}'{gate}{extra} "
        f"ORDER BY (e.vector::{cast}) <#> {query} LIMIT {int(k)}"
    )
