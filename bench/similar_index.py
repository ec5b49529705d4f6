"""Similar items without scoring every pair: approximate indexes measured against the exact lists.

Fits ALS on a data set exactly as the job does, computes the exact top-k cosine neighbours of every item (the job's
current path, implicit's brute force on both cores), then builds each candidate index on the same normalised item
factors (inner product = cosine) and asks it for every item's neighbours. Reports build and query seconds and
recall@k against the exact lists (the item itself left out on both sides).

Usage: python bench/similar_index.py --events E [--items I] [--format F] [--out bench/results/similar_index.json]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from recommender.config import AlsParams, EventWeights, ModelSettings
from recommender.data.dataset import load_dataset
from recommender.models.als import fit_als, similar_batches
from recommender.models.similar_index import NPROBE, similar_batches_ivf
from recommender.models.weighting import build_interactions, latest_timestamp

K = 10


def exact(model, k: int) -> tuple[np.ndarray, float]:
    t = time.perf_counter()
    rows = [ids for _, ids, _ in similar_batches(model, k)]
    return np.vstack(rows), time.perf_counter() - t


def recall(found: np.ndarray, truth: np.ndarray, x: np.ndarray) -> tuple[float, float]:
    """(recall@k by id, recall@k with ties): the second counts a found item whose cosine is at least the exact k-th
    neighbour's (many rarely bought items have nearly identical factors, so the exact list is one of several equal
    ones)."""
    by_id = sum(len(set(f.tolist()) & set(t.tolist())) for f, t in zip(found, truth)) / truth.size
    hits = 0
    for start in range(0, len(x), 10_000):
        rows = np.arange(start, min(start + 10_000, len(x)))
        kth = np.einsum("ij,ij->i", x[rows], x[truth[rows, -1]])
        got = np.einsum("ijk,ik->ij", x[np.maximum(found[rows], 0)], x[rows])
        hits += int(np.minimum(((got >= kth[:, None] - 1e-5) & (found[rows] >= 0)).sum(axis=1), truth.shape[1]).sum())
    return by_id, hits / truth.size


def ties_at_k(x: np.ndarray, truth: np.ndarray) -> float:
    """Share of items whose exact k-th neighbour is tied (within 1e-5 of cosine) with an item outside their exact list:
    for those, which of the tied items is "the" k-th is arbitrary, so recall by id cannot reach 1 there."""
    tied = 0
    for start in range(0, len(x), 2_000):
        rows = np.arange(start, min(start + 2_000, len(x)))
        sims = x[rows] @ x.T
        sims[np.arange(len(rows)), rows] = -np.inf
        kth = sims[np.arange(len(rows)), truth[rows, -1]]
        above = (sims >= kth[:, None] - 1e-5).sum(axis=1)
        tied += int((above > truth.shape[1]).sum())
    return tied / len(x)


def drop_self(ids: np.ndarray, k: int) -> np.ndarray:
    rows = np.arange(len(ids))[:, None]
    order = np.argsort(ids == rows, axis=1, kind="stable")
    return np.take_along_axis(ids, order, axis=1)[:, :k]


def faiss_hnsw(x: np.ndarray, m: int, ef_search: int, ef_construction: int = 80) -> tuple[np.ndarray, float, float]:
    import faiss

    t = time.perf_counter()
    index = faiss.IndexHNSWFlat(x.shape[1], m, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = ef_construction
    index.add(x)
    built = time.perf_counter() - t
    index.hnsw.efSearch = ef_search
    t = time.perf_counter()
    _, ids = index.search(x, K + 1)
    return drop_self(ids, K), built, time.perf_counter() - t


def faiss_ivf(x: np.ndarray, nlist: int, nprobe: int) -> tuple[np.ndarray, float, float]:
    import faiss

    t = time.perf_counter()
    quantizer = faiss.IndexFlatIP(x.shape[1])
    index = faiss.IndexIVFFlat(quantizer, x.shape[1], nlist, faiss.METRIC_INNER_PRODUCT)
    index.train(x)
    index.add(x)
    built = time.perf_counter() - t
    index.nprobe = nprobe
    t = time.perf_counter()
    _, ids = index.search(x, K + 1)
    return drop_self(ids, K), built, time.perf_counter() - t


def hnswlib_index(x: np.ndarray, m: int, ef: int, ef_construction: int = 80) -> tuple[np.ndarray, float, float]:
    import hnswlib

    t = time.perf_counter()
    index = hnswlib.Index(space="ip", dim=x.shape[1])
    index.init_index(max_elements=len(x), M=m, ef_construction=ef_construction, random_seed=1)
    index.set_num_threads(os.cpu_count() or 1)
    index.add_items(x)
    built = time.perf_counter() - t
    index.set_ef(ef)
    t = time.perf_counter()
    ids, _ = index.knn_query(x, k=K + 1)
    return drop_self(ids.astype(np.int64), K), built, time.perf_counter() - t


def job_ivf(model) -> tuple[np.ndarray, float, float]:
    """What the job runs (recommender.models.similar_index), build and search timed together."""
    t = time.perf_counter()
    ids = np.vstack([found for _, found, _ in similar_batches_ivf(model.item_factors, K)])
    return ids, 0.0, time.perf_counter() - t


def faiss_flat(x: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Exact search with faiss (every pair, BLAS blocks and a heap): the reference for what 'exact' can cost."""
    import faiss

    index = faiss.IndexFlatIP(x.shape[1])
    index.add(x)
    t = time.perf_counter()
    _, ids = index.search(x, K + 1)
    return drop_self(ids, K), 0.0, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=Path, required=True)
    ap.add_argument("--items", type=Path)
    ap.add_argument("--format", default="generic")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    data = load_dataset(args.events, args.items, args.format, 0.05)
    as_of = latest_timestamp(data.events)
    inter = build_interactions(data.events, EventWeights().as_dict(), ModelSettings().half_life_days, as_of)
    model = fit_als(inter.matrix, AlsParams())
    truth, exact_s = exact(model, K)
    x = model.item_factors / np.maximum(np.linalg.norm(model.item_factors, axis=1, keepdims=True), 1e-12)
    x = np.ascontiguousarray(x, dtype=np.float32)
    result = {
        "dataset": str(args.events),
        "items": len(x),
        "k": K,
        "exact_seconds": round(exact_s, 2),
        "ties_at_k": round(ties_at_k(x, truth), 4),
        "indexes": [],
    }
    nlist = int(4 * np.sqrt(len(x)))
    candidates = [
        ("faiss IndexFlatIP (exact)", "", lambda: faiss_flat(x)),
        (
            "faiss IVFFlat, the job's (build and search)",
            f"nlist=4 sqrt(n)={nlist} nprobe={NPROBE}",
            lambda: job_ivf(model),
        ),
        ("faiss IVFFlat", f"nlist=4 sqrt(n)={nlist} nprobe=32", lambda: faiss_ivf(x, nlist, 32)),
        ("faiss HNSWFlat", "M=32 efSearch=128", lambda: faiss_hnsw(x, 32, 128)),
        ("hnswlib", "M=32 ef=128", lambda: hnswlib_index(x, 32, 128)),
        ("hnswlib", "M=48 ef=256 efConstruction=200", lambda: hnswlib_index(x, 48, 256, 200)),
    ]
    for name, params, run in candidates:
        found, built, queried = run()
        row = {
            "index": name,
            "params": params,
            "build_seconds": round(built, 2),
            "query_seconds": round(queried, 2),
            "total_seconds": round(built + queried, 2),
            **dict(zip(("recall_at_10_by_id", "recall_at_10"), (round(r, 4) for r in recall(found, truth, x)))),
        }
        print(row, flush=True)
        result["indexes"].append(row)
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
