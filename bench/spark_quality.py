"""The Spark engine's model against the default engine's, with the protocol of `reco evaluate`.

Same split (the last ``--test-days`` days held out), same users, same lists, same metric code
(:func:`recommender.evaluation.protocol.evaluate_context`); only the ALS fit differs: implicit (the job's default) or
Spark MLlib ALS in local mode (``training/spark_engine.py``). Spark regularises in proportion to each user's and item's
number of ratings, so its ``regParam`` is chosen among ``--spark-reg`` on a validation window (the ``--test-days``
before the test window), never on the test window. Settings otherwise: what ``reco train`` uses for the data set.

Usage: python bench/spark_quality.py --events E [--items I] [--format F] [--out bench/results/spark_quality.json]
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from recommender.data.dataset import load_dataset
from recommender.evaluation.protocol import AlsRun, ModelParams, build_context, evaluate_context
from recommender.evaluation.tuning import dataset_name, load_tuned, settings_path
from recommender.models.weighting import latest_timestamp
from training.spark_engine import SparkEngine

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("production", "als", "als_new", "recent_popularity")


def score(events: pa.Table, items: pa.Table, params: ModelParams, test_days: int, fit) -> tuple[dict, float]:
    ctx = build_context(events, items, test_days=test_days, targets=("purchase", "purchase_new"))
    t = time.perf_counter()
    run = AlsRun.fit(ctx.split.train, ctx.items, params, fit=fit)
    fit_s = time.perf_counter() - t
    result = evaluate_context(ctx, params, MODELS, run=run)
    figures = {
        target: {m: round(result.get(target, "warm", m, "ndcg@10"), 4) for m in MODELS if m != "als_new"}
        for target in ("purchase", "purchase_new")
    }
    return figures, fit_s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=Path, required=True)
    ap.add_argument("--items", type=Path)
    ap.add_argument("--format", default="generic")
    ap.add_argument("--test-days", type=int, default=30)
    ap.add_argument("--spark-reg", default="0.5,0.01")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    path = settings_path(dataset_name(args.format, str(args.events)), ROOT)
    params = ModelParams.from_dict(load_tuned(path)) if path.is_file() else ModelParams()
    data = load_dataset(args.events, args.items, args.format, 0.05)
    cut = latest_timestamp(data.events) - timedelta(days=args.test_days)
    validation = data.events.filter(pc.less(data.events["timestamp"], pa.scalar(cut, pa.timestamp("us"))))
    engine = SparkEngine("local[*]")
    try:
        chosen, best = None, -1.0
        tried = {}
        for reg in map(float, args.spark_reg.split(",")):
            als = params.als.model_copy(update={"regularization": reg})
            figures, _ = score(validation, data.items, params, args.test_days, lambda i, a=als: engine.fit_matrix(i, a))
            tried[reg] = figures["purchase"]["als"]
            print({"validation regParam": reg, "als ndcg@10": tried[reg]}, flush=True)
            if tried[reg] > best:
                chosen, best = reg, tried[reg]
        spark_als = params.als.model_copy(update={"regularization": chosen})
        spark, spark_s = score(
            data.events, data.items, params, args.test_days, lambda i: engine.fit_matrix(i, spark_als)
        )
    finally:
        engine.close()
    implicit, implicit_s = score(data.events, data.items, params, args.test_days, None)
    result = {
        "dataset": str(args.events),
        "test_days": args.test_days,
        "params": params.as_dict(),
        "spark_reg_on_validation": tried,
        "spark_reg_chosen": chosen,
        "ndcg@10_warm": {"implicit": implicit, "spark": spark},
        "relative": {
            t: {m: round(spark[t][m] / implicit[t][m] - 1, 4) for m in implicit[t] if implicit[t][m]} for t in implicit
        },
        "fit_seconds": {"implicit": round(implicit_s, 1), "spark_local": round(spark_s, 1)},
    }
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
