"""A budget of events per network at ingestion, keyed by a keyed hash of the address: no IP stored.

A network is the client's IPv4 /24 or IPv6 /64 (one household, office or cloud subnet), so
a script that makes a new shopper per request still spends one budget. The counter lives
in the cache for one minute under ``HMAC(secret, network)`` truncated: nothing in the cache
or the database names an address, and the counter is gone a minute later. With the cache
down the budget is not enforced (the API's throttles and the per-shopper bounds still hold).
"""
from __future__ import annotations

import hashlib
import hmac
import ipaddress
import time

from ...conf import visrec_settings
from ...pseudonyms import pseudonym_secrets
from ..db.cache_guard import cache

WINDOW_SECONDS = 60


def network_of(request) -> str:
    """The client's network as text (``203.0.113.0/24``); ``REMOTE_ADDR`` as the host's proxy set it."""
    address = (request.META.get("REMOTE_ADDR") or "").strip()
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return "unknown"
    prefix = 24 if ip.version == 4 else 64
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))


def network_key(request, scope: str = "events") -> str:
    """The cache key of the request's network: a keyed hash, never the address."""
    digest = hmac.new(pseudonym_secrets()[0], f"network:{network_of(request)}".encode(), hashlib.sha256)
    return f"visrec:net:{scope}:{digest.hexdigest()[:32]}:{int(time.time() // WINDOW_SECONDS)}"


def network_allows(request, cost: int = 1) -> bool:
    """Spends ``cost`` events of the network's ``EVENTS_PER_NETWORK_PER_MINUTE``; False when spent."""
    limit = visrec_settings.EVENTS_PER_NETWORK_PER_MINUTE
    if not limit:
        return True
    key = network_key(request)
    cache.add(key, 0, WINDOW_SECONDS * 2)
    try:
        used = cache.incr(key, cost)
    except ValueError:
        return True  # evicted, or the cache is down: not enforced
    return used is None or used <= limit
