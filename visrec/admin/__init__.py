"""visrec's admin: its own models' pages, and a mixin a host adds to its product admin.

One module per page: importing them registers the ModelAdmins.
"""
from __future__ import annotations

from . import (  # noqa: F401 - registers the ModelAdmins
    catalogue,
    embeddings,
    events,
    experiments,
    health,
    privacy,
    versions,
)
from .products import VisuallySimilarAdminMixin

__all__ = ["VisuallySimilarAdminMixin"]
