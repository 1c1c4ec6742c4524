"""Keyed pseudonyms for shoppers: an HMAC of the user or session, never the id itself."""
from __future__ import annotations

import hashlib
import hmac

from django.conf import settings

from .conf import visrec_settings


def _secret() -> bytes:
    secret = visrec_settings.PSEUDONYM_SECRET or ("visrec-pseudonym:" + settings.SECRET_KEY)
    return secret.encode()


def subject_key(kind: str, identifier: str | int) -> str:
    """The 64-hex-character pseudonym of a subject.

    Args:
        kind: what the identifier names: ``"user"``, ``"session"`` or, for imported or
            simulated histories, any other namespace such as ``"import"``.
        identifier: the user's primary key, the session key, or the external id.

    Stable for the same secret; unlinkable to the identifier without it.
    """
    message = f"{kind}:{identifier}".encode()
    return hmac.new(_secret(), message, hashlib.sha256).hexdigest()
