"""Spark MLlib's regParam for the Spark engine, chosen on a validation window with the protocol of `reco evaluate`.

Spark regularises each user and item in proportion to its number of ratings (ALS-WR); implicit by a constant. This
script scores, on the ``--test-days`` before the evaluation's test window (never the test window itself), the ALS
lists of Spark fits with regParam = the implicit setting as it is, divided by the mean ratings per user, and
divided by the mean ratings per item, beside implicit's own fit: same split, users, lists and metric code
(:func:`recommender.evaluation.protocol.evaluate_events` with ``fit_model``). The quality figures on the test
window then come from `reco evaluate --engine spark` and `reco evaluate` (see docs/PERFORMANCE.md).

Usage: python bench/spark_quality.py --events E [--items I] [--format F] [--settings S] [--out F.json]
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from recommender.config import load_settings, load_tuned
from recommender.data.dataset import load_dataset
from recommender.evaluation.protocol import evaluate_events
from recommender.models.weighting import build_interactions, latest_timestamp

MODELS = ("als", "als_new")
TARGETS = ("purchase", "purchase_new")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=Path, required=True)
    ap.add_argument("--items", type=Path)
    ap.add_argument("--format", default="generic")
    ap.add_argument("--settings", type=Path)
    ap.add_argument("--test-days", type=int, default=30)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    from training.spark_engine import SparkEngine  # the JVM first: it starts by fork

    engine = SparkEngine("local[*]")
    try:
        params = load_settings(tuned=load_tuned(args.settings) if args.settings else None).model
        data = load_dataset(args.events, args.items, args.format, 0.05)
        cut = latest_timestamp(data.events) - timedelta(days=args.test_days)
        train = data.events.filter(pc.less(data.events["timestamp"], pa.scalar(cut, pa.timestamp("us"))))
        inter = build_interactions(train, params.weights.as_dict(), params.half_life_days, latest_timestamp(train))
        nnz, (users, items) = inter.matrix.nnz, inter.matrix.shape
        reg = params.als.regularization
        candidates = {"as it is": reg, "/ mean ratings per user": reg * users / nnz}
        candidates["/ mean ratings per item"] = reg * items / nnz
        rows = []

        def run(name: str, fit_model) -> None:
            t = time.perf_counter()
            result = evaluate_events(
                train,
                data.items,
                params,
                test_days=args.test_days,
                targets=TARGETS,
                models=MODELS,
                fit_model=fit_model,
            )
            figures = {t_: {m: round(result.get(t_, "warm", m, "ndcg@10"), 4) for m in MODELS} for t_ in TARGETS}
            rows.append({"fit": name, "ndcg@10_warm": figures, "seconds": round(time.perf_counter() - t, 1)})
            print(json.dumps(rows[-1]), flush=True)

        run("implicit", None)
        for name, value in candidates.items():
            run(f"spark regParam {value:.4g} ({name})", lambda i, v=value: engine.fit_matrix(i, params.als, v))
    finally:
        engine.close()
    result = {
        "dataset": str(args.events),
        "validation_cutoff": str(cut - timedelta(days=args.test_days)),
        "test_days": args.test_days,
        "matrix": {"users": users, "items": items, "nnz": nnz},
        "als": params.als.model_dump(),
        "rows": rows,
    }
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
