"""Encoded list answers kept per worker, and answered again before routing.

A list answer for a visitor without live events depends only on the published version, the merchandising generation,
the request's path and query string, and the clock where a rule's time window starts or ends. A handler that built
such an answer keeps its encoded bytes here (:meth:`AnswerCache.respond`); :class:`AnswerCacheMiddleware` answers the
next identical request from them, without routing, parameter validation, Redis or encoding, as long as the worker
still serves that version and generation, no rule window has opened or closed since, and the live index knows the
visitor to have no live events. Every answer still gets a recommendation id of its own (spliced into the bytes), and
is counted and logged like any other (the middleware runs inside :class:`api.monitoring.OperationsMiddleware`).

Published versions never change and a merchandising change raises the generation, so nothing here is invalidated:
entries of a version or generation no longer served miss, are rebuilt by the handler and replace the old ones, and
the LRU order drops what is no longer asked for.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import TYPE_CHECKING, Any

import orjson
from cachetools import LRUCache
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from api.security import key_matches
from recommender.serving.experiment import make_rec_id

if TYPE_CHECKING:
    from api.state import Services

ENTRY_OVERHEAD = 600  # the entry object, its key (path and query string) and the LRU bookkeeping, in bytes
JSON = [(b"content-type", b"application/json")]


@dataclasses.dataclass(frozen=True, slots=True)
class Answer:
    """One kept answer: the bytes around its recommendation id and what decides whether it still holds."""

    head: bytes  # the JSON object up to and including '"rec_id":"'
    tail: bytes  # from the closing quote of the rec_id to the end
    version: str
    generation: int
    valid_until: float  # epoch seconds: the next start or end of a rule's time window
    user_id: str | None  # the visitor whose live events would change the answer
    kind: str  # the list kind, for the recommendation id
    variant: str
    route: Any  # the route that built it, for the request metrics
    lookups: tuple[tuple[str, bool], ...]  # list lookups the handler counted, counted again on each answer

    def body(self, rec_id: str) -> bytes:
        return self.head + rec_id.encode() + self.tail


def encode(content: dict[str, Any], variant: str) -> tuple[bytes, bytes]:
    """``content`` (without ``rec_id`` and ``variant``) as the bytes before and after the recommendation id of an
    answer ending in ``"rec_id": ..., "variant": ...``."""
    head = orjson.dumps(content)[:-1] + (b',"rec_id":"' if content else b'"rec_id":"')
    return head, b'","variant":' + orjson.dumps(variant) + b"}"


class AnswerCache:
    """A bounded LRU of :class:`Answer` by (path, query string); ``max_mb`` 0 keeps nothing."""

    def __init__(self, max_mb: float) -> None:
        self.max_bytes = int(max_mb * 2**20)
        self._lru: LRUCache | None = (
            LRUCache(maxsize=self.max_bytes, getsizeof=self._size) if self.max_bytes > 0 else None
        )
        self.hits = 0
        self.misses = 0

    @staticmethod
    def _size(answer: Answer) -> int:
        return len(answer.head) + len(answer.tail) + ENTRY_OVERHEAD

    def respond(
        self,
        scope: Scope,
        content: dict[str, Any],
        *,
        kind: str,
        version: str,
        variant: str,
        rec_id: str,
        keep: bool,
        generation: int = 0,
        valid_until: float = math.inf,
        user_id: str | None = None,
        lookups: tuple[tuple[str, bool], ...] = (),
    ) -> Response:
        """The answer to send (``content`` with ``rec_id`` and ``variant`` appended); kept when ``keep`` says the
        answer depends on nothing but the version, the generation, the request and the rule windows."""
        head, tail = encode(content, variant)
        if keep and self._lru is not None:
            self.misses += 1
            answer = Answer(
                head, tail, version, generation, valid_until, user_id, kind, variant, scope.get("route"), lookups
            )
            if self._size(answer) <= self.max_bytes:
                self._lru[(scope["path"], scope["query_string"])] = answer
        return Response(head + rec_id.encode() + tail, media_type="application/json")

    def get(self, scope: Scope) -> Answer | None:
        return self._lru.get((scope["path"], scope["query_string"])) if self._lru is not None else None

    @property
    def used_bytes(self) -> int:
        return int(self._lru.currsize) if self._lru is not None else 0

    def __len__(self) -> int:
        return len(self._lru) if self._lru is not None else 0


async def still_holds(services: Services, answer: Answer) -> bool:
    """True when ``answer`` is what the handler would build now (reads Redis only when the pointer copy expired)."""
    if answer.user_id is not None and services.reader.live.maybe_live(answer.user_id):
        return False
    if time.time() >= answer.valid_until:
        return False
    if await services.reader.version() != answer.version:
        return False
    await services.merch.current()
    return services.merch.generation == answer.generation


class AnswerCacheMiddleware:
    """Answers GET requests from the worker's :class:`AnswerCache` when a kept answer still holds; passes every
    other request on. Checks the read key itself when one is configured (a wrong one goes on to get its 401)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            services: Services | None = getattr(scope["app"].state, "services", None)
            answer = services.answers.get(scope) if services is not None else None
            if answer is not None and self._allowed(services, scope) and await self._holds(services, answer):
                await self._send(services, scope, answer, send)
                return
        await self.app(scope, receive, send)

    @staticmethod
    async def _holds(services: Services, answer: Answer) -> bool:
        try:
            return await still_holds(services, answer)
        except Exception:  # Redis away while re-reading the pointer or the rules: the handler answers (or falls back)
            return False

    @staticmethod
    def _allowed(services: Services, scope: Scope) -> bool:
        api = services.settings.api
        if not api.read_api_key:
            return True
        given = next((v for k, v in scope["headers"] if k == b"x-api-key"), None)
        return given is not None and key_matches(given.decode("latin-1"), api.read_api_key, api.api_key)

    @staticmethod
    async def _send(services: Services, scope: Scope, answer: Answer, send: Send) -> None:
        services.answers.hits += 1
        for name, found in answer.lookups:
            services.metrics.lookup(name, found)
        scope["route"] = answer.route  # counted under its route, as the handler's answer was
        body = answer.body(make_rec_id(answer.kind, answer.version, answer.variant))
        headers = [(b"content-length", str(len(body)).encode()), *JSON]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})
