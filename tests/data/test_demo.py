"""Tests for the seeded demo shop generator (recommender.data.demo)."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pytest

from recommender.data.demo import SHOP_KINDS, DemoShop, generate_shop
from recommender.data.schema import EVENT_SCHEMA, ITEM_SCHEMA

END = datetime(2026, 6, 30)
DAYS = 180


@pytest.fixture(scope="module")
def shop() -> DemoShop:
    return generate_shop(n_users=600, n_items=160, n_categories=8, days=DAYS, end=END, seed=7)


@pytest.fixture(scope="module")
def rows(shop: DemoShop) -> dict[str, list]:
    """Events as Python columns, joined with each item's category and created_at."""
    cols = shop.events.to_pydict()
    items = shop.items.to_pydict()
    category = dict(zip(items["item_id"], items["category"]))
    created = dict(zip(items["item_id"], items["created_at"]))
    cols["category"] = [category[i] for i in cols["item_id"]]
    cols["created_at"] = [created[i] for i in cols["item_id"]]
    return cols


def _type_counts(table: pa.Table) -> dict[str, int]:
    return {d["values"]: d["counts"] for d in pc.value_counts(table["event_type"]).to_pylist()}


def test_schemas_are_canonical(shop: DemoShop) -> None:
    assert shop.events.schema.equals(EVENT_SCHEMA)
    assert shop.items.schema.equals(ITEM_SCHEMA)
    assert shop.events.num_rows > 0 and shop.items.num_rows == 160
    for name in ("user_id", "item_id", "event_type", "timestamp", "quantity", "price"):
        assert shop.events[name].null_count == 0, name


def test_same_seed_identical_different_seed_differs() -> None:
    kwargs = {"n_users": 150, "n_items": 60, "n_categories": 5, "days": 60}
    a, b = generate_shop(**kwargs, seed=3), generate_shop(**kwargs, seed=3)
    c = generate_shop(**kwargs, seed=4)
    assert a.events.equals(b.events) and a.items.equals(b.items)
    assert a.truth == b.truth
    assert not a.events.equals(c.events)
    assert not a.items.equals(c.items)


def test_ids_categories_and_catalogue(shop: DemoShop) -> None:
    items = shop.items.to_pydict()
    assert items["item_id"][:2] == ["I00001", "I00002"]
    assert all(u.startswith("U") and u[1:].isdigit() for u in shop.truth.user_categories)
    cats = set(items["category"])
    assert len(cats) == 8 and {"coffee", "tea"} <= cats
    assert all(c.replace(" ", "").isalpha() for c in cats)
    assert all(t and t[0].isupper() for t in items["title"])
    prices = np.array(items["price"])
    assert (prices > 0).all() and prices.max() / prices.min() > 3
    unavailable = items["available"].count(False)
    assert 0 < unavailable < 0.15 * len(prices)
    assert set(pc.unique(shop.events["item_id"]).to_pylist()) <= set(items["item_id"])
    assert set(pc.unique(shop.events["user_id"]).to_pylist()) <= set(shop.truth.user_categories)


def test_truth_partitions_items(shop: DemoShop) -> None:
    truth = shop.truth
    item_ids = set(shop.items["item_id"].to_pylist())
    assert set(truth.consumables) | truth.durables == item_ids
    assert not set(truth.consumables) & truth.durables
    assert 0.15 < len(truth.consumables) / len(item_ids) < 0.6
    assert all(14 <= cycle <= 45 for cycle in truth.consumables.values())
    assert all(1 <= len(cats) <= 2 for cats in truth.user_categories.values())
    category = dict(zip(shop.items["item_id"].to_pylist(), shop.items["category"].to_pylist()))
    consumable_cats = {category[i] for i in truth.consumables}
    assert not consumable_cats & {category[i] for i in truth.durables}


def test_funnel_ratios(shop: DemoShop) -> None:
    counts = _type_counts(shop.events)
    assert set(counts) == {"view", "cart", "purchase"}
    assert counts["view"] > counts["cart"] > counts["purchase"] > 0
    assert counts["view"] >= 10 * counts["purchase"]
    assert 3 <= counts["view"] / counts["cart"] <= 12


def test_timestamps_in_window_and_after_item_creation(shop: DemoShop, rows: dict[str, list]) -> None:
    ts = shop.events["timestamp"]
    assert pc.min(ts).as_py() >= END - timedelta(days=DAYS)
    assert pc.max(ts).as_py() < END
    assert all(t >= c for t, c in zip(rows["timestamp"], rows["created_at"]))
    assert all(t.microsecond == 0 for t in rows["timestamp"][:1000])


def test_new_arrivals_exist_and_get_traffic(shop: DemoShop) -> None:
    created = shop.items["created_at"].to_pylist()
    start, recent = END - timedelta(days=DAYS), END - timedelta(days=30)
    new = [i for i, c in zip(shop.items["item_id"].to_pylist(), created) if c >= start]
    assert 0.05 < len(new) / len(created) < 0.3
    recent_ids = {i for i, c in zip(shop.items["item_id"].to_pylist(), created) if c >= recent}
    assert recent_ids
    assert recent_ids & set(pc.unique(shop.events["item_id"]).to_pylist())


def test_popularity_is_skewed(shop: DemoShop) -> None:
    counts = np.sort(np.array(pc.value_counts(shop.events["item_id"]).field("counts")))[::-1]
    top_decile = counts[: max(1, len(counts) // 10)].sum() / counts.sum()
    assert top_decile > 0.3


def test_activity_is_heavy_tailed(shop: DemoShop) -> None:
    per_user = np.array(pc.value_counts(shop.events["user_id"]).field("counts"))
    assert per_user.max() > 5 * np.median(per_user)


def test_events_concentrate_in_favourite_categories(shop: DemoShop, rows: dict[str, list]) -> None:
    fav = {u: set(c) for u, c in shop.truth.user_categories.items()}
    hits: dict[str, list[bool]] = defaultdict(list)
    for user, cat in zip(rows["user_id"], rows["category"]):
        hits[user].append(cat in fav[user])
    overall = np.mean([h for user_hits in hits.values() for h in user_hits])
    assert 0.75 < overall < 0.97
    shares = [np.mean(h) for h in hits.values() if len(h) >= 30]
    assert len(shares) > 50
    assert np.median(shares) > 0.75
    assert np.mean(np.array(shares) > 0.5) > 0.9


def test_cycle_buyers_repurchase_on_their_cycle(shop: DemoShop, rows: dict[str, list]) -> None:
    buyers = shop.truth.cycle_buyers
    assert len(buyers) > 30
    bought: dict[tuple[str, str], list[datetime]] = defaultdict(list)
    for user, item, kind, ts in zip(rows["user_id"], rows["item_id"], rows["event_type"], rows["timestamp"]):
        if kind == "purchase":
            bought[(user, item)].append(ts)
    ratios = []
    for user, pairs in buyers.items():
        favs = set(shop.truth.user_categories[user])
        for item, cycle in pairs:
            assert item in shop.truth.consumables
            assert 0.8 * shop.truth.consumables[item] - 0.01 <= cycle <= 1.2 * shop.truth.consumables[item] + 0.01
            times = sorted(bought[(user, item)])
            assert len(times) >= 2
            if len(times) >= 3:
                gaps = np.diff(np.array(times, dtype="datetime64[s]")).astype(float) / 86_400
                ratios.append(np.median(gaps) / cycle)
        category = shop.items.filter(pc.is_in(shop.items["item_id"], pa.array([i for i, _ in pairs])))["category"]
        assert set(category.to_pylist()) <= favs
    assert len(ratios) > 20
    assert abs(np.median(ratios) - 1.0) < 0.05
    assert np.mean(np.abs(np.array(ratios) - 1.0) < 0.2) > 0.9


def test_durables_bought_at_most_once_per_user(shop: DemoShop, rows: dict[str, list]) -> None:
    seen: set[tuple[str, str]] = set()
    for user, item, kind in zip(rows["user_id"], rows["item_id"], rows["event_type"]):
        if kind == "purchase" and item in shop.truth.durables:
            assert (user, item) not in seen, (user, item)
            seen.add((user, item))
    assert len(seen) > 50


def test_orders_and_quantities(shop: DemoShop, rows: dict[str, list]) -> None:
    kinds = np.array(rows["event_type"])
    order = np.array([o or "" for o in rows["order_id"]])
    assert ((order != "") == (kinds == "purchase")).all()
    assert all(o.startswith("O") and o[1:].isdigit() for o in order[order != ""][:100])
    by_order: dict[str, set[tuple[str, datetime]]] = defaultdict(set)
    for o, user, ts in zip(order, rows["user_id"], rows["timestamp"]):
        if o:
            by_order[o].add((user, ts))
    assert all(len(v) == 1 for v in by_order.values())  # one user, one checkout time per order
    assert any(list(order).count(o) > 1 for o in list(by_order)[:400])  # some multi-line baskets
    qty = np.array(rows["quantity"])[kinds == "purchase"]
    assert set(np.unique(qty)) <= {1.0, 2.0, 3.0}
    assert 0.7 < np.mean(qty == 1.0) < 0.97


def test_purchases_usually_follow_a_cart(rows: dict[str, list]) -> None:
    carts: dict[tuple[str, str], list[datetime]] = defaultdict(list)
    for user, item, kind, ts in zip(rows["user_id"], rows["item_id"], rows["event_type"], rows["timestamp"]):
        if kind == "cart":
            carts[(user, item)].append(ts)
    followed = []
    for user, item, kind, ts in zip(rows["user_id"], rows["item_id"], rows["event_type"], rows["timestamp"]):
        if kind == "purchase":
            followed.append(any(timedelta(0) <= ts - c <= timedelta(hours=3) for c in carts[(user, item)]))
    assert np.mean(followed) > 0.6


def test_write_round_trips(shop: DemoShop, tmp_path: Path) -> None:
    out = tmp_path / "nested" / "demo"
    events_path, items_path = shop.write(out)
    assert events_path == out / "events.csv" and items_path == out / "items.csv"
    assert events_path.read_text().splitlines()[0] == "user_id,item_id,event_type,timestamp,quantity,price,order_id"
    assert items_path.read_text().splitlines()[0] == "item_id,title,category,price,available,created_at"
    events = pacsv.read_csv(events_path)
    items = pacsv.read_csv(items_path)
    assert events.num_rows == shop.events.num_rows
    assert items.num_rows == shop.items.num_rows
    assert events["timestamp"].cast(pa.timestamp("us")).equals(shop.events["timestamp"])
    assert items["created_at"].cast(pa.timestamp("us")).equals(shop.items["created_at"])
    assert items["available"].equals(shop.items["available"])
    empty_orders = pc.sum(pc.equal(events["order_id"], "")).as_py()  # nulls are written as empty fields
    assert empty_orders == shop.events["order_id"].null_count
    line = items_path.read_text().splitlines()[1]
    assert ("true" in line or "false" in line) and "." not in line.rsplit(",", 1)[1]


def test_default_size() -> None:
    shop = generate_shop()
    assert 100_000 <= shop.events.num_rows <= 200_000
    assert shop.items.num_rows == 400 and len(shop.truth.user_categories) == 2000
    counts = _type_counts(shop.events)
    assert 12 <= counts["view"] / counts["purchase"] <= 30


@pytest.mark.parametrize(
    "kwargs", [{"n_categories": 1}, {"n_items": 5, "n_categories": 8}, {"n_categories": 20, "n_items": 300}]
)
def test_unusual_sizes(kwargs: dict) -> None:
    shop = generate_shop(n_users=80, days=60, **kwargs)
    assert shop.events.schema.equals(EVENT_SCHEMA) and shop.events.num_rows > 0
    cats = shop.items["category"].to_pylist()
    assert len(set(cats)) == min(kwargs.get("n_categories", 8), shop.items.num_rows)


def _repeat_share(shop: DemoShop, test_days: int = 30) -> float:
    """Share of the (customer, item) purchases of the last ``test_days`` that the customer had bought before."""
    from recommender.evaluation.split import targets, time_split

    split = time_split(shop.events, test_days=test_days)
    before, after = targets(split.train, "purchase"), targets(split.test, "purchase")
    pairs = [(u, i) for u, items in after.items() for i in items]
    return sum(i in before.get(u, ()) for u, i in pairs) / len(pairs)


def _views_per_purchase(shop: DemoShop) -> float:
    kinds = shop.events["event_type"].to_pylist()
    return kinds.count("view") / kinds.count("purchase")


@pytest.fixture(scope="module")
def kinds() -> dict[str, DemoShop]:
    return {k: generate_shop(n_users=600, n_items=200, days=150, seed=3, kind=k) for k in SHOP_KINDS}


def test_kinds_of_shop_differ_as_named(kinds: dict[str, DemoShop]) -> None:
    repeat = {k: _repeat_share(s) for k, s in kinds.items()}
    views = {k: _views_per_purchase(s) for k, s in kinds.items()}
    assert repeat["grocery"] > 0.6 and repeat["general"] < 0.3
    assert repeat["grocery"] > repeat["mixed"] > repeat["general"] > repeat["fashion"]
    assert repeat["fashion"] < 0.05 and not kinds["fashion"].truth.consumables
    assert views["fashion"] > 2 * views["mixed"] > 4 * views["grocery"]


def test_grocery_has_one_basket_per_customer_and_day(kinds: dict[str, DemoShop]) -> None:
    bought = kinds["grocery"].events.filter(pc.equal(kinds["grocery"].events["event_type"], "purchase"))
    orders = defaultdict(set)
    for user, order, ts in zip(
        bought["user_id"].to_pylist(), bought["order_id"].to_pylist(), bought["timestamp"].to_pylist()
    ):
        orders[(user, ts.date())].add(order)
    assert all(len(o) == 1 for o in orders.values())
    mixed = kinds["mixed"].events.filter(pc.equal(kinds["mixed"].events["event_type"], "purchase"))
    per_order = len(bought) / len(set(bought["order_id"].to_pylist()))
    assert per_order > len(mixed) / len(set(mixed["order_id"].to_pylist()))


def test_unknown_kind() -> None:
    with pytest.raises(ValueError, match="kind must be one of"):
        generate_shop(n_users=10, n_items=10, days=10, kind="bakery")


def test_demo_data_command_takes_a_kind(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from training.cli import app

    runner = CliRunner()
    ok = runner.invoke(
        app, ["demo-data", "--out", str(tmp_path), "--users", "50", "--items", "30", "--kind", "fashion"]
    )
    assert ok.exit_code == 0 and (tmp_path / "events.csv").is_file(), ok.output
    bad = runner.invoke(app, ["demo-data", "--out", str(tmp_path), "--kind", "bakery"])
    assert bad.exit_code == 2 and "--kind must be one of mixed, grocery, general, fashion" in bad.output
