"""The blend's co-purchase neighbours kept with its ranker: reused only with that ranker and an as-of no later than
tonight's, matched to tonight's items by id."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import scipy.sparse as sp

from recommender.models.blend_candidates import copurchase
from training.blend_neighbours import KeptNeighbours

NIGHT = datetime(2026, 6, 1)


def bought_matrix(n_users: int = 60, n_items: int = 25, seed: int = 3) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    return sp.csr_matrix((rng.random((n_users, n_items)) < 0.2).astype(np.float32))


def learnt(tmp_path, item_ids: np.ndarray, bought: sp.csr_matrix, ranker: str = "r1") -> sp.csr_matrix:
    """A learning night: computes the neighbours and keeps them."""
    night = KeptNeighbours(tmp_path, "p", {"ranker_sha256": ranker, "reused": False}, NIGHT)
    similar = night.neighbours(item_ids)(bought, 5)
    assert night.how == "computed tonight"
    night.keep()
    return similar


def reusing(tmp_path, ranker: str = "r1", as_of: datetime = NIGHT + timedelta(days=1)) -> KeptNeighbours:
    return KeptNeighbours(tmp_path, "p", {"ranker_sha256": ranker, "reused": True}, as_of)


def never(*_):
    raise AssertionError("the kept neighbours were at hand")


def test_a_night_reusing_the_ranker_reads_the_neighbours_back(tmp_path, monkeypatch):
    ids = np.array([f"i{k}" for k in range(25)], dtype=object)
    bought = bought_matrix()
    similar = learnt(tmp_path, ids, bought)
    monkeypatch.setattr("training.blend_neighbours.copurchase", never)
    night = reusing(tmp_path)
    back = night.neighbours(ids)(bought, 5)
    assert night.how == f"kept from the night of {NIGHT.isoformat()}"
    assert (back != similar).nnz == 0 and np.array_equal(back.indices, similar.indices)


def test_tonights_items_are_matched_by_id(tmp_path):
    """Items in another order, one gone and one new: every kept pair lands on the same two ids; the new item has
    no neighbours yet."""
    ids = np.array([f"i{k}" for k in range(25)], dtype=object)
    similar = learnt(tmp_path, ids, bought_matrix())
    tonight = np.array(["new", *reversed(ids[1:].tolist())], dtype=object)  # i0 gone, "new" added
    back = reusing(tmp_path).neighbours(tonight)(bought_matrix(n_items=25), 5).tocoo()
    got = {(tonight[r], tonight[c]): v for r, c, v in zip(back.row, back.col, back.data)}
    kept = similar.tocoo()
    want = {(ids[r], ids[c]): v for r, c, v in zip(kept.row, kept.col, kept.data) if "i0" not in (ids[r], ids[c])}
    assert got == want and all("new" not in pair for pair in got)


def test_another_ranker_a_later_night_or_a_damaged_file_computes_them(tmp_path):
    ids = np.array([f"i{k}" for k in range(25)], dtype=object)
    bought = bought_matrix()
    learnt(tmp_path, ids, bought)
    for night in (reusing(tmp_path, ranker="r2"), reusing(tmp_path, as_of=NIGHT - timedelta(days=1))):
        assert (night.neighbours(ids)(bought, 5) != copurchase(bought, 5)).nnz == 0
        assert night.how == "computed tonight"
    other_k = reusing(tmp_path)
    other_k.neighbours(ids)(bought, 7)
    assert other_k.how == "computed tonight"
    (tmp_path / "blend" / "p.npz").write_bytes(b"not a kept file")
    damaged = reusing(tmp_path)
    damaged.neighbours(ids)(bought, 5)
    assert damaged.how == "computed tonight"


def test_only_a_night_with_a_ranker_keeps_them(tmp_path):
    night = KeptNeighbours(tmp_path, "p", {"skipped": "off"}, NIGHT)
    night.neighbours(np.array(["a", "b"], dtype=object))(bought_matrix(n_items=2), 5)
    night.keep()
    assert not (tmp_path / "blend").exists()


def test_computing_them_leaves_the_bought_matrix_as_it_was():
    bought = bought_matrix().astype(np.float64)  # already the dtype the scaling works in: no conversion copy
    before = bought.copy()
    copurchase(bought, 5)
    assert (bought != before).nnz == 0 and np.array_equal(bought.data, before.data)
