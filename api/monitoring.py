"""Operations: Prometheus metrics, structured (JSON) request log lines, and a request-body size limit.

All three live in one pure ASGI middleware, so a request pays for one wrapper, not three.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from pythonjsonlogger.json import JsonFormatter
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("reco.api")


def json_formatter() -> JsonFormatter:
    return JsonFormatter("%(asctime)s %(levelname)s %(name)s %(message)s", rename_fields={"asctime": "time"})


def configure_logging(level: str = "INFO") -> None:
    """JSON lines on stderr for the service's own loggers (idempotent)."""
    if any(getattr(h, "_reco", False) for h in log.handlers):
        return
    handler = logging.StreamHandler()
    handler.setFormatter(json_formatter())
    handler._reco = True  # type: ignore[attr-defined]
    log.addHandler(handler)
    log.setLevel(level)
    log.propagate = False


class Metrics:
    """The service's Prometheus metrics, in a registry of its own (one per app, so tests can build several)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "reco_requests_total",
            "Requests by route, method and status.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "reco_request_duration_seconds",
            "Request latency by route.",
            ["route"],
            registry=self.registry,
            buckets=(0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
        )
        self.lookups = Counter(
            "reco_cache_lookups_total",
            "List lookups in Redis by list and result (hit/miss).",
            ["list", "result"],
            registry=self.registry,
        )
        self.fallbacks = Counter(
            "reco_fallbacks_total",
            "Answers served from the in-process fallback while Redis was unavailable.",
            ["route"],
            registry=self.registry,
        )
        self.redis_errors = Counter(
            "reco_redis_errors_total", "Requests that met a Redis error.", ["route"], registry=self.registry
        )

        # Label children by their label values: prometheus_client's labels() takes a lock and builds a key per call,
        # which shows up on the hot path.
        self._children: dict[tuple, Any] = {}
        self._near: _NearCacheCollector | None = None

    def watch_near_cache(self, near: Any, answers: Any = None) -> None:
        """Report the near cache's and the answer cache's hits, misses and size (counted as plain integers on the hot
        path, read here)."""
        if self._near is None:
            self._near = _NearCacheCollector(near, answers)
            self.registry.register(self._near)
        self._near.near, self._near.answers = near, answers

    def child(self, metric: Counter | Histogram, *labels: str) -> Any:
        key = (metric, *labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return found

    def lookup(self, name: str, found: bool) -> None:
        self.child(self.lookups, name, "hit" if found else "miss").inc()

    def render(self) -> Response:
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)


class _NearCacheCollector(Collector):
    def __init__(self, near: Any, answers: Any = None) -> None:
        self.near = near
        self.answers = answers

    def collect(self) -> Iterable[Metric]:
        lookups = CounterMetricFamily(
            "reco_near_cache_lookups", "Lookups in this worker's near cache by result (hit/miss).", labels=["result"]
        )
        lookups.add_metric(["hit"], self.near.hits)
        lookups.add_metric(["miss"], self.near.misses)
        yield lookups
        yield GaugeMetricFamily("reco_near_cache_bytes", "Estimated memory of the near cache.", self.near.used_bytes)
        yield GaugeMetricFamily("reco_near_cache_entries", "Entries in the near cache.", len(self.near))
        if self.answers is None:
            return
        answers = CounterMetricFamily(
            "reco_answer_cache_answers",
            "List answers of this worker sent from kept bytes (hit) or built and kept (miss).",
            labels=["result"],
        )
        answers.add_metric(["hit"], self.answers.hits)
        answers.add_metric(["miss"], self.answers.misses)
        yield answers
        yield GaugeMetricFamily("reco_answer_cache_bytes", "Memory of the kept answers.", self.answers.used_bytes)
        yield GaugeMetricFamily("reco_answer_cache_entries", "Kept answers.", len(self.answers))


class OperationsMiddleware:
    """Times and counts every request, logs it as one JSON line, and refuses bodies over ``max_body_bytes``.

    ``request_log``: "all" logs every request; "notable" (default) only errors (status >= 400), requests that change
    state (not GET/HEAD) and requests slower than ``slow_ms``: on the storefront's hot path a log line per page
    view costs about a tenth of the request, and the metrics already count every request; "off" logs none.
    """

    def __init__(
        self, app: ASGIApp, metrics: Metrics, max_body_bytes: int, request_log: str = "notable", slow_ms: float = 100.0
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body = max_body_bytes
        self.log_all = request_log == "all"
        self.log_notable = request_log != "off"
        self.slow_seconds = slow_ms / 1000

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = {"code": 500, "started": False}
        length = dict(scope["headers"]).get(b"content-length")
        if length is None and scope["method"] in ("POST", "PUT", "PATCH"):
            # No declared length (chunked): read up to the limit first, then replay it to the application.
            body, more = b"", True
            while more and len(body) <= self.max_body:
                message = await receive()
                body += message.get("body", b"")
                more = message.get("more_body", False)
            if len(body) > self.max_body:
                length = str(len(body)).encode()
            else:
                replay = [{"type": "http.request", "body": body, "more_body": False}]

                async def receive() -> Message:
                    return replay.pop() if replay else {"type": "http.disconnect"}

        if length is not None and length.isdigit() and int(length) > self.max_body:
            await self._too_large(scope, receive, send, status)
        else:

            async def tracking_send(message: Message) -> None:
                if message["type"] == "http.response.start":
                    status["code"], status["started"] = message["status"], True
                await send(message)

            try:
                await self.app(scope, receive, tracking_send)
            except Exception:  # a bug, not bad input: answer 500 in JSON, and count and log it like any request
                log.exception("unhandled error", extra={"method": scope["method"], "path": scope.get("path")})
                status["code"] = 500
                if status["started"]:
                    raise
                await JSONResponse({"detail": "Internal error; it has been logged."}, 500)(scope, receive, send)
        route = getattr(scope.get("route"), "path", None) or "unmatched"
        seconds = time.perf_counter() - start
        method, code = scope["method"], status["code"]
        self.metrics.child(self.metrics.requests, route, method, str(code)).inc()
        self.metrics.child(self.metrics.latency, route).observe(seconds)
        if self.log_all or (
            self.log_notable and (code >= 400 or seconds >= self.slow_seconds or method not in ("GET", "HEAD"))
        ):
            log.info(
                "request", extra={"method": method, "route": route, "status": code, "ms": round(seconds * 1000, 3)}
            )

    async def _too_large(self, scope: Scope, receive: Receive, send: Send, status: dict[str, Any]) -> None:
        status["code"] = 413
        response = JSONResponse(
            {"detail": f"Request body is larger than {self.max_body} bytes (RECO_MAX_BODY_BYTES)."}, 413
        )
        await response(scope, receive, send)
