"""One call from input files to a validated dataset: adapter, validation, catalogue completion."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from recommender.data.adapters import read_input
from recommender.data.clock import TimeWindow
from recommender.data.loading import LoadReport, complete_catalogue, validate_events, validate_items
from recommender.data.schema import empty_items


@dataclass
class Dataset:
    """Validated events and the complete catalogue, with what happened to the input rows."""

    events: pa.Table
    items: pa.Table
    reports: list[LoadReport]


def load_dataset(
    events_path: Path | str,
    items_path: Path | str | None = None,
    fmt: str = "generic",
    max_bad_share: float = 0.05,
    window: TimeWindow | None = None,
) -> Dataset:
    """Load and validate; raises DataError on an unreadable file, a missing column or more bad rows than
    ``max_bad_share``. Times outside ``window`` (default: up to now plus the default skew) are bad rows."""
    window = window or TimeWindow.ending_now()
    raw = read_input(events_path, items_path, fmt)
    events, ev_report = validate_events(raw.events, raw.events_source, window=window)
    reports = [ev_report]
    items = empty_items()
    if raw.items is not None:
        items, it_report = validate_items(raw.items, raw.items_source or "items", window)
        reports.append(it_report)
    for report in reports:
        report.check(max_bad_share)
    return Dataset(events, complete_catalogue(events, items), reports)
