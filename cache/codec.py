"""Compact binary encoding of the per-customer and per-item lists kept in Redis.

JSON lists with field names cost about 10 KB per customer; this encoding keeps the same information in about a
tenth of that. A list is stored column by column behind a two-byte header::

    byte 0   MAGIC (0xB1: never the first byte of a JSON value, so a reader tells the two apart)
    byte 1   flags: bits 0-1 width of an item index (0: 2 bytes, 1: 3 bytes, 2: 4 bytes)
                    bit 2 scores are float32 (else float16)
                    bit 3 a reason code column follows
                    bit 4 a due-date column follows
    then     n item indices (little endian, into the version's catalogue, see ``Keys.CATALOGUE``)
             n scores
             n reason codes (uint8, index into :data:`REASONS`)           when bit 3 is set
             n due dates (uint16 little endian, days since 1970-01-01; 0 = none)  when bit 4 is set

The entry count follows from the length. Key naming is :mod:`cache.keys`'s business; this module only turns a list
into bytes and back. Scores are float16 (three significant digits, about 1e-3 relative) unless one does not fit;
they are decoded rounded to 3 significant digits (float32: 7) so answers stay short. Lists without reasons decode to
``[[item_id, score], ...]`` (the shape of the JSON lists); lists with reasons to
``[{"item_id", "score", "reason", "due"}, ...]``.

Written here rather than taken from a serialisation library because the gain comes from the layout itself (item
indices instead of ids, no field names, half-precision scores), which msgpack or protobuf would not give.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any

import numpy as np

MAGIC = 0xB1
_WIDTH_CODES = {2: 0, 3: 1, 4: 2}
_WIDTHS = (2, 3, 4)
_F32, _REASONS, _DUE = 4, 8, 16
_EPOCH = date(1970, 1, 1).toordinal()
_F16_MAX = 65_000.0
_F16_MIN_NORMAL = 6.2e-5

REASONS: tuple[str | None, ...] = (None, "due_again", "goes_with_your_purchases", "bestseller", "new_arrival")
"""Reason codes: position in this tuple is the stored code. Append new reasons at the end (never reorder: published
versions keep their codes); up to 255."""
REASON_CODES: dict[str | None, int] = {r: k for k, r in enumerate(REASONS)}


def is_compact(raw: bytes | None) -> bool:
    """True when ``raw`` was written by this module (not JSON)."""
    return bool(raw) and raw[0] == MAGIC  # type: ignore[index]


def index_width(catalogue_size: int) -> int:
    """Bytes per item index for a catalogue of this many items."""
    for width in _WIDTHS:
        if catalogue_size <= 1 << (8 * width):
            return width
    raise ValueError(f"a catalogue of {catalogue_size} items is too large to index")


def _pack_indices(indices: np.ndarray, width: int) -> bytes:
    as_u4 = np.ascontiguousarray(indices, dtype="<u4")
    if width == 4:
        return as_u4.tobytes()
    return as_u4.view(np.uint8).reshape(-1, 4)[:, :width].tobytes()


def _unpack_indices(body: memoryview, n: int, width: int) -> np.ndarray:
    raw = np.frombuffer(body, dtype=np.uint8, count=n * width)
    if width == 4:
        return raw.view("<u4")
    padded = np.zeros((n, 4), dtype=np.uint8)
    padded[:, :width] = raw.reshape(n, width)
    return padded.view("<u4").ravel()


def _fits_f16(scores: np.ndarray) -> bool:
    """Every score is 0 or a normal float16 (NaN and infinities fail both comparisons: float32 keeps them)."""
    a = np.abs(scores)
    return bool(((a == 0) | ((a >= _F16_MIN_NORMAL) & (a <= _F16_MAX))).all())


def encode_indexed(
    indices: np.ndarray,
    scores: np.ndarray,
    catalogue_size: int,
    reasons: np.ndarray | None = None,
    due_days: np.ndarray | None = None,
) -> bytes:
    """One list from arrays: catalogue indices, scores, optional reason codes and due days (0 = none)."""
    width = index_width(catalogue_size)
    scores = np.asarray(scores, dtype=np.float64)
    f16 = _fits_f16(scores)
    flags = _WIDTH_CODES[width] | (0 if f16 else _F32)
    parts = [_pack_indices(indices, width), scores.astype("<f2" if f16 else "<f4").tobytes()]
    if reasons is not None:
        flags |= _REASONS
        parts.append(np.asarray(reasons, dtype=np.uint8).tobytes())
    if due_days is not None:
        flags |= _DUE
        parts.append(np.asarray(due_days, dtype="<u2").tobytes())
    return bytes((MAGIC, flags)) + b"".join(parts)


def encode_rows(ids: np.ndarray, scores: np.ndarray, keep: np.ndarray, catalogue_size: int) -> list[bytes]:
    """One encoded list per row of a top-k batch (``ids`` are catalogue indices; entries where ``keep`` is False are
    left out), without building Python lists of pairs."""
    out = []
    full = keep.all(axis=1)
    for row in range(ids.shape[0]):
        if full[row]:
            out.append(encode_indexed(ids[row], scores[row], catalogue_size))
        else:
            k = keep[row]
            out.append(encode_indexed(ids[row][k], scores[row][k], catalogue_size))
    return out


def due_day(value: str | date | None) -> int:
    """Days since 1970-01-01 of an ISO date (0 for None)."""
    if value is None:
        return 0
    day = value if isinstance(value, date) else date.fromisoformat(value)
    return day.toordinal() - _EPOCH


def encode_pairs(ranked: Sequence[Sequence[Any]], index: Mapping[str, int], catalogue_size: int) -> bytes:
    """``[(item_id, score), ...]`` as a compact list."""
    if not ranked:
        return encode_indexed(np.zeros(0, dtype=np.int64), np.zeros(0), catalogue_size)
    names, values = zip(*ranked)  # two columns in C, then one lookup per item
    ids = np.fromiter(map(index.__getitem__, names), dtype=np.int64, count=len(names))
    return encode_indexed(ids, np.array(values, dtype=np.float64), catalogue_size)


def encode_picks(picks: Sequence[Mapping[str, Any]], index: Mapping[str, int], catalogue_size: int) -> bytes:
    """``[{"item_id", "score", "reason", "due"}, ...]`` as a compact list (reason must be one of :data:`REASONS`)."""
    rows = [(p["item_id"], p["score"], p.get("reason"), p.get("due")) for p in picks]
    return encode_pick_rows(rows, index, catalogue_size)


PickRow = tuple[str, float, str | None, str | date | None]
"""(item id, score, reason, due date or None): one next-purchase entry."""


def encode_pick_rows(rows: Sequence[PickRow], index: Mapping[str, int], catalogue_size: int) -> bytes:
    """:func:`encode_picks` from (item id, score, reason, due) tuples."""
    items, scores, reasons, due = zip(*rows) if rows else ((), (), (), ())
    try:
        codes = np.array([REASON_CODES[r] for r in reasons], dtype=np.uint8)
    except KeyError as exc:
        raise ValueError(f"reason {exc.args[0]!r} has no code: add it to cache.codec.REASONS") from None
    days = np.array([due_day(d) if d else 0 for d in due], dtype=np.int64)
    ids = np.fromiter(map(index.__getitem__, items), dtype=np.int64, count=len(items))
    values = np.array(scores, dtype=np.float64)
    return encode_indexed(ids, values, catalogue_size, codes, days if days.any() else None)


def _tidy(scores: np.ndarray, digits: int) -> np.ndarray:
    """Scores rounded to ``digits`` significant digits (what the stored precision holds, printed short)."""
    x = scores.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        mag = np.floor(np.log10(np.abs(x)))
    scale = 10.0 ** (digits - 1 - np.where(np.isfinite(mag), mag, 0))
    return np.round(x * scale) / scale


def decode_arrays(raw: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """(catalogue indices, scores, reason codes or None, due days or None) of a compact list."""
    if not is_compact(raw):
        raise ValueError("not a compact list")
    flags = raw[1]
    width = _WIDTHS[flags & 3]
    score_size = 4 if flags & _F32 else 2
    entry = width + score_size + (1 if flags & _REASONS else 0) + (2 if flags & _DUE else 0)
    body = memoryview(raw)[2:]
    n, rest = divmod(len(body), entry)
    if rest:
        raise ValueError(f"compact list of {len(body)} bytes is not a whole number of {entry}-byte entries")
    at = n * width
    indices = _unpack_indices(body[:at], n, width)
    scores = np.frombuffer(body[at : at + n * score_size], dtype="<f4" if flags & _F32 else "<f2")
    at += n * score_size
    reasons = due = None
    if flags & _REASONS:
        reasons = np.frombuffer(body[at : at + n], dtype=np.uint8)
        at += n
    if flags & _DUE:
        due = np.frombuffer(body[at : at + 2 * n], dtype="<u2")
    return indices, scores, reasons, due


def _iso(days: int) -> str | None:
    return date.fromordinal(days + _EPOCH).isoformat() if days else None


def decode(raw: bytes, catalogue: Sequence[str]) -> list[Any]:
    """A compact list back in the JSON lists' shape, item ids looked up in the version's ``catalogue``."""
    indices, scores, reasons, due = decode_arrays(raw)
    ids = [catalogue[j] for j in indices.tolist()]
    values = _tidy(scores, 3 if scores.dtype.itemsize == 2 else 7).tolist()
    if reasons is None:
        return [[i, s] for i, s in zip(ids, values)]
    days = due.tolist() if due is not None else [0] * len(ids)
    return [
        {"item_id": i, "score": s, "reason": REASONS[r], "due": _iso(d)}
        for i, s, r, d in zip(ids, values, reasons.tolist(), days)
    ]


CUSTOMER_MAGIC = 0xB2
_CUSTOMER_HEADER = np.dtype([("magic", "u1"), ("flags", "u1"), ("factors", "<u2"), ("bought", "<u4")])


def encode_customer(factor: np.ndarray, bought: np.ndarray, due: bytes, purchaser: bool, catalogue_size: int) -> bytes:
    """What the API needs to compute a customer's lists on request: their ALS factors (float32, exactly as fitted),
    the catalogue positions of the items they bought, their items due again (a compact list, or b"") and whether
    they bought anything (only customers with purchases have a next-purchase list)."""
    width = index_width(catalogue_size)
    head = np.array(
        [(CUSTOMER_MAGIC, int(purchaser) | _WIDTH_CODES[width] << 1, len(factor), len(bought))], _CUSTOMER_HEADER
    )
    return b"".join((head.tobytes(), np.asarray(factor, dtype="<f4").tobytes(), _pack_indices(bought, width), due))


def is_customer(raw: bytes | None) -> bool:
    return bool(raw) and raw[0] == CUSTOMER_MAGIC  # type: ignore[index]


def decode_customer(raw: bytes) -> tuple[np.ndarray, np.ndarray, bytes, bool]:
    """(factor, bought catalogue positions, due list bytes, purchaser) of :func:`encode_customer`."""
    if not is_customer(raw):
        raise ValueError("not a customer model")
    head = np.frombuffer(raw, _CUSTOMER_HEADER, count=1)[0]
    width = _WIDTHS[(int(head["flags"]) >> 1) & 3]
    at = _CUSTOMER_HEADER.itemsize
    n_factors, n_bought = int(head["factors"]), int(head["bought"])
    factor = np.frombuffer(raw, dtype="<f4", count=n_factors, offset=at)
    at += 4 * n_factors
    bought = _unpack_indices(memoryview(raw)[at : at + n_bought * width], n_bought, width)
    return factor, bought, bytes(raw[at + n_bought * width :]), bool(int(head["flags"]) & 1)
