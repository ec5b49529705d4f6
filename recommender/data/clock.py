"""Plausible times: the window every event time and catalogue ``created_at`` must fall in.

A row dated after the wall clock (plus a small allowed skew between the shop's clocks and ours) or before a floor
no shop's history reaches back to is a bad row, in files, in live events and at ``POST /events``. Without this
one row dated 2099 would move the model's "as of" to 2099 and make every list and the promotion gate meaningless.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

DEFAULT_SKEW_SECONDS = 300.0
"""How far ahead of our clock a time may be (clocks of the shop's systems drift; five minutes is generous)."""
DEFAULT_EARLIEST = datetime(1990, 1, 1)
"""Times before this are taken as defaults or typing errors (1970-01-01 from an epoch 0, 1900 from spreadsheets)."""


def utc_now() -> datetime:
    """The wall clock as a UTC time without zone, like every time in the data contract."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


def age_days(stamp: object, now: datetime) -> float | None:
    """Days from the ISO time ``stamp`` (as a version manifest records when something was made; UTC when it names
    no zone) to the zone-aware ``now``; None when ``stamp`` is not a readable time."""
    try:
        when = datetime.fromisoformat(str(stamp))
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return (now - when).total_seconds() / 86400


@dataclass(frozen=True)
class TimeWindow:
    """Times from ``earliest`` to ``latest`` (both inclusive, UTC without zone) are plausible."""

    earliest: datetime
    latest: datetime
    now: datetime

    @classmethod
    def ending_now(
        cls,
        now: datetime | None = None,
        skew_seconds: float = DEFAULT_SKEW_SECONDS,
        earliest: datetime = DEFAULT_EARLIEST,
    ) -> TimeWindow:
        """The window up to ``now`` (default: the wall clock) plus ``skew_seconds``."""
        now = now or utc_now()
        return cls(earliest=_naive_utc(earliest), latest=now + timedelta(seconds=skew_seconds), now=now)

    def sql_literals(self) -> tuple[str, str]:
        """``earliest`` and ``latest`` as DuckDB timestamp literals."""
        return tuple(f"TIMESTAMP '{t.isoformat(sep=' ')}'" for t in (self.earliest, self.latest))  # type: ignore[return-value]

    def check(self, at: datetime) -> str | None:
        """Why ``at`` (UTC without zone) is not plausible, or None when it is."""
        if at > self.latest:
            return self.too_late()
        if at < self.earliest:
            return self.too_early()
        return None

    def too_late(self) -> str:
        return f"is later than now ({self.now:%Y-%m-%d %H:%M:%S} UTC, {_skew(self)} allowed clock skew)"

    def too_early(self) -> str:
        return f"is before {self.earliest:%Y-%m-%d} (the earliest plausible time)"


def _naive_utc(t: datetime) -> datetime:
    return t.astimezone(timezone.utc).replace(tzinfo=None) if t.tzinfo else t


def _skew(window: TimeWindow) -> str:
    seconds = (window.latest - window.now).total_seconds()
    return f"{seconds / 60:g} min" if seconds >= 60 else f"{seconds:g} s"
