"""Per-version session models for fold-in: item factors are loaded from Redis once per published version."""

from __future__ import annotations

import asyncio

import numpy as np
import orjson

from cache.keys import Keys
from cache.reader import Reader
from recommender.models.session import SessionModel


class SessionModels:
    """Loads and keeps the session model of the current (and the previous) version."""

    def __init__(self, reader: Reader, keep: int = 2) -> None:
        self.reader = reader
        self.keep = keep
        self._models: dict[str, SessionModel | None] = {}
        self._manifests: dict[str, dict] = {}
        self._lock = asyncio.Lock()

    async def manifest(self, version: str) -> dict:
        if version not in self._manifests:
            raw = await self.reader.raw(version, Keys.MANIFEST)
            self._manifests[version] = orjson.loads(raw) if raw else {}
            while len(self._manifests) > self.keep:
                self._manifests.pop(next(iter(self._manifests)))
        return self._manifests[version]

    async def get(self, version: str) -> SessionModel | None:
        """The version's model (None if it has no factors); built on first use, then reused."""
        if version in self._models:
            return self._models[version]
        async with self._lock:
            if version not in self._models:
                self._models[version] = await self._load(version)
                while len(self._models) > self.keep:
                    self._models.pop(next(iter(self._models)))
        return self._models[version]

    async def _load(self, version: str) -> SessionModel | None:
        raw_factors = await self.reader.raw(version, Keys.FACTORS)
        raw_items = await self.reader.raw(version, Keys.FACTOR_ITEMS)
        info = await self.manifest(version)
        if not raw_factors or not raw_items or not info:
            return None
        items = orjson.loads(raw_items)
        params = info["params"]
        factors = (
            np.frombuffer(raw_factors, dtype=np.float32).reshape(len(items), -1).copy()
        )  # implicit needs it writable
        return SessionModel(
            items,
            factors,
            regularization=params["als"]["regularization"],
            alpha=params["als"]["alpha"],
            weights=params["weights"],
            half_life_days=params["half_life_days"],
            hidden=info.get("hidden_items", []),
        )
