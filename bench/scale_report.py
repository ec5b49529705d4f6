"""Rewrite the scaling tables of docs/PERFORMANCE.md and docs/SCALING.md from bench/results/*.json.

Reads similar_index_*.json (bench/similar_index.py), gate_warm_*.json (bench/gate_warm.py) and spark_quality.json
(bench/spark_quality.py); a table whose results are missing says so. Usage: python bench/scale_report.py
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
        f"complete-journey, two nights {r['gap_days']} day apart, the gate's sample of at most 20,000 customers, tuned "
        f"settings ({r['als']['factors']} factors, {r['als']['iterations']} iterations for a full fit):\n",
        "| gate fit | gate seconds | ndcg@10 (production, warm, purchases) | relative to the full fit |",
        "|---|---:|---:|---:|",
    ]
    for row in r["rows"]:
        out.append(
            f"| {row['gate fit']} | {row['seconds']:.1f} | {row['ndcg@10']:.4f} | {row['relative to full fit']:+.2%} |"
        )
    return "\n".join(out)


def spark_table() -> str:
    r = _load("spark_quality.json")
    if not r:
        return "(no spark_quality.json yet: run bench/spark_quality.py)"
    out = [
        f"complete-journey, the last {r['test_days']} days held out, `reco evaluate`'s protocol and metric code; "
        f"Spark's regParam chosen on the {r['test_days']} days before ({r['spark_reg_on_validation']}: "
        f"{r['spark_reg_chosen']}). ndcg@10 on warm customers:\n",
        "| target | model | implicit | Spark | Spark / implicit - 1 |",
        "|---|---|---:|---:|---:|",
    ]
    for target, models in r["ndcg@10_warm"]["implicit"].items():
        for model, value in models.items():
            spark = r["ndcg@10_warm"]["spark"][target][model]
            rel = r["relative"][target].get(model)
            out.append(f"| {target} | {model} | {value:.4f} | {spark:.4f} | {'' if rel is None else f'{rel:+.1%}'} |")
    fs = r["fit_seconds"]
    out.append("")
    out.append(
        f"Fit on the training window: implicit {fs['implicit']:.1f} s, Spark local mode {fs['spark_local']:.1f} s "
        "(same machine, same moment)."
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
    if _load("spark_quality.json"):
        doc = replace(doc, "scale:spark", spark_table())
        scaling = ROOT / "docs" / "SCALING.md"
        scaling.write_text(replace(scaling.read_text(), "scaling:figures", spark_table()))
    perf.write_text(doc)
    print("updated docs/PERFORMANCE.md and docs/SCALING.md")


if __name__ == "__main__":
    main()
