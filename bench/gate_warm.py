"""The promotion gate's warm start: does a few-iteration fit from last night's gate factors judge like a full fit?

Simulates two nightly runs. Night 1 (events up to ``latest - gap`` days) runs the gate with a full fit and keeps its
factors; night 2 (all events) runs the gate once with a full fit from random factors and once per iteration count
warm-started from night 1. Reports the gate's figure (ndcg@10 of the production list on warm customers' holdout
purchases, the same 20,000-customer sample) and the seconds of each. Settings: what ``reco train`` uses for the
data set (``settings/<data set>.json`` when it exists).

Usage: python bench/gate_warm.py --events E [--items I] [--format F] [--gap 1] [--out bench/results/gate_warm.json]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from datetime import timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from recommender.config import AlsParams, ModelSettings, dataset_name, load_tuned, settings_path
from recommender.data.dataset import load_dataset
from recommender.evaluation.gate import holdout_metrics
from recommender.models.warm_start import GateFactors, fit_from
from recommender.models.weighting import latest_timestamp

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=Path, required=True)
    ap.add_argument("--items", type=Path)
    ap.add_argument("--format", default="generic")
    ap.add_argument("--gap", type=int, default=1, help="days between the two nights")
    ap.add_argument("--iterations", default="1,2,3,5")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    path = settings_path(dataset_name(args.format, str(args.events)), ROOT)
    tuned = load_tuned(path) if path.is_file() else {}
    als = AlsParams(**tuned.get("als", {}))
    params = ModelSettings.from_dict(tuned)
    data = load_dataset(args.events, args.items, args.format, 0.05)
    latest = latest_timestamp(data.events)
    night1 = data.events.filter(
        pc.less_equal(data.events["timestamp"], pa.scalar(latest - timedelta(days=args.gap), pa.timestamp("us")))
    )
    kept: dict = {}

    def keep(inter):
        model = fit_from(inter, als, None, als.iterations)
        kept["start"] = GateFactors(inter.user_ids, inter.item_ids, model.user_factors, model.item_factors, latest, "")
        return model

    holdout_metrics(night1, data.items, params, fit=keep)
    rows = []
    for label, start, iterations in [("full fit", None, als.iterations)] + [
        (f"warm start, {k} iterations", kept["start"], k) for k in map(int, args.iterations.split(","))
    ]:
        t = time.perf_counter()
        out = holdout_metrics(
            data.events, data.items, params, fit=lambda inter, s=start, k=iterations: fit_from(inter, als, s, k)
        )
        rows.append({"gate fit": label, "seconds": round(time.perf_counter() - t, 2), "ndcg@10": out["candidate"]})
        print(rows[-1], flush=True)
    full = rows[0]["ndcg@10"]
    for row in rows:
        row["relative to full fit"] = round(row["ndcg@10"] / full - 1, 4)
    result = {
        "dataset": os.path.relpath(args.events.resolve(), ROOT),
        "gap_days": args.gap,
        "als": als.model_dump(),
        "rows": rows,
    }
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
