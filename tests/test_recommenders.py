"""Tests for visrec.recommenders: one shared contract every model runs, planted preferences.

The synthetic shop: 20 item kinds (5 categories x 4 colours), 20 items per kind, the last
2 of every kind cold (nobody touched them). An item's features are its category and colour
one-hots plus noise, L2-normalised, like CNN vectors of similar-looking photos. Every user
has a favourite kind and mostly views, carts and buys items of it; user 0 only ever looked
at 8 items of kind 0 (the "red mugs") and bought 4 of them.
"""
from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest

from visrec.recommenders import (
    MODELS,
    BPRRecommender,
    Interactions,
    ItemKNNRecommender,
    PopularityRecommender,
    Recommender,
    VBPRRecommender,
    load_model,
    top_n,
)
from visrec.recommenders.bpr import AdamTable, BPRParameters
from visrec.recommenders.vbpr import VBPRParameters, principal_basis

N_CATEGORIES, N_COLOURS = 5, 4
N_KINDS = N_CATEGORIES * N_COLOURS
PER_KIND = 20
COLD_PER_KIND = 2
N_ITEMS = N_KINDS * PER_KIND
N_USERS = 200
N_FEATURES = 32
DAY = 86_400.0
EVENT_WEIGHTS = np.array([1.0, 4.0, 8.0], dtype=np.float32)  # view, cart, purchase


def kind_of(items: np.ndarray) -> np.ndarray:
    """Kind of each item index: items ``k*PER_KIND .. (k+1)*PER_KIND-1`` are of kind k."""
    return np.asarray(items) // PER_KIND


def items_of_kind(kind: int, *, warm: bool | None = None) -> np.ndarray:
    """Item indices of one kind; ``warm=True``/``False`` for the touched/cold ones only."""
    items = np.arange(kind * PER_KIND, (kind + 1) * PER_KIND)
    if warm is None:
        return items
    return items[: PER_KIND - COLD_PER_KIND] if warm else items[PER_KIND - COLD_PER_KIND:]


def favourite_kind(users: np.ndarray) -> np.ndarray:
    return np.asarray(users) % N_KINDS


def make_features(seed: int = 0) -> np.ndarray:
    """float32 (N_ITEMS, N_FEATURES): category one-hot + colour one-hot + noise, unit rows."""
    rng = np.random.default_rng(seed)
    kinds = kind_of(np.arange(N_ITEMS))
    features = rng.normal(scale=0.15, size=(N_ITEMS, N_FEATURES))
    features[np.arange(N_ITEMS), kinds // N_COLOURS] += 1.0
    features[np.arange(N_ITEMS), N_CATEGORIES + kinds % N_COLOURS] += 1.0
    return (features / np.linalg.norm(features, axis=1, keepdims=True)).astype(np.float32)


def make_interactions(seed: int = 0) -> Interactions:
    """~30 events per user, 85% on the favourite kind; within a kind, lower items are more popular."""
    rng = np.random.default_rng(seed)
    warm_rank = np.arange(PER_KIND - COLD_PER_KIND)
    within_kind = 1.0 / (1.0 + warm_rank) ** 0.3
    within_kind /= within_kind.sum()
    all_warm = np.concatenate([items_of_kind(k, warm=True) for k in range(N_KINDS)])
    users, items, types = [], [], []
    for user in range(1, N_USERS):
        n_events = int(rng.integers(20, 40))
        on_favourite = rng.random(n_events) < 0.85
        favourite = items_of_kind(int(favourite_kind(user)), warm=True)
        picked = np.where(on_favourite, rng.choice(favourite, size=n_events, p=within_kind),
                          rng.choice(all_warm, size=n_events))
        users.append(np.full(n_events, user))
        items.append(picked)
        types.append(rng.choice(3, size=n_events, p=[0.7, 0.2, 0.1]))
    # User 0 only ever looked at "red mugs" (kind 0): viewed 8, carted 4 of them, bought 4.
    red_mugs = items_of_kind(0, warm=True)[[0, 2, 4, 6, 8, 10, 12, 14]]
    users.append(np.zeros(16, dtype=np.int64))
    items.append(np.concatenate([red_mugs, red_mugs[1::2], red_mugs[::2]]))
    types.append(np.repeat([0, 1, 2], [8, 4, 4]))
    users, items, types = (np.concatenate(a) for a in (users, items, types))
    times = 1.7e9 + rng.uniform(0, 60 * DAY, size=len(users))
    return Interactions(users=users, items=items, weights=EVENT_WEIGHTS[types], times=times,
                        n_users=N_USERS, n_items=N_ITEMS)


@pytest.fixture(scope="module")
def interactions() -> Interactions:
    return make_interactions()


@pytest.fixture(scope="module")
def features() -> np.ndarray:
    return make_features()


def fraction_of_kind(ids: np.ndarray, kind: int) -> float:
    return float(np.mean(kind_of(ids) == kind))


def seen_items(interactions: Interactions, user: int) -> np.ndarray:
    return np.unique(interactions.items[interactions.users == user])


# --------------------------------------------------------------------------- base helpers


def test_interactions_matrix_sums_repeated_events():
    data = Interactions(users=[0, 0, 1], items=[2, 2, 0], weights=[1, 8, 4], times=[0, 1, 2], n_users=3, n_items=4)
    matrix = data.matrix()
    assert matrix.shape == (3, 4)
    assert matrix.dtype == np.float32
    assert matrix[0, 2] == 9.0 and matrix[1, 0] == 4.0 and matrix.nnz == 2


def test_interactions_reject_out_of_range_indices():
    with pytest.raises(ValueError):
        Interactions(users=[0, 3], items=[0, 0], weights=[1, 1], times=[0, 0], n_users=3, n_items=1)
    with pytest.raises(ValueError):
        Interactions(users=[0], items=[0], weights=[-1], times=[0], n_users=1, n_items=1)


def test_top_n_breaks_ties_by_lower_index_and_pads_excluded():
    scores = np.array([[1.0, 3.0, 3.0, 0.0, 3.0], [2.0, 2.0, 2.0, 2.0, 2.0],
                       [5.0, -np.inf, -np.inf, -np.inf, -np.inf]], dtype=np.float32)
    ids, values = top_n(scores, 3)
    assert ids.tolist() == [[1, 2, 4], [0, 1, 2], [0, -1, -1]]
    assert values.dtype == np.float32 and ids.dtype == np.int64
    assert values[2, 0] == 5.0 and np.isneginf(values[2, 1:]).all()


def test_top_n_matches_a_full_stable_sort():
    rng = np.random.default_rng(3)
    scores = rng.integers(0, 5, size=(30, 200)).astype(np.float32)  # many ties
    ids, values = top_n(scores, 17)
    expected = np.argsort(-scores, axis=1, kind="stable")[:, :17]
    np.testing.assert_array_equal(ids, expected)
    np.testing.assert_array_equal(values, np.take_along_axis(scores, expected, 1))


def test_registry_names_match_classes():
    assert set(MODELS) == {"popularity", "itemknn", "bpr", "vbpr", "dp_itembpr"}
    for name, cls in MODELS.items():
        assert cls.name == name and issubclass(cls, Recommender)


def test_load_of_the_wrong_class_is_refused(interactions):
    buffer = io.BytesIO()
    PopularityRecommender().fit(interactions).save(buffer)
    buffer.seek(0)
    with pytest.raises(ValueError, match="popularity"):
        BPRRecommender.load(buffer)


def test_load_of_a_foreign_npz_is_refused():
    buffer = io.BytesIO()
    np.savez(buffer, x=np.zeros(3))
    buffer.seek(0)
    with pytest.raises(ValueError):
        load_model(buffer)


@pytest.mark.parametrize("visual", [False, True], ids=["bpr", "vbpr"])
def test_written_out_gradients_match_finite_differences(visual):
    """The hand-written BPR/VBPR gradients (summed over repeated rows) equal the loss's slope."""
    rng = np.random.default_rng(0)
    features = make_features()[:30]
    if visual:
        params = VBPRParameters(10, 30, features, factors=4, visual_factors=3, reg=0.05, reg_bias=0.1,
                                reg_visual=0.01, rng=rng, init_std=0.5)
        params.visual[:] = rng.normal(scale=0.5, size=params.visual.shape)
    else:
        params = BPRParameters(10, 30, factors=4, reg=0.05, reg_bias=0.1, rng=rng, init_std=0.5)
    params.items[:, -1] = rng.normal(size=30)  # non-zero item biases
    users, positives, negatives = np.array([0, 1, 1, 3, 9]), np.array([2, 5, 5, 7, 29]), np.array([4, 2, 8, 11, 3])
    _, grads = params.gradients(users, positives, negatives)
    arrays = {"users": params.users, "items": params.items, "visual": getattr(params, "visual", None)}
    eps = 1e-2
    for name, (rows, grad) in grads.items():
        array = arrays[name]
        checked_rows = np.unique(rows)[:4] if rows is not None else range(3)
        for row, col in [(r, c) for r in checked_rows for c in range(array.shape[1])]:
            analytic = grad[rows == row, col].sum() if rows is not None else grad[row, col]
            saved = array[row, col]
            array[row, col] = saved + eps
            up, _ = params.gradients(users, positives, negatives)
            array[row, col] = saved - eps
            down, _ = params.gradients(users, positives, negatives)
            array[row, col] = saved
            assert analytic == pytest.approx((up - down) / (2 * eps), rel=2e-2, abs=2e-4), (name, row, col)


def test_adam_table_sums_repeated_rows_and_leaves_others_alone():
    table = AdamTable(np.zeros((5, 2), np.float32))
    table.step(np.array([1, 1, 3]), np.array([[1.0, -1.0], [1.0, -1.0], [-2.0, 0.0]], np.float32), lr=0.1)
    # Adam's first step moves every touched coordinate by lr * sign(gradient).
    np.testing.assert_allclose(table.value, [[0, 0], [-0.1, 0.1], [0, 0], [0.1, 0], [0, 0]], atol=1e-6)
    table.step(None, np.ones((5, 2), np.float32), lr=0.1)  # rows=None: the whole array steps
    assert np.all(table.value[[0, 2, 4]] < 0)


# --------------------------------------------------------------------------- the contract


class RecommenderContract:
    """What every recommender must do; each model's test class subclasses this.

    Subclasses set :meth:`model_factory` (a fresh, unfitted model with small, fast settings).
    """

    #: Whether the model scores a new user from ``history_items``.
    uses_history = True

    @staticmethod
    def model_factory() -> Recommender:
        raise NotImplementedError

    @pytest.fixture(scope="class")
    @classmethod
    def model(cls, interactions, features) -> Recommender:
        return cls.model_factory().fit(interactions, item_features=features)

    # -- shapes and basics

    def test_fit_returns_self(self, model):
        assert isinstance(model, Recommender) and model.is_fitted
        assert model.n_users == N_USERS and model.n_items == N_ITEMS

    def test_unfitted_model_refuses_to_recommend(self):
        with pytest.raises(RuntimeError):
            self.model_factory().recommend(0)

    def test_score_shape_and_dtype(self, model):
        scores = model.score(3)
        assert scores.shape == (N_ITEMS,) and scores.dtype == np.float32
        assert np.all(np.isfinite(scores))

    def test_recommend_shapes_dtypes_and_order(self, model):
        ids, scores = model.recommend(3, n=10)
        assert ids.shape == (10,) and scores.shape == (10,)
        assert ids.dtype == np.int64 and scores.dtype == np.float32
        assert len(set(ids.tolist())) == 10 and ids.min() >= 0 and ids.max() < N_ITEMS
        assert np.all(np.diff(scores) <= 0)
        full = model.score(3)
        np.testing.assert_array_equal(scores, full[ids])
        assert scores[-1] >= np.sort(np.delete(full, ids))[-1]

    def test_recommend_clips_n_to_the_catalogue(self, model):
        ids, scores = model.recommend(3, n=N_ITEMS + 50)
        assert len(ids) == N_ITEMS and sorted(ids.tolist()) == list(range(N_ITEMS))

    def test_recommend_never_returns_excluded_items(self, model):
        best, _ = model.recommend(3, n=15)
        exclude = best[::2]
        ids, _ = model.recommend(3, n=15, exclude=exclude)
        assert len(ids) == 15 and not set(ids.tolist()) & set(exclude.tolist())
        ids, _ = model.recommend(3, n=N_ITEMS, exclude=np.arange(N_ITEMS - 4))
        assert sorted(ids.tolist()) == list(range(N_ITEMS - 4, N_ITEMS))

    def test_recommend_batch_matches_recommend(self, model, interactions):
        users = np.array([0, 5, 17, 3, 199])
        exclude = [seen_items(interactions, int(u)) for u in users]
        ids, scores = model.recommend_batch(users, n=12, exclude=exclude)
        assert ids.shape == (5, 12) and scores.shape == (5, 12)
        assert ids.dtype == np.int64 and scores.dtype == np.float32
        for row, user in enumerate(users):
            one_ids, one_scores = model.recommend(int(user), n=12, exclude=exclude[row])
            np.testing.assert_array_equal(ids[row], one_ids)
            np.testing.assert_allclose(scores[row], one_scores, rtol=1e-5, atol=1e-6)
            assert not set(ids[row].tolist()) & set(exclude[row].tolist())

    def test_new_user_with_history_gets_scores(self, model):
        scores = model.score(-1, history_items=items_of_kind(4, warm=True)[:3], history_weights=[1.0, 4.0, 8.0])
        assert scores.shape == (N_ITEMS,) and scores.dtype == np.float32 and np.all(np.isfinite(scores))
        ids, _ = model.recommend(-1, n=5)  # nothing known at all: still a valid list
        assert len(ids) == 5

    def test_fit_is_deterministic_and_reports_progress(self, model, interactions, features):
        calls = []
        again = self.model_factory()
        assert again.fit(interactions, item_features=features, progress=lambda *a: calls.append(a)) is again
        assert calls and all(isinstance(epoch, int) for epoch, _ in calls)
        for user in (0, 7):
            np.testing.assert_array_equal(model.score(user), again.score(user))
        np.testing.assert_array_equal(model.recommend(7, n=20)[0], again.recommend(7, n=20)[0])

    # -- persistence

    def assert_same_model(self, model, loaded):
        assert type(loaded) is type(model)
        assert loaded.get_params() == model.get_params()
        assert (loaded.n_users, loaded.n_items) == (model.n_users, model.n_items)
        for user in (0, 7, -1):
            np.testing.assert_array_equal(loaded.score(user), model.score(user))
        history = items_of_kind(9, warm=True)[:3]
        np.testing.assert_array_equal(loaded.score(-1, history_items=history), model.score(-1, history_items=history))
        ids, scores = model.recommend_batch(np.arange(10), n=7)
        loaded_ids, loaded_scores = loaded.recommend_batch(np.arange(10), n=7)
        np.testing.assert_array_equal(ids, loaded_ids)
        np.testing.assert_array_equal(scores, loaded_scores)

    def test_save_load_round_trip_in_memory(self, model):
        buffer = io.BytesIO()
        model.save(buffer)
        buffer.seek(0)
        self.assert_same_model(model, type(model).load(buffer))
        buffer.seek(0)
        self.assert_same_model(model, load_model(buffer))

    def test_save_load_round_trip_on_disk(self, model, tmp_path):
        path = tmp_path / "model.bin"
        model.save(path)
        assert path.exists()  # written as given, no ".npz" appended
        self.assert_same_model(model, load_model(path))
        self.assert_same_model(model, Recommender.load(str(path)))

    def test_saved_file_holds_no_pickled_objects(self, model):
        data = model.to_bytes()
        with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
            for key in arrays.files:
                assert not arrays[key].dtype.hasobject, key
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            assert all(name.endswith(".npy") for name in archive.namelist())

    # -- serving as one inner product

    def test_vectors_reproduce_scores(self, model):
        users, items = model.user_vectors(), model.item_vectors()
        if users is None:
            assert items is None
            return
        assert users.dtype == np.float32 and items.dtype == np.float32
        assert users.shape[0] == N_USERS and items.shape[0] == N_ITEMS and users.shape[1] == items.shape[1]
        for user in (0, 1, 42, 199):
            np.testing.assert_allclose(users[user] @ items.T, model.score(user), rtol=1e-5, atol=1e-5)
        history = items_of_kind(2, warm=True)[:3]
        query = model.user_vector(-1, history_items=history)
        np.testing.assert_allclose(items @ query, model.score(-1, history_items=history), rtol=1e-5, atol=1e-5)

    # -- learning

    def test_learns_planted_preference(self, model, interactions):
        """User 0 only bought red mugs: red mugs fill the top 10 (beyond what they bought)."""
        ids, _ = model.recommend(0, n=10, exclude=seen_items(interactions, 0))
        assert fraction_of_kind(ids, 0) >= 0.8, kind_of(ids)

    def test_learns_every_users_favourite_kind(self, model, interactions):
        users = np.arange(1, N_USERS)
        ids, _ = model.recommend_batch(users, n=10)
        fractions = np.mean(kind_of(ids) == favourite_kind(users)[:, None], axis=1)
        assert np.median(fractions) >= 0.8 and np.mean(fractions) >= 0.7, np.mean(fractions)

    def test_new_user_history_of_one_kind_recommends_that_kind(self, model):
        if not self.uses_history:
            pytest.skip("model ignores histories")
        kind = 13
        history = items_of_kind(kind, warm=True)[[1, 4, 7]]
        ids, _ = model.recommend(-1, n=10, exclude=history, history_items=history,
                                 history_weights=[8.0, 4.0, 1.0])
        assert fraction_of_kind(ids, kind) >= 0.8, kind_of(ids)


class TestPopularity(RecommenderContract):
    uses_history = False

    @staticmethod
    def model_factory() -> Recommender:
        return PopularityRecommender(half_life_days=14)

    def test_learns_planted_preference(self, model, interactions):
        """Not personalised: the list is the decayed event-weight ranking, the same for all."""
        age_days = (interactions.times.max() - interactions.times) / DAY
        expected = np.bincount(interactions.items, weights=interactions.weights * 0.5 ** (age_days / 14),
                               minlength=N_ITEMS)
        ids, scores = model.recommend(0, n=10)
        np.testing.assert_array_equal(ids, np.argsort(-expected, kind="stable")[:10])
        np.testing.assert_allclose(scores, expected[ids], rtol=1e-5)
        np.testing.assert_array_equal(model.recommend(57, n=10)[0], ids)

    def test_learns_every_users_favourite_kind(self, model, interactions):
        pytest.skip("popularity is not personalised")

    def test_decay_favours_recent_events(self):
        data = Interactions(users=[0, 1, 1], items=[0, 1, 1], weights=[3, 1, 1], times=[0.0, 60 * DAY, 60 * DAY],
                            n_users=2, n_items=3)
        assert PopularityRecommender(half_life_days=7).fit(data).recommend(0, n=1)[0][0] == 1
        assert PopularityRecommender(half_life_days=None).fit(data).recommend(0, n=1)[0][0] == 0


class TestItemKNN(RecommenderContract):
    """Item-kNN with its default EASE weights."""

    @staticmethod
    def model_factory() -> Recommender:
        return ItemKNNRecommender(neighbours=50)

    def test_neighbours_are_pruned_and_exclude_self(self, model):
        ids, sims = model.similar_items(3)
        assert 0 < len(ids) <= 50 and 3 not in ids.tolist()
        assert np.all(np.diff(sims) <= 0) and sims.min() > 0
        assert fraction_of_kind(ids[:10], int(kind_of(3))) >= 0.8


class TestItemKNNCosine(RecommenderContract):
    @staticmethod
    def model_factory() -> Recommender:
        return ItemKNNRecommender(neighbours=50, similarity="cosine")

    def test_neighbours_are_pruned_and_exclude_self(self, model):
        ids, sims = model.similar_items(3)
        assert 0 < len(ids) <= 50 and 3 not in ids.tolist()
        assert np.all(np.diff(sims) <= 0) and sims.max() <= 1.0 + 1e-5
        assert fraction_of_kind(ids[:10], int(kind_of(3))) >= 0.8


def _ease_weights(x: np.ndarray, reg: float) -> np.ndarray:
    """EASE's B written out from the paper (Steck 2019, eq. 8), λ relative as ItemKNN takes it."""
    gram = x.T @ x
    diagonal = np.diag(gram)
    p = np.linalg.inv(gram + reg * diagonal[diagonal > 0].mean() * np.eye(len(gram)))
    b = np.eye(len(gram)) - p / np.diag(p)[None, :]
    np.fill_diagonal(b, 0.0)
    return b


def test_itemknn_ease_weights_are_the_closed_form_pruned_to_the_positive_ones():
    rng = np.random.default_rng(3)
    x = (rng.random((40, 9)) < 0.35).astype(np.float32)
    users, items = np.nonzero(x)
    data = Interactions(users=users, items=items, weights=np.ones(len(users), np.float32),
                        times=np.zeros(len(users)), n_users=40, n_items=9)
    expected = _ease_weights(x.astype(np.float64), reg=2.0)
    model = ItemKNNRecommender(neighbours=8, ease_reg=2.0).fit(data)
    for item in range(9):
        ids, weights = model.similar_items(item)
        want = np.flatnonzero(expected[item] > 0)
        assert set(ids.tolist()) == set(want.tolist())
        np.testing.assert_allclose(weights, expected[item, ids], rtol=1e-4)
    # a user's score is their history times the weights
    np.testing.assert_allclose(model.score(0), x[0] @ np.where(expected > 0, expected, 0.0), rtol=1e-4, atol=1e-6)
    assert len(ItemKNNRecommender(neighbours=2, ease_reg=2.0).fit(data).similar_items(0)[0]) <= 2


def test_itemknn_ease_inverts_only_the_most_interacted_items_when_capped():
    # item i is touched by i + 1 users: the cap of 3 keeps items 5, 6 and 7
    users = np.concatenate([np.arange(i + 1) for i in range(8)])
    items = np.concatenate([np.full(i + 1, i) for i in range(8)])
    data = Interactions(users=users, items=items, weights=np.ones(len(users), np.float32),
                        times=np.zeros(len(users)), n_users=8, n_items=8)
    model = ItemKNNRecommender(ease_max_items=3).fit(data)
    linked = {item for item in range(8) if len(model.similar_items(item)[0])}
    linked |= {int(j) for item in range(8) for j in model.similar_items(item)[0]}
    assert linked == {5, 6, 7}
    assert len(ItemKNNRecommender(ease_max_items=8).fit(data).similar_items(0)[0]) > 0


@pytest.mark.parametrize("kwargs", [{"similarity": "jaccard"}, {"ease_reg": 0}, {"ease_max_items": 0},
                                    {"neighbours": 0}])
def test_itemknn_rejects_bad_parameters(kwargs):
    with pytest.raises(ValueError):
        ItemKNNRecommender(**kwargs)


class TestBPR(RecommenderContract):
    @staticmethod
    def model_factory() -> Recommender:
        return BPRRecommender(factors=16, epochs=20, lr=0.02, batch_size=512, seed=1)


class TestVBPR(RecommenderContract):
    @staticmethod
    def model_factory() -> Recommender:
        return VBPRRecommender(factors=16, visual_factors=16, epochs=15, lr=0.03, batch_size=1024, seed=1)

    def test_needs_features(self, interactions):
        with pytest.raises(ValueError, match="item_features"):
            VBPRRecommender().fit(interactions)

    def test_cold_items_have_no_collaborative_part(self, model, interactions):
        cold = np.concatenate([items_of_kind(k, warm=False) for k in range(N_KINDS)])
        assert not model.warm_items[cold].any() and model.warm_items.sum() == N_ITEMS - len(cold)
        items = model.item_vectors()
        assert np.all(items[cold, :model.factors] == 0)
        # The last column of a cold item is the visual bias only (beta_i = 0).
        np.testing.assert_allclose(items[cold], model.item_vectors_for_features(make_features()[cold]), atol=1e-6)
        # Warm item biases are centred, so a cold item sits at the average warm bias.
        beta = items[:, -1] - make_features() @ model._visual_bias
        assert abs(float(beta[model.warm_items].mean())) < 1e-4

    def test_cold_item_of_the_favourite_kind_reaches_the_top_20(self, model, interactions):
        cold = items_of_kind(0, warm=False)
        ids, _ = model.recommend(0, n=20, exclude=seen_items(interactions, 0))
        assert set(cold.tolist()) & set(ids.tolist()), ids
        # And for ordinary users: their kind's cold items rank far above a random position.
        users = np.arange(1, N_USERS)
        scores = model._score_batch(users)
        ranks = (-scores).argsort(axis=1).argsort(axis=1)
        cold_of_favourite = np.stack([items_of_kind(int(k), warm=False) for k in favourite_kind(users)])
        median_rank = np.median(np.take_along_axis(ranks, cold_of_favourite, axis=1))
        assert median_rank < 40, median_rank  # random would be ~200 of 400

    def test_cold_items_outrank_warm_items_of_other_looks(self, model):
        # A product nobody touched, scored by its looks alone, must beat proven products that
        # do not look like the shopper's taste: cold items of each user's kind above (almost)
        # every item of the other kinds, for every user.
        users = np.arange(1, N_USERS)
        scores = model._score_batch(users)
        kinds = kind_of(np.arange(N_ITEMS))
        beaten = []
        for row, kind in enumerate(favourite_kind(users)):
            cold = items_of_kind(int(kind), warm=False)
            beaten.append(np.mean(scores[row, cold].min() > scores[row, kinds != kind]))
        assert np.mean(beaten) >= 0.95 and np.min(beaten) >= 0.85, (np.mean(beaten), np.min(beaten))

    def test_cold_items_are_not_all_ranked_last(self, model):
        cold = ~model.warm_items
        ranks = (-model.score(5)).argsort().argsort()
        assert ranks[cold].min() < N_ITEMS - cold.sum()

    def test_new_user_with_cold_only_history_is_scored_by_looks(self, model):
        kind = 6
        history = items_of_kind(kind, warm=False)
        ids, _ = model.recommend(-1, n=10, exclude=history, history_items=history)
        assert fraction_of_kind(ids, kind) >= 0.8, kind_of(ids)

    def test_vector_layout_is_gamma_theta_one(self, model):
        users = model.user_vectors()
        assert users.shape[1] == model.factors + model.visual_factors + 1
        np.testing.assert_array_equal(users[:, -1], 1.0)


class TestVBPRInPrincipalSubspace(TestVBPR):
    """The same VBPR contract with E trained on the features' top 12 of 32 directions."""

    @staticmethod
    def model_factory() -> Recommender:
        return VBPRRecommender(factors=16, visual_factors=16, feature_dims=12, epochs=15, lr=0.03, batch_size=1024,
                               seed=1)

    def test_projection_is_mapped_back_to_the_full_features(self, model):
        features = make_features()
        assert model._projection.shape == (N_FEATURES, model.visual_factors)
        basis = principal_basis(features, 12)
        # E lies in the principal subspace: projecting onto it first changes nothing.
        np.testing.assert_allclose(features @ basis @ basis.T @ model._projection, features @ model._projection,
                                   atol=1e-5)


def test_principal_basis_is_orthonormal_and_keeps_the_main_directions():
    features = make_features()
    basis = principal_basis(features, 9)
    assert basis.shape == (N_FEATURES, 9) and basis.dtype == np.float32
    np.testing.assert_allclose(basis.T @ basis, np.eye(9), atol=1e-5)
    kept = np.square(features @ basis).sum() / np.square(features).sum()
    assert kept > 0.8  # 5 category + 4 colour one-hots carry most of each row
    assert principal_basis(features, None) is None and principal_basis(features, N_FEATURES) is None


def test_vbpr_without_reduction_is_unchanged_by_feature_dims_at_or_above_the_width(interactions, features):
    full = VBPRRecommender(factors=8, visual_factors=8, epochs=3, feature_dims=None, seed=2).fit(interactions, features)
    wide = VBPRRecommender(factors=8, visual_factors=8, epochs=3, feature_dims=N_FEATURES, seed=2).fit(
        interactions, features)
    np.testing.assert_array_equal(full.item_vectors(), wide.item_vectors())
    np.testing.assert_array_equal(full.user_vectors(), wide.user_vectors())


def test_budget_epochs_bounds_a_fit_on_large_data():
    from visrec.recommenders.bpr import budget_epochs

    assert budget_epochs(40, 60_000, 6_000_000) == 40  # a small shop: every epoch
    assert budget_epochs(40, 1_000_000, 6_000_000) == 6  # a large one: fewer passes
    assert budget_epochs(40, 10_000_000, 6_000_000) == 1  # never none
    assert budget_epochs(40, 1_000_000, None) == 40


def test_iterate_average_is_the_running_mean_and_writes_it_back():
    from visrec.recommenders.bpr import IterateAverage

    table = AdamTable(np.zeros((3, 2), np.float32))
    average = IterateAverage({"t": table})
    for value in (1.0, 2.0, 6.0):
        table.value[:] = value
        average.add()
    assert table.value[0, 0] == 6.0  # nothing written before apply()
    average.apply()
    np.testing.assert_allclose(table.value, np.full((3, 2), 3.0))
    single = AdamTable(np.ones((1, 1), np.float32))
    once = IterateAverage({"t": single})
    once.add()
    single.value[:] = 5.0  # a step after the only iterate taken: apply() keeps the last values
    once.apply()
    assert single.value[0, 0] == 5.0


def test_first_averaged_epoch_is_the_second_half_and_never_past_the_last():
    from visrec.recommenders.bpr import first_averaged_epoch

    assert first_averaged_epoch(40, 0.5) == 20
    assert first_averaged_epoch(7, 0.5) == 3  # 7 epochs: the last 4
    assert first_averaged_epoch(1, 0.5) == 0  # one epoch: its own parameters
    assert first_averaged_epoch(40, None) == 40  # no averaging


@pytest.mark.parametrize("cls", [BPRRecommender, VBPRRecommender])
def test_fit_keeps_the_mean_of_the_second_half_of_its_epochs(cls, interactions, features, monkeypatch):
    """The served vectors are those of the parameters averaged over epochs 3..5 of 6 (not
    the last epoch's): each epoch's end is recorded from inside the training loop."""
    from visrec.recommenders import bpr

    snapshots: list[dict[str, np.ndarray]] = []
    real_gradients = bpr.BPRParameters.gradients

    def recording_progress(epoch, loss):
        snapshots.append({name: table.value.copy() for name, table in tables.items()})

    tables: dict = {}

    def gradients(self, *args):
        tables.update(self.tables())
        return real_gradients(self, *args)

    monkeypatch.setattr(bpr.BPRParameters, "gradients", gradients)
    averaged = cls(factors=8, epochs=6, seed=3, **({"visual_factors": 4} if cls is VBPRRecommender else {}))
    averaged.fit(interactions, features, progress=recording_progress)
    assert len(snapshots) == 6
    mean_items = np.mean([s["items"] for s in snapshots[3:]], axis=0)
    last = cls(factors=8, epochs=6, seed=3, average_from=None,
               **({"visual_factors": 4} if cls is VBPRRecommender else {})).fit(interactions, features)
    warm = np.bincount(interactions.items, minlength=N_ITEMS) > 0
    factors = averaged.item_vectors()[warm, :8]
    np.testing.assert_allclose(factors, mean_items[warm, :8], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(last.item_vectors()[warm, :8], snapshots[-1]["items"][warm, :8], rtol=1e-4, atol=1e-5)
    assert not np.allclose(factors, last.item_vectors()[warm, :8], atol=1e-3)
    assert averaged.get_params()["average_from"] == 0.5 and last.get_params()["average_from"] is None


@pytest.mark.parametrize("cls", [BPRRecommender, VBPRRecommender])
def test_a_fit_cut_short_by_max_samples_keeps_its_last_iterate(cls, interactions, features):
    pairs = interactions.matrix().nnz
    cut = cls(epochs=10, max_samples=4 * pairs, seed=1).fit(interactions, features)
    last = cls(epochs=10, max_samples=4 * pairs, seed=1, average_from=None).fit(interactions, features)
    full = cls(epochs=4, seed=1).fit(interactions, features)  # the same 4 epochs, all that was asked
    assert len(cut.loss_history) == 4
    np.testing.assert_array_equal(cut.item_vectors(), last.item_vectors())
    assert not np.allclose(full.item_vectors(), last.item_vectors(), atol=1e-4)  # averaged: epochs 2 and 3


@pytest.mark.parametrize("cls", [BPRRecommender, VBPRRecommender])
def test_max_samples_caps_the_epochs_a_fit_runs(cls):
    interactions, features = make_interactions(), make_features()
    pairs = interactions.matrix().nnz
    capped = cls(epochs=10, max_samples=3 * pairs).fit(interactions, features)
    assert len(capped.loss_history) == 3
    assert capped.get_params()["max_samples"] == 3 * pairs  # saved with the model


def test_fit_model_applies_the_settings_triple_budget(settings):
    from types import SimpleNamespace

    from visrec.services.foryou.evaluation import fit_model

    interactions, features = make_interactions(), make_features()
    dataset = SimpleNamespace(interactions=lambda mask=None: interactions, features=features)
    settings.VISREC = {**getattr(settings, "VISREC", {}), "RECOMMENDER_MAX_TRIPLES": 2 * interactions.matrix().nnz}
    assert len(fit_model("bpr", dataset).loss_history) == 2
    settings.VISREC = {**settings.VISREC, "RECOMMENDER_MAX_TRIPLES": 0}
    assert len(fit_model("bpr", dataset, params={"epochs": 5}).loss_history) == 5


def test_itemknn_positive_top_is_the_top_of_its_scores_without_scoring_every_item():
    model = ItemKNNRecommender(neighbours=10).fit(make_interactions(), make_features())
    for user, items, weights in [(3, None, None), (-1, np.array([0, 5, 41]), np.array([1.0, 4.0, 8.0], np.float32))]:
        scores = model.score(user, items, weights)
        scores[scores <= 0] = -np.inf
        expected_ids, expected_values = top_n(scores, 15)
        found = expected_ids[0] >= 0
        ids, values = model.positive_top(user, 15, items, weights)
        np.testing.assert_array_equal(ids, expected_ids[0][found])
        np.testing.assert_allclose(values, expected_values[0][found], rtol=1e-6)
    assert len(model.positive_top(-1, 15, np.zeros(0, np.int64), np.zeros(0, np.float32))[0]) == 0
