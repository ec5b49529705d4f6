"""The length-bounded top-n search gives exactly the brute-force lists, whatever the batch."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from recommender.models.exact_topk import ExactTopK


def _factors(rng: np.random.Generator, n: int, f: int = 16) -> np.ndarray:
    """Factors whose lengths spread over two orders of magnitude, as ALS item factors of a long-tailed shop."""
    directions = rng.normal(size=(n, f))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    return (directions * rng.lognormal(0.0, 1.0, size=(n, 1))).astype(np.float32)


def _brute_force(users, items, n, exclude, hidden):
    """Every pair scored in float64; best first, ties by item index."""
    scores = users.astype(np.float64) @ items.astype(np.float64).T
    out = []
    for r in range(len(users)):
        skip = set(hidden.tolist()) | set(exclude[r].indices.tolist())
        ranked = sorted((j for j in range(len(items)) if j not in skip), key=lambda j: (-scores[r, j], j))
        out.append(ranked[:n])
    return out


@pytest.fixture(scope="module")
def shop():
    rng = np.random.default_rng(3)
    items = _factors(rng, 5000)
    items[17] = 0.0  # an item never scored above zero
    users = _factors(rng, 300)
    users[5] = 0.0  # a customer without factors: every item ties at 0
    bought = sp.random(300, 5000, density=0.004, random_state=4, format="csr", dtype=np.float32)
    bought.data[:] = 1.0
    hidden = np.array([0, 1, 2, 999, 4000], dtype=np.int64)
    return users, items, bought, hidden


@pytest.mark.parametrize("n", [1, 10, 100])
def test_lists_equal_the_brute_force_ranking(shop, n):
    users, items, bought, hidden = shop
    ids, scores = ExactTopK(items, hidden).search(users, n, bought)
    expected = _brute_force(users, items, n, bought, hidden)
    assert [row.tolist() for row in ids] == expected
    exact = users.astype(np.float64) @ items.astype(np.float64).T
    np.testing.assert_allclose(scores, np.take_along_axis(exact, ids, axis=1), rtol=1e-6, atol=1e-6)


def test_a_customer_searched_alone_gets_the_list_of_the_batch(shop):
    users, items, bought, hidden = shop
    search = ExactTopK(items, hidden)
    together, together_scores = search.search(users, 50, bought)
    for r in (0, 5, 42, 299):
        alone, alone_scores = search.search(users[r], 50, bought[r])
        assert alone[0].tolist() == together[r].tolist()
        assert alone_scores[0].tolist() == together_scores[r].tolist()


def test_a_list_longer_than_what_is_left_is_padded():
    rng = np.random.default_rng(0)
    items, users = _factors(rng, 8), _factors(rng, 2)
    exclude = sp.csr_matrix(([1.0, 1.0, 1.0], ([0, 0, 1], [1, 2, 3])), shape=(2, 8))
    ids, scores = ExactTopK(items, np.array([7])).search(users, 10, exclude)
    assert set(ids[0][ids[0] >= 0].tolist()) == {0, 3, 4, 5, 6}
    assert set(ids[1][ids[1] >= 0].tolist()) == {0, 1, 2, 4, 5, 6}
    assert (ids[0][5:] == -1).all() and np.isneginf(scores[0][5:]).all()
