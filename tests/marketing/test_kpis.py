"""Repeat-sales KPIs per period and the HTML report, checked against hand-computed values."""

from __future__ import annotations

import base64
import datetime as dt
import itertools
import re
from pathlib import Path

import pyarrow as pa
import pytest

from recommender.data.schema import EVENT_SCHEMA
from recommender.marketing.kpis import KPI_SCHEMA, compute_kpis, kpi_summary
from recommender.marketing.report import write_report
from recommender.marketing.rfm import monetary_unit


def events(rows: list[tuple]) -> pa.Table:
    """rows of (user, item, type, timestamp, quantity, price, order_id)."""
    cols = list(zip(*rows)) if rows else [[] for _ in EVENT_SCHEMA]
    return pa.table({f.name: pa.array(list(c), f.type) for f, c in zip(EVENT_SCHEMA, cols)}, schema=EVENT_SCHEMA)


def d(month: int, day: int, year: int = 2024) -> dt.datetime:
    return dt.datetime(year, month, day, 10)


# Jan: A orders twice (20 + 30), B once (50).  Feb: no sales.
# Mar: A orders 40 and returns 10; C's first order 60; B (no order) returns 50.  Apr: C orders 100; D only views.
LOG = events(
    [
        ("A", "x", "purchase", d(1, 5), 2.0, 10.0, "a1"),
        ("A", "y", "purchase", d(1, 20), 1.0, 30.0, "a2"),
        ("B", "z", "purchase", d(1, 10), 1.0, 50.0, "b1"),
        ("A", "y", "view", d(2, 14), None, None, None),
        ("A", "w", "purchase", d(3, 3), 1.0, 40.0, "a3"),
        ("A", "x", "return", d(3, 4), 1.0, 10.0, "ca"),
        ("C", "x", "purchase", d(3, 15), 3.0, 20.0, "c1"),
        ("B", "z", "return", d(3, 20), 1.0, 50.0, "cb"),
        ("C", "v", "purchase", d(4, 2), 1.0, 100.0, "c2"),
        ("D", "v", "view", d(4, 30), None, None, None),
    ]
)

COLUMNS = KPI_SCHEMA.names


def rows(table: pa.Table) -> list[dict]:
    return table.to_pylist()


def check(row: dict, **expected: float) -> None:
    for key, value in expected.items():
        assert row[key] == pytest.approx(value), key


def test_monthly_kpis_hand_computed() -> None:
    kpis = compute_kpis(LOG)
    assert kpis.column_names == COLUMNS
    assert monetary_unit(kpis) == "currency"
    jan, feb, mar, apr = rows(kpis)
    assert [r["period_start"] for r in (jan, feb, mar, apr)] == [dt.datetime(2024, m, 1) for m in (1, 2, 3, 4)]
    check(
        jan,
        active_customers=2,
        new_customers=2,
        returning_customers=0,
        repeat_purchase_rate=0.0,
        cumulative_repeat_rate=0.5,
        purchase_frequency=1.5,
        orders=3,
        average_order_value=100 / 3,
        revenue=100,
        returning_revenue=0,
        returning_revenue_share=0,
        historic_customer_value=50,
        # trailing year = Jan: 100 net over 2 customers, 1 of 2 with 2+ orders -> lifetime 2
        expected_lifetime_years=2,
        predicted_customer_value=100,
    )
    # no sales in February: a row of zeros (the to-date and trailing-year values carry over)
    check(
        feb,
        active_customers=0,
        new_customers=0,
        returning_customers=0,
        repeat_purchase_rate=0,
        purchase_frequency=0,
        orders=0,
        average_order_value=0,
        revenue=0,
        returning_revenue=0,
        returning_revenue_share=0,
        cumulative_repeat_rate=0.5,
        historic_customer_value=50,
        predicted_customer_value=100,
    )
    # March: returns reduce revenue (A's 10 and B's 50, B did not buy); returning revenue = A 30 + B -50
    check(
        mar,
        active_customers=2,
        new_customers=1,
        returning_customers=1,
        repeat_purchase_rate=0.5,
        purchase_frequency=1.0,
        orders=2,
        average_order_value=50,
        revenue=40,
        returning_revenue=-20,
        returning_revenue_share=-0.5,
        cumulative_repeat_rate=1 / 3,
        historic_customer_value=140 / 3,
        # trailing Jan-Mar: A 80 (3 orders), B 0 (1), C 60 (1) -> 140/3 per customer, r = 1/3, lifetime 1.5
        expected_lifetime_years=1.5,
        predicted_customer_value=70,
    )
    check(
        apr,
        active_customers=1,
        new_customers=0,
        returning_customers=1,
        repeat_purchase_rate=1.0,
        purchase_frequency=1.0,
        orders=1,
        average_order_value=100,
        revenue=100,
        returning_revenue=100,
        returning_revenue_share=1.0,
        cumulative_repeat_rate=2 / 3,
        historic_customer_value=80,
        # trailing Jan-Apr: 240 over 3 customers, A and C with 2+ orders -> r = 2/3, lifetime 3
        expected_lifetime_years=3,
        predicted_customer_value=240,
    )
    for r in (jan, feb, mar, apr):
        assert r["new_customers"] + r["returning_customers"] == r["active_customers"]


def test_quarter_week_year() -> None:
    q1, q2 = rows(compute_kpis(LOG, "quarter"))
    assert q1["period_start"] == dt.datetime(2024, 1, 1) and q2["period_start"] == dt.datetime(2024, 4, 1)
    check(
        q1,
        active_customers=3,
        new_customers=3,
        returning_customers=0,
        orders=5,
        revenue=140,
        average_order_value=40,
        purchase_frequency=5 / 3,
        cumulative_repeat_rate=1 / 3,
    )
    check(
        q2,
        active_customers=1,
        new_customers=0,
        returning_customers=1,
        orders=1,
        revenue=100,
        returning_revenue=100,
        returning_revenue_share=1.0,
    )

    weeks = rows(compute_kpis(LOG, "week"))
    # Monday 2024-01-01 (week of Jan 5) to Monday 2024-04-29 (week of Apr 30): 18 weeks, gaps included
    assert len(weeks) == 18
    assert weeks[0]["period_start"] == dt.datetime(2024, 1, 1)
    assert weeks[-1]["period_start"] == dt.datetime(2024, 4, 29)
    assert all(b["period_start"] - a["period_start"] == dt.timedelta(days=7) for a, b in itertools.pairwise(weeks))
    assert sum(w["revenue"] for w in weeks) == pytest.approx(240)
    assert sum(w["orders"] for w in weeks) == 6
    # sales weeks: Jan 1, 8, 15; Feb 26 (Sun Mar 3); Mar 4 (return only); Mar 11; Mar 18 (return only); Apr 1
    assert sum(1 for w in weeks if w["orders"] == 0 and w["revenue"] == 0) == 18 - 8
    by_start = {w["period_start"]: w for w in weeks}
    check(
        by_start[dt.datetime(2024, 3, 4)],
        orders=0,
        active_customers=0,
        revenue=-10,
        returning_revenue=-10,
        returning_revenue_share=0,
    )

    (year,) = rows(compute_kpis(LOG, "year"))
    check(
        year,
        active_customers=3,
        new_customers=3,
        orders=6,
        revenue=240,
        average_order_value=50,
        historic_customer_value=80,
        expected_lifetime_years=3,
        predicted_customer_value=240,
    )


def test_unknown_period() -> None:
    with pytest.raises(ValueError, match="unknown period 'day'"):
        compute_kpis(LOG, "day")
    with pytest.raises(ValueError, match="unknown period"):
        write_report(LOG, Path("unused.html"), period="fortnight")


def test_single_order_customers_gap_and_trailing_year() -> None:
    # X orders in Jan 2023 and Jan 2024, Y once in Jan 2024: 13 months, 11 of them empty.
    log = events(
        [
            ("X", "a", "purchase", d(1, 10, 2023), 1.0, 100.0, "x1"),
            ("X", "a", "purchase", d(1, 10, 2024), 1.0, 100.0, "x2"),
            ("Y", "a", "purchase", d(1, 15, 2024), 2.0, 25.0, "y1"),
        ]
    )
    months = rows(compute_kpis(log))
    assert len(months) == 13
    assert all(m["orders"] == 0 and m["active_customers"] == 0 and m["revenue"] == 0 for m in months[1:12])
    check(
        months[0],
        active_customers=1,
        new_customers=1,
        repeat_purchase_rate=0,
        cumulative_repeat_rate=0,
        historic_customer_value=100,
        expected_lifetime_years=1,
        predicted_customer_value=100,
    )
    # Dec 2023: trailing year still contains Jan 2023
    check(months[11], predicted_customer_value=100, historic_customer_value=100)
    last = months[12]
    check(
        last,
        active_customers=2,
        new_customers=1,
        returning_customers=1,
        repeat_purchase_rate=0.5,
        cumulative_repeat_rate=0.5,
        purchase_frequency=1,
        orders=2,
        average_order_value=75,
        revenue=150,
        returning_revenue=100,
        returning_revenue_share=100 / 150,
        historic_customer_value=125,
        # trailing year Feb 2023 - Jan 2024 sees X's one order only: r = 0, lifetime 1, value 150 / 2
        expected_lifetime_years=1,
        predicted_customer_value=75,
    )


def test_kpi_summary() -> None:
    s = kpi_summary(LOG)
    assert s["start"] == d(1, 5) and s["end"] == d(4, 30)
    assert s["monetary_unit"] == "currency"
    assert (s["customers"], s["orders"], s["repeat_customers"]) == (3, 6, 2)
    check(
        s,
        gross_revenue=300,
        returns=60,
        revenue=240,
        average_order_value=50,
        purchase_frequency=2,
        repeat_customer_rate=2 / 3,
        historic_customer_value=80,
        expected_lifetime_years=3,
        predicted_customer_value=240,
    )


def test_empty_and_view_only() -> None:
    empty = compute_kpis(events([]))
    assert empty.num_rows == 0 and empty.column_names == COLUMNS
    views = rows(
        compute_kpis(
            events([("u", "a", "view", d(1, 1), None, None, None), ("u", "a", "view", d(3, 1), None, None, None)])
        )
    )
    assert len(views) == 3 and all(v["orders"] == 0 and v["revenue"] == 0 for v in views)
    assert kpi_summary(events([]))["customers"] == 0


def test_units_without_prices() -> None:
    log = events(
        [
            ("A", "x", "purchase", d(1, 5), 3.0, None, "a1"),
            ("A", "x", "return", d(1, 6), 1.0, None, "ca"),
        ]
    )
    kpis = compute_kpis(log)
    assert monetary_unit(kpis) == "units"
    check(rows(kpis)[0], revenue=2, average_order_value=3)


def _images(html: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)]


def test_write_report(tmp_path: Path) -> None:
    out = write_report(LOG, tmp_path / "sub" / "report.html", title="Shop <report>")
    assert out == tmp_path / "sub" / "report.html" and out.is_file()
    html = out.read_text(encoding="utf-8")
    images = _images(html)
    assert len(images) == 5  # revenue, customers, repeat rates, segments, movement
    assert all(img.startswith(b"\x89PNG\r\n\x1a\n") for img in images)
    assert not re.search(r'(src|href)="(https?:)?//', html)  # self-contained
    assert "<title>Shop &lt;report&gt;</title>" in html
    for text in ("KPI table", "Segment movement", "Customer segments", "2024-02", "Hibernating", "due_again"):
        assert text in html
    # KPI table: one body row per month, the empty February included
    table = html[html.index("<h2>KPI table</h2>") :]
    assert table.count("<tr>") == 1 + 4
    assert '<td class="t">2024-02</td><td>0</td>' in table


def test_write_report_without_sales(tmp_path: Path) -> None:
    out = write_report(events([("u", "a", "view", d(1, 1), None, None, None)]), tmp_path / "r.html")
    html = out.read_text(encoding="utf-8")
    assert "No purchases in the data." in html and _images(html) == []
