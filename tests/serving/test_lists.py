"""The published lists on hand-made logs: bestsellers, new arrivals, personal picks, similar items."""

from datetime import timedelta

import numpy as np
from factories import NOW, WEIGHTS, catalogue, ev, events

from recommender.config import AlsParams
from recommender.models.als import fit_als
from recommender.models.weighting import build_interactions, purchase_matrix
from recommender.serving import lists


def test_bestsellers_count_distinct_recent_buyers_per_category_and_skip_unavailable():
    table = events(
        [ev("u1", "a", "purchase", d) for d in (1, 2, 3, 4, 5)]  # one buyer, five times: counts once
        + [ev(u, "b", "purchase", 2) for u in ("u1", "u2")]  # two buyers
        + [ev(u, "c", "purchase", 40) for u in ("u1", "u2", "u3")]  # outside the 30-day window
        + [ev(u, "d", "purchase", 1) for u in ("u1", "u2", "u3")]  # unavailable
        + [ev("u4", "e", "view", 1)]  # viewed only
    )
    items = catalogue(
        [
            {"item_id": "a", "category": "x"},
            {"item_id": "b", "category": "y"},
            {"item_id": "c", "category": "x"},
            {"item_id": "d", "category": "x", "available": False},
            {"item_id": "e", "category": "y"},
        ]
    )
    best = lists.bestsellers(table, items, window_days=30, as_of=NOW, n=10)
    assert [i for i, _ in best[None]] == ["b", "a", "e"]
    assert [i for i, _ in best["x"]] == ["a"]
    assert [i for i, _ in best["y"]] == ["b", "e"]
    assert best[None][0][1] > 2 > best[None][1][1] > 1 > best[None][2][1] > 0


def test_new_arrivals_rank_by_traction_per_day_and_keep_to_the_window():
    table = events(
        [ev(f"u{k}", "fresh", "purchase", 1) for k in range(5)]  # 5 purchases in 2 days
        + [ev(f"u{k}", "older", "purchase", 15) for k in range(5)]  # same 5 purchases over 20 days
    )
    items = catalogue(
        [
            {"item_id": "fresh", "created_at": NOW - timedelta(days=2)},
            {"item_id": "older", "created_at": NOW - timedelta(days=20)},
            {"item_id": "untouched", "created_at": NOW - timedelta(days=1)},
            {"item_id": "gone", "created_at": NOW - timedelta(days=1), "available": False},
            {"item_id": "ancient", "created_at": NOW - timedelta(days=90)},
        ]
    )
    ranked = lists.new_arrivals(table, items, window_days=30, as_of=NOW, n=10, weights=WEIGHTS)
    assert [i for i, _ in ranked] == ["fresh", "older", "untouched"]
    assert ranked[0][1] == 25.0 and ranked[1][1] == 2.5 and ranked[2][1] == 0.0


def two_tribes():
    """Two groups of users, each buying and viewing only its own five items."""
    rows = []
    for u in range(40):
        tribe = u % 2
        for j in range(5):
            if (u + j) % 3:  # each user touches most, not all, of the tribe's items
                rows.append(ev(f"u{u}", f"t{tribe}i{j}", "purchase" if j < 2 else "view", j + 1))
    table = events(rows)
    items = catalogue(
        [{"item_id": f"t{t}i{j}", "available": not (t == 1 and j == 4)} for t in (0, 1) for j in range(5)]
    )
    inter = build_interactions(table, WEIGHTS, 60, NOW)
    model = fit_als(inter.matrix, AlsParams(factors=4, iterations=10, regularization=0.01))
    return table, items, inter, model


def test_personal_picks_stay_in_the_tribe_and_exclude_purchases_and_unavailable():
    table, items, inter, model = two_tribes()
    bought = purchase_matrix(table, inter)
    hidden = lists.hidden_item_indices(items, inter)
    picks = dict(lists.personal_picks(model, inter, 3, bought, hidden))
    assert set(picks) == set(inter.user_ids)
    for user, ranked in picks.items():
        tribe = int(user[1:]) % 2
        mine = {inter.item_ids[j] for j in bought[inter.user_index[user]].indices}
        ids = [i for i, _ in ranked]
        assert not set(ids) & mine
        assert "t1i4" not in ids
        assert ids[0].startswith(f"t{tribe}")


def test_similar_items_exclude_self_and_prefer_the_same_tribe():
    _, items, inter, model = two_tribes()
    sims = dict(lists.similar_items(model, inter, 3, np.array([], dtype=np.int32)))
    for item, ranked in sims.items():
        ids = [i for i, _ in ranked]
        assert item not in ids and len(ids) == 3
        assert ids[0][:2] == item[:2]


def test_batch_lists_round_like_python_and_drop_padding():
    """Ranked lists are built on whole batches: the scores must equal ``round(float(s), 5)`` and padding must go."""
    rng = np.random.default_rng(3)
    scores = np.concatenate([rng.standard_normal((50, 40)).astype(np.float32) * s for s in (1e-3, 1.0, 100.0)])
    scores[0, :5] = np.float32(0.000015)  # a tie at the 5th decimal in decimal, not in binary
    ids = rng.integers(0, 30, scores.shape).astype(np.int32)
    ids[1, -3:] = -1
    scores[2, -2:] = np.finfo(np.float32).min  # implicit's filtered padding
    scores[3, -1] = -np.inf
    item_ids = np.array([f"i{j}" for j in range(30)], dtype=object)
    rows = lists.ranked_rows(ids, scores, item_ids)
    for row_ids, row_scores, got in zip(ids, scores, rows):
        keep = (row_ids >= 0) & np.isfinite(row_scores) & (row_scores > lists.FILTERED_SCORE)
        want = [(item_ids[j], round(float(s), 5)) for j, s in zip(row_ids[keep], row_scores[keep])]
        assert got == want and all(type(s) is float for _, s in got)
    assert len(rows[1]) == 37 and len(rows[2]) == 38 and len(rows[3]) == 39
