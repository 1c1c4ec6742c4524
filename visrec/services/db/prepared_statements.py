"""Nearest-neighbour queries as prepared statements, planned once per database connection.

PostgreSQL spends 0.3-0.4 ms planning a filtered HNSW query, a quarter to a third of the
CPU it spends on one at 100,000 products (``bench/prepared.py``). A statement prepared
on the connection is planned once; PostgreSQL's own ``plan_cache_mode`` (``auto``) then
runs it on a generic plan unless planning per call looks cheaper. visrec uses SQL-level
``PREPARE``/``EXECUTE``, so the scan settings and the query still go in one message of
the simple query protocol (one round trip, :func:`visrec.services.db.vector_index.run_with_settings`).

How it stays correct:

* a statement's name is a digest of its text (``visrec_<hex>``), so no name ever stands
  for two texts, whichever process or pooled server connection prepared it;
* this process remembers the names each connection holds (at most ``MAX_STATEMENTS``;
  past that the least recently used is deallocated, so that a stream of one-off texts, such
  as price bands, does not push out the statements every request uses) and sends a
  statement's ``PREPARE`` in the same message as its first ``EXECUTE``;
* a message that fails after it prepared or deallocated (a timeout in its ``EXECUTE``), or
  that names a statement the connection lost (a pooler in transaction mode handing the next
  transaction another server connection, a ``DISCARD ALL``: SQLSTATE 26000) or holds
  unbeknown to this process (42P05), leaves the list as PostgreSQL has it: those statements
  stay done whatever follows them in the message, so the list is read again from
  ``pg_prepared_statements`` and the message sent again to match it;
* values are never left to ``PREPARE`` to type: the callers write the shop's filter and
  hook values into the text as the driver's literals (``"stock" + $1`` would make 0.4 an
  integer), and visrec's own parameters are cast or compared with a column of their type; a
  text PostgreSQL still cannot prepare runs unprepared in this process from then on;
* inside a transaction (``ATOMIC_REQUESTS``, ``transaction.atomic``) queries run
  unprepared, since a refused statement there would abort the caller's transaction;
  likewise with ``VISREC["PREPARED_QUERIES"]`` off.
"""
from __future__ import annotations

import hashlib
import logging
import re
import threading
import weakref

from django.db import DatabaseError, Error

from ...conf import visrec_settings

logger = logging.getLogger(__name__)

#: Prepared statements kept per connection; past this the least recently used is deallocated.
MAX_STATEMENTS = 64

_PLACEHOLDER = re.compile(r"%s|%%")
#: SQLSTATEs: no such prepared statement; it exists already.
MISSING, DUPLICATE = "26000", "42P05"

_lock = threading.Lock()
#: Per psycopg connection: the names it holds, least recently used first (a dict as an ordered set).
_held: weakref.WeakKeyDictionary[object, dict[str, None]] = weakref.WeakKeyDictionary()
#: Names of texts PostgreSQL refused to prepare (this process).
_refused: set[str] = set()


def usable(connection) -> bool:
    """Whether queries on this Django connection may run prepared now (the setting on, in
    autocommit mode outside any transaction)."""
    return bool(visrec_settings.PREPARED_QUERIES) and connection.autocommit and not connection.in_atomic_block


def statement_name(sql: str) -> str:
    return "visrec_" + hashlib.sha1(sql.encode()).hexdigest()[:24]


def positional(sql: str) -> str:
    """Django's SQL with ``%s`` placeholders numbered ``$1, $2, ...`` for ``PREPARE`` (a
    literal ``%%`` stays as it is: the whole message is still formatted by the client)."""
    count = 0

    def number(match: re.Match) -> str:
        nonlocal count
        if match.group() == "%%":
            return "%%"
        count += 1
        return f"${count}"

    return _PLACEHOLDER.sub(number, sql)


def run_after(cursor, head: str, head_params: list, sql: str, params: list) -> tuple[object, list] | None:
    """Runs ``head`` (statements of one row, such as ``set_config`` calls) then ``sql``
    prepared, in one message; returns the last column of ``head``'s row and ``sql``'s rows,
    or None when ``sql`` cannot run prepared (the caller runs it as it is).

    ``cursor``: a Django cursor over psycopg's client-side binding cursor.
    """
    name = statement_name(sql)
    if name in _refused:
        return None
    raw = cursor.db.connection
    with _lock:
        held = _held.setdefault(raw, {})
    execute = f"EXECUTE {name}({', '.join(['%s'] * len(params))})" if params else f"EXECUTE {name}"
    for _attempt in range(3):
        prepare = name not in held
        evict = list(held)[:max(0, len(held) - MAX_STATEMENTS + 1)] if prepare else []
        parts = [head, *(f"DEALLOCATE {old}" for old in evict),
                 *([f"PREPARE {name} AS {positional(sql)}"] if prepare else []), execute]
        try:
            cursor.execute("; ".join(parts), [*head_params, *params])
        except DatabaseError as exc:
            state = getattr(exc.__cause__, "sqlstate", None)
            if prepare or state == MISSING:
                # PREPARE and DEALLOCATE stay done when a later statement of the message fails
                # (a timeout in EXECUTE, say), and a name may be missing or held unbeknown to
                # this process: read what the connection holds instead of guessing.
                _read_held(cursor, held)
            if state in (MISSING, DUPLICATE):
                continue
            if prepare and state and state.startswith("42") and name not in held:
                # PostgreSQL would not prepare the text (or it is wrong as a query anyway: the
                # caller's unprepared run raises the error then).
                logger.info("visrec: running a query unprepared: %s", exc)
                _refused.add(name)
                return None
            raise
        for old in evict:
            held.pop(old, None)
        held.pop(name, None)  # the most recently used last: eviction takes the least recently used
        held[name] = None
        flag = cursor.fetchone()[-1]
        while cursor.nextset():
            pass
        return flag, cursor.fetchall()
    return None


def _read_held(cursor, held: dict[str, None]) -> None:
    """Sets ``held`` to the visrec statements the connection holds, oldest prepared first
    (after a failed message; in autocommit its implicit transaction has ended). A connection
    that cannot answer (closed, broken) holds nothing this process may count on, and the
    caller's own error is the one raised."""
    held.clear()
    try:
        cursor.execute("SELECT name FROM pg_prepared_statements WHERE name LIKE 'visrec\\_%%' "
                       "ORDER BY prepare_time", [])
        held.update(dict.fromkeys(row[0] for row in cursor.fetchall()))
    except Error:
        pass


def forget(connection=None) -> None:
    """Forgets which statements connections hold (all, or one Django connection's); the
    next use prepares them again (tests, and after a ``DEALLOCATE``/``DISCARD`` of one's own)."""
    with _lock:
        if connection is None:
            _held.clear()
            _refused.clear()
        elif connection.connection is not None:
            _held.pop(connection.connection, None)


def held(connection) -> list[str]:
    """The names this process believes a Django connection holds, least recently used first."""
    return list(_held.get(connection.connection, {})) if connection.connection is not None else []
