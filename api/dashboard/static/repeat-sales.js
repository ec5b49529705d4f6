/* Repeat sales: KPIs over time, RFM segments, the experiment's lift when there is one. */
"use strict";

/* ---------- Repeat sales ---------- */

async function repeatPage() {
  const params = new URLSearchParams(location.search);
  const period = ["week", "month", "quarter", "year"].includes(params.get("period")) ? params.get("period") : "month";
  const [kpis, segments, about] = await Promise.all([api(`/kpis?period=${period}`), api("/segments"), aboutInfo()]);
  const experiment = about.experiment ? await api("/experiment/report").catch(() => null) : null;
  const rows = kpis.rows || [];
  const unit = kpis.monetary_unit;
  const last = rows[rows.length - 1] || {}, before = rows[rows.length - 2] || {};
  const delta = (k, asPct) => {
    if (!Number.isFinite(last[k]) || !Number.isFinite(before[k])) return { note: "" };
    const diff = last[k] - before[k];
    const text = asPct ? `${diff >= 0 ? "+" : ""}${(diff * 100).toFixed(1)} pts` : before[k] ? `${diff >= 0 ? "+" : ""}${((diff / before[k]) * 100).toFixed(1)}%` : "";
    return { note: `${text} vs the ${period} before`, tone: diff >= 0 ? "good" : "bad" };
  };
  const rateBox = chartBox(), custBox = chartBox(), revBox = chartBox(), valueBox = chartBox();
  const switcher = h("div", { class: "segmented", role: "tablist" }, ["week", "month", "quarter", "year"].map((p) =>
    h("a", { href: `/dashboard/repeat-sales?period=${p}`, class: p === period ? "active" : null, role: "tab" }, label(p))));
  const totalRevenue = (segments.segments || []).reduce((a, s) => a + (s.monetary || 0), 0);
  const maxShare = Math.max(1e-9, ...(segments.segments || []).map((s) => s.share));
  setPage("Repeat sales", "repeat-sales",
    h("div", { class: "page-head row" }, h("div", {}, h("h1", {}, "Repeat sales"),
      h("p", { class: "sub" }, `Are customers coming back? Per ${period}, from the published version `, h("code", {}, kpis.version), ` · latest ${period} starting ${fmt.date(last.period_start)} (may be partial).`)), switcher),
    tiles([
      { id: "repeat-rate", label: "Repeat purchase rate", value: fmt.pct(last.repeat_purchase_rate), ...delta("repeat_purchase_rate", true) },
      { id: "returning-share", label: "Revenue from returning customers", value: fmt.pct(last.returning_revenue_share), ...delta("returning_revenue_share", true) },
      { id: "frequency", label: "Orders per customer", value: fmt.num(last.purchase_frequency, 2), ...delta("purchase_frequency") },
      { id: "clv", label: "Predicted customer value", value: money(last.predicted_customer_value, unit), ...delta("predicted_customer_value") },
    ]),
    h("div", { class: "grid" },
      experimentCard(about, experiment, period),
      card("Repeat purchase rate", { sub: "Share of the period's buyers who had bought before; share of revenue from them." }, rateBox),
      card("Customers", { sub: "Active customers per period, new and returning." }, custBox),
      card("Revenue", { sub: `Net of returns${unit === "units" ? " (units: the data has no prices)" : ""}; all customers and returning ones.` }, revBox),
      card("Customer value", { sub: "Revenue per customer to date, and predicted lifetime value (retention-based)." }, valueBox),
      card("Segments", { sub: `RFM segments of ${fmt.int((segments.segments || []).reduce((a, s) => a + s.customers, 0))} customers, with what to do and which e-mail list each gets (strategy=segment).`, wide: true },
        table([
          { label: "Segment", value: (s) => h("div", { class: "seg-cell" }, h("b", {}, segInfo(s.segment).label), h("span", { class: "item-meta" }, segInfo(s.segment).description)) },
          { label: "Customers", num: true, value: (s) => fmt.int(s.customers) },
          { label: "Share", value: (s) => h("div", { class: "meter" }, h("span", { class: "bar-track" }, h("i", { style: `width:${((100 * s.share) / maxShare).toFixed(1)}%` })), h("span", {}, fmt.pct(s.share))) },
          { label: "Revenue", num: true, value: (s) => money(s.monetary, segments.monetary_unit) },
          { label: "Of revenue", num: true, value: (s) => (totalRevenue > 0 ? fmt.pct(s.monetary / totalRevenue) : "–") },
          { label: "Suggested action", value: (s) => h("span", { class: "wrap small" }, segInfo(s.segment).action) },
          { label: "E-mail list", value: (s) => badge(label(s.strategy)) },
        ], segments.segments || [], { id: "segments-table" }))));
  const labels = rows.map((r) => fmt.date(r.period_start));
  Charts.line(rateBox, { labels, series: [{ name: "repeat purchase rate", values: rows.map((r) => r.repeat_purchase_rate) }, { name: "revenue from returning customers", values: rows.map((r) => r.returning_revenue_share) }], format: (v) => `${Math.round(v * 100)}%` });
  Charts.line(custBox, { labels, series: [{ name: "active", values: rows.map((r) => r.active_customers) }, { name: "returning", values: rows.map((r) => r.returning_customers) }, { name: "new", values: rows.map((r) => r.new_customers) }], format: (v) => fmt.int(v) });
  Charts.line(revBox, { labels, series: [{ name: "revenue", values: rows.map((r) => r.revenue) }, { name: "from returning customers", values: rows.map((r) => r.returning_revenue) }], format: (v) => compact(v) });
  Charts.line(valueBox, { labels, series: [{ name: "value to date", values: rows.map((r) => r.historic_customer_value) }, { name: "predicted lifetime value", values: rows.map((r) => r.predicted_customer_value) }], format: (v) => compact(v) });
}

function compact(v) {
  return Math.abs(v) >= 1e6 ? `${+(v / 1e6).toFixed(1)}M` : Math.abs(v) >= 1e3 ? `${+(v / 1e3).toFixed(1)}k` : `${+v.toFixed(1)}`;
}

function segInfo(name) {
  return (state.about && state.about.segments && state.about.segments[name]) || { label: label(name), description: "", action: "" };
}

/* The experiment's lift (GET /experiment/report) when the service runs one; see docs for the expected shape. */
function experimentCard(about, report, period) {
  const lifts = report ? (Array.isArray(report.lifts) ? report.lifts : Object.entries(report.lifts || {}).map(([metric, v]) => ({ metric, ...v }))) : [];
  if (!about.experiment || !report || !lifts.length) {
    return card("Experiment", { sub: "Lift of repeat sales from recommendations, against a control group.", id: "experiment", wide: true },
      h("div", { class: "empty-state" }, h("b", {}, "No experiment running."),
        h("span", {}, "With a control group configured, the lift of each KPI with its 95% confidence interval shows here.")));
  }
  const variants = report.variants || {};
  return card("Experiment", { sub: `Treatment against control${report.control_share ? ` (control share ${fmt.pct(report.control_share, 0)})` : ""}; 95% confidence intervals.`, id: "experiment", wide: true },
    table([
      { label: "KPI", value: (l) => label(l.metric) },
      { label: "Treatment", num: true, value: (l) => numOrPct(l.metric, l.treatment) },
      { label: "Control", num: true, value: (l) => numOrPct(l.metric, l.control) },
      { label: "Lift", num: true, value: (l) => (Number.isFinite(l.lift) ? h("span", { class: l.lift >= 0 ? "up" : "down" }, `${l.lift >= 0 ? "+" : ""}${(l.lift * 100).toFixed(1)}%`) : "–") },
      { label: "95% interval", num: true, value: (l) => (Number.isFinite(l.ci_low) ? `${(l.ci_low * 100).toFixed(1)}% to ${(l.ci_high * 100).toFixed(1)}%` : "–") },
      { label: "Verdict", value: (l) => h("span", { class: "wrap" }, l.verdict || (l.significant ? "significant" : "not significant yet")) },
    ], lifts, { id: "experiment-table" }),
    Object.keys(variants).length ? kv(Object.entries(variants).map(([name, v]) => [label(name), `${fmt.int(v.customers)} customers`])) : null);
}

function numOrPct(metric, v) {
  return /rate|share/.test(metric) ? fmt.pct(v) : fmt.num(v, 2);
}
