"""A session engine for shops whose sessions are cached in Redis: Django's ``cached_db``,
falling back to the database whenever the cache fails.

Django's own ``cached_db`` survives a failed cache read or write, but not a failed
existence check, which it makes for every new session, nor a failed write-back after a
read from the database: with Redis down, shoppers' requests then answer 500. This engine asks the database instead (a cached session
is always in the database too) and deletes what it can::

    SESSION_ENGINE = "visrec.sessions"
"""
from __future__ import annotations

import logging

from django.contrib.sessions.backends.cached_db import SessionStore as CachedDBStore
from django.contrib.sessions.backends.db import SessionStore as DBStore

logger = logging.getLogger(__name__)


class SessionStore(CachedDBStore):
    def load(self):
        try:
            return super().load()
        except Exception:  # noqa: BLE001 - read from the database, not cached this time
            logger.warning("visrec: session cache unavailable; read the session from the database", exc_info=True)
            return DBStore.load(self)

    def exists(self, session_key):
        try:
            return super().exists(session_key)
        except Exception:  # noqa: BLE001 - the cache is down: the database knows every session
            logger.warning("visrec: session cache unavailable; checked the database", exc_info=True)
            return DBStore.exists(self, session_key)

    def delete(self, session_key=None):
        try:
            super().delete(session_key)
        except Exception:  # noqa: BLE001 - deleted from the database; the cached copy expires
            logger.warning("visrec: session cache unavailable; the cached copy expires by itself", exc_info=True)
            DBStore.delete(self, session_key)
