"""RFM measures, tie-aware quintile scores, segment map, summary and movement on hand-made logs."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest

from recommender.data.schema import EVENT_SCHEMA
from recommender.marketing.rfm import (
    DEFAULT_RULES,
    SEGMENTS,
    STRATEGIES,
    RfmConfig,
    SegmentRule,
    compute_rfm,
    monetary_unit,
    segment_movement,
    segment_strategies,
    segment_summary,
)


def events(rows: list[tuple]) -> pa.Table:
    """rows of (user, item, type, timestamp, quantity, price, order_id)."""
    cols = list(zip(*rows)) if rows else [[] for _ in EVENT_SCHEMA]
    return pa.table({f.name: pa.array(list(c), f.type) for f, c in zip(EVENT_SCHEMA, cols)}, schema=EVENT_SCHEMA)


def d(day: int, month: int = 1, hour: int = 12) -> dt.datetime:
    return dt.datetime(2024, month, day, hour)


AS_OF = dt.datetime(2024, 2, 1)

# Hand-computed at AS_OF (calendar-day recency):
#   user  recency  frequency  monetary  R  F  M  FM=(F+M+1)//2  segment
#   u1    31       1          10        1  1  1  1              lost
#   u2    12       2          50        3  3  3  3              needs_attention
#   u3    5        3          200       4  5  4  5              loyal   (3 x 100 bought, 100 returned)
#   u4    26       2          10        2  3  1  2              hibernating
#   u5    1        1          500       5  1  5  3              potential_loyalists
LOG = events(
    [
        ("u1", "a", "purchase", d(1), 1.0, 10.0, "o1"),
        ("u2", "a", "purchase", d(10), 2.0, 10.0, "o2"),
        ("u2", "b", "purchase", d(20), 1.0, 30.0, "o3"),
        ("u3", "c", "purchase", d(25), 1.0, 100.0, "o4"),
        ("u3", "c", "purchase", d(26), 1.0, 100.0, "o5"),
        ("u3", "c", "purchase", d(27), 1.0, 100.0, "o6"),
        ("u3", "c", "return", d(28), 1.0, 100.0, "c1"),
        ("u3", "c", "view", d(28), None, None, None),
        ("u4", "d", "purchase", d(5), 1.0, 5.0, "o7"),
        ("u4", "d", "purchase", d(6), 1.0, 5.0, "o8"),
        ("u5", "e", "purchase", d(31, hour=23), 1.0, 400.0, "o9"),
        ("u5", "f", "purchase", d(31, hour=23), 2.0, 50.0, "o9"),
        ("u6", "a", "view", d(2), None, None, None),  # never buys: not a customer
        ("u6", "a", "return", d(3), 1.0, 10.0, "c2"),
        ("u1", "a", "purchase", d(5, month=2), 1.0, 10.0, "o10"),  # after AS_OF: ignored
    ]
)


def by_user(table: pa.Table) -> dict[str, dict]:
    return {r["user_id"]: r for r in table.to_pylist()}


def test_measures_scores_and_segments() -> None:
    rfm = by_user(compute_rfm(LOG, RfmConfig(as_of=AS_OF)))
    assert set(rfm) == {"u1", "u2", "u3", "u4", "u5"}
    expected = {
        "u1": (31, 1, 10.0, 1, 1, 1, "lost"),
        "u2": (12, 2, 50.0, 3, 3, 3, "needs_attention"),
        "u3": (5, 3, 200.0, 4, 5, 4, "loyal"),
        "u4": (26, 2, 10.0, 2, 3, 1, "hibernating"),
        "u5": (1, 1, 500.0, 5, 1, 5, "potential_loyalists"),
    }
    for user, (rec, freq, mon, r, f, m, seg) in expected.items():
        row = rfm[user]
        assert (row["recency_days"], row["frequency"]) == (rec, freq), user
        assert row["monetary"] == pytest.approx(mon), user
        assert (row["r_score"], row["f_score"], row["m_score"], row["segment"]) == (r, f, m, seg), user


def test_frequency_basis_uses_r_and_f() -> None:
    rfm = by_user(compute_rfm(LOG, RfmConfig(as_of=AS_OF, fm_basis="frequency")))
    assert {u: r["segment"] for u, r in rfm.items()} == {
        "u1": "lost",  # R1 F1
        "u2": "needs_attention",  # R3 F3
        "u3": "loyal",  # R4 F5
        "u4": "at_risk",  # R2 F3
        "u5": "new",  # R5 F1
    }


def test_default_as_of_is_latest_event() -> None:
    rfm = by_user(compute_rfm(LOG))  # as_of = 2024-02-05 12:00: u1's later order counts
    assert rfm["u1"]["recency_days"] == 0 and rfm["u1"]["frequency"] == 2
    assert rfm["u1"]["monetary"] == pytest.approx(20.0)
    assert rfm["u5"]["recency_days"] == 5
    assert rfm["u1"]["r_score"] == 5


def test_schema_and_one_row_per_customer() -> None:
    rfm = compute_rfm(LOG, RfmConfig(as_of=AS_OF))
    assert rfm.column_names == [
        "user_id",
        "recency_days",
        "frequency",
        "monetary",
        "r_score",
        "f_score",
        "m_score",
        "segment",
    ]
    assert len(set(rfm.column("user_id").to_pylist())) == rfm.num_rows
    assert all(s in SEGMENTS for s in rfm.column("segment").to_pylist())
    assert monetary_unit(rfm) == "currency"


def _freq_log(orders_per_user: list[int]) -> pa.Table:
    rows = []
    for u, n in enumerate(orders_per_user):
        for k in range(n):
            rows.append((f"u{u:02d}", "a", "purchase", d(1 + k), 1.0, 10.0, f"o{u}-{k}"))
    return events(rows)


def test_scores_are_quintiles_without_ties() -> None:
    rfm = compute_rfm(_freq_log(list(range(1, 11))))  # 10 customers with 1..10 orders
    scores = dict(zip(rfm.column("frequency").to_pylist(), rfm.column("f_score").to_pylist()))
    assert [scores[f] for f in range(1, 11)] == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]


def test_ties_get_equal_scores_of_their_first_rank() -> None:
    # 6 one-order customers (ranks 1-6), two with 2 orders (rank 7), one with 3 (rank 9), one with 4 (rank 10):
    # score = 1 + (rank - 1) * 5 // 10
    rfm = compute_rfm(_freq_log([1, 1, 1, 1, 1, 1, 2, 2, 3, 4]))
    pairs = set(zip(rfm.column("frequency").to_pylist(), rfm.column("f_score").to_pylist()))
    assert pairs == {(1, 1), (2, 4), (3, 5), (4, 5)}
    # monetary is 10 per order, so M follows F exactly
    assert rfm.column("m_score").to_pylist() == rfm.column("f_score").to_pylist()


def test_default_grid_cells() -> None:
    config = RfmConfig()
    expected = {  # rows R = 5..1, columns FM = 1..5
        5: ["new", "potential_loyalists", "potential_loyalists", "champions", "champions"],
        4: ["promising", "potential_loyalists", "potential_loyalists", "loyal", "loyal"],
        3: ["about_to_sleep", "about_to_sleep", "needs_attention", "loyal", "loyal"],
        2: ["hibernating", "hibernating", "at_risk", "at_risk", "cant_lose"],
        1: ["lost", "lost", "at_risk", "at_risk", "cant_lose"],
    }
    for r, row in expected.items():
        assert [config.segment_for(r, fm) for fm in range(1, 6)] == row
    used = {config.segment_for(r, fm) for r in range(1, 6) for fm in range(1, 6)}
    assert used == set(SEGMENTS) and len(SEGMENTS) == 11


def test_segments_have_actions_and_strategies() -> None:
    assert all(s.action and s.description and s.strategy in STRATEGIES for s in SEGMENTS.values())
    assert SEGMENTS["loyal"].strategy == "new_arrivals"
    assert SEGMENTS["about_to_sleep"].strategy == "due_again"
    assert {s.strategy for s in SEGMENTS.values()} == set(STRATEGIES)


def test_rules_must_cover_grid_and_name_known_segments() -> None:
    with pytest.raises(ValueError, match="without a segment"):
        RfmConfig(rules=DEFAULT_RULES[:-1])
    with pytest.raises(ValueError, match="unknown segment"):
        RfmConfig(rules=(SegmentRule("vip", (1, 5), (1, 5)),))
    with pytest.raises(ValueError, match="fm_basis"):
        RfmConfig(fm_basis="monetary")  # type: ignore[arg-type]


def test_custom_rules_first_match_wins() -> None:
    config = RfmConfig(
        rules=(SegmentRule("champions", (5, 5), (5, 5)), SegmentRule("lost", (1, 5), (1, 5))), as_of=AS_OF
    )
    rfm = by_user(compute_rfm(LOG, config))
    assert {u: r["segment"] for u, r in rfm.items()} == dict.fromkeys(("u1", "u2", "u3", "u4", "u5"), "lost")


def test_units_when_no_price_at_all() -> None:
    log = events(
        [
            ("u1", "a", "purchase", d(1), 3.0, None, "o1"),
            ("u1", "a", "return", d(2), 1.0, None, "c1"),
            ("u2", "b", "purchase", d(3), None, None, "o2"),  # missing quantity = 1
        ]
    )
    rfm = compute_rfm(log)
    assert monetary_unit(rfm) == "units"
    assert by_user(rfm)["u1"]["monetary"] == pytest.approx(2.0)
    assert by_user(rfm)["u2"]["monetary"] == pytest.approx(1.0)
    assert monetary_unit(segment_summary(rfm)) == "units"


def test_missing_prices_filled_with_item_average_and_order_ids() -> None:
    log = events(
        [
            ("u1", "a", "purchase", d(1), 1.0, 10.0, "o1"),
            ("u1", "a", "purchase", d(2), 2.0, None, None),  # a's average price 10 -> 20
            ("u1", "z", "purchase", d(2), 1.0, None, None),  # z never priced -> 0; same order as above
            ("u1", "a", "purchase", d(3), 1.0, 30.0, "o3"),  # a's average becomes 20
        ]
    )
    row = by_user(compute_rfm(log))["u1"]
    assert row["frequency"] == 3  # o1, u1|2024-01-02 12:00, o3
    assert row["monetary"] == pytest.approx(10 + 2 * 20 + 0 + 30)


def test_empty_and_view_only_logs() -> None:
    assert compute_rfm(events([])).num_rows == 0
    assert compute_rfm(events([("u1", "a", "view", d(1), None, None, None)])).num_rows == 0


def test_segment_summary() -> None:
    rfm = compute_rfm(LOG, RfmConfig(as_of=AS_OF))
    summary = segment_summary(rfm)
    assert summary.column_names == ["segment", "customers", "share", "monetary", "strategy"]
    assert summary.column("segment").to_pylist() == list(SEGMENTS)
    rows = {r["segment"]: r for r in summary.to_pylist()}
    assert sum(r["customers"] for r in rows.values()) == 5
    assert rows["loyal"]["customers"] == 1 and rows["loyal"]["share"] == pytest.approx(0.2)
    assert rows["loyal"]["monetary"] == pytest.approx(200.0)
    assert rows["champions"]["customers"] == 0 and rows["champions"]["monetary"] == 0.0
    assert rows["about_to_sleep"]["strategy"] == "due_again"
    assert sum(r["share"] for r in rows.values()) == pytest.approx(1.0)


def test_segment_strategies() -> None:
    table = segment_strategies(compute_rfm(LOG, RfmConfig(as_of=AS_OF)))
    got = dict(zip(table.column("user_id").to_pylist(), table.column("strategy").to_pylist()))
    assert got == {"u1": "bestsellers", "u2": "personal", "u3": "new_arrivals", "u4": "bestsellers", "u5": "personal"}


def test_segment_movement() -> None:
    # At the end of 2024-01-15 only u1, u2, u4 are customers (n = 3, score = 1 + (rank - 1) * 5 // 3):
    #   u1: recency 14, 1 order, 10  -> R1 F1 M1 FM1 lost
    #   u2: recency 5, 1 order, 20   -> R4 F1 M4 FM3 potential_loyalists
    #   u4: recency 9, 2 orders, 10  -> R2 F4 M1 FM3 at_risk
    moves = segment_movement(LOG, dt.date(2024, 1, 15), AS_OF)
    assert moves.column_names == ["from_segment", "to_segment", "customers"]
    assert list(zip(*moves.to_pydict().values())) == [
        (None, "loyal", 1),
        (None, "potential_loyalists", 1),
        ("potential_loyalists", "needs_attention", 1),
        ("at_risk", "hibernating", 1),
        ("lost", "lost", 1),
    ]
    assert sum(moves.column("customers").to_pylist()) == compute_rfm(LOG, RfmConfig(as_of=AS_OF)).num_rows
