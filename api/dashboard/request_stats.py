"""Request rates and latency percentiles per route, from the Prometheus metrics the API keeps (api.operations).

The counters are cumulative since the process started. Each call of :meth:`RequestStats.summary` takes a snapshot;
rates and percentiles are computed over the window between the oldest snapshot of the last ``window_seconds`` and
now (since the start of the process on the first call). Percentiles are interpolated inside histogram buckets as
Prometheus' ``histogram_quantile`` does. With several workers, each worker reports its own requests.
"""

from __future__ import annotations

import math
import os
import time
from collections import deque
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry

LATENCY = "reco_request_duration_seconds"
REQUESTS = "reco_requests_total"
HIDDEN_PREFIXES = ("/dashboard", "/docs", "/redoc", "/openapi.json")
"""Routes left out of the table: the dashboard's and the documentation's own requests."""


@dataclass
class Snapshot:
    at: float
    buckets: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    """route -> [(upper bound, cumulative count)] ascending, +inf last."""
    errors: dict[str, float] = field(default_factory=dict)
    """route -> requests answered with status >= 500."""
    client_errors: dict[str, float] = field(default_factory=dict)
    """route -> requests answered with status 4xx."""

    def count(self, route: str) -> float:
        rows = self.buckets.get(route)
        return rows[-1][1] if rows else 0.0


def take_snapshot(registry: CollectorRegistry, at: float | None = None) -> Snapshot:
    snap = Snapshot(time.time() if at is None else at)
    for metric in registry.collect():
        if metric.name == LATENCY:
            for sample in metric.samples:
                if sample.name.endswith("_bucket"):
                    snap.buckets.setdefault(sample.labels["route"], []).append(
                        (float(sample.labels["le"]), sample.value)
                    )
        elif metric.name == REQUESTS.removesuffix("_total"):
            for sample in metric.samples:
                if sample.name != REQUESTS:
                    continue
                route, status = sample.labels["route"], sample.labels["status"]
                target = snap.errors if status >= "5" else snap.client_errors if status >= "4" else None
                if target is not None:
                    target[route] = target.get(route, 0.0) + sample.value
    for rows in snap.buckets.values():
        rows.sort()
    return snap


def quantile(q: float, buckets: list[tuple[float, float]]) -> float | None:
    """The ``q`` quantile from cumulative (upper bound, count) buckets, linearly interpolated; None without data.
    An answer in the +inf bucket is reported as the highest finite bound."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return lower_bound
            if count == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = bound, count
    return lower_bound


def _delta(now: list[tuple[float, float]], before: list[tuple[float, float]] | None) -> list[tuple[float, float]]:
    if not before:
        return now
    old = dict(before)
    return [(bound, count - old.get(bound, 0.0)) for bound, count in now]


class RequestStats:
    """Keeps the snapshots of one process and summarises the window."""

    def __init__(self, registry: CollectorRegistry, window_seconds: float = 600.0) -> None:
        self.registry = registry
        self.window = window_seconds
        self.started = time.time()
        self.snapshots: deque[Snapshot] = deque([take_snapshot(registry, self.started)], maxlen=500)
        self.rates: deque[tuple[float, float]] = deque(maxlen=500)
        """(time, requests per second over all shown routes since the previous snapshot): the chart's points."""

    def summary(self, at: float | None = None) -> dict:
        now = take_snapshot(self.registry, at)
        while len(self.snapshots) > 1 and self.snapshots[1].at <= now.at - self.window:
            self.snapshots.popleft()
        base, last = self.snapshots[0], self.snapshots[-1]
        seconds = max(now.at - base.at, 1e-9)
        routes = []
        for route in sorted(now.buckets):
            if route.startswith(HIDDEN_PREFIXES):
                continue
            window = _delta(now.buckets[route], base.buckets.get(route))
            if not window or window[-1][1] <= 0:  # nothing in the window: the figures since the start
                window = now.buckets[route]
            p50, p99 = quantile(0.5, window), quantile(0.99, window)
            routes.append(
                {
                    "route": route,
                    "requests": int(now.count(route)),
                    # a rate over less than a second (the first call) would mean nothing
                    "per_second": round((now.count(route) - base.count(route)) / seconds, 3) if seconds >= 1 else None,
                    "p50_ms": None if p50 is None else round(p50 * 1000, 2),
                    "p99_ms": None if p99 is None else round(p99 * 1000, 2),
                    "client_errors": int(now.client_errors.get(route, 0)),
                    "server_errors": int(now.errors.get(route, 0)),
                }
            )
        shown = [r["route"] for r in routes]
        gap = now.at - last.at
        if gap >= 1:
            total = sum(now.count(r) - last.count(r) for r in shown)
            self.rates.append((now.at, round(total / gap, 3)))
        self.snapshots.append(now)
        return {
            "pid": os.getpid(),
            "uptime_seconds": round(now.at - self.started, 1),
            "window_seconds": round(seconds, 1),
            "routes": routes,
            "rate_history": [[round(t, 1), r] for t, r in self.rates if t >= now.at - self.window],
        }
