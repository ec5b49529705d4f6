"""Confidence weighting: event weights, half-life decay, id maps."""

import pytest
from factories import NOW, WEIGHTS, ev, events

from recommender.models.weighting import build_interactions, interaction_matrix, purchase_matrix


def test_weights_and_half_life_decay_by_hand():
    table = events(
        [
            ev("u1", "i1", "view", 0),  # 1 * 0.5**0      = 1
            ev("u1", "i1", "purchase", 60),  # 10 * 0.5**1     = 5
            ev("u2", "i2", "cart", 120),  # 4 * 0.5**2      = 1
            ev("u2", "i1", "view", 30),  # 1 * 0.5**0.5    = 0.70711
            ev("u2", "i1", "return", 0),  # weight 0: ignored
        ]
    )
    inter = build_interactions(table, WEIGHTS, half_life_days=60, as_of=NOW)
    assert list(inter.user_ids) == ["u1", "u2"] and list(inter.item_ids) == ["i1", "i2"]
    dense = inter.matrix.toarray()
    assert dense[0, 0] == pytest.approx(6.0)
    assert dense[1, 1] == pytest.approx(1.0)
    assert dense[1, 0] == pytest.approx(0.5**0.5, rel=1e-5)
    assert dense[0, 1] == 0


def test_zero_weight_types_add_no_users_or_items():
    table = events([ev("u1", "i1", "view", 1), ev("u9", "i9", "return", 1)])
    inter = build_interactions(table, WEIGHTS, half_life_days=30, as_of=NOW)
    assert list(inter.user_ids) == ["u1"] and list(inter.item_ids) == ["i1"]


def test_as_of_defaults_to_newest_event_and_future_events_do_not_grow():
    table = events([ev("u1", "i1", "purchase", 10), ev("u1", "i2", "view", 0)])
    inter = build_interactions(table, WEIGHTS, half_life_days=10)
    assert inter.as_of == NOW
    assert inter.matrix.toarray()[0, 0] == pytest.approx(5.0)


def test_all_zero_weights_is_an_error():
    with pytest.raises(ValueError, match="zero"):
        build_interactions(events([ev("u1", "i1", "view", 0)]), {"view": 0.0}, 10)


def test_purchase_matrix_marks_only_purchases():
    table = events([ev("u1", "i1", "purchase", 1), ev("u1", "i2", "view", 1), ev("u2", "i2", "purchase", 2)])
    inter = build_interactions(table, WEIGHTS, 30, NOW)
    assert purchase_matrix(table, inter).toarray().tolist() == [[1, 0], [0, 1]]


def test_pair_matrices_count_a_pair_once_and_leave_out_ids_the_fit_does_not_know():
    fitted = events([ev("u1", "i1", "view", 5), ev("u2", "i2", "purchase", 5)])
    inter = build_interactions(fitted, WEIGHTS, 30, NOW)
    later = events(
        [
            ev("u1", "i2", "purchase", 1),
            ev("u1", "i2", "purchase", 2),  # the same pair again: still 1
            ev("u1", "i1", "cart", 3),
            ev("u2", "i9", "purchase", 1),  # an item the fit does not know
            ev("u9", "i1", "purchase", 1),  # a customer it does not know
            ev("u2", "i1", "return", 1),  # not an interaction
        ]
    )
    assert purchase_matrix(later, inter).toarray().tolist() == [[0, 1], [0, 0]]
    assert interaction_matrix(later, inter).toarray().tolist() == [[1, 1], [0, 0]]
