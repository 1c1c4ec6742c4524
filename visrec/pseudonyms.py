"""Keyed pseudonyms for shoppers: an HMAC of the user or session, never the id itself.

The key is ``VISREC["PSEUDONYM_SECRET"]`` (default: derived from Django's ``SECRET_KEY``).
To rotate it, set a new secret and move the old one to
``VISREC["PSEUDONYM_SECRET_FALLBACKS"]``: new events are signed with the new secret, while
export, erasure and ``visrec_rotate_pseudonyms`` still find data stored under the old
ones. When ``PSEUDONYM_SECRET`` is derived from ``SECRET_KEY``, Django's
``SECRET_KEY_FALLBACKS`` are honoured the same way. Once a secret leaves the list, what
was stored under it can no longer be linked to anyone.
"""
from __future__ import annotations

import hashlib
import hmac

from django.conf import settings

from .conf import visrec_settings

DERIVED_PREFIX = "visrec-pseudonym:"


def pseudonym_secrets() -> list[bytes]:
    """The current secret first, then the fallbacks, without repeats."""
    current = visrec_settings.PSEUDONYM_SECRET
    candidates = [current or DERIVED_PREFIX + settings.SECRET_KEY]
    for fallback in visrec_settings.PSEUDONYM_SECRET_FALLBACKS:
        candidates.append(fallback or DERIVED_PREFIX + settings.SECRET_KEY)
    if not current:
        candidates.extend(DERIVED_PREFIX + key for key in getattr(settings, "SECRET_KEY_FALLBACKS", []))
    return [secret.encode() for secret in dict.fromkeys(candidates)]


def _sign(secret: bytes, kind: str, identifier: str | int) -> str:
    return hmac.new(secret, f"{kind}:{identifier}".encode(), hashlib.sha256).hexdigest()


def subject_key(kind: str, identifier: str | int) -> str:
    """The 64-hex-character pseudonym of a subject under the current secret.

    Args:
        kind: what the identifier names: ``"user"``, ``"session"`` or, for imported or
            simulated histories, any other namespace such as ``"import"``.
        identifier: the user's primary key, the session key, or the external id.

    Stable for the same secret; unlinkable to the identifier without it.
    """
    return _sign(pseudonym_secrets()[0], kind, identifier)


def subject_keys(kind: str, identifier: str | int) -> list[str]:
    """The subject's pseudonyms under the current secret and every fallback, current first."""
    return [_sign(secret, kind, identifier) for secret in pseudonym_secrets()]
