"""A seeded generator of a realistic small online shop, for ``reco demo-data`` and the test suite.

The shop has readable categories, some consumable (re-bought on a cycle), the rest durable (bought at most once
per customer); Zipf-like item popularity; users with 1-2 favourite categories and heavy-tailed activity; sessions
of views, carts and orders; new arrivals during the period. The *kind* of shop (:data:`SHOP_KINDS`) sets the mix:
``mixed`` (the default: a third of the categories consumable, views:carts:orders about 20:3:1), ``grocery``
(repeat-heavy: most categories consumable, most fans on a cycle, one basket per customer and day, few views),
``general`` (low-repeat general merchandise) and ``fashion`` (view-heavy, nothing re-bought on a cycle).
``DemoTruth`` records what was planted so tests and evaluations can check that the model finds it.
Everything is vectorised numpy, driven by one ``numpy.random.default_rng(seed)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from recommender.data.schema import EVENT_SCHEMA, ITEM_SCHEMA

__all__ = ["SHOP_KINDS", "DemoShop", "DemoTruth", "ShopKind", "generate_shop"]

DAY = 86_400
EVENT_CODES: tuple[str, ...] = ("view", "cart", "purchase")
_VIEW, _CART, _PURCHASE = 0, 1, 2

# name -> (median price, title nouns); consumables also get a repurchase cycle range in days.
_CONSUMABLE_CATEGORIES: dict[str, tuple[float, tuple[float, float], tuple[str, ...]]] = {
    "coffee": (12.0, (14.0, 30.0), ("espresso beans", "filter coffee", "ground coffee", "coffee pods", "cold brew")),
    "tea": (8.0, (21.0, 45.0), ("green tea", "black tea", "herbal tea", "chai blend", "oolong")),
    "pets": (22.0, (14.0, 35.0), ("dog food", "cat food", "cat litter", "dog treats", "bird seed")),
    "beauty": (18.0, (25.0, 45.0), ("face cream", "shampoo", "body lotion", "lip balm", "sunscreen")),
    "vitamins": (15.0, (28.0, 45.0), ("multivitamin", "vitamin D", "omega-3", "magnesium", "zinc tablets")),
    "snacks": (6.0, (14.0, 28.0), ("granola", "trail mix", "dark chocolate", "protein bars", "crackers")),
    "cleaning": (9.0, (21.0, 45.0), ("dish soap", "laundry pods", "surface spray", "sponges", "glass cleaner")),
    "baby care": (16.0, (14.0, 30.0), ("diapers", "baby wipes", "baby lotion", "formula", "bath foam")),
}
_DURABLE_CATEGORIES: dict[str, tuple[float, tuple[str, ...]]] = {
    "kitchen": (35.0, ("chef knife", "frying pan", "cutting board", "kettle", "mixing bowl")),
    "garden": (40.0, ("garden hose", "pruning shears", "planter", "watering can", "bird house")),
    "books": (15.0, ("novel", "cookbook", "travel guide", "biography", "comic")),
    "toys": (25.0, ("puzzle", "building set", "plush bear", "board game", "toy car")),
    "electronics": (80.0, ("headphones", "speaker", "charger", "smart plug", "keyboard")),
    "sports": (45.0, ("yoga mat", "dumbbells", "running belt", "water bottle", "jump rope")),
    "home decor": (30.0, ("candle holder", "cushion", "wall clock", "vase", "picture frame")),
    "stationery": (10.0, ("notebook", "fountain pen", "planner", "pencil set", "desk organiser")),
    "outdoor": (60.0, ("tent", "camping stove", "backpack", "headlamp", "sleeping bag")),
    "fashion": (40.0, ("scarf", "wool hat", "leather belt", "sunglasses", "gloves")),
}
_ADJECTIVES: tuple[str, ...] = (
    "Classic",
    "Organic",
    "Premium",
    "Everyday",
    "Deluxe",
    "Nordic",
    "Rustic",
    "Urban",
    "Eco",
    "Artisan",
    "Compact",
    "Golden",
    "Smart",
    "Vintage",
    "Fresh",
    "Pure",
)


@dataclass(frozen=True)
class ShopKind:
    """What makes one kind of shop different from another in the generator."""

    consumable_share: float
    """Share of the categories that are consumable (re-bought on a cycle)."""
    adopt_share: float
    """Share of a consumable category's fans who buy some of its items on a cycle."""
    cycle_items: tuple[float, float, float]
    """Probability that such a fan cycles 1, 2 or 3 items of the category."""
    cycle_scale: float
    """Multiplier of the categories' repurchase cycles (below 1: more often)."""
    views_per_session: float
    """Mean views per browsing session beyond the first."""
    cart_rate: float
    """Share of views that put the item in the cart."""
    conversion: float
    """Share of sessions that check out."""
    daily_baskets: bool = False
    """One order per customer and day (a grocery trip) instead of one per session or repurchase."""


SHOP_KINDS: dict[str, ShopKind] = {
    "mixed": ShopKind(1 / 3, 0.35, (0.7, 0.22, 0.08), 1.0, 3.0, 0.15, 0.24),
    "grocery": ShopKind(0.75, 0.8, (0.2, 0.4, 0.4), 0.6, 1.0, 0.5, 0.7, daily_baskets=True),
    "general": ShopKind(0.12, 0.12, (0.85, 0.12, 0.03), 1.5, 3.0, 0.15, 0.24),
    "fashion": ShopKind(0.0, 0.0, (1.0, 0.0, 0.0), 1.0, 8.0, 0.06, 0.2),
}
"""The kinds of shop ``generate_shop(kind=...)`` and ``reco demo-data --kind`` know."""


@dataclass
class DemoTruth:
    """What the generator planted, for tests and evaluation."""

    user_categories: dict[str, list[str]]
    """Each user's favourite categories (1-2)."""
    consumables: dict[str, float]
    """Consumable item id -> repurchase cycle in days."""
    durables: set[str]
    """Item ids bought at most once per customer."""
    cycle_buyers: dict[str, list[tuple[str, float]]]
    """User -> [(consumable item id, the user's own cycle in days)], for pairs bought at least twice."""


@dataclass
class DemoShop:
    """Generated events and catalogue (canonical schemas) plus the planted truth."""

    events: pa.Table
    items: pa.Table
    truth: DemoTruth

    def write(self, out_dir: Path) -> tuple[Path, Path]:
        """Write ``events.csv`` and ``items.csv`` (generic format) into ``out_dir``; return their paths."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        events_path, items_path = out_dir / "events.csv", out_dir / "items.csv"
        _write_csv(self.events, events_path)
        _write_csv(self.items, items_path)
        return events_path, items_path


def _write_csv(table: pa.Table, path: Path) -> None:
    """Write ``table`` as CSV with a plain header and ``YYYY-MM-DD HH:MM:SS`` timestamps."""
    for i, field in enumerate(table.schema):
        if pa.types.is_timestamp(field.type):
            text = pc.strftime(table.column(i).cast(pa.timestamp("s")), format="%Y-%m-%d %H:%M:%S")
            table = table.set_column(i, field.name, text)
    with pa.OSFile(str(path), "wb") as sink:
        sink.write((",".join(table.column_names) + "\n").encode())
        pacsv.write_csv(table, sink, pacsv.WriteOptions(include_header=False, quoting_style="needed"))


def _category_names(n_categories: int, consumable_share: float = 1 / 3) -> tuple[list[str], int]:
    """Readable category names (consumables first) and how many are consumable (``consumable_share`` of them, at least
    one when the share is positive, never all of them)."""
    n_cons = 0 if n_categories < 2 or consumable_share <= 0 else max(1, round(n_categories * consumable_share))
    n_cons = min(n_cons, n_categories - 1) if n_categories >= 2 else n_cons
    n_dur = n_categories - n_cons

    def take(names: list[str], n: int) -> list[str]:
        return [names[i % len(names)] + ("" if i < len(names) else f" {i // len(names) + 1}") for i in range(n)]

    return take(list(_CONSUMABLE_CATEGORIES), n_cons) + take(list(_DURABLE_CATEGORIES), n_dur), n_cons


def _category_info(name: str) -> tuple[float, tuple[float, float] | None, tuple[str, ...]]:
    """Median price, cycle range (None for durables) and title nouns of a (possibly suffixed) category name."""
    base = name.rsplit(" ", 1)[0] if name.rsplit(" ", 1)[-1].isdigit() else name
    if base in _CONSUMABLE_CATEGORIES:
        return _CONSUMABLE_CATEGORIES[base]
    price, nouns = _DURABLE_CATEGORIES[base]
    return price, None, nouns


def _to_epoch_seconds(moment: datetime) -> int:
    """Whole seconds since the epoch; naive datetimes are taken as UTC."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc).replace(tzinfo=None)
    return (moment - datetime(1970, 1, 1)) // timedelta(seconds=1)


def _ids(prefix: str, n: int, start: int = 1) -> pa.Array:
    """Zero-padded ids such as ``U00001``."""
    width = max(5, len(str(n + start)))
    return pa.array([f"{prefix}{i:0{width}d}" for i in range(start, n + start)], pa.string())


def _segment_offsets(counts: np.ndarray) -> np.ndarray:
    """Position of each element inside its segment, for segments of the given lengths."""
    total = int(counts.sum())
    starts = np.cumsum(counts) - counts
    return np.arange(total, dtype=np.int64) - np.repeat(starts, counts)


def _take_strings(values: pa.Array, idx: np.ndarray) -> pa.Array:
    """``values[idx]`` with null where ``idx < 0``."""
    return values.take(pa.array(np.maximum(idx, 0), mask=idx < 0))


@dataclass
class _Catalogue:
    """Categories and items, with a sampler of items by popularity within a category."""

    names: list[str]
    n_cons: int
    consumable: np.ndarray
    weight: np.ndarray
    item_cat: np.ndarray
    item_weight: np.ndarray
    item_price: np.ndarray
    available: np.ndarray
    created_s: np.ndarray
    item_ids: pa.Array
    titles: list[str]
    cycle_days: np.ndarray
    cat_sizes: np.ndarray
    sorted_items: np.ndarray
    seg_end: np.ndarray
    upper: np.ndarray
    anchor: np.ndarray
    shape: ShopKind

    def sample_items(self, rng: np.random.Generator, cats: np.ndarray, when: np.ndarray) -> np.ndarray:
        """Popularity-weighted items of the given categories that already exist at ``when``."""
        n_items = len(self.item_cat)
        out = np.empty(len(cats), dtype=np.int64)
        todo = np.arange(len(cats))
        for _ in range(12):
            u = np.minimum(rng.random(len(todo)), 1.0 - 1e-9)
            pos = np.searchsorted(self.upper, cats[todo] + u, side="right")
            out[todo] = self.sorted_items[np.minimum(pos, n_items - 1)]
            todo = todo[self.created_s[out[todo]] > when[todo]]
            if len(todo) == 0:
                break
        out[todo] = self.anchor[cats[todo]]
        return out


@dataclass
class _Users:
    ids: pa.Array
    cat_pref: np.ndarray
    """Each user's categories, most liked first."""
    n_fav: np.ndarray
    start_day: np.ndarray
    n_sessions: np.ndarray


@dataclass
class _Browsing:
    """Sessions with their views, carts and purchases (one line per session and item; durables once per user)."""

    n_sess: int
    s_user: np.ndarray
    v_sess: np.ndarray
    v_ts: np.ndarray
    v_item: np.ndarray
    c_idx: np.ndarray
    c_ts: np.ndarray
    c_qty: np.ndarray
    p_sess: np.ndarray
    p_item: np.ndarray
    p_ts: np.ndarray
    buy_qty: np.ndarray


@dataclass
class _Cycles:
    """Consumables bought again on each adopting user's own cycle."""

    a_user: np.ndarray
    a_item: np.ndarray
    a_cycle: np.ndarray
    r_count: np.ndarray
    r_user: np.ndarray
    r_item: np.ndarray
    r_ts: np.ndarray
    r_qty: np.ndarray
    r_cart_off: np.ndarray
    r_view_off: np.ndarray
    r_has_cart: np.ndarray


def generate_shop(
    *,
    n_users: int = 2000,
    n_items: int = 400,
    n_categories: int = 8,
    days: int = 180,
    end: datetime = datetime(2026, 6, 30),
    seed: int = 42,
    kind: str = "mixed",
) -> DemoShop:
    """Generate a seeded demo shop of a ``kind`` (see :data:`SHOP_KINDS`) with events in ``[end - days, end)``; same
    arguments give identical tables.

    The stages below draw from one generator in a fixed order, so each stage's output depends on the seed only."""
    if n_users < 1 or n_items < 1 or n_categories < 1 or days < 2:
        raise ValueError("n_users, n_items, n_categories must be >= 1 and days >= 2")
    if kind not in SHOP_KINDS:
        raise ValueError(f"kind must be one of {', '.join(SHOP_KINDS)}, not {kind!r}")
    n_categories = min(n_categories, n_items)
    rng = np.random.default_rng(seed)
    end_s = _to_epoch_seconds(end)
    start_s = end_s - days * DAY
    cat = _make_catalogue(rng, n_items, n_categories, days, start_s, SHOP_KINDS[kind])
    users = _make_users(rng, cat, n_users, days)
    browsing = _browse(rng, cat, users, days, start_s, end_s)
    cycles = _repurchase_cycles(rng, cat, users, days, start_s, end_s)
    events, items = _assemble(cat, users, browsing, cycles)
    return DemoShop(events=events, items=items, truth=_truth(cat, users, cycles))


def _make_catalogue(
    rng: np.random.Generator, n_items: int, n_categories: int, days: int, start_s: int, shape: ShopKind
) -> _Catalogue:
    # ---- categories -------------------------------------------------------------------------------------
    cat_names, n_cons = _category_names(n_categories, shape.consumable_share)
    cat_info = [_category_info(name) for name in cat_names]
    cat_consumable = np.arange(n_categories) < n_cons
    cat_weight = rng.dirichlet(np.full(n_categories, 3.0))

    # ---- items ------------------------------------------------------------------------------------------
    item_cat = rng.choice(n_categories, size=n_items, p=rng.dirichlet(np.full(n_categories, 8.0)))
    item_cat[rng.permutation(n_items)[:n_categories]] = np.arange(n_categories)  # no empty category
    cat_sizes = np.bincount(item_cat, minlength=n_categories)
    order = np.lexsort((rng.random(n_items), item_cat))  # grouped by category, shuffled within
    rank = np.empty(n_items, dtype=np.int64)
    rank[order] = _segment_offsets(cat_sizes)  # random popularity rank within the category (0 = top)
    zipf_s = rng.uniform(0.9, 1.2, n_categories)
    item_weight = 1.0 / (rank + 1.0) ** zipf_s[item_cat]

    median_price = np.array([info[0] for info in cat_info]) * rng.uniform(0.8, 1.25, n_categories)
    raw_price = median_price[item_cat] * rng.lognormal(0.0, 0.45, n_items)
    item_price = np.maximum(np.round(raw_price) - 0.01, 0.99)
    available = rng.random(n_items) >= 0.04
    # ~15% arrive during the period (a quarter of those in the last 30 days); each category's top item is old.
    is_new = (rng.random(n_items) < 0.15) & (rank > 0)
    recent_days = min(30, days)
    arrival = np.where(
        rng.random(n_items) < 0.25,
        (days - recent_days) * DAY + rng.integers(0, recent_days * DAY, n_items),
        rng.integers(0, days * DAY, n_items),
    )
    created_s = np.where(is_new, start_s + arrival, start_s - rng.integers(DAY, 730 * DAY, n_items))
    nouns = [cat_info[c][2][rng.integers(len(cat_info[c][2]))] for c in item_cat]
    adjectives = rng.integers(len(_ADJECTIVES), size=n_items)
    item_ids = _ids("I", n_items)
    titles = [f"{_ADJECTIVES[a]} {noun} {i + 1}" for i, (a, noun) in enumerate(zip(adjectives, nouns))]

    cycle_days = np.full(n_items, np.nan)
    for c in range(n_cons):
        lo, hi = cat_info[c][1]  # type: ignore[misc]
        members = item_cat == c
        cycle_days[members] = np.round(rng.uniform(lo, hi, int(members.sum())) * shape.cycle_scale, 1)

    # Per-category inverse-CDF table: query ``c + u`` finds an item of category c by popularity.
    sorted_items = np.lexsort((rank, item_cat))
    cum = np.cumsum(item_weight[sorted_items])
    seg_end = np.cumsum(cat_sizes)
    seg_total = cum[seg_end - 1]
    seg_before = np.concatenate([[0.0], seg_total[:-1]])
    frac = (cum - np.repeat(seg_before, cat_sizes)) / np.repeat(seg_total - seg_before, cat_sizes)
    frac[seg_end - 1] = 1.0
    upper = item_cat[sorted_items] + frac
    anchor = sorted_items[seg_end - cat_sizes]  # top (old) item of each category
    return _Catalogue(
        cat_names,
        n_cons,
        cat_consumable,
        cat_weight,
        item_cat,
        item_weight,
        item_price,
        available,
        created_s,
        item_ids,
        titles,
        cycle_days,
        cat_sizes,
        sorted_items,
        seg_end,
        upper,
        anchor,
        shape,
    )


def _make_users(rng: np.random.Generator, cat: _Catalogue, n_users: int, days: int) -> _Users:
    n_categories = len(cat.names)
    gumbel = np.log(cat.weight)[None, :] + rng.gumbel(size=(n_users, n_categories))
    cat_pref = np.argsort(-gumbel, axis=1)  # each user's categories, most liked first
    n_fav = np.where((rng.random(n_users) < 0.5) & (n_categories > 1), 2, 1)
    user_ids = _ids("U", n_users)
    user_start_day = np.where(rng.random(n_users) < 0.7, 0, rng.integers(0, int(days * 0.9), n_users))
    active_frac = (days - user_start_day) / days
    activity = rng.lognormal(np.log(10.0), 1.0, n_users)
    n_sessions = np.clip(np.round(activity * active_frac), 1, 3 * days).astype(np.int64)
    return _Users(user_ids, cat_pref, n_fav, user_start_day, n_sessions)


def _browse(rng: np.random.Generator, cat: _Catalogue, users: _Users, days: int, start_s: int, end_s: int) -> _Browsing:
    n_categories, n_items = len(cat.names), len(cat.item_cat)
    n_fav, user_start_day = users.n_fav, users.start_day
    n_sess = int(users.n_sessions.sum())
    s_user = np.repeat(np.arange(len(users.n_sessions)), users.n_sessions)
    s_active_days = days - user_start_day[s_user]
    s_day = user_start_day[s_user] + (rng.random(n_sess) * s_active_days).astype(np.int64)
    tod = np.mod(np.where(rng.random(n_sess) < 0.75, rng.normal(20.0, 3.0, n_sess), rng.uniform(0, 24, n_sess)), 24)
    s_start = start_s + s_day * DAY + (tod * 3600).astype(np.int64)
    in_fav = rng.random(n_sess) < 0.85
    fav_pick = np.where(n_fav[s_user] == 2, (rng.random(n_sess) < 0.4).astype(np.int64), 0)
    other_pick = n_fav[s_user] + (rng.random(n_sess) * np.maximum(n_categories - n_fav[s_user], 1)).astype(np.int64)
    pick = np.where(in_fav | (n_categories <= n_fav[s_user]), fav_pick, np.minimum(other_pick, n_categories - 1))
    s_cat = users.cat_pref[s_user, pick]

    n_views = 1 + rng.poisson(cat.shape.views_per_session, n_sess)
    n_v = int(n_views.sum())
    v_sess = np.repeat(np.arange(n_sess), n_views)
    gaps = np.minimum(rng.exponential(45.0, n_v), 600.0).astype(np.int64) + 5
    gaps[_segment_offsets(n_views) == 0] = 0
    v_off = np.cumsum(gaps)
    v_off -= np.repeat(v_off[np.cumsum(n_views) - n_views], n_views)
    checkout_off = np.maximum.reduceat(v_off, np.cumsum(n_views) - n_views) + 150
    checkout_off += 30 + np.minimum(rng.exponential(60.0, n_sess), 600.0).astype(np.int64)
    s_start = np.clip(s_start, start_s, end_s - checkout_off - 1)  # the whole session fits in the period
    v_ts = s_start[v_sess] + v_off
    v_item = cat.sample_items(rng, s_cat[v_sess], v_ts)

    is_cart = rng.random(n_v) < cat.shape.cart_rate
    c_idx = np.flatnonzero(is_cart)
    c_ts = v_ts[c_idx] + 5 + np.minimum(rng.exponential(20.0, len(c_idx)), 140.0).astype(np.int64)
    c_qty = rng.choice(np.array([1.0, 2.0, 3.0]), size=len(c_idx), p=[0.85, 0.11, 0.04])

    # Purchases: some carts are checked out; one line per (session, item); durables once per user.
    converts = rng.random(n_sess) < cat.shape.conversion  # a converting session checks out most of its cart
    buy_mask = converts[v_sess[c_idx]] & (rng.random(len(c_idx)) < 0.85)
    buy, buy_qty = c_idx[buy_mask], c_qty[buy_mask]
    p_sess, p_item = v_sess[buy], v_item[buy]
    p_ts = s_start[p_sess] + checkout_off[p_sess]
    _, first = np.unique(p_sess * n_items + p_item, return_index=True)
    keep = np.zeros(len(buy), dtype=bool)
    keep[first] = True
    durable = ~cat.consumable[cat.item_cat[p_item]]
    dur_idx = np.flatnonzero(keep & durable)
    dur_idx = dur_idx[np.argsort(p_ts[dur_idx], kind="stable")]
    _, first_dur = np.unique(s_user[p_sess[dur_idx]] * n_items + p_item[dur_idx], return_index=True)
    keep[dur_idx] = False
    keep[dur_idx[first_dur]] = True
    p_sess, p_item, p_ts, buy_qty = p_sess[keep], p_item[keep], p_ts[keep], buy_qty[keep]
    return _Browsing(n_sess, s_user, v_sess, v_ts, v_item, c_idx, c_ts, c_qty, p_sess, p_item, p_ts, buy_qty)


def _repurchase_cycles(
    rng: np.random.Generator, cat: _Catalogue, users: _Users, days: int, start_s: int, end_s: int
) -> _Cycles:
    cat_pref, n_fav, n_users = users.cat_pref, users.n_fav, len(users.n_fav)
    user_factor = rng.uniform(0.8, 1.2, n_users)
    adopt_user: list[np.ndarray] = []
    adopt_item: list[np.ndarray] = []
    for c in range(cat.n_cons):
        fans = np.flatnonzero((cat_pref[:, 0] == c) | ((n_fav == 2) & (cat_pref[:, 1] == c)))
        fans = fans[rng.random(len(fans)) < cat.shape.adopt_share]
        cands = cat.sorted_items[cat.seg_end[c] - cat.cat_sizes[c] : cat.seg_end[c]][:30]  # most popular first
        if len(fans) == 0 or len(cands) == 0:
            continue
        keys = np.log(cat.item_weight[cands])[None, :] + rng.gumbel(size=(len(fans), len(cands)))
        chosen = cands[np.argsort(-keys, axis=1)[:, :3]]
        k = np.minimum(rng.choice(np.array([1, 2, 3]), size=len(fans), p=list(cat.shape.cycle_items)), len(cands))
        mask = np.arange(chosen.shape[1])[None, :] < k[:, None]
        adopt_user.append(np.broadcast_to(fans[:, None], chosen.shape)[mask])
        adopt_item.append(chosen[mask])
    a_user = np.concatenate(adopt_user) if adopt_user else np.zeros(0, dtype=np.int64)
    a_item = np.concatenate(adopt_item) if adopt_item else np.zeros(0, dtype=np.int64)
    a_cycle = cat.cycle_days[a_item] * user_factor[a_user]
    n_a = len(a_user)
    a_first = np.maximum(start_s + users.start_day[a_user] * DAY, cat.created_s[a_item]) + 3600
    a_first = a_first + (rng.random(n_a) * a_cycle * DAY).astype(np.int64)
    max_k = int(np.ceil(days / (float(np.nanmin(cat.cycle_days)) * 0.8 * 0.85))) + 2 if n_a else 1
    jitter = np.clip(1.0 + 0.06 * rng.standard_normal((n_a, max_k)), 0.85, 1.15)
    jitter[:, 0] = 0.0
    r_times = a_first[:, None] + np.cumsum(a_cycle[:, None] * DAY * jitter, axis=1).astype(np.int64)
    r_ok = r_times < end_s - 3600
    r_count = r_ok.sum(axis=1)
    r_adopt = np.broadcast_to(np.arange(n_a)[:, None], r_times.shape)[r_ok]
    r_ts = r_times[r_ok]
    n_r = len(r_ts)
    r_user, r_item = a_user[r_adopt], a_item[r_adopt]
    r_qty = np.where(rng.random(n_r) < 0.15, 2.0, 1.0)
    r_cart_off = 10 + np.minimum(rng.exponential(30.0, n_r), 120.0).astype(np.int64)
    r_view_off = r_cart_off + 20 + np.minimum(rng.exponential(120.0, n_r), 1200.0).astype(np.int64)
    r_has_cart = rng.random(n_r) < 0.6
    return _Cycles(a_user, a_item, a_cycle, r_count, r_user, r_item, r_ts, r_qty, r_cart_off, r_view_off, r_has_cart)


def _assemble(cat: _Catalogue, users: _Users, b: _Browsing, r: _Cycles) -> tuple[pa.Table, pa.Table]:
    """The event log (sorted by time, orders numbered chronologically) and the catalogue."""
    n_v, n_r = len(b.v_item), len(r.r_ts)
    rc = np.flatnonzero(r.r_has_cart)
    s_user, v_sess, c_idx = b.s_user, b.v_sess, b.c_idx
    ev_user = np.concatenate(
        [s_user[v_sess], s_user[v_sess[c_idx]], s_user[b.p_sess], r.r_user, r.r_user[rc], r.r_user]
    )
    ev_item = np.concatenate([b.v_item, b.v_item[c_idx], b.p_item, r.r_item, r.r_item[rc], r.r_item])
    ev_type = np.concatenate(
        [
            np.full(n_v, _VIEW),
            np.full(len(c_idx), _CART),
            np.full(len(b.p_item), _PURCHASE),
            np.full(n_r, _VIEW),
            np.full(len(rc), _CART),
            np.full(n_r, _PURCHASE),
        ]
    ).astype(np.int8)
    ev_ts = np.concatenate([b.v_ts, b.c_ts, b.p_ts, r.r_ts - r.r_view_off, r.r_ts[rc] - r.r_cart_off[rc], r.r_ts])
    ev_qty = np.concatenate([np.ones(n_v), b.c_qty, b.buy_qty, np.ones(n_r), r.r_qty[rc], r.r_qty])
    neg = np.full(n_v + len(c_idx), -1, dtype=np.int64)
    ev_order_key = np.concatenate([neg, b.p_sess, np.full(n_r + len(rc), -1), b.n_sess + np.arange(n_r)])
    if cat.shape.daily_baskets:  # one basket per customer and day: every purchase of that day in one order
        ev_order_key = np.where(ev_order_key >= 0, ev_user.astype(np.int64) * 1_000_000 + ev_ts // DAY, -1)

    perm = np.lexsort((ev_type, ev_item, ev_user, ev_ts))
    ev_user, ev_item, ev_type = ev_user[perm], ev_item[perm], ev_type[perm]
    ev_ts, ev_qty, ev_order_key = ev_ts[perm], ev_qty[perm], ev_order_key[perm]
    has_order = ev_order_key >= 0
    keys, first_pos, inverse = np.unique(ev_order_key[has_order], return_index=True, return_inverse=True)
    number = np.empty(len(keys), dtype=np.int64)
    number[np.argsort(first_pos, kind="stable")] = np.arange(len(keys))  # orders numbered chronologically
    ev_order = np.full(len(ev_ts), -1, dtype=np.int64)
    ev_order[has_order] = number[inverse.ravel()]
    order_ids = pa.array([f"O{i:0{max(6, len(str(len(keys))))}d}" for i in range(1, len(keys) + 1)], pa.string())

    events = pa.table(
        [
            users.ids.take(pa.array(ev_user)),
            cat.item_ids.take(pa.array(ev_item)),
            pa.array(EVENT_CODES, pa.string()).take(pa.array(ev_type)),
            pa.array(ev_ts * 1_000_000, pa.timestamp("us")),
            pa.array(ev_qty, pa.float64()),
            pa.array(cat.item_price[ev_item], pa.float64()),
            _take_strings(order_ids, ev_order),
        ],
        schema=EVENT_SCHEMA,
    )
    items = pa.table(
        [
            cat.item_ids,
            pa.array(cat.titles, pa.string()),
            pa.array(cat.names, pa.string()).take(pa.array(cat.item_cat)),
            pa.array(cat.item_price, pa.float64()),
            pa.array(cat.available, pa.bool_()),
            pa.array(cat.created_s * 1_000_000, pa.timestamp("us")),
        ],
        schema=ITEM_SCHEMA,
    )
    return events, items


def _truth(cat: _Catalogue, users: _Users, r: _Cycles) -> DemoTruth:
    uid = users.ids.to_pylist()
    iid = cat.item_ids.to_pylist()
    n_users = len(uid)
    user_categories = {uid[u]: [cat.names[c] for c in users.cat_pref[u, : users.n_fav[u]]] for u in range(n_users)}
    cons_items = np.flatnonzero(cat.consumable[cat.item_cat])
    consumables = {iid[i]: float(cat.cycle_days[i]) for i in cons_items}
    durables = {iid[i] for i in np.flatnonzero(~cat.consumable[cat.item_cat])}
    cycle_buyers: dict[str, list[tuple[str, float]]] = {}
    for a in np.flatnonzero(r.r_count >= 2):
        cycle_buyers.setdefault(uid[r.a_user[a]], []).append((iid[r.a_item[a]], round(float(r.a_cycle[a]), 2)))
    return DemoTruth(user_categories, consumables, durables, cycle_buyers)
