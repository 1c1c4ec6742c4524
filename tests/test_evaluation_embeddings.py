"""Tests for visrec.evaluation.embeddings: metrics on planted data, the colour baseline, maps."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from visrec.evaluation.embeddings import (
    colour_histogram_features,
    markdown_table,
    nearest_neighbours,
    neighbour_table,
    plot_map,
    precision_at_k,
    project_2d,
    results_table,
)


def two_clusters(n_per: int = 50, dim: int = 16, seed: int = 0) -> tuple[np.ndarray, list[str]]:
    """Two tight Gaussian clusters far apart, labelled "a" and "b"."""
    rng = np.random.default_rng(seed)
    centre_a = np.zeros(dim)
    centre_a[0] = 10.0
    centre_b = np.zeros(dim)
    centre_b[1] = 10.0
    a = centre_a + rng.normal(scale=0.5, size=(n_per, dim))
    b = centre_b + rng.normal(scale=0.5, size=(n_per, dim))
    return np.vstack([a, b]).astype(np.float32), ["a"] * n_per + ["b"] * n_per


def product_photo(colour: tuple[int, int, int], size: int = 64, background: int = 255) -> Image.Image:
    """A square of ``colour`` in the middle of a white (or ``background``) photo."""
    image = Image.new("RGB", (size, size), (background,) * 3)
    image.paste(Image.new("RGB", (size // 2, size // 2), colour), (size // 4, size // 4))
    return image


# --------------------------------------------------------------------------- precision@k


def test_precision_is_one_for_well_separated_clusters():
    vectors, labels = two_clusters()
    assert precision_at_k(vectors, labels, k=10) == pytest.approx(1.0)


def test_precision_for_random_labels_is_about_one_over_the_number_of_labels():
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(2000, 32)).astype(np.float32)
    labels = rng.integers(0, 4, size=2000)
    assert precision_at_k(vectors, labels, k=10) == pytest.approx(0.25, abs=0.03)


def test_self_is_excluded_but_an_exact_duplicate_counts():
    # Four labels, each with two items that are exact duplicates, in directions far apart;
    # each item's nearest other item is its duplicate (a hit), the rest are misses.
    basis = np.eye(4, dtype=np.float32)
    vectors = np.repeat(basis, 2, axis=0)  # rows 0,1 label 0; rows 2,3 label 1; ...
    labels = np.repeat(np.arange(4), 2)
    assert precision_at_k(vectors, labels, k=1) == pytest.approx(1.0)
    assert precision_at_k(vectors, labels, k=3) == pytest.approx(1 / 3)
    # Were self counted, k=1 would still be 1.0 but k=3 would be 2/3.


def test_self_is_excluded_even_when_a_duplicate_ties_with_it():
    # Each item has an exact duplicate under the *other* label: its nearest other item is a
    # miss. Counting itself (similarity 1, tied with the duplicate) would make it a hit.
    basis = np.eye(4, dtype=np.float32)
    vectors = np.repeat(basis, 2, axis=0)
    labels = ["x", "y"] * 4
    assert precision_at_k(vectors, labels, k=1) == 0.0


def test_item_alone_in_its_label_scores_zero():
    vectors = np.array([[1, 0], [1, 0.01], [0, 1]], dtype=np.float32)
    labels = ["x", "x", "y"]
    assert precision_at_k(vectors, labels, k=1) == pytest.approx(2 / 3)


def test_unlabelled_items_are_neither_queries_nor_neighbours():
    vectors, labels = two_clusters(n_per=20)
    # Plant unlabelled items right on top of cluster "a": were they neighbours, they
    # would crowd out the hits of "a"'s items; were they queries, they would score 0.
    intruders = np.repeat(vectors[:1], 30, axis=0)
    all_vectors = np.vstack([vectors, intruders])
    all_labels = list(labels) + [None] * 30
    assert precision_at_k(all_vectors, all_labels, k=5) == pytest.approx(1.0)
    assert precision_at_k(all_vectors, np.array(all_labels, dtype=object), k=5) == pytest.approx(1.0)


def test_chunking_does_not_change_the_result():
    rng = np.random.default_rng(2)
    vectors = rng.normal(size=(500, 8)).astype(np.float32)
    labels = rng.integers(0, 5, size=500)
    whole = precision_at_k(vectors, labels, k=7, chunk=10_000)
    for chunk in (1, 37, 128):
        assert precision_at_k(vectors, labels, k=7, chunk=chunk) == pytest.approx(whole, abs=1e-9)


def test_ties_are_broken_by_lower_index_whatever_the_chunk():
    # Ten identical vectors: every neighbour ties; the lowest indices other than self win.
    vectors = np.ones((10, 3), dtype=np.float32)
    for chunk in (1, 3, 100):
        indices, sims = nearest_neighbours(vectors, k=3, chunk=chunk)
        assert indices[0].tolist() == [1, 2, 3]
        assert indices[5].tolist() == [0, 1, 2]
        assert np.allclose(sims, 1.0)


def test_nearest_neighbours_are_sorted_and_never_self():
    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(100, 5)).astype(np.float32)
    indices, sims = nearest_neighbours(vectors, k=8, chunk=16)
    assert indices.shape == sims.shape == (100, 8)
    assert not (indices == np.arange(100)[:, None]).any()
    assert (np.diff(sims, axis=1) <= 0).all()
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    full = unit @ unit.T
    np.fill_diagonal(full, -np.inf)
    expected = np.sort(full, axis=1)[:, ::-1][:, :8]
    assert np.allclose(sims, expected, atol=1e-5)


def test_k_is_capped_and_bad_input_raises():
    vectors = np.eye(3, dtype=np.float32)
    assert precision_at_k(vectors, ["a", "a", "b"], k=50) == pytest.approx((0.5 + 0.5 + 0) / 3)
    with pytest.raises(ValueError):
        precision_at_k(vectors, ["a", None, None])
    with pytest.raises(ValueError):
        precision_at_k(vectors, ["a", "b"])


def test_neighbour_table_rows():
    vectors, labels = two_clusters(n_per=10)
    ids = [f"p{i}" for i in range(20)]
    rows = neighbour_table(vectors, labels, ids=ids, queries=[0, 15], k=3)
    assert [row["id"] for row in rows] == ["p0", "p15"]
    assert all(row["hits"] == 3 and len(row["neighbours"]) == 3 for row in rows)
    assert "p0" not in rows[0]["neighbours"]


# --------------------------------------------------------------------------- colour baseline


def test_colour_histogram_shape_dtype_and_norm():
    features = colour_histogram_features([product_photo((200, 30, 30)), product_photo((20, 30, 200))], bins=6)
    assert features.shape == (2, 216)
    assert features.dtype == np.float32
    assert np.allclose(np.linalg.norm(features, axis=1), 1.0, atol=1e-5)
    assert colour_histogram_features([], bins=4).shape == (0, 64)


def test_red_is_closer_to_darker_red_than_to_blue():
    red, dark_red, blue = colour_histogram_features(
        [product_photo((200, 30, 30)), product_photo((165, 20, 20)), product_photo((30, 30, 200))]
    )
    assert red @ dark_red > red @ blue + 0.2


def test_white_background_is_ignored():
    small = product_photo((200, 30, 30), size=64)  # product fills a quarter
    full = Image.new("RGB", (64, 64), (200, 30, 30))  # product fills it all
    grey_background = product_photo((200, 30, 30), size=64, background=128)
    f_small, f_full, f_grey = colour_histogram_features([small, full, grey_background])
    assert f_small @ f_full == pytest.approx(1.0, abs=1e-5)
    assert f_grey @ f_full == pytest.approx(1.0, abs=1e-5)  # a uniform backdrop is not the product


def test_transparent_background_is_ignored_and_all_white_image_still_has_a_feature():
    rgba = Image.new("RGBA", (32, 32), (0, 0, 0, 0))
    rgba.paste(Image.new("RGBA", (16, 16), (200, 30, 30, 255)), (8, 8))
    white = Image.new("RGB", (32, 32), (255, 255, 255))
    f_rgba, f_red, f_white = colour_histogram_features([rgba, Image.new("RGB", (8, 8), (200, 30, 30)), white])
    assert f_rgba @ f_red == pytest.approx(1.0, abs=1e-5)
    assert np.isfinite(f_white).all() and np.linalg.norm(f_white) == pytest.approx(1.0, abs=1e-5)


# --------------------------------------------------------------------------- maps


def test_project_2d_returns_finite_coordinates():
    vectors, _ = two_clusters(n_per=30)
    coords, method = project_2d(vectors, seed=0)
    assert coords.shape == (60, 2)
    assert coords.dtype == np.float32
    assert np.isfinite(coords).all()
    assert method in {"umap", "tsne", "pca"}


@pytest.mark.parametrize("n", [1, 2, 4])
def test_project_2d_tiny_inputs(n):
    coords, method = project_2d(np.random.default_rng(0).normal(size=(n, 3)))
    assert coords.shape == (n, 2) and np.isfinite(coords).all() and method == "pca"


def test_plot_map_writes_a_png_with_thumbnails(tmp_path):
    vectors, labels = two_clusters(n_per=30)
    coords, method = project_2d(vectors)
    thumbnails = [product_photo((200, 30, 30) if label == "a" else (30, 30, 200), size=48) for label in labels]
    path = plot_map(coords, thumbnails, labels, tmp_path / "maps" / "map.png",
                    title=f"test ({method})", max_thumbnails=25)
    assert path.exists() and path.stat().st_size > 0
    with Image.open(path) as image:
        image.load()
        assert image.format == "PNG"
        assert image.size == (1600, 1200)


def test_plot_map_without_thumbnails_and_many_labels(tmp_path):
    rng = np.random.default_rng(0)
    coords = rng.normal(size=(60, 2))
    labels = [f"c{i % 30}" for i in range(60)]
    path = plot_map(coords, None, labels, tmp_path / "map.png", title="points", max_legend=5)
    with Image.open(path) as image:
        assert image.size == (1600, 1200)


# --------------------------------------------------------------------------- tables


def test_tables():
    rows = [
        {"model": "colour histogram", "p@10": 0.41234, "dim": 512},
        {"model": "efficientnet-lite0", "p@10": 0.8, "dim": 1280},
        {"model": "head | ft", "dim": 256},
    ]
    text = results_table(rows, ["model", "p@10", "dim"])
    lines = text.splitlines()
    assert lines[0].split() == ["model", "p@10", "dim"]
    assert "0.412" in lines[2] and "0.800" in lines[3]
    assert len({len(line) for line in lines[:4]}) == 1  # aligned
    md = markdown_table(rows, ["model", "p@10", "dim"]).splitlines()
    assert md[0] == "| model | p@10 | dim |"
    assert md[1] == "|---|---:|---:|"
    assert md[4] == "| head \\| ft |  | 256 |"
