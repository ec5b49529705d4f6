"""Self-contained HTML report of an offline evaluation (``reco evaluate --html``).

Plots (matplotlib Agg, embedded as base64 PNG; inline CSS, no external assets): the main metrics per model, the
main metric per user-activity bucket, catalogue coverage per model; then a table of every figure per target and
user group. Input is :meth:`recommender.evaluation.protocol.Evaluation.as_dict` (the JSON that ``--json`` writes).
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from recommender.evaluation.protocol import MAIN_GROUP, MAIN_METRIC, MAIN_MODEL

_COLORS = ("#2f6db5", "#e8872e", "#3a9a5b", "#c4453c", "#7b5ea7", "#8a8f98", "#b5892f", "#2fa5b5", "#5b6270")
_CSS = """
body{font-family:-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;color:#222;margin:0;background:#f6f7f9}
main{max-width:1150px;margin:0 auto;padding:24px 28px 48px;background:#fff}
h1{font-size:25px;margin:0 0 4px}h2{font-size:19px;margin:34px 0 8px;border-bottom:2px solid #e4e7ec;padding-bottom:4px}
h3{font-size:15px;margin:20px 0 6px}p.sub,p.note{color:#5b6270;font-size:13px;margin:4px 0 12px}
img{max-width:100%;height:auto;display:block;margin:8px 0}
table{border-collapse:collapse;font-size:12.5px;width:100%;margin:6px 0}
th,td{padding:4px 7px;border-bottom:1px solid #e4e7ec;text-align:right}
th{background:#f2f5fa;font-weight:600}td.t,th.t{text-align:left}tr.main td{font-weight:600}td.best{background:#e6f2e9}
.scroll{overflow-x:auto}
"""
_SHOWN = ("precision", "recall", "ndcg", "map", "hit_rate", "coverage", "seen_share")


def _png(fig: Figure) -> str:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return f'<img alt="" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


def _style(ax: Any) -> None:
    ax.spines[["top", "right"]].set_visible(False)
    ax.grid(axis="x", color="#e4e7ec")
    ax.set_axisbelow(True)


def _bars(per_model: Mapping[str, Mapping[str, float]], names: Sequence[str], title: str) -> str:
    models = list(per_model)
    fig = Figure(figsize=(9.5, 0.45 * len(models) * len(names) + 1.2))
    ax = fig.add_subplot()
    height = 0.8 / max(len(names), 1)
    for j, name in enumerate(names):
        values = [per_model[m].get(name, math.nan) for m in models]
        pos = [i + (j - (len(names) - 1) / 2) * height for i in range(len(models))]
        bars = ax.barh(
            pos,
            [0 if math.isnan(v) else v for v in values],
            height=height * 0.95,
            label=name,
            color=_COLORS[j % len(_COLORS)],
        )
        for bar, v in zip(bars, values):
            if not math.isnan(v):
                ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, f" {v:.3f}", va="center", fontsize=8)
    ax.set_yticks(range(len(models)), models)
    ax.invert_yaxis()
    ax.set_title(title, fontsize=11, loc="left")
    ax.legend(fontsize=8, loc="lower right")
    _style(ax)
    return _png(fig)


def _buckets(groups: Mapping[str, Mapping[str, Mapping[str, float]]], metric: str, title: str) -> str:
    buckets = [g for g in groups if g.startswith(f"{MAIN_GROUP}:")]
    models: list[str] = list(dict.fromkeys(m for g in buckets for m in groups[g]))
    fig = Figure(figsize=(9.5, 4.2))
    ax = fig.add_subplot()
    for i, model in enumerate(models):
        ys = [groups[g].get(model, {}).get(metric, math.nan) for g in buckets]
        ax.plot(
            range(len(buckets)),
            ys,
            marker="o",
            label=model,
            color=_COLORS[i % len(_COLORS)],
            linewidth=2.5 if model == MAIN_MODEL else 1.4,
        )

    def label(g: str) -> str:
        users = int(next(iter(groups[g].values())).get("users", 0))
        return f"{g.split(':', 1)[1]} day{'' if g.endswith(':1') else 's'}\n({users:,} users)"

    labels = [label(g) for g in buckets]
    ax.set_xticks(range(len(buckets)), labels, fontsize=8)
    ax.set_xlabel("active days before the cut-off", fontsize=9)
    ax.set_ylabel(metric)
    ax.set_title(title, fontsize=11, loc="left")
    ax.legend(fontsize=8, ncol=2)
    ax.spines[["top", "right"]].set_visible(False)
    ax.grid(axis="y", color="#e4e7ec")
    return _png(fig)


def _fmt(v: Any) -> str:
    if isinstance(v, float) and math.isnan(v):
        return "–"
    return f"{v:,.0f}" if isinstance(v, (int, float)) and float(v).is_integer() and v > 1 else f"{v:.4f}"


def _table(per_model: Mapping[str, Mapping[str, float]], ks: Sequence[int]) -> str:
    cols = ["users"] + [f"{name}@{k}" for k in ks for name in _SHOWN]
    cols = [c for c in cols if any(c in v for v in per_model.values())]
    best = {}
    for c in cols:
        if c == "users" or c.startswith("seen_share"):
            continue
        vals = [v.get(c, math.nan) for v in per_model.values()]
        vals = [x for x in vals if not math.isnan(x)]
        if vals:
            best[c] = max(vals)
    head = '<tr><th class="t">model</th>' + "".join(f"<th>{html.escape(c)}</th>" for c in cols) + "</tr>"
    rows = []
    for model, values in per_model.items():
        cells = "".join(
            f'<td class="{"best" if c in best and values.get(c) == best[c] else ""}">'
            f"{_fmt(values.get(c, math.nan))}</td>"
            for c in cols
        )
        rows.append(
            f'<tr class="{"main" if model == MAIN_MODEL else ""}"><td class="t">{html.escape(model)}</td>{cells}</tr>'
        )
    return f'<div class="scroll"><table>{head}{"".join(rows)}</table></div>'


def render(evaluation: Mapping[str, Any], title: str = "Offline evaluation") -> str:
    """The report as one HTML string."""
    meta, figures = evaluation.get("meta", {}), evaluation.get("figures", {})
    ks = meta.get("ks", [10, 20])
    k0 = ks[0]
    main_target = next((t for t in ("purchase", "interaction") if figures.get(t, {}).get(MAIN_GROUP)), None)
    parts = [f"<h1>{html.escape(title)}</h1>"]
    parts.append(
        '<p class="sub">'
        + html.escape(
            f"Trained on events before {meta.get('cutoff', '?')}, scored on the {meta.get('test_days', '?')} days "
            f"after it (to {meta.get('end', '?')}). {meta.get('train_events', 0):,} training and "
            f"{meta.get('test_events', 0):,} test events; "
            f"{meta.get('warm_users', 0):,} warm users, {meta.get('cold_users', 0):,} cold test users; "
            f"catalogue for coverage: {meta.get('catalogue', 0):,} items."
        )
        + "</p>"
    )
    parts.append(
        '<p class="note">Main metric: '
        + html.escape(f"{MAIN_METRIC} of '{MAIN_MODEL}' on warm users' {main_target or 'purchase'}s. ")
        + "Targets ending in _new count only items the user had not bought (interacted with) before the cut-off, and "
        "every list leaves those out. seen_share is the share of the list the user had interacted with before.</p>"
    )
    if main_target:
        warm = figures[main_target][MAIN_GROUP]
        parts.append(f"<h2>Models on warm users ({html.escape(main_target)} target)</h2>")
        parts.append(
            _bars(warm, [f"recall@{k0}", f"ndcg@{k0}", f"map@{k0}"], f"warm users, {main_target}s in the test window")
        )
        new = figures.get(f"{main_target}_new", {}).get(MAIN_GROUP)
        if new:
            parts.append(_bars(new, [f"recall@{k0}", f"ndcg@{k0}"], f"items new to the customer ({main_target}_new)"))
        parts.append("<h2>By activity before the cut-off</h2>")
        parts.append(_buckets(figures[main_target], f"ndcg@{k0}", f"ndcg@{k0} by user activity ({main_target})"))
        parts.append("<h2>Catalogue coverage</h2>")
        parts.append(_bars(warm, [f"coverage@{k}" for k in ks], "distinct items in the warm users' top-k / catalogue"))
    parts.append("<h2>Every figure</h2>")
    for target, groups in figures.items():
        for group, per_model in groups.items():
            parts.append(f"<h3>{html.escape(target)} · {html.escape(group)}</h3>")
            parts.append(_table(per_model, ks))
    params = meta.get("params")
    if params:
        parts.append("<h2>Settings</h2><pre>" + html.escape(_params_text(params)) + "</pre>")
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{_CSS}</style></head><body><main>{''.join(parts)}</main></body></html>"
    )


def _params_text(params: Mapping[str, Any]) -> str:
    lines = []
    for key, value in params.items():
        if isinstance(value, Mapping):
            lines.append(f"{key}: " + ", ".join(f"{k}={v}" for k, v in value.items()))
        else:
            lines.append(f"{key}: {value}")
    return "\n".join(lines)


def write_quality_report(evaluation: Mapping[str, Any], path: Path | str, title: str = "Offline evaluation") -> Path:
    """Write :func:`render` to ``path`` (parents created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(evaluation, title), encoding="utf-8")
    return path
