"""Two independent read-only parts of one request, run at once on two database connections.

A shopper's first "for you" request runs two nearest-neighbour queries that do not depend on
each other (the trained model's list and the session list, 5-7 ms each on 100,000 products
here); run one after the other they are most of the request. :func:`run_both` runs the
second in a small per-process thread pool, on that thread's own database connection, while
the calling thread runs the first, so PostgreSQL works on both at once.

It only overlaps when that is safe and cheap, and otherwise runs both in the calling thread:

* ``VISREC["QUERY_THREADS"]`` is above 0 (the pool's size; each thread keeps one connection);
* the connection is persistent (``CONN_MAX_AGE`` not 0): a pool thread reuses its
  connection, which would otherwise be opened for every query;
* no transaction is open (``ATOMIC_REQUESTS``, ``transaction.atomic``, tests): another
  connection would not see its uncommitted rows;
* a pool thread is free: a busy process does not queue work behind other requests;
* ``CANDIDATE_SQL_SECONDS`` is not 0: that setting is how a shop says its product manager
  depends on the request (a tenant), and state set on the request's own connection (a
  ``search_path``, ``SET app.tenant`` for row-level security) is not on the pool thread's.

The work runs in a copy of the caller's context variables. A pool thread checks its
connection as Django does between requests (``close_old_connections``: a broken one or one
past ``CONN_MAX_AGE`` is replaced).
"""
from __future__ import annotations

import contextvars
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from typing import TypeVar

from django.db import close_old_connections, connection, connections

from ..conf import visrec_settings

A = TypeVar("A")
B = TypeVar("B")

_lock = threading.Lock()
_pool: tuple[int, ThreadPoolExecutor, threading.Semaphore] | None = None  # (pid, pool, free threads)


def can_overlap() -> bool:
    """Whether :func:`run_both` may run its second part on another connection now."""
    return (visrec_settings.QUERY_THREADS > 0 and connection.settings_dict.get("CONN_MAX_AGE") != 0
            and not connection.in_atomic_block and visrec_settings.CANDIDATE_SQL_SECONDS != 0)


def run_both(first: Callable[[], A], second: Callable[[], B], *, overlap: bool = True) -> tuple[A, B]:
    """``(first(), second())``, the two overlapping where :func:`can_overlap` (see the module).

    Both must only read the database. An exception of either is raised here, after both
    ended (the first's if both failed).
    ``overlap=False``: one after the other (the caller knows one of them has no query to run).
    """
    if not (overlap and can_overlap()):
        return first(), second()
    _, pool, free = _the_pool()
    if not free.acquire(blocking=False):
        return first(), second()
    try:
        try:
            # The caller's context variables (a tenant, a request id) go with the work.
            future = pool.submit(contextvars.copy_context().run, _on_pool_thread, second)
        except RuntimeError:  # interpreter shutting down
            return first(), second()
        try:
            a = first()
        except BaseException:
            wait([future])  # the second ends before the first's error is raised (and its own is dropped)
            raise
        return a, future.result()
    finally:
        free.release()


def shutdown() -> None:
    """Stops this process's pool after its threads closed their database connections (tests,
    or a process that must release its connections, e.g. before dropping a database)."""
    global _pool
    with _lock:
        pool, _pool = _pool, None
    if pool is None or pool[0] != os.getpid():
        return
    size = pool[1]._max_workers
    barrier = threading.Barrier(size)  # one task per thread: each waits until all threads hold one
    for _ in range(size):
        pool[1].submit(_close_connections, barrier)
    pool[1].shutdown(wait=True)


def _close_connections(barrier: threading.Barrier) -> None:
    try:
        barrier.wait(timeout=5)
    except threading.BrokenBarrierError:
        pass
    connections.close_all()


def _on_pool_thread(work: Callable[[], B]) -> B:
    close_old_connections()  # a broken connection, or one past CONN_MAX_AGE, is replaced
    return work()


def _the_pool() -> tuple[int, ThreadPoolExecutor, threading.Semaphore]:
    """This process's pool (a forked child makes its own: threads do not survive a fork)."""
    global _pool
    pool = _pool
    if pool is None or pool[0] != os.getpid():
        with _lock:
            pool = _pool
            if pool is None or pool[0] != os.getpid():
                size = visrec_settings.QUERY_THREADS
                pool = _pool = (os.getpid(), ThreadPoolExecutor(size, thread_name_prefix="visrec-query"),
                                threading.Semaphore(size))
    return pool
