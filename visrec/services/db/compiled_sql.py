"""SQL compiled from querysets on the host's product model, reused per process.

Compiling a queryset costs about 0.25 ms here, and a card query with two subqueries about
1 ms (timed ad hoc); "similar" and "for you" would pay that on every request. A
:class:`SQLMemo` keeps each compiled ``(sql, params)`` for ``CANDIDATE_SQL_SECONDS`` per
key: a product manager whose filter depends on the time (``published_at <= now()``) shows
a change within that time; one that depends on the request (a tenant) needs 0, which
compiles on every call. Every memo is emptied when visrec's or the product model's
settings change.
"""
from __future__ import annotations

import time
import weakref
from collections.abc import Callable, Hashable

from django.core.signals import setting_changed

from ...conf import visrec_settings

_MEMOS: weakref.WeakSet[SQLMemo] = weakref.WeakSet()


class SQLMemo:
    """``(sql, params)`` by key, each compiled at most once per ``CANDIDATE_SQL_SECONDS``.

    ``size`` bounds the keys (filter values); past it the memo starts again empty.
    """

    def __init__(self, size: int = 512):
        self.size = size
        self._entries: dict[Hashable, tuple[float, str, tuple]] = {}
        _MEMOS.add(self)

    def get(self, key: Hashable, compile_sql: Callable[[], tuple[str, list]]) -> tuple[str, list]:
        """The SQL for ``key`` and a fresh list of its parameters (callers may append to it)."""
        seconds = visrec_settings.CANDIDATE_SQL_SECONDS
        if not seconds:
            sql, params = compile_sql()
            return sql, list(params)
        now = time.monotonic()
        entry = self._entries.get(key)
        if entry is None or now - entry[0] >= seconds:
            if len(self._entries) >= self.size:
                self._entries.clear()
            sql, params = compile_sql()
            entry = self._entries[key] = (now, sql, tuple(params))
        return entry[1], list(entry[2])

    def clear(self) -> None:
        self._entries.clear()


def _forget_all(*, setting: str, **kwargs) -> None:
    if setting in {"VISREC", "VISREC_PRODUCT_MODEL", "VISREC_IMAGE_MODEL"}:
        for memo in list(_MEMOS):
            memo.clear()


setting_changed.connect(_forget_all)
