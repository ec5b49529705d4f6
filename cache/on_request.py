"""Lists the job did not precompute, from what a published version keeps for them: customers' lists, and items'
similar items (:func:`similar_list`).

The job precomputes personal and next-purchase lists only for customers active lately; for the others it stores a
model row (``Keys.customer``, :func:`cache.codec.encode_customer`). This module turns those rows back into lists with
:class:`recommender.serving.customer_lists.OnRequest`, through the same compact encoding as stored lists, so a
customer gets the same answer whichever way their lists were made. The API uses it per request
(:mod:`api.session_models`); :func:`iter_next_purchase` walks every customer for the bulk export.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import orjson

from cache import codec
from cache.keys import Keys
from cache.reader import decode_with, iter_lists, scan_values
from cache.server import mget
from recommender.config import ListParams
from recommender.models.repeat import NextPick
from recommender.models.session import SessionModel
from recommender.serving import lists
from recommender.serving.customer_lists import CustomerRow, OnRequest

Lists = tuple[list[Any], list[dict[str, Any]] | None]


def engine(catalogue: list[str], factors_raw: bytes, manifest: dict[str, Any]) -> OnRequest:
    """The on-request engine of a version from its catalogue, item factors (raw float32) and manifest."""
    params = manifest["params"]
    factors = np.frombuffer(factors_raw, dtype=np.float32).reshape(-1, params["als"]["factors"])
    return OnRequest(catalogue, factors, manifest.get("hidden_items", []), ListParams.model_validate(params["lists"]))


def customer_row(raw: bytes, catalogue: list[str]) -> CustomerRow:
    factor, bought, due_raw, purchaser = codec.decode_customer(raw)
    due = [NextPick(**d) for d in codec.decode(due_raw, catalogue)] if due_raw else []
    return CustomerRow(factor, bought, due, purchaser)


def served(on_request: OnRequest, index: dict[str, int], raws: list[bytes]) -> list[Lists]:
    """(personal, next purchase or None) per customer row, as a reader would decode them had they been stored."""
    catalogue, size = on_request.catalogue, len(on_request.catalogue)
    rows = [customer_row(raw, catalogue) for raw in raws]
    return [
        (
            codec.decode(codec.encode_pairs(personal, index, size), catalogue),
            codec.decode(codec.encode_picks(nxt, index, size), catalogue) if nxt is not None else None,
        )
        for personal, nxt in on_request.lists(rows)
    ]


def similar_list(model: SessionModel, catalogue: list[str], item_id: str, size: int) -> list[Any] | None:
    """The similar items of an item the job left to compute on request (it had no event within
    ``similar_active_days``), as a reader would decode the stored list: every pair scored against the version's
    item factors, as the job scores a catalogue of up to ``similar_exact_max_items`` items. None for an item the
    version's factors do not know."""
    column = model.index.get(item_id)
    if column is None:
        return None
    _, ids, scores, keep = lists.similar_of(model.model, np.array([column]), size, model.hidden)
    return codec.decode(codec.encode_rows(ids, scores, keep, len(catalogue))[0], catalogue)


def load(client: Any, keys: Keys, version: str) -> tuple[OnRequest, dict[str, int]] | None:
    """The engine of a published version and its catalogue index (sync); None for a version without item factors."""
    base = keys.version_prefix(version)
    catalogue = orjson.loads(client.get(base + Keys.CATALOGUE) or b"[]")
    manifest = decode_with(client.get(base + Keys.MANIFEST), None)
    factors = client.get(base + Keys.FACTORS)
    if not catalogue or not manifest or not factors:
        return None
    return engine(catalogue, factors, manifest), {item: j for j, item in enumerate(catalogue)}


def customer_lists(client: Any, keys: Keys, version: str, user_ids: list[str]) -> dict[str, Lists]:
    """Lists of the given customers whose lists were left to compute on request (sync; others are not in the
    answer)."""
    loaded = load(client, keys, version)
    if loaded is None or not user_ids:
        return {}
    raws = mget(client, [keys.key(version, Keys.customer(u)) for u in user_ids])
    found = [(u, raw) for u, raw in zip(user_ids, raws) if raw is not None]
    return dict(zip([u for u, _ in found], served(*loaded, [raw for _, raw in found])))


def iter_next_purchase(client: Any, keys: Keys, version: str, batch: int = 1000) -> Iterator[tuple[str, list[Any]]]:
    """Every customer's next-purchase list of one version: the stored ones, then those computed on request (sync)."""
    yield from iter_lists(client, keys, version, "next", batch)
    loaded = load(client, keys, version)
    if loaded is None:
        return
    for values in scan_values(client, keys.version_prefix(version) + "cust:", batch):
        buyers = [(user, raw) for user, raw in values if raw[1] & 1]  # customers with purchases
        for (user, _), (_, nxt) in zip(buyers, served(*loaded, [raw for _, raw in buyers])):
            if nxt is not None:
                yield user, nxt
