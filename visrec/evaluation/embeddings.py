"""How good are image embeddings for "visually similar": metrics, a baseline, maps, tables.

Pure compute (numpy, scikit-learn, matplotlib, Pillow), no ORM and no Django: the
callers (a management command, a benchmark script) fetch vectors and labels and hand
them over as arrays.

* :func:`precision_at_k` - of each item's ``k`` nearest other items by cosine, the
  fraction that share its label (e.g. its category), averaged over items. Computed in
  chunks of queries, so 20,000 items fit in a few hundred MB.
* :func:`colour_histogram_features` - the baseline any CNN must beat: a joint RGB
  colour histogram of the product (background ignored), Hellinger-normalised
  (:mod:`visrec.colour`, which fine-tuned embedders also use).
* :func:`project_2d` and :func:`plot_map` - a 2-D map of the catalogue with thumbnails,
  to look at what the numbers mean.
* :func:`results_table` and :func:`markdown_table` - results for a terminal or a README.

Neighbours are chosen deterministically: higher cosine first, and among equal cosines
the lower index, whatever the chunk size.
"""
from __future__ import annotations

import math
from collections import Counter
from collections.abc import Hashable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..colour import DEFAULT_BINS, image_descriptors

__all__ = [
    "colour_histogram_features",
    "markdown_table",
    "nearest_neighbours",
    "neighbour_table",
    "plot_map",
    "precision_at_k",
    "project_2d",
    "results_table",
]

#: Above this many items, :func:`project_2d` uses PCA instead of t-SNE (t-SNE is slow).
TSNE_MAX_ITEMS = 5000


# --------------------------------------------------------------------------- neighbours


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero): float32 ``(N, D)``."""
    x = np.asarray(vectors, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"vectors must be 2-D (N, D), got shape {x.shape}")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


def _top_k(sims: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` largest entries of each row, best first, ties broken by lower column.

    ``np.argpartition`` alone may pick any of several tied values at the boundary; here
    the k-th largest value of each row is found by partition, every column strictly
    above it is taken, and the remaining places go to the lowest-index columns equal
    to it. The result depends only on the row's values, not on the chunk it came in.

    Args:
        sims: float32 ``(Q, N)``, no NaN; ``-inf`` marks columns never to pick
            (there must be at least ``k`` finite columns per row).
        k: ``1 <= k <= N``.

    Returns:
        ``(indices, values)``: int64 ``(Q, k)`` and float32 ``(Q, k)``, each row sorted
        by descending value, equal values by ascending index.
    """
    n = sims.shape[1]
    kth = np.partition(sims, n - k, axis=1)[:, n - k : n - k + 1]  # (Q, 1) k-th largest
    above = sims > kth
    equal = sims == kth
    room = k - above.sum(axis=1)  # (Q,) places left for values equal to kth, >= 1
    n_equal = equal.sum(axis=1)
    selected = above
    crowded = np.flatnonzero(n_equal > room)  # rows with more ties than places: rare
    if crowded.size:
        ranks = np.cumsum(equal[crowded], axis=1, dtype=np.int32)
        equal[crowded] &= ranks <= room[crowded, None]
    selected |= equal
    _, cols = np.nonzero(selected)  # row-major, so each row's columns ascend
    cols = cols.reshape(-1, k)
    values = np.take_along_axis(sims, cols, axis=1)
    order = np.argsort(-values, axis=1, kind="stable")  # stable: ties keep index order
    return np.take_along_axis(cols, order, axis=1).astype(np.int64), np.take_along_axis(
        values, order, axis=1
    )


def nearest_neighbours(
    vectors: np.ndarray, k: int = 10, *, chunk: int = 2048
) -> tuple[np.ndarray, np.ndarray]:
    """Each item's ``k`` nearest other items by cosine similarity (never itself).

    Args:
        vectors: float ``(N, D)``; rows are L2-normalised here.
        k: neighbours per item; capped at ``N - 1``.
        chunk: queries per matrix product; memory is about ``chunk * N * 10`` bytes.

    Returns:
        ``(indices, sims)``: int64 ``(N, k')`` and float32 ``(N, k')`` with
        ``k' = min(k, N - 1)``, best first, equal cosines by lower index.

    Raises:
        ValueError: fewer than two items, ``k < 1`` or ``chunk < 1``.
    """
    x = unit_rows(vectors)
    n = x.shape[0]
    if n < 2:
        raise ValueError(f"need at least two items, got {n}")
    if k < 1 or chunk < 1:
        raise ValueError(f"k and chunk must be >= 1, got k={k}, chunk={chunk}")
    k = min(k, n - 1)
    indices = np.empty((n, k), dtype=np.int64)
    sims = np.empty((n, k), dtype=np.float32)
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        block = x[start:stop] @ x.T  # (Q, N)
        block[np.arange(stop - start), np.arange(start, stop)] = -np.inf  # not itself
        indices[start:stop], sims[start:stop] = _top_k(block, k)
    return indices, sims


def _label_codes(labels: Sequence[Hashable] | np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels as int64 codes ``(N,)`` and a bool mask ``(N,)`` of the labelled ones.

    ``None`` and float NaN count as unlabelled.
    """
    values = list(labels.tolist() if isinstance(labels, np.ndarray) else labels)
    if len(values) != n:
        raise ValueError(f"{len(values)} labels for {n} vectors")
    codes = np.full(n, -1, dtype=np.int64)
    seen: dict[Hashable, int] = {}
    for i, label in enumerate(values):
        if label is None or (isinstance(label, float) and math.isnan(label)):
            continue
        codes[i] = seen.setdefault(label, len(seen))
    return codes, codes >= 0


def precision_at_k(
    vectors: np.ndarray,
    labels: Sequence[Hashable] | np.ndarray,
    k: int = 10,
    *,
    chunk: int = 2048,
) -> float:
    """Mean fraction of each item's ``k`` nearest other items that share its label.

    Items without a label (``None`` or NaN) are left out entirely: they are neither
    queries nor neighbours, so they can neither help nor hurt. An item is never its own
    neighbour, but an exact duplicate of it is (a duplicate photo is a legitimate hit).
    An item alone in its label still counts, with precision 0.

    Args:
        vectors: float ``(N, D)`` embeddings; rows are L2-normalised here.
        labels: ``N`` hashable labels, e.g. category ids; ``None`` means unknown.
        k: neighbours per item; capped at (number of labelled items - 1).
        chunk: queries per matrix product (memory about ``chunk * N * 10`` bytes);
            the result does not depend on it.

    Returns:
        Precision@k in ``[0, 1]``.

    Raises:
        ValueError: lengths differ, fewer than two labelled items, ``k < 1``.
    """
    x = np.asarray(vectors)
    codes, labelled = _label_codes(labels, len(x))
    if not labelled.all():
        x, codes = x[labelled], codes[labelled]
    if len(x) < 2:
        raise ValueError(f"need at least two labelled items, got {len(x)}")
    neighbours, _ = nearest_neighbours(x, k, chunk=chunk)
    hits = codes[neighbours] == codes[:, None]  # (N', k')
    return float(hits.mean(axis=1).mean())


def neighbour_table(
    vectors: np.ndarray,
    labels: Sequence[Hashable] | np.ndarray | None = None,
    *,
    ids: Sequence[Any] | None = None,
    queries: Sequence[int] | None = None,
    k: int = 5,
    chunk: int = 2048,
) -> list[dict[str, Any]]:
    """Rows describing a few items' nearest neighbours, for eyeballing or a report.

    Args:
        vectors: float ``(N, D)`` embeddings.
        labels: optional ``N`` labels, shown and used to count hits.
        ids: optional ``N`` identifiers to show instead of row indices.
        queries: row indices of the items to describe; all items if ``None``.
        k: neighbours per item (capped at ``N - 1``).
        chunk: queries per matrix product.

    Returns:
        One dict per query with ``id``, ``label``, ``neighbours`` (list of ids, best
        first), ``sims`` (list of floats), and ``hits`` (neighbours sharing a non-None
        label; ``None`` when labels are not given).
    """
    x = unit_rows(vectors)
    n = len(x)
    if n < 2:
        raise ValueError(f"need at least two items, got {n}")
    rows = np.arange(n) if queries is None else np.asarray(queries, dtype=np.int64)
    if ids is not None and len(ids) != n:
        raise ValueError(f"{len(ids)} ids for {n} vectors")
    if labels is not None and len(labels) != n:
        raise ValueError(f"{len(labels)} labels for {n} vectors")
    name = (lambda i: ids[i]) if ids is not None else (lambda i: int(i))
    k = min(k, n - 1)
    table: list[dict[str, Any]] = []
    for start in range(0, len(rows), chunk):
        batch = rows[start : start + chunk]
        block = x[batch] @ x.T
        block[np.arange(len(batch)), batch] = -np.inf
        indices, sims = _top_k(block, k)
        for q, neighbours, scores in zip(batch, indices, sims):
            label = labels[q] if labels is not None else None
            hits = None
            if labels is not None:
                hits = sum(label is not None and labels[j] == label for j in neighbours)
            table.append(
                {
                    "id": name(q),
                    "label": label,
                    "neighbours": [name(j) for j in neighbours],
                    "sims": [round(float(s), 4) for s in scores],
                    "hits": hits,
                }
            )
    return table


# --------------------------------------------------------------------------- baseline


def colour_histogram_features(images: Iterable[Image.Image], bins: int = DEFAULT_BINS) -> np.ndarray:
    """The colour baseline: :func:`visrec.colour.image_descriptors` of each product's photo.

    A joint RGB histogram of the product's pixels (background ignored), Hellinger-normalised.

    Returns:
        float32 ``(N, bins**3)``, unit rows; ``(0, bins**3)`` for no images.
    """
    return image_descriptors(images, bins)


# --------------------------------------------------------------------------- maps


def project_2d(vectors: np.ndarray, *, seed: int = 0) -> tuple[np.ndarray, str]:
    """A 2-D map of the embeddings, for plotting.

    UMAP (cosine) when the ``umap`` package is installed; otherwise t-SNE (cosine,
    PCA initialisation, perplexity ``min(30, (N - 1) / 3)``) up to 5,000 items, and PCA
    beyond that or for tiny inputs. Rows are L2-normalised first.

    Args:
        vectors: float ``(N, D)``.
        seed: random state, so the same input gives the same map.

    Returns:
        ``(coords, method)``: float32 ``(N, 2)`` and ``"umap"``, ``"tsne"`` or ``"pca"``.
    """
    x = unit_rows(vectors)
    n = len(x)
    if n < 5:  # too few for a neighbourhood method; PCA handles any shape below
        return pca_2d(x), "pca"
    try:
        import umap  # type: ignore[import-not-found]
    except ImportError:
        umap = None
    if umap is not None:
        reducer = umap.UMAP(
            n_components=2, n_neighbors=min(15, n - 1), metric="cosine", random_state=seed
        )
        return np.asarray(reducer.fit_transform(x), dtype=np.float32), "umap"
    if n <= TSNE_MAX_ITEMS:
        from sklearn.manifold import TSNE

        tsne = TSNE(
            n_components=2,
            init="pca",
            perplexity=min(30.0, (n - 1) / 3),
            metric="cosine",
            random_state=seed,
        )
        return np.asarray(tsne.fit_transform(x), dtype=np.float32), "tsne"
    return pca_2d(x), "pca"


def pca_2d(x: np.ndarray) -> np.ndarray:
    """First two principal components of float32 ``(N, D)``, zero-padded: float32 ``(N, 2)``."""
    centred = x - x.mean(axis=0, keepdims=True)
    coords = np.zeros((len(x), 2), dtype=np.float32)
    if len(x) < 2 or not centred.any():
        return coords
    from sklearn.decomposition import PCA

    n_components = min(2, len(x), x.shape[1])
    coords[:, :n_components] = PCA(n_components=n_components, random_state=0).fit_transform(x)
    return coords


def _spread_sample(coords: np.ndarray, m: int) -> np.ndarray:
    """``m`` row indices spread over the map (greedy farthest-point), deterministic.

    Starts from the point nearest the centroid, then repeatedly adds the point farthest
    from all chosen ones (lowest index on ties). ``O(N * m)``.
    """
    n = len(coords)
    if m >= n:
        return np.arange(n)
    if m <= 0:
        return np.zeros(0, dtype=np.int64)
    points = coords.astype(np.float64)
    chosen = [int(np.argmin(((points - points.mean(axis=0)) ** 2).sum(axis=1)))]
    distance = ((points - points[chosen[0]]) ** 2).sum(axis=1)
    for _ in range(m - 1):
        nxt = int(np.argmax(distance))
        chosen.append(nxt)
        np.minimum(distance, ((points - points[nxt]) ** 2).sum(axis=1), out=distance)
    return np.asarray(chosen, dtype=np.int64)


def plot_map(
    coords: np.ndarray,
    thumbnails: Sequence[Image.Image] | None,
    labels: Sequence[str],
    path: str | Path,
    *,
    title: str,
    max_thumbnails: int = 400,
    thumb_px: int = 28,
    max_legend: int = 20,
) -> Path:
    """Draws the 2-D map as a PNG: points coloured by label, thumbnails on a spread subset.

    Uses matplotlib's object API on an Agg canvas (no pyplot, no global backend
    switch), so it is safe in workers and threads without a display. The ``max_legend``
    most frequent labels get their own colour and legend entry; the rest are grey.
    Only the thumbnails drawn are read from ``thumbnails``, so a lazy sequence that
    opens images on ``__getitem__`` works.

    Args:
        coords: float ``(N, 2)``, e.g. from :func:`project_2d`.
        thumbnails: ``N`` PIL images, or ``None`` for points only.
        labels: ``N`` labels (``None`` shown as "unlabelled").
        path: where to write the PNG (parent folders are created).
        title: the figure title.
        max_thumbnails: at most this many thumbnails are drawn.
        thumb_px: thumbnail size in pixels (longest side).
        max_legend: labels with their own colour.

    Returns:
        The PNG's path, about 1600 x 1200 pixels.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.offsetbox import AnnotationBbox, OffsetImage

    xy = np.asarray(coords, dtype=np.float64)
    n = len(xy)
    if xy.ndim != 2 or xy.shape[1] != 2:
        raise ValueError(f"coords must be (N, 2), got {xy.shape}")
    if len(labels) != n:
        raise ValueError(f"{len(labels)} labels for {n} points")
    if thumbnails is not None and len(thumbnails) != n:
        raise ValueError(f"{len(thumbnails)} thumbnails for {n} points")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    names = ["unlabelled" if label is None else str(label) for label in labels]
    ranked = [name for name, _ in sorted(Counter(names).items(), key=lambda kv: (-kv[1], kv[0]))]
    shown = ranked[:max_legend]
    figure = Figure(figsize=(16, 12), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    palette = _palette(len(shown))
    names_array = np.asarray(names, dtype=object)
    others = ~np.isin(names_array, shown)
    if others.any():
        axes.scatter(xy[others, 0], xy[others, 1], s=8, c="#bbbbbb", alpha=0.6,
                     label=f"other ({len(ranked) - len(shown)} labels)", linewidths=0)
    for colour, name in zip(palette, shown):
        mask = names_array == name
        axes.scatter(xy[mask, 0], xy[mask, 1], s=12, color=colour, alpha=0.8,
                     label=f"{name} ({int(mask.sum())})", linewidths=0)

    if thumbnails is not None and n:
        colour_of = dict(zip(shown, palette))
        for i in _spread_sample(xy, max_thumbnails):
            thumb = thumbnails[int(i)].copy()
            thumb = thumb.convert("RGBA") if "A" in thumb.getbands() else thumb.convert("RGB")
            thumb.thumbnail((thumb_px, thumb_px))
            box = AnnotationBbox(
                OffsetImage(np.asarray(thumb), zoom=1.0, dpi_cor=False),
                tuple(xy[i]),
                frameon=True,
                pad=0.1,
                bboxprops={"edgecolor": colour_of.get(names[i], "#bbbbbb"), "linewidth": 1.0},
            )
            axes.add_artist(box)

    axes.set_title(title)
    axes.set_xticks([])
    axes.set_yticks([])
    if n:
        axes.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, markerscale=2,
                    frameon=False)
    figure.subplots_adjust(left=0.02, right=0.8, top=0.95, bottom=0.02)
    figure.savefig(path, format="png", dpi=100)
    return path


def _palette(n: int) -> list[tuple[float, float, float, float]]:
    """``n`` distinct RGBA colours: tab10/tab20 when they suffice, else a hue wheel."""
    from matplotlib import colormaps

    if n <= 10:
        return [colormaps["tab10"](i) for i in range(n)]
    if n <= 20:
        return [colormaps["tab20"](i) for i in range(n)]
    return [colormaps["hsv"](i / n) for i in range(n)]


# --------------------------------------------------------------------------- tables


def _cell(value: Any) -> str:
    """A value as table text: floats to 3 decimals, ``None`` empty."""
    if value is None:
        return ""
    if isinstance(value, (float, np.floating)):
        return "nan" if math.isnan(value) else f"{value:.3f}"
    return str(value)


def _is_numeric(rows: list[dict], column: str) -> bool:
    """Whether every non-empty value of the column is a number (then it is right-aligned)."""
    values = [row.get(column) for row in rows if row.get(column) is not None]
    return bool(values) and all(
        isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)
        for v in values
    )


def results_table(rows: list[dict], columns: list[str]) -> str:
    """A plain-text table with aligned columns, for a terminal or a log.

    Numbers are right-aligned (floats with 3 decimals), text left-aligned; a key a row
    lacks shows as empty.

    Args:
        rows: one dict per row.
        columns: keys to show, in order; also the header.

    Returns:
        The table, lines joined by ``"\\n"``, no trailing newline.
    """
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    numeric = [_is_numeric(rows, c) for c in columns]

    def line(values: list[str]) -> str:
        return "  ".join(
            v.rjust(w) if right else v.ljust(w) for v, w, right in zip(values, widths, numeric)
        ).rstrip()

    header = line(list(columns))
    rule = "  ".join("-" * w for w in widths)
    return "\n".join([header, rule] + [line(r) for r in cells])


def markdown_table(rows: list[dict], columns: list[str]) -> str:
    """A GitHub-flavoured Markdown table; numeric columns right-aligned.

    Args:
        rows: one dict per row.
        columns: keys to show, in order; also the header.

    Returns:
        The table, lines joined by ``"\\n"``, no trailing newline.
    """

    def escape(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    header = "| " + " | ".join(escape(c) for c in columns) + " |"
    rule = "|" + "|".join("---:" if _is_numeric(rows, c) else "---" for c in columns) + "|"
    body = [
        "| " + " | ".join(escape(_cell(row.get(c))) for c in columns) + " |" for row in rows
    ]
    return "\n".join([header, rule] + body)
