"""The learned blend's co-purchase neighbours, kept with its ranker from the night it is learnt.

Serving the blend needs every item's co-purchase neighbours (implicit's exact item-item cosine over the bought
matrix, :func:`recommender.models.blend_candidates.copurchase`): on complete-journey 5 s of a 39 s night, a cost that
grows with the square of each customer's distinct items. Like the ranker, which is learnt once a week and reused
meanwhile (:mod:`training.blend_step`), they change slowly: the neighbours a learning night computes for its lists
are kept in ``<data dir>/blend/<key prefix>.npz`` with that ranker's checksum and the night's as-of, and the nights
that reuse the ranker reuse them, matched to tonight's items by id (an item new since has none until the ranker is
learnt again). Kept neighbours are used only with the same ranker and an as-of no later than tonight's (a run by
hand with an earlier ``--as-of`` never sees neighbours of later purchases); otherwise, or when the file is missing or
unreadable, the night computes them. They are written once the night's version is published.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import scipy.sparse as sp

from recommender.models.blend_candidates import Neighbours, copurchase
from recommender.models.weighting import positions

log = logging.getLogger(__name__)


class KeptNeighbours:
    """Tonight's co-purchase neighbours: the kept ones when the night reuses their ranker, else computed (and kept
    by :meth:`keep`). :attr:`how` says which, for the manifest's ``blend`` block."""

    def __init__(self, data_dir: Path, key_prefix: str, blend: dict[str, Any] | None, as_of: datetime) -> None:
        self.path = data_dir / "blend" / f"{key_prefix}.npz"
        blend = blend or {}
        self.ranker: str | None = blend.get("ranker_sha256")
        self.reuse = bool(blend.get("reused") and self.ranker)
        self.as_of = as_of
        self.how: str | None = None
        self._computed: tuple[np.ndarray, sp.csr_matrix, int] | None = None

    def neighbours(self, item_ids: np.ndarray) -> Neighbours:
        """What hands :class:`~recommender.models.blend_candidates.CandidateSources` its neighbours for a fit whose
        item columns are ``item_ids``."""

        def get(bought: sp.csr_matrix, k: int) -> sp.csr_matrix:
            kept = self._read(item_ids, k) if self.reuse else None
            if kept is not None:
                return kept
            similar = copurchase(bought, k)
            self.how = "computed tonight"
            self._computed = (item_ids, similar, k) if self.ranker else None
            return similar

        return get

    def _read(self, item_ids: np.ndarray, k: int) -> sp.csr_matrix | None:
        """The kept neighbours in tonight's item columns, or None when there are none for this ranker and night."""
        try:
            with np.load(self.path) as f:
                meta = json.loads(str(f["meta"]))
                as_of = datetime.fromisoformat(meta["as_of"])
                if meta["ranker_sha256"] != self.ranker or meta["k"] != k or as_of > self.as_of:
                    return None
                kept_ids, indptr, indices, data = f["item_ids"], f["indptr"], f["indices"], f["data"]
        except (OSError, ValueError, KeyError):  # none yet, or unreadable: compute them
            return None
        self.how = f"kept from the night of {meta['as_of']}"
        if np.array_equal(kept_ids, item_ids.astype(str)):
            return sp.csr_matrix((data, indices, indptr), shape=(len(item_ids), len(item_ids)))
        # Tonight's items differ: move each kept row and column to tonight's position; items gone are dropped.
        moved = positions(pa.chunked_array([pa.array(kept_ids, pa.string())]), item_ids)
        rows = np.repeat(moved, np.diff(indptr))
        cols = moved[indices]
        keep = (rows >= 0) & (cols >= 0)
        similar = sp.csr_matrix((data[keep], (rows[keep], cols[keep])), shape=(len(item_ids), len(item_ids)))
        similar.sort_indices()
        return similar

    def keep(self) -> None:
        """Keep the neighbours computed tonight for the nights that reuse tonight's ranker (once the version is
        published; a failure to write only costs the next night their computation)."""
        if self._computed is None:
            return
        item_ids, similar, k = self._computed
        self._computed = None
        meta = {"ranker_sha256": self.ranker, "as_of": self.as_of.isoformat(), "k": k}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp.npz")
            np.savez(
                tmp,
                item_ids=item_ids.astype(str),
                indptr=similar.indptr,
                indices=similar.indices,
                data=similar.data,
                meta=np.array(json.dumps(meta)),
            )
            tmp.replace(self.path)
        except OSError as exc:
            log.warning("could not keep the blend's co-purchase neighbours (%s): %s", self.path, exc)
