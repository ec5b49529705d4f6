"""The night's holdout, split once and shared by the promotion gate and the blend learning.

Both judge on the last ``gate_days`` of the events and learn from the events before them. Each used to split the
events itself (a copy of the training events each) and the blend rebuilt the matrices of the gate's ALS fit: on a
10-million-event shop those copies made the gate and the blend learning the job's peak. Here the split is made on
first use, the gate leaves its ALS fit and the repeat model of the training events for the blend, and
:meth:`NightHoldout.release` drops them as soon as the blend step is done. The split keeps only the columns both
learn from (:data:`LEARNT_FROM`).
"""

from __future__ import annotations

import pyarrow as pa

from recommender.evaluation.split import Split, span_days, time_split
from recommender.models.als_recommender import AlsFit
from recommender.models.repeat import RepeatIndex

LEARNT_FROM = ("user_id", "item_id", "event_type", "timestamp", "order_id")
"""The columns the gate's models and the blend learn from: who did what when, and in which order. Quantities and
prices are the marketing figures' (they were 140 MB of the split's copy of 10 million events)."""


class NightHoldout:
    """The last ``days`` of ``events`` as a :class:`Split` (made on first use), and the gate's ALS fit and repeat
    model on its training events (None until the gate leaves them; no fit when it fits on Spark)."""

    def __init__(self, events: pa.Table, days: int) -> None:
        self.events: pa.Table | None = events
        self.days = days
        self.fit: AlsFit | None = None
        self.repeats: RepeatIndex | None = None
        self._split: Split | None = None
        self._span_days = span_days(events)

    @property
    def too_short(self) -> bool:
        """Less than two holdouts of history: nothing to learn from before the holdout."""
        return self._span_days < 2 * self.days

    def split(self) -> Split:
        """The events before the holdout and the holdout itself (``time_split``'s default cutoff)."""
        if self._split is None:
            if self.events is None:
                raise RuntimeError("the night's holdout was released")
            learnt = self.events.select([c for c in LEARNT_FROM if c in self.events.column_names])
            self._split = time_split(learnt, test_days=self.days)
        return self._split

    def release(self) -> None:
        """Drop the split and the fit (the job goes on with its own copy of the events and its own fit); the stage
        this runs in hands their memory back when it ends (:mod:`training.memory`)."""
        self.events, self._split, self.fit, self.repeats = None, None, None, None
