"""The promotion gate's warm start: does a few-iteration fit from last night's gate factors judge like a full fit?

Simulates two nightly runs. Night 1 (events up to ``latest - gap`` days) runs the gate with a full fit and keeps its
factors; night 2 (all events) runs the gate once with a full fit from random factors and once per iteration count
warm-started from night 1. Reports the gate's figure (ndcg@10 of the production list on warm customers' holdout
purchases, the same sample of at most ``--gate-users`` customers) and the seconds of each, and the two figures the
gate can hold night 2's candidate against: night 1's own (its holdout, its sample) and night 1's fit scored on
night 2's holdout and sample (what the job compares with when it has that fit). Settings: what ``reco train`` uses
for the data set (``settings/<data set>.json`` when it exists).

Usage: python bench/gate_warm.py --events E [--items I] [--format F] [--gap 1] [--gate-users 20000]
       [--out bench/results/gate_warm.json]
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
from recommender.evaluation.gate import holdout_context, holdout_metrics, score_holdout
from recommender.models.warm_start import StoredFactors, earlier_model, fit_from
from recommender.models.weighting import latest_timestamp

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=Path, required=True)
    ap.add_argument("--items", type=Path)
    ap.add_argument("--format", default="generic")
    ap.add_argument("--gap", type=int, default=1, help="days between the two nights")
    ap.add_argument("--iterations", default="1,2,3,5")
    ap.add_argument("--gate-users", type=int, default=20_000, help="customers the gate scores at most")
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
        factors = (model.user_factors, model.item_factors)
        kept["start"] = StoredFactors(inter.user_ids, inter.item_ids, *factors, latest, "")
        return model

    users = args.gate_users or None
    own = holdout_metrics(night1, data.items, params, fit=keep, max_users=users, reference=False)["candidate"]
    ctx = holdout_context(data.events, data.items, max_users=users)
    start = kept["start"]
    paired = score_holdout(
        ctx,
        params,
        fit=lambda inter: fit_from(inter, als, start, 3),
        reference=False,
        earlier=lambda inter: earlier_model(inter, als, start),
    )[0]["current"]
    del ctx
    rows = [
        {"gate fit": "night 1: full fit, its own holdout and sample", "seconds": None, "ndcg@10": own},
        {"gate fit": "night 1: its fit on night 2's holdout and sample", "seconds": None, "ndcg@10": paired},
    ]
    for label, begin, iterations in [("night 2: full fit", None, als.iterations)] + [
        (f"night 2: warm start, {k} iterations", start, k) for k in map(int, args.iterations.split(","))
    ]:
        t = time.perf_counter()
        out = holdout_metrics(
            data.events,
            data.items,
            params,
            fit=lambda inter, s=begin, k=iterations: fit_from(inter, als, s, k),
            max_users=users,
            reference=False,
        )
        rows.append({"gate fit": label, "seconds": round(time.perf_counter() - t, 2), "ndcg@10": out["candidate"]})
        print(rows[-1], flush=True)
    full = rows[2]["ndcg@10"]
    for row in rows:
        row["relative to full fit"] = round(row["ndcg@10"] / full - 1, 4)
    result = {
        "dataset": os.path.relpath(args.events.resolve(), ROOT),
        "gap_days": args.gap,
        "gate_users": args.gate_users,
        "als": als.model_dump(),
        "rows": rows,
    }
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
