"""A self-contained HTML report of repeat-sales KPIs and RFM segments, for marketers.

Figures are drawn with matplotlib's Agg canvas (no pyplot, no display) and embedded as base64 PNG, with inline
CSS and no external assets, so the file can be mailed or opened anywhere.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, PercentFormatter

from recommender.marketing.kpis import compute_kpis, kpi_summary
from recommender.marketing.rfm import SEGMENTS, RfmConfig, compute_rfm, segment_movement, segment_summary

_BLUE, _ORANGE, _GREEN, _GREY = "#2f6db5", "#e8872e", "#3a9a5b", "#8a8f98"
_NOT_YET = "(not a customer yet)"

_CSS = """
body{font-family:-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;color:#222;margin:0;background:#f6f7f9}
main{max-width:1100px;margin:0 auto;padding:24px 28px 48px;background:#fff}
h1{font-size:26px;margin:0 0 4px}h2{font-size:19px;margin:36px 0 8px;border-bottom:2px solid #e4e7ec;padding-bottom:4px}
p.sub,p.note{color:#5b6270;font-size:13px;margin:4px 0 12px}
.cards{display:flex;flex-wrap:wrap;gap:12px;margin:18px 0}
.card{flex:1 1 150px;background:#f2f5fa;border-radius:8px;padding:10px 14px}
.card .v{font-size:21px;font-weight:600}.card .l{font-size:12px;color:#5b6270}
img{max-width:100%;height:auto;display:block;margin:8px 0}
table{border-collapse:collapse;font-size:13px;width:100%;margin:8px 0}
th,td{padding:5px 8px;border-bottom:1px solid #e4e7ec;text-align:right;vertical-align:top}
th{background:#f2f5fa;font-weight:600}td.t,th.t{text-align:left}
.scroll{overflow-x:auto}
"""


def _png(fig: Figure) -> str:
    """An <img> tag with the figure as an embedded base64 PNG."""
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return f'<img alt="chart" src="data:image/png;base64,{data}">'


def _period_label(ts: dt.datetime, period: str) -> str:
    if period == "year":
        return f"{ts.year}"
    if period == "quarter":
        return f"{ts.year} Q{(ts.month - 1) // 3 + 1}"
    if period == "month":
        return ts.strftime("%Y-%m")
    return ts.strftime("%Y-%m-%d")


def _money(x: float, decimals: int = 0) -> str:
    return f"{x:,.{decimals}f}"


def _compact(v: float, _pos: Any = None) -> str:
    """Axis label: 1.2M, 350k, 42."""
    for div, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= div:
            return f"{v / div:.3g}{suffix}"
    return f"{v:.3g}"


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _thin_ticks(ax: Any, labels: Sequence[str]) -> None:
    step = max(1, len(labels) // 14)
    ax.set_xticks(range(0, len(labels), step))
    ax.set_xticklabels(
        labels[::step], rotation=45 if len(labels) > 6 else 0, ha="right" if len(labels) > 6 else "center"
    )


def _style(ax: Any) -> None:
    ax.spines[["top", "right"]].set_visible(False)
    ax.grid(axis="y", color="#e4e7ec")
    ax.set_axisbelow(True)


def _revenue_chart(k: dict[str, list], labels: list[str], unit_label: str) -> str:
    fig = Figure(figsize=(10, 3.6))
    ax = fig.add_subplot()
    x = range(len(labels))
    ax.bar(x, k["revenue"], color=_BLUE, label=f"Revenue, net of returns ({unit_label})")
    ax.bar(x, k["returning_revenue"], color=_ORANGE, width=0.45, label="… of which returning customers")
    ax.yaxis.set_major_formatter(FuncFormatter(_compact))
    _style(ax)
    ax2 = ax.twinx()
    ax2.plot(x, k["returning_revenue_share"], color="#222", marker="o", ms=3, label="Returning share (right)")
    ax2.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax2.set_ylim(0, 1.05)
    ax2.spines[["top"]].set_visible(False)
    _thin_ticks(ax, labels)
    handles = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
    ax.legend(handles=handles, loc="upper left", fontsize=8, frameon=False)
    ax.set_title("Revenue and share from returning customers", loc="left", fontsize=11)
    return _png(fig)


def _customers_chart(k: dict[str, list], labels: list[str]) -> str:
    fig = Figure(figsize=(10, 3.4))
    ax = fig.add_subplot()
    x = range(len(labels))
    ax.bar(x, k["returning_customers"], color=_ORANGE, label="Returning customers")
    ax.bar(x, k["new_customers"], bottom=k["returning_customers"], color=_GREEN, label="New customers")
    ax.plot(x, k["active_customers"], color="#222", lw=1, marker="o", ms=3, label="Active customers (total)")
    _style(ax)
    _thin_ticks(ax, labels)
    ax.legend(loc="upper left", fontsize=8, frameon=False)
    ax.set_title("Active customers: new and returning", loc="left", fontsize=11)
    return _png(fig)


def _rates_chart(k: dict[str, list], labels: list[str]) -> str:
    fig = Figure(figsize=(10, 3.2))
    ax = fig.add_subplot()
    x = range(len(labels))
    ax.plot(
        x,
        k["repeat_purchase_rate"],
        color=_BLUE,
        marker="o",
        ms=3,
        label="Repeat-purchase rate: share of the period's buyers who had bought before",
    )
    ax.plot(
        x,
        k["cumulative_repeat_rate"],
        color=_GREY,
        ls="--",
        label="Repeat customer rate to date: share of all customers with 2+ orders",
    )
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_ylim(0, 1.05)
    _style(ax)
    _thin_ticks(ax, labels)
    ax.legend(loc="lower right", fontsize=8, frameon=False)
    ax.set_title("Repeat purchasing", loc="left", fontsize=11)
    return _png(fig)


def _segments_chart(seg: dict[str, list], unit_label: str) -> str:
    names = [SEGMENTS[s].label for s in seg["segment"]][::-1]
    fig = Figure(figsize=(10, 4.2))
    ax1, ax2 = fig.subplots(1, 2, sharey=True)
    ax1.barh(names, seg["customers"][::-1], color=_BLUE)
    ax1.set_title("Customers", loc="left", fontsize=11)
    ax2.barh(names, seg["monetary"][::-1], color=_ORANGE)
    ax2.set_title(f"Net revenue ({unit_label})", loc="left", fontsize=11)
    for ax in (ax1, ax2):
        ax.spines[["top", "right"]].set_visible(False)
        ax.grid(axis="x", color="#e4e7ec")
        ax.set_axisbelow(True)
        ax.xaxis.set_major_formatter(FuncFormatter(_compact))
    fig.tight_layout()
    return _png(fig)


def _movement_chart(matrix: list[list[int]], rows: list[str], cols: list[str]) -> str:
    fig = Figure(figsize=(10, 0.45 * len(rows) + 2.2))
    ax = fig.add_subplot()
    ax.imshow(matrix, cmap="Blues", aspect="auto")
    top = max((v for row in matrix for v in row), default=0)
    for i, row in enumerate(matrix):
        for j, v in enumerate(row):
            if v:
                ax.text(
                    j, i, f"{v:,}", ha="center", va="center", fontsize=8, color="white" if v > 0.6 * top else "#222"
                )
    ax.set_xticks(range(len(cols)))
    ax.set_xticklabels(cols, rotation=35, ha="right", fontsize=8)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels(rows, fontsize=8)
    ax.set_xlabel("Segment now")
    ax.set_ylabel("Segment at the end of the previous period")
    return _png(fig)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], text_cols: Collection[int] = (0,)) -> str:
    """An HTML table; columns in ``text_cols`` are left-aligned, the others (numbers) right-aligned."""

    def cell(tag: str, i: int, v: str) -> str:
        cls = ' class="t"' if i in text_cols else ""
        return f"<{tag}{cls}>{html.escape(v)}</{tag}>"

    head = "".join(cell("th", i, h) for i, h in enumerate(header))
    body = "".join("<tr>" + "".join(cell("td", i, v) for i, v in enumerate(r)) + "</tr>" for r in rows)
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def _experiment_section(report: dict) -> str:
    """The experiment: customers and feedback per variant, then each KPI's lift with its 95% interval."""
    variants = report.get("variants", {})
    arms = _table(
        ["variant", "customers", "impressions", "clicks", "CTR", "orders after a click", "orders after a view"],
        [
            [
                name,
                f"{v['customers']:,}",
                f"{v['impressions']:,}",
                f"{v['clicks']:,}",
                "-" if v["ctr"] is None else f"{v['ctr']:.1%}",
                f"{v['attributed']['clicked']['purchases']:,}",
                f"{v['attributed']['shown']['purchases']:,}",
            ]
            for name, v in variants.items()
        ],
    )
    lifts = _table(
        ["KPI", "treatment", "control", "verdict"],
        [[x["metric"], f"{x['treatment']:.4g}", f"{x['control']:.4g}", x["verdict"]] for x in report.get("lifts", [])],
        text_cols=(0, 3),
    )
    window = report.get("window", {})
    return (
        "<h2>Experiment: recommendations against a control group</h2>"
        f'<p class="sub">{html.escape(str(window.get("start", ""))[:10])} to '
        f"{html.escape(str(window.get('end', ''))[:10])}, control share {report.get('control_share', 0):.0%}; "
        "95% intervals from a bootstrap over customers.</p>"
        + arms
        + (lifts if report.get("lifts") else '<p class="note">No lift yet: both groups need customers.</p>')
    )


def _cards(items: Sequence[tuple[str, str]]) -> str:
    cards = "".join(
        f'<div class="card"><div class="v">{html.escape(v)}</div><div class="l">{html.escape(label)}</div></div>'
        for label, v in items
    )
    return f'<div class="cards">{cards}</div>'


def write_report(
    events: pa.Table,
    out: Path,
    period: str = "month",
    title: str = "Customer & repeat-sales report",
    config: RfmConfig | None = None,
    experiment: dict | None = None,
) -> Path:
    """Write the HTML report for ``events`` to ``out`` (parent folders created) and return its path.

    Sections: headline figures, KPIs over time (revenue and returning share, new/returning customers,
    repeat-purchase rates), RFM segments (sizes, revenue, actions), segment movement between the end of the
    previous period and the end of the data, the KPI table, and the experiment's lift when ``experiment`` (an
    :func:`recommender.marketing.experiment_report.experiment_report`) is given. ``config`` defaults to
    ``RfmConfig()``. Raises ValueError for an unknown period.
    """
    out = Path(out)
    config = config or RfmConfig()
    kpis = compute_kpis(events, period)
    summary = kpi_summary(events)
    rfm = compute_rfm(events, config)
    unit_label = "units" if summary["monetary_unit"] == "units" else "money"
    k = kpis.to_pydict()
    labels = [_period_label(ts, period) for ts in k["period_start"]]
    parts = [
        *_headline(summary, title, period),
        *_kpis_over_time(summary, k, labels, unit_label),
        *_segments(rfm, config.as_of or summary["end"], unit_label),
        *_movement(events, k, rfm, config, summary["end"], period, labels),
        "<h2>KPI table</h2>",
        _kpi_table(k, labels),
    ]
    if experiment is not None:
        parts.append(_experiment_section(experiment))
    doc = (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body><main>"
        + "\n".join(parts)
        + "</main></body></html>"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(doc, encoding="utf-8")
    return out


def _headline(summary: dict, title: str, period: str) -> list[str]:
    parts: list[str] = [f"<h1>{html.escape(title)}</h1>"]
    if summary["start"] is not None:
        parts.append(
            f'<p class="sub">Data from {summary["start"]:%Y-%m-%d} to {summary["end"]:%Y-%m-%d}, '
            f"KPIs per {html.escape(period)}. Generated {dt.datetime.now():%Y-%m-%d %H:%M}.</p>"
        )
    if summary["monetary_unit"] == "units":
        parts.append('<p class="note">The data has no prices: revenue and customer values count units sold.</p>')
    parts.append(
        _cards(
            [
                ("Customers", f"{summary['customers']:,}"),
                ("Orders", f"{summary['orders']:,}"),
                ("Revenue, net of returns", _money(summary["revenue"])),
                ("Average order value", _money(summary["average_order_value"], 2)),
                ("Customers with 2+ orders", _pct(summary["repeat_customer_rate"])),
                ("Historic value per customer", _money(summary["historic_customer_value"], 2)),
                ("Predicted lifetime value", _money(summary["predicted_customer_value"], 2)),
            ]
        )
    )
    return parts


def _kpis_over_time(summary: dict, k: dict, labels: list[str], unit_label: str) -> list[str]:
    parts = ["<h2>KPIs over time</h2>"]
    if not summary["orders"]:
        return [*parts, '<p class="note">No purchases in the data.</p>']
    return [
        *parts,
        _revenue_chart(k, labels, unit_label),
        _customers_chart(k, labels),
        _rates_chart(k, labels),
        '<p class="note">Returning customers had bought before the period; new customers bought for the first '
        "time. Predicted lifetime value = yearly net revenue per customer &times; 1 / (1 &minus; share of the "
        "year's customers with 2+ orders).</p>",
    ]


def _segments(rfm: pa.Table, as_of: dt.datetime, unit_label: str) -> list[str]:
    parts = ["<h2>Customer segments (RFM)</h2>"]
    if not rfm.num_rows:
        return [*parts, '<p class="note">No customers with purchases yet.</p>']
    seg = segment_summary(rfm).to_pydict()
    rows = [
        [SEGMENTS[s].label, f"{c:,}", _pct(sh), _money(m), SEGMENTS[s].action, st]
        for s, c, sh, m, st in zip(seg["segment"], seg["customers"], seg["share"], seg["monetary"], seg["strategy"])
    ]
    return [
        *parts,
        f'<p class="note">{rfm.num_rows:,} customers scored 1&ndash;5 on recency, frequency and spend '
        f"as of {as_of:%Y-%m-%d}.</p>",
        _segments_chart(seg, unit_label),
        _table(["Segment", "Customers", "Share", "Net revenue", "What to do", "E-mail list"], rows, (0, 4, 5)),
    ]


def _movement(
    events: pa.Table,
    k: dict,
    rfm: pa.Table,
    config: RfmConfig,
    end: dt.datetime,
    period: str,
    labels: list[str],
) -> list[str]:
    """Segment movement from the end of the previous period to the end of the data."""
    parts = ["<h2>Segment movement</h2>"]
    if len(k["period_start"]) < 2 or not rfm.num_rows:
        return [*parts, '<p class="note">Needs at least two periods of data.</p>']
    as_of_a = k["period_start"][-1] - dt.timedelta(microseconds=1)
    as_of_b = config.as_of or end
    moves = segment_movement(events, as_of_a, as_of_b, config).to_pydict()
    pairs = list(zip(moves["from_segment"], moves["to_segment"], moves["customers"]))
    present_from = set(moves["from_segment"])
    present_to = set(moves["to_segment"])
    rows_keys: list[str | None] = [s for s in SEGMENTS if s in present_from]
    if None in present_from:
        rows_keys.append(None)
    cols_keys = [s for s in SEGMENTS if s in present_to]
    matrix = [[0] * len(cols_keys) for _ in rows_keys]
    for f, t, n in pairs:
        if t is not None:
            matrix[rows_keys.index(f)][cols_keys.index(t)] = n
    row_names = [SEGMENTS[s].label if s else _NOT_YET for s in rows_keys]
    col_names = [SEGMENTS[s].label for s in cols_keys]
    stayed = sum(n for f, t, n in pairs if f == t)
    before = sum(n for f, t, n in pairs if f is not None and t is not None)
    return [
        *parts,
        f'<p class="note">From the end of {as_of_a:%Y-%m-%d} (previous {html.escape(period)}) to {as_of_b:%Y-%m-%d} '
        f"(latest {html.escape(period)}: {html.escape(labels[-1])}). {stayed:,} of {before:,} existing customers "
        "stayed in their segment. Rows: segment before; columns: segment now.</p>",
        _movement_chart(matrix, row_names, col_names),
    ]


def _kpi_table(k: dict, labels: list[str]) -> str:
    header = [
        "Period",
        "Active",
        "New",
        "Returning",
        "Repeat rate",
        "Orders / customer",
        "Orders",
        "AOV",
        "Revenue",
        "Returning revenue",
        "Returning share",
        "Historic value",
        "Predicted value",
    ]
    rows = [
        [
            labels[i],
            f"{k['active_customers'][i]:,}",
            f"{k['new_customers'][i]:,}",
            f"{k['returning_customers'][i]:,}",
            _pct(k["repeat_purchase_rate"][i]),
            f"{k['purchase_frequency'][i]:.2f}",
            f"{k['orders'][i]:,}",
            _money(k["average_order_value"][i], 2),
            _money(k["revenue"][i]),
            _money(k["returning_revenue"][i]),
            _pct(k["returning_revenue_share"][i]),
            _money(k["historic_customer_value"][i], 2),
            _money(k["predicted_customer_value"][i], 2),
        ]
        for i in range(len(labels))
    ]
    return _table(header, rows)
