"""Independent read-only parts of one request, run at once on several database connections.

A shopper's first "for you" request runs parts that do not depend on each other (the trained
model's nearest-neighbour query and the session list's, 5-7 ms each on 100,000 products
here, and item-kNN's list); run one after the other they are most of the request.
:func:`run_all` runs all but the first in a small per-process thread pool, each on its
thread's own database connection, while the calling thread runs the first, so PostgreSQL
works on them at once.

It only overlaps when that is safe and cheap, and otherwise runs every part in the calling thread:

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

from ...conf import visrec_settings

B = TypeVar("B")

_lock = threading.Lock()
_pool: tuple[int, ThreadPoolExecutor, threading.Semaphore] | None = None  # (pid, pool, free threads)


def can_overlap() -> bool:
    """Whether :func:`run_all` may run parts on other connections now."""
    return (visrec_settings.QUERY_THREADS > 0 and connection.settings_dict.get("CONN_MAX_AGE") != 0
            and not connection.in_atomic_block and visrec_settings.CANDIDATE_SQL_SECONDS != 0)


def run_all(*parts: Callable[[], object], overlap: bool = True) -> list:
    """``[part() for part in parts]``, overlapping where :func:`can_overlap` (see the module):
    the first part runs in the calling thread, each other one on a free pool thread; those
    that find none run in the calling thread after the first.

    Every part must only read the database. An exception is raised here once every part
    started on the pool has ended: of the parts that failed, the earliest in ``parts``
    (a part of the calling thread that fails stops the calling thread's later ones).
    ``overlap=False``: one after the other (the caller knows the others have no query to run).
    """
    if len(parts) < 2 or not (overlap and can_overlap()):
        return [part() for part in parts]
    _, pool, free = _the_pool()
    futures = {}
    try:
        for index in range(1, len(parts)):
            if not free.acquire(blocking=False):
                break
            try:
                # The caller's context variables (a tenant, a request id) go with the work.
                futures[index] = pool.submit(contextvars.copy_context().run, _on_pool_thread, parts[index])
            except RuntimeError:  # interpreter shutting down
                free.release()
                break
        results: list = [None] * len(parts)
        errors: dict[int, BaseException] = {}
        for index in (i for i in range(len(parts)) if i not in futures):
            try:
                results[index] = parts[index]()
            except BaseException as exc:  # noqa: BLE001 - raised below, after the pool's parts ended
                errors[index] = exc
                break
        wait(futures.values())
        for index, future in futures.items():
            if future.exception() is not None:
                errors[index] = future.exception()
            else:
                results[index] = future.result()
        if errors:
            raise errors[min(errors)]
        return results
    finally:
        for _ in futures:
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
