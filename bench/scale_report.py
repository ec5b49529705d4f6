"""Rewrite the scaling tables of docs/PERFORMANCE.md and docs/SCALING.md from bench/results/*.json.

Reads similar_index_*.json (bench/similar_index.py), gate_warm_*.json (bench/gate_warm.py), spark_regparam_cj.json
(bench/spark_quality.py) and spark_evaluate_cj_{implicit,spark}.json (`reco evaluate --json`); a table whose results
are missing says so. Usage: python bench/scale_report.py
"""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"


def _load(name: str) -> dict | None:
    path = RESULTS / name
    return json.loads(path.read_text()) if path.exists() else None


def similar_table() -> str:
    out = []
    for name in ("similar_index_cj.json", "similar_index_10m.json"):
        r = _load(name)
        if not r:
            out.append(f"(no {name} yet: run bench/similar_index.py)\n")
            continue
        out.append(
            f"**{Path(r['dataset']).parent.name or r['dataset']}** ({r['items']:,} items; exact search as the job did "
            f"before, implicit's brute force on both cores: {r['exact_seconds']:.1f} s; items whose exact 10th "
            f"neighbour is tied with an item outside the list: {r.get('ties_at_k', 0):.1%})\n"
        )
        out.append("| index | parameters | build s | query s | total s | recall@10 by id | recall@10 with ties |")
        out.append("|---|---|---:|---:|---:|---:|---:|")
        for row in r["indexes"]:
            out.append(
                f"| {row['index']} | {row['params']} | {row['build_seconds']:.1f} | {row['query_seconds']:.1f} | "
                f"{row['total_seconds']:.1f} | {row['recall_at_10_by_id']:.3f} | {row['recall_at_10']:.3f} |"
            )
        out.append("")
    return "\n".join(out)


def gate_table() -> str:
    r = _load("gate_warm_cj.json")
    if not r:
        return "(no gate_warm_cj.json yet: run bench/gate_warm.py)"
    out = [
        f"complete-journey, two nights {r['gap_days']} day apart, the gate's sample of at most "
        f"{r.get('gate_users', 20_000):,} customers, tuned "
        f"settings ({r['als']['factors']} factors, {r['als']['iterations']} iterations for a full fit):\n",
        "| gate fit | gate seconds | ndcg@10 (production, warm, purchases) | relative to the full fit |",
        "|---|---:|---:|---:|",
    ]
    for row in r["rows"]:
        seconds = "" if row["seconds"] is None else f"{row['seconds']:.1f}"  # night 1's rows are not timed
        out.append(f"| {row['gate fit']} | {seconds} | {row['ndcg@10']:.4f} | {row['relative to full fit']:+.2%} |")
    return "\n".join(out)


def spark_table() -> str:
    """The regParam chosen on validation (bench/spark_quality.py), then `reco evaluate` with either engine on the test
    window (spark_evaluate_cj_<engine>.json: the JSON `reco evaluate --json` writes)."""
    val = _load("spark_regparam_cj.json")
    docs = {e: _load(f"spark_evaluate_cj_{e}.json") for e in ("implicit", "spark")}
    if not val or not all(docs.values()):
        return "(no spark_regparam_cj.json or spark_evaluate_cj_*.json yet: see bench/spark_quality.py)"
    out = [
        f"Spark's regParam, on a validation window (the {val['test_days']} days before the evaluation's test window; "
        f"matrix {val['matrix']['users']:,} x {val['matrix']['items']:,}, {val['matrix']['nnz']:,} ratings; "
        f"{val['als']['factors']} factors, {val['als']['iterations']} iterations, implicit's regularization "
        f"{val['als']['regularization']:g}), ndcg@10 of warm customers:\n",
        "| fit | ALS, purchases | ALS without bought items, purchases | ALS, new purchases | seconds |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in val["rows"]:
        f = row["ndcg@10_warm"]
        out.append(
            f"| {row['fit']} | {f['purchase']['als']:.4f} | {f['purchase']['als_new']:.4f} | "
            f"{f['purchase_new']['als']:.4f} | {row['seconds']:.0f} |"
        )
    imp, spark = docs["implicit"], docs["spark"]
    out += [
        "",
        f"Then `reco evaluate --engine implicit|spark` (same split: train before {imp['meta']['cutoff']}, "
        f"{imp['meta']['warm_users']:,} warm customers; the Spark engine's regParam = regularization / mean "
        "ratings per item), warm customers on the test window:\n",
        "| target | model | ndcg@10 implicit | ndcg@10 Spark | Spark / implicit - 1 | recall@10 implicit "
        "| recall@10 Spark | Spark / implicit - 1 |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for target, groups in imp["figures"].items():
        for model, values in groups["warm"].items():
            row = [target, model]
            for metric in ("ndcg@10", "recall@10"):
                a, b = values[metric], spark["figures"][target]["warm"][model][metric]
                row += [f"{a:.4f}", f"{b:.4f}", f"{b / a - 1:+.1%}"]
            out.append("| " + " | ".join(row) + " |")
    fits = {e: d["meta"]["seconds"].get("als_fit") for e, d in docs.items()}
    out.append("")
    out.append(
        f"ALS fit on the training window: implicit {fits['implicit']:.0f} s, Spark local mode {fits['spark']:.0f} s "
        "(the same machine, one after the other)."
    )
    return "\n".join(out)


def replace(doc: str, name: str, body: str) -> str:
    pattern = re.compile(rf"(<!-- {name} -->\n).*?(<!-- /{name} -->)", re.S)
    return pattern.sub(lambda m: m.group(1) + body.rstrip("\n") + "\n" + m.group(2), doc)


def main() -> None:
    perf = ROOT / "docs" / "PERFORMANCE.md"
    doc = perf.read_text()
    if _load("similar_index_cj.json") and _load("similar_index_10m.json"):
        doc = replace(doc, "scale:similar", similar_table())
    if _load("gate_warm_cj.json"):
        doc = replace(doc, "scale:gate", gate_table())
    if _load("spark_regparam_cj.json") and _load("spark_evaluate_cj_spark.json"):
        doc = replace(doc, "scale:spark", spark_table())
        scaling = ROOT / "docs" / "SCALING.md"
        scaling.write_text(replace(scaling.read_text(), "scaling:spark", spark_table()))
    perf.write_text(doc)
    print("updated docs/PERFORMANCE.md and docs/SCALING.md")


if __name__ == "__main__":
    main()
