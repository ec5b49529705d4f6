"""The compact list encoding: what goes in comes out (to the stored precision), in a few bytes per entry."""

from __future__ import annotations

import random

import numpy as np
import orjson
import pytest

from cache import codec
from recommender.models import repeat


def catalogue(n: int) -> tuple[list[str], dict[str, int]]:
    ids = [f"item-{j}" for j in range(n)]
    return ids, {item: j for j, item in enumerate(ids)}


def test_pairs_round_trip_to_three_significant_digits():
    ids, index = catalogue(500)
    ranked = [(ids[j], s) for j, s in [(7, 0.91234), (499, 0.5), (0, 0.0123456), (3, -0.25), (42, 0.0)]]
    raw = codec.encode_pairs(ranked, index, len(ids))
    assert codec.is_compact(raw) and not codec.is_compact(orjson.dumps(ranked))
    back = codec.decode(raw, ids)
    assert [i for i, _ in back] == [i for i, _ in ranked]
    assert [s for _, s in back] == [0.912, 0.5, 0.0123, -0.25, 0.0]


@pytest.mark.parametrize(("size", "width"), [(10, 2), (65_536, 2), (65_537, 3), (1 << 24, 3), ((1 << 24) + 1, 4)])
def test_index_width_follows_the_catalogue_size(size, width):
    assert codec.index_width(size) == width
    last = np.array([size - 1, 0])
    indices, *_ = codec.decode_arrays(codec.encode_indexed(last, np.array([1.0, 0.5]), size))
    assert indices.tolist() == [size - 1, 0]


def test_scores_out_of_half_precision_range_are_kept_as_float32():
    ids, index = catalogue(3)
    raw = codec.encode_pairs([(ids[0], 123456.5), (ids[1], 1e-7)], index, len(ids))
    assert [s for _, s in codec.decode(raw, ids)] == [123456.5, 1e-7]


def test_picks_keep_reason_and_due_date():
    ids, index = catalogue(70_000)
    picks = [
        {"item_id": ids[69_999], "score": 0.8, "reason": "due_again", "due": "2026-03-01"},
        {"item_id": ids[5], "score": 0.3, "reason": "goes_with_your_purchases", "due": None},
    ]
    back = codec.decode(codec.encode_picks(picks, index, len(ids)), ids)
    assert back == picks


def test_picks_without_due_dates_store_no_date_column():
    ids, index = catalogue(10)
    picks = [{"item_id": ids[1], "score": 0.5, "reason": "goes_with_your_purchases", "due": None}] * 3
    raw = codec.encode_picks(picks, index, len(ids))
    assert len(raw) == 2 + 3 * (2 + 2 + 1)
    assert codec.decode(raw, ids) == picks


def test_unknown_reason_is_a_clear_error():
    ids, index = catalogue(3)
    with pytest.raises(ValueError, match="reason 'because' has no code"):
        codec.encode_picks([{"item_id": ids[0], "score": 1.0, "reason": "because"}], index, len(ids))


def test_a_full_list_of_100_is_a_few_hundred_bytes():
    ids, index = catalogue(100_000)
    rng = np.random.default_rng(1)
    ranked = [(ids[j], float(s)) for j, s in zip(rng.choice(len(ids), 100, replace=False), np.sort(rng.random(100)))]
    picks = [{"item_id": i, "score": s, "reason": "due_again", "due": "2026-01-10"} for i, s in ranked]
    assert len(codec.encode_pairs(ranked, index, len(ids))) == 2 + 100 * 5
    assert len(codec.encode_picks(picks, index, len(ids))) == 2 + 100 * 8
    assert len(orjson.dumps(picks)) > 8_000


def test_truncated_value_is_refused():
    ids, index = catalogue(3)
    raw = codec.encode_pairs([(ids[0], 1.0), (ids[1], 0.5)], index, len(ids))
    with pytest.raises(ValueError, match="whole number"):
        codec.decode(raw[:-1], ids)


def test_rows_of_a_top_k_batch_leave_out_invalid_entries():
    ids = np.array([[3, 1, 2], [0, -1, -1]])
    scores = np.array([[0.9, 0.5, 0.25], [0.75, -1e30, -1e30]], dtype=np.float32)
    rows = codec.encode_rows(ids, scores, ids >= 0, 4)
    names = ["a", "b", "c", "d"]
    assert [codec.decode(r, names) for r in rows] == [[["d", 0.9], ["b", 0.5], ["c", 0.25]], [["a", 0.75]]]


def test_pick_rows_encode_like_the_published_dicts():
    rng = random.Random(3)
    catalogue = [f"i{j}" for j in range(300)]
    index = {item: j for j, item in enumerate(catalogue)}
    for _ in range(50):
        picks: list[repeat.Pick] = []
        for item in rng.sample(catalogue, rng.randint(0, 40)):
            score = round(rng.random(), 5)
            if rng.random() < 0.5:
                picks.append(
                    repeat.NextPick(item, score, "due_again", f"2026-0{rng.randint(1, 9)}-1{rng.randint(0, 9)}")
                )
            else:
                picks.append((item, score))
        rows = [repeat.pick_row(p) for p in picks]
        dicts = [repeat.pick_dict(p) for p in picks]
        assert codec.encode_pick_rows(rows, index, len(catalogue)) == codec.encode_picks(dicts, index, len(catalogue))
        assert codec.decode(codec.encode_pick_rows(rows, index, len(catalogue)), catalogue) == [
            {**d, "score": pytest.approx(d["score"], rel=1e-2)} for d in dicts
        ]
