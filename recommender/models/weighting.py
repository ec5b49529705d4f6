"""Confidence weighting: events to a sparse user x item confidence matrix.

confidence(u, i) = sum over u's events on i of  weight[event_type] * 0.5 ** (age_days / half_life_days)

where age is measured from ``as_of`` (default: the newest event). Ids are mapped to dense indices in sorted order,
so the same input always gives the same matrix.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp


@dataclass
class Interactions:
    """The confidence matrix with its id maps (row i is ``user_ids[i]``, column j is ``item_ids[j]``)."""

    matrix: sp.csr_matrix
    user_ids: np.ndarray
    item_ids: np.ndarray
    as_of: datetime

    def __post_init__(self) -> None:
        self.user_index = {u: i for i, u in enumerate(self.user_ids.tolist())}
        self.item_index = {it: j for j, it in enumerate(self.item_ids.tolist())}


def latest_timestamp(events: pa.Table) -> datetime:
    """The newest event's time: the default 'now' of a run (real logs are historical)."""
    value = pc.max(events["timestamp"]).as_py()
    if value is None:
        raise ValueError("There are no events.")
    return value


def build_interactions(
    events: pa.Table, weights: dict[str, float], half_life_days: float, as_of: datetime | None = None
) -> Interactions:
    """Aggregate events into a CSR confidence matrix; event types with zero weight are ignored."""
    as_of = as_of or latest_timestamp(events)
    active = {k: float(v) for k, v in weights.items() if v > 0}
    if not active:
        raise ValueError("Every event weight is zero: nothing to learn from.")
    con = duckdb.connect()
    con.register("ev", events)
    con.register("w", pa.table({"event_type": list(active), "weight": list(active.values())}))
    con.execute(
        """
        CREATE TEMP TABLE agg AS
        SELECT user_id, item_id,
               sum(w.weight * pow(0.5, greatest(epoch(CAST(? AS TIMESTAMP)) - epoch(timestamp), 0) / 86400.0 / ?)) AS c
        FROM ev JOIN w USING (event_type) GROUP BY user_id, item_id
        """,
        [as_of, float(half_life_days)],
    )
    users = con.sql("SELECT DISTINCT user_id FROM agg ORDER BY user_id").fetchnumpy()["user_id"]
    items = con.sql("SELECT DISTINCT item_id FROM agg ORDER BY item_id").fetchnumpy()["item_id"]
    cols = con.sql(
        """
        WITH u AS (SELECT user_id, row_number() OVER (ORDER BY user_id) - 1 AS r
                   FROM (SELECT DISTINCT user_id FROM agg)),
             i AS (SELECT item_id, row_number() OVER (ORDER BY item_id) - 1 AS c
                   FROM (SELECT DISTINCT item_id FROM agg))
        SELECT u.r, i.c, agg.c AS v FROM agg JOIN u USING (user_id) JOIN i USING (item_id)
        """
    ).fetchnumpy()
    matrix = sp.csr_matrix(
        (cols["v"].astype(np.float32), (cols["r"].astype(np.int32), cols["c"].astype(np.int32))),
        shape=(len(users), len(items)),
    )
    return Interactions(matrix, np.asarray(users, dtype=object), np.asarray(items, dtype=object), as_of)


def pair_matrix(events: pa.Table, inter: Interactions, types: tuple[str, ...]) -> sp.csr_matrix:
    """Binary matrix (same shape and maps as ``inter``) of the user-item pairs with an event of one of ``types``;
    users and items ``inter`` does not know are left out.

    Ids are matched to rows and columns in Arrow (``index_in``), never as Python strings: on a shop with millions of
    events, the distinct pairs as Python objects cost several times the events' own memory."""
    chosen = pc.is_in(events["event_type"], value_set=pa.array(list(types), pa.string()))
    users = positions(events["user_id"], inter.user_ids)
    items = positions(events["item_id"], inter.item_ids)
    keep = pc.fill_null(chosen, False).to_numpy(zero_copy_only=False) & (users >= 0) & (items >= 0)
    matrix = sp.csr_matrix(
        (np.ones(int(keep.sum()), dtype=np.float32), (users[keep], items[keep])), shape=inter.matrix.shape
    )
    matrix.sum_duplicates()
    matrix.data[:] = 1.0  # several events of one pair: still one pair
    return matrix


def positions(ids: pa.ChunkedArray, known: np.ndarray) -> np.ndarray:
    """Each id's position in ``known`` (-1 for an id it does not hold), as int32."""
    found = pc.index_in(ids, value_set=pa.array(known, pa.string()))
    return pc.fill_null(found, -1).to_numpy().astype(np.int32, copy=False)


def purchase_matrix(events: pa.Table, inter: Interactions) -> sp.csr_matrix:
    """Binary matrix (same shape and maps as ``inter``) of items each user has purchased."""
    return pair_matrix(events, inter, ("purchase",))


def interaction_matrix(events: pa.Table, inter: Interactions) -> sp.csr_matrix:
    """Binary matrix (same shape and maps as ``inter``) of items each user viewed, carted or purchased."""
    return pair_matrix(events, inter, ("view", "cart", "purchase"))
