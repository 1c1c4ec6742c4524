"""The served vector's parts: fusion weights and the head's category affinity (pure numpy)."""
import numpy as np
import pytest

from visrec.embedder import fuse
from visrec.training.projection import category_affinity, category_prototypes


def unit(rows):
    rows = np.asarray(rows, dtype=np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_fused_cosine_is_the_weighted_sum_of_the_parts_cosines():
    rng = np.random.default_rng(0)
    a, b = unit(rng.normal(size=(2, 8))), unit(rng.normal(size=(2, 5)))
    fused = fuse([(a, 0.7), (b, 0.3)])
    assert fused.shape == (2, 13)
    assert np.allclose(np.linalg.norm(fused, axis=1), 1.0)
    assert fused[0] @ fused[1] == pytest.approx(0.7 * (a[0] @ a[1]) + 0.3 * (b[0] @ b[1]), abs=1e-6)


def test_parts_of_weight_zero_are_left_out():
    a = unit([[1, 2, 3]])
    np.testing.assert_array_equal(fuse([(a, 1.0), (unit([[1, 1]]), 0.0)]), a)


def test_prototypes_are_unit_category_means_and_need_two_categories():
    vectors = unit([[1, 0], [1, 0.2], [0, 1], [0.1, 1]])
    prototypes = category_prototypes(vectors, np.array([0, 0, 1, -1]))
    assert prototypes.shape == (2, 2)
    assert np.allclose(np.linalg.norm(prototypes, axis=1), 1.0)
    assert np.argmax(prototypes @ vectors[3]) == 1
    assert category_prototypes(vectors, np.array([0, 0, -1, -1])) is None


def test_affinity_is_near_one_within_a_category_and_near_zero_across():
    prototypes = unit([[1, 0, 0], [0, 1, 0], [0, 0, 1]])
    items = unit([[0.9, 0.1, 0.0], [0.8, 0.0, 0.2], [0.1, 0.9, 0.1]])
    affinity = category_affinity(items, prototypes)
    assert np.allclose(np.linalg.norm(affinity, axis=1), 1.0, atol=1e-6)
    assert affinity[0] @ affinity[1] > 0.99
    assert affinity[0] @ affinity[2] < 0.01
