"""Work ahead on threads, results in order: how extraction overlaps decoding with the forward pass.

Pure Python, no ORM (the GPU benchmark imports it without Django).
"""
from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor


def prefetch(items: Iterable, func: Callable, workers: int, window: int) -> Iterator:
    """``map(func, items)`` in order, computed up to ``window`` items ahead on ``workers`` threads.

    Pillow's decoders and resizers and numpy release the GIL, so threads overlap the
    decoding of the next batch with the forward pass of the current one. ``workers <= 0``
    maps in the calling thread.
    """
    if workers <= 0:
        yield from map(func, items)
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="visrec-decode") as pool:
        pending: deque[Future] = deque()
        for item in items:
            pending.append(pool.submit(func, item))
            if len(pending) >= window:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
