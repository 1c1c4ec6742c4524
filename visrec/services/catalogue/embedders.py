"""Which embedder serves, loading it once per process, and switching versions atomically.

An embedder version is a :class:`~visrec.models.ModelVersion` of kind ``embedder``. The
pretrained backbone is a version too (its ``name`` is the backbone's version string); a
fine-tuned version records in ``metrics`` the backbone it sits on and has the trained head
as its ``artefact``. At most one version is active; readers always filter on it, so
switching is one flag flip in one transaction once the new version is fully built.
"""
from __future__ import annotations

import io

from ...conf import visrec_settings
from ...models import ModelKind, ModelVersion
from ..db import index_calibration, vector_index
from ..serving.versions import activate_version, active_version

_loaded: dict = {}  # version name -> Embedder; torch is imported only when one is loaded


def active_embedder_version() -> ModelVersion | None:
    """The served embedder version, or ``None`` before the first indexing."""
    return active_version(ModelKind.EMBEDDER)


def backbone_version(backbone_name: str | None = None) -> ModelVersion:
    """The (created if needed) version row of a pretrained backbone."""
    from ...backbones import load_backbone

    backbone = load_backbone(backbone_name)
    version, _ = ModelVersion.objects.get_or_create(
        name=backbone.version,
        defaults={
            "kind": ModelKind.EMBEDDER,
            "dimensions": backbone.dimensions,
            "metrics": {"backbone": backbone.name, "base_version": backbone.version},
            "notes": "pretrained backbone",
        },
    )
    return version


def target_embedder_version() -> ModelVersion:
    """The version extraction writes: the active one if it uses the configured backbone,
    else the configured backbone's pretrained version (switched on once complete)."""
    active = active_embedder_version()
    if active is not None and active.metrics.get("backbone") == visrec_settings.BACKBONE:
        return active
    return backbone_version(visrec_settings.BACKBONE)


def written_versions(version: ModelVersion) -> list[str]:
    """The version strings extraction writes for an embedder version: its base, then itself."""
    base = version.metrics.get("base_version", version.name)
    return list(dict.fromkeys([base, version.name]))


def load_embedder(version: ModelVersion):
    """The :class:`~visrec.embedder.Embedder` of a version, loaded once per process."""
    cached = _loaded.get(version.name)
    if cached is not None:
        return cached
    from ...backbones import load_backbone
    from ...colour import DEFAULT_BINS
    from ...embedder import Embedder

    backbone = load_backbone(version.metrics.get("backbone"))
    if version.artefact:
        from ...training.projection import ProjectionHead

        with version.artefact.open("rb") as handle:
            head = ProjectionHead.load(io.BytesIO(handle.read()))
        fusion = version.metrics.get("fusion") or {}
        embedder = Embedder(backbone=backbone, head=head, head_version=version.name,
                            colour_weight=float(fusion.get("colour", 0.0)),
                            category_weight=float(fusion.get("category", 0.0)),
                            colour_bins=int(fusion.get("bins", DEFAULT_BINS)))
    else:
        embedder = Embedder(backbone=backbone)
    _loaded[version.name] = embedder
    return embedder


def ensure_indexes(version: ModelVersion) -> None:
    """HNSW indexes for a version's vectors (and its base version's)."""
    vector_index.ensure_version_indexes(version.name, version.dimensions)


def activate_embedder(version: ModelVersion, *, note: str = "") -> None:
    """Switches the served embedder to ``version`` in one transaction.

    The caller guarantees the version's vectors are complete; the HNSW index is built
    here, before the flag flips, so readers never query an unindexed version; then it is
    calibrated (:func:`~visrec.services.db.index_calibration.calibrate_ef_search`: the
    ``hnsw.ef_search`` its queries need for the target recall), so the served version
    always has its own (unless it has too few products to measure). A version switched on
    again (a roll-back) whose index was calibrated as it is now is not measured again.
    """
    ensure_indexes(version)
    if not index_calibration.is_calibrated(version):
        index_calibration.calibrate_ef_search(version)
    activate_version(version, note=note)
