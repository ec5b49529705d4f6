"""Per-version session models for fold-in: item factors are loaded from Redis once per published version."""

from __future__ import annotations

import asyncio

import numpy as np
import orjson

from cache import on_request
from cache.keys import Keys
from cache.near import MISS
from cache.reader import Reader
from recommender.models.session import SessionModel
from recommender.serving.customer_lists import OnRequest


class SessionModels:
    """Loads and keeps the session model of the current (and the previous) version."""

    def __init__(self, reader: Reader, keep: int = 2) -> None:
        self.reader = reader
        self.keep = keep
        self._models: dict[str, SessionModel | None] = {}
        self._on_request: dict[str, OnRequest | None] = {}
        self._index: dict[str, dict[str, int]] = {}
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
        return session_model(raw_factors, raw_items, info)

    async def customer_lists(self, version: str, raws: list[bytes | None]) -> list[on_request.Lists | None]:
        """Lists of customers the job did not precompute, from their stored rows (``Keys.customer``): (personal,
        next purchase or None) per raw value, None where there is none (see :mod:`cache.on_request`). Computed lists
        are kept in the reader's near cache under (version, row): a version's row always gives the same lists."""
        near = self.reader.near
        out: list[on_request.Lists | None] = [None] * len(raws)
        wanted = []
        for k, raw in enumerate(raws):
            if raw is not None:
                found = near.get(version, raw)
                if found is MISS:
                    wanted.append(k)
                else:
                    out[k] = found
        engine = await self.on_request(version) if wanted else None
        if engine is None:
            return out
        for k, lists in zip(wanted, on_request.served(engine, self._index[version], [raws[k] for k in wanted])):
            out[k] = lists
            near.put(version, raws[k], lists)
        return out

    async def similar(self, version: str, item_id: str) -> list | None:
        """Similar items of an item the job left to compute on request (:func:`cache.on_request.similar_list`);
        None when the version's item factors do not know it. Kept in the reader's near cache like a stored list."""
        near, key = self.reader.near, "computed:" + Keys.similar(item_id)
        found = near.get(version, key)
        if found is not MISS:
            return found
        model = await self.get(version)
        sims = None
        if model is not None:
            size = (await self.manifest(version)).get("params", {}).get("lists", {}).get("similar_size", 50)
            sims = on_request.similar_list(model, await self.reader.catalogue(version), item_id, size)
        near.put(version, key, sims)
        return sims

    async def on_request(self, version: str) -> OnRequest | None:
        """The version's on-request engine (None without item factors), built on first use."""
        if version not in self._on_request:
            info = await self.manifest(version)
            catalogue = await self.reader.catalogue(version)
            factors = await self.reader.raw(version, Keys.FACTORS)
            engine = on_request.engine(catalogue, factors, info) if catalogue and factors and info else None
            if engine is not None:
                self._index[version] = {item: j for j, item in enumerate(catalogue)}
            self._on_request[version] = engine
            while len(self._on_request) > self.keep:
                self._index.pop(next(iter(self._on_request)), None)
                self._on_request.pop(next(iter(self._on_request)))
        return self._on_request[version]


def session_model(raw_factors: bytes, raw_items: bytes, info: dict) -> SessionModel:
    """A version's session model from its stored item factors (raw float32), factor item ids (JSON) and manifest."""
    items = orjson.loads(raw_items)
    params = info["params"]
    factors = np.frombuffer(raw_factors, dtype=np.float32).reshape(len(items), -1).copy()  # implicit needs it writable
    return SessionModel(
        items,
        factors,
        regularization=params["als"]["regularization"],
        alpha=params["als"]["alpha"],
        weights=params["weights"],
        half_life_days=params["half_life_days"],
        hidden=info.get("hidden_items", []),
    )
