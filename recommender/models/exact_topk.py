"""Exact top-n by inner product that scores only the items that can still make a customer's list.

ALS scores a customer ``u`` and an item ``v`` by ``u . v``, which is at most ``|u| |v|`` (Cauchy-Schwarz). Items
sorted by the length of their factors, the search scores a prefix of that order (the longest factors: the items
most customers' lists are made of), takes each customer's n-th best score ``t`` there, and then scores only the
items with ``|v| >= t / |u|``: no other item can beat ``t``. On the ALS factors of the shops we measured, a list of
100 needs 4% (a generated shop of 100,000 items) to 10% (complete-journey, 65,000 items) of the catalogue scored
(docs/PERFORMANCE.md); the answer is exactly the brute-force one, only found with a fraction of the
multiply-adds. This is the length bound of LEMP (Teflioudi et al., SIGMOD 2015) in its simplest form; no maintained
Python package offers an exact inner-product search with exclusion lists (faiss's exact index scores every item,
its pruned ones are approximate), hence this module.

The n + ``MARGIN`` best candidates found in float32 are re-scored in float64 one pair at a time and ranked by that
score, ties by item index, so a list does not depend on how many customers were searched together (the job's
batches and the API's single customer give the same list).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

MARGIN = 4
"""Candidates kept beyond the ``n`` asked for, so that float32 rounding never decides the last places."""

PREFIX = 1024
"""Items (longest factors first) every customer is scored against before the bound decides what else to score."""

CHUNK = 1024
"""Customers searched together (bounds the work arrays: CHUNK x PREFIX scores, CHUNK x STEP_MAX beyond it)."""

STEP_MAX = 8192
"""The widest step of items scored at once beyond the prefix (bounds a step's memory: CHUNK x STEP_MAX scores)."""

SLACK = 1e-4
"""Relative allowance on the bound for float32 rounding of the scores it is compared with."""


class ExactTopK:
    """The items of one set of factors, ordered for :meth:`search`; unavailable (``hidden``) items are never
    returned."""

    def __init__(self, item_factors: np.ndarray, hidden: np.ndarray | None = None) -> None:
        factors = np.ascontiguousarray(item_factors, dtype=np.float32)
        keep = np.ones(len(factors), dtype=bool)
        if hidden is not None and len(hidden):
            keep[np.asarray(hidden, dtype=np.int64)] = False
        kept = np.flatnonzero(keep)
        norms = np.linalg.norm(factors[kept].astype(np.float64), axis=1)
        order = np.lexsort((kept, -norms))  # longest first, ties by item index
        self.items = kept[order]
        """Sorted position -> item index."""
        self.norms = norms[order]
        self.factors = np.ascontiguousarray(factors[self.items])
        self.factors64 = self.factors.astype(np.float64)
        self.position = np.full(len(factors), -1, dtype=np.int64)
        """Item index -> sorted position (-1: hidden)."""
        self.position[self.items] = np.arange(len(self.items))

    def search(
        self, user_factors: np.ndarray, n: int, exclude: sp.csr_matrix | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(item indices, float32 scores), one row of ``n`` per customer, best first; each customer's ``exclude``
        row (item indices) is left out. Rows with fewer items left are padded with index -1 and score -inf."""
        users = np.atleast_2d(np.asarray(user_factors, dtype=np.float32))
        b, available = len(users), len(self.items)
        ids = np.full((b, n), -1, dtype=np.int64)
        scores = np.full((b, n), -np.inf, dtype=np.float32)
        if b == 0 or n <= 0 or available == 0:
            return ids, scores
        k = min(n + MARGIN, available)
        exclude = sp.csr_matrix(exclude) if exclude is not None else None
        prefix = min(available, max(PREFIX, 4 * k))
        for start in range(0, b, CHUNK):  # a chunk at a time: the work arrays stay small however many customers
            part = slice(start, start + CHUNK)
            chunk = users[part]
            rows, cols = self._excluded(exclude[part] if exclude is not None else None, len(chunk))
            block = chunk @ self.factors[:prefix].T
            _mask(block, rows, cols, np.arange(len(chunk)), 0, prefix)
            best = np.argpartition(-block, k - 1, axis=1)[:, :k]
            best_scores = np.take_along_axis(block, best, axis=1)
            del block
            if prefix < available:
                self._beyond_prefix(chunk, best, best_scores, rows, cols, prefix, k)
            self._zero_users(chunk, best, best_scores, rows, cols)
            self._ranked(chunk, best, best_scores, n, ids[part], scores[part])
        return ids, scores

    def _excluded(self, exclude: sp.csr_matrix | None, b: int) -> tuple[np.ndarray, np.ndarray]:
        """(customer row, sorted position) of every excluded available item."""
        if exclude is None:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
        rows = np.repeat(np.arange(b), np.diff(exclude.indptr[: b + 1]))
        cols = self.position[exclude.indices[: exclude.indptr[b]]]
        keep = cols >= 0
        return rows[keep], cols[keep]

    def _beyond_prefix(
        self,
        users: np.ndarray,
        best: np.ndarray,
        best_scores: np.ndarray,
        rows: np.ndarray,
        cols: np.ndarray,
        prefix: int,
        k: int,
    ) -> None:
        """Merge into ``best`` the items past the prefix that each customer's bound leaves in (in place), in steps
        of doubling width: after each step the n-th best scores rise and the bound leaves fewer items in. ``users``
        is one chunk of a search (at most CHUNK customers)."""
        lengths = np.linalg.norm(users.astype(np.float64), axis=1)
        start, available = prefix, len(self.items)
        while start < available:
            todo = np.flatnonzero(self._reach(best_scores.min(axis=1), lengths) > start)
            if not len(todo):
                return
            end = min(available, start + min(start, STEP_MAX))
            block = users[todo] @ self.factors[start:end].T
            _mask(block, rows, cols, todo, start, end)
            _merge(block, start, todo, best, best_scores, k)
            start = end

    def _reach(self, kth: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """How far down the order each customer must be scored: the items whose length times the customer's
        can reach their n-th best score ``kth`` (all of them when that score is not positive)."""
        reach = np.full(len(kth), len(self.items), dtype=np.int64)
        kth = kth.astype(np.float64)
        bounded = (kth > 0) & np.isfinite(kth) & (lengths > 0)
        floor = kth[bounded] / lengths[bounded] * (1.0 - SLACK)
        reach[bounded] = np.searchsorted(-self.norms, -floor, side="right")
        return reach

    def _zero_users(
        self, users: np.ndarray, best: np.ndarray, best_scores: np.ndarray, rows: np.ndarray, cols: np.ndarray
    ) -> None:
        """A customer whose factors are all zero scores every item 0: their candidates become the first items by
        index (not excluded), so which of the tied items they get does not depend on the search (in place)."""
        zero = np.flatnonzero(~users.any(axis=1))
        if not len(zero):
            return
        k = best.shape[1]
        by_index = np.argsort(self.items)
        for r in zero.tolist():
            skip = set(cols[rows == r].tolist())
            chosen = [int(j) for j in by_index[: k + len(skip)] if int(j) not in skip][:k]
            best[r, : len(chosen)] = chosen
            best_scores[r, : len(chosen)] = 0.0
            best_scores[r, len(chosen) :] = -np.inf

    def _ranked(
        self,
        users: np.ndarray,
        best: np.ndarray,
        best_scores: np.ndarray,
        n: int,
        ids: np.ndarray,
        scores: np.ndarray,
    ) -> None:
        """The candidates re-scored in float64 pair by pair, best first (ties by item index), cut to ``n``, written
        into ``ids`` and ``scores``."""
        exact = np.einsum("bf,bkf->bk", users.astype(np.float64), self.factors64[best], optimize=False)
        exact[~np.isfinite(best_scores)] = -np.inf  # excluded or padding
        item = self.items[best]
        order = np.lexsort((item, -exact), axis=1)[:, :n]
        m = order.shape[1]
        picked = np.take_along_axis(exact, order, axis=1)
        valid = np.isfinite(picked)
        ids[:, :m] = np.where(valid, np.take_along_axis(item, order, axis=1), -1)
        scores[:, :m] = np.where(valid, picked, -np.inf).astype(np.float32)


def _mask(block: np.ndarray, rows: np.ndarray, cols: np.ndarray, chunk: np.ndarray, lo: int, hi: int) -> None:
    """Set to -inf the excluded items of the customers ``chunk`` (rows of the search) in the block of sorted
    positions ``[lo, hi)``."""
    if not len(rows):
        return
    local = np.full(int(rows.max()) + 1, -1, dtype=np.int64)
    inside = chunk[chunk < len(local)]
    local[inside] = np.flatnonzero(chunk < len(local))
    r = local[rows]
    sel = (r >= 0) & (cols >= lo) & (cols < hi)
    block[r[sel], cols[sel] - lo] = -np.inf


def _merge(block: np.ndarray, start: int, chunk: np.ndarray, best: np.ndarray, best_scores: np.ndarray, k: int) -> None:
    """Fold the scores of items ``start + column`` for the customers ``chunk`` into their ``k`` best (in place):
    only the entries above a customer's current k-th best are candidates, usually a handful."""
    kth = best_scores[chunk].min(axis=1)
    r, c = np.nonzero(block > kth[:, None])
    if not len(r):
        return
    counts = np.bincount(r, minlength=len(chunk))
    width = int(counts.max())
    slot = np.arange(len(r)) - np.repeat(np.cumsum(counts) - counts, counts)
    ids = np.zeros((len(chunk), width), dtype=np.int64)
    scores = np.full((len(chunk), width), -np.inf, dtype=np.float32)
    ids[r, slot] = c + start
    scores[r, slot] = block[r, c]
    both = np.concatenate([best[chunk], ids], axis=1)
    both_scores = np.concatenate([best_scores[chunk], scores], axis=1)
    keep = np.argpartition(-both_scores, k - 1, axis=1)[:, :k]
    best[chunk] = np.take_along_axis(both, keep, axis=1)
    best_scores[chunk] = np.take_along_axis(both_scores, keep, axis=1)
