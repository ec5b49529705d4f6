/* Quality: the gate's figures of the serving version, the latest runs, every baseline from reco evaluate. */
"use strict";

/* ---------- Quality ---------- */

const METRICS = ["precision@10", "recall@10", "ndcg@10", "map@10", "hit_rate@10", "coverage@10", "recall@20", "ndcg@20"];

async function qualityPage() {
  const d = await api("/dashboard/api/quality");
  const gate = d.gate || {};
  const warm = (gate.figures && gate.figures.warm) || {};
  const cand = gate.candidate, base = gate.recent_popularity;
  const log = (d.log || []).slice().reverse();
  const historyBox = chartBox();
  const offline = d.offline;
  const content = [
    h("div", { class: "page-head" }, h("h1", {}, "Quality"),
      h("p", { class: "sub" }, "How well the served list predicts what customers buy next, measured by the promotion gate on the last days of every run (time split: trained before, scored after).")),
    tiles([
      { id: "main", label: `Serving version ${gate.metric || "ndcg@10"}`, value: fmt.metric(cand), note: gate.target ? `${gate.target}s of ${fmt.int(gate.users)} warm customers` : gateText(d.gate) },
      { id: "baseline", label: "Recent popularity (bestsellers)", value: fmt.metric(base), note: "same customers, same days" },
      { id: "lift", label: "Better than bestsellers by", value: Number.isFinite(cand) && base > 0 ? fmt.pct(cand / base - 1) : "–", tone: cand >= base ? "good" : "bad", note: gate.test_days ? `holdout: ${gate.test_days} days from ${fmt.date(gate.cutoff)}` : "" },
      { id: "runs", label: "Runs on record", value: fmt.int((d.log || []).length), note: `${(d.log || []).filter((e) => !e.published).length} kept the serving version` },
    ]),
  ];
  const grid = h("div", { class: "grid" });
  grid.appendChild(card("Serving version against recent popularity", { sub: `Every metric of the gate's holdout, warm customers. The production list is what /recommend serves.${gate.fit ? ` Gate model: ${gate.fit}.` : ""}`, wide: true },
    Object.keys(warm).length
      ? table([
        { label: "Metric", value: (r) => r.metric },
        { label: "Production list", num: true, value: (r) => fmt.metric(r.prod) },
        { label: "Recent popularity", num: true, value: (r) => fmt.metric(r.pop) },
        { label: "Difference", num: true, value: (r) => (Number.isFinite(r.prod) && r.pop > 0 ? h("span", { class: r.prod >= r.pop ? "up" : "down" }, fmt.pct(r.prod / r.pop - 1)) : "–") },
      ], METRICS.filter((m) => (warm.production || {})[m] !== undefined).map((m) => ({ metric: m, prod: warm.production[m], pop: (warm.recent_popularity || {})[m] })), { id: "gate-figures" })
      : note(d.gate && d.gate.skipped ? `The gate was skipped for this version: ${d.gate.skipped}.` : "The serving version carries no gate figures (published by an older release or with --no-gate).")));
  grid.appendChild(card("Latest runs", { sub: "The gate's main figure on every run, published or refused.", wide: true }, historyBox,
    table([
      { label: "Run", value: (e) => fmt.time(e.recorded_at) },
      { label: "Outcome", value: (e) => (e.published ? badge("published", "good") : badge("kept serving version", "warn")) },
      { label: "Version", value: (e) => (e.version ? h("code", {}, e.version) : "–") },
      { label: e0(log), num: true, value: (e) => fmt.metric(e.candidate) },
      { label: "Popularity", num: true, value: (e) => fmt.metric(e.recent_popularity) },
      { label: "Customers", num: true, value: (e) => fmt.int(e.users) },
    ], (d.log || []), { id: "quality-log" })));
  grid.appendChild(offlineCard(offline));
  content.push(grid);
  setPage("Quality", "quality", ...content);
  const points = log.filter((e) => Number.isFinite(e.candidate));
  if (points.length >= 1) {
    Charts.line(historyBox, {
      labels: points.map((e) => fmt.time(e.recorded_at).slice(5)),
      series: [{ name: "production list", values: points.map((e) => e.candidate) }, { name: "recent popularity", values: points.map((e) => e.recent_popularity) }],
      format: (v) => v.toFixed(3),
    });
  } else historyBox.remove();
}

const MODEL_NAMES = { production: "Production list (policy)", blend: "Learned blend", als: "ALS", als_new: "ALS, new items only", item_knn_cosine: "Item kNN (cosine)", item_knn_bm25: "Item kNN (BM25)", tifu_knn: "TIFU-KNN (Ta-Feng settings)", tifu_knn_dunnhumby: "TIFU-KNN (Dunnhumby settings)", tifu_knn_tuned: "TIFU-KNN (tuned)" };
const modelName = (name) => MODEL_NAMES[name] || label(name);
const SHORT_NAMES = { production: "Production", als: "ALS", als_new: "ALS new", global_popularity: "Popularity", recent_popularity: "Recent pop.", item_knn_cosine: "kNN cosine", item_knn_bm25: "kNN BM25", personal_top_frequency: "Own top items", tifu_knn: "TIFU-KNN", tifu_knn_dunnhumby: "TIFU Dunnh.", tifu_knn_tuned: "TIFU tuned" };

function e0(log) { return (log[0] && log[0].metric) || "ndcg@10"; }

function offlineCard(offline) {
  if (!offline) {
    return card("Every baseline (offline evaluation)", { wide: true },
      note("No offline evaluation is on record. ", h("code", {}, "reco evaluate --events FILE --format F --publish"), " scores the production list, ALS and every baseline (popularity, item-kNN, the customer's own top items) on the same split and records the figures here."));
  }
  const targets = Object.keys(offline.figures || {}).filter((t) => offline.figures[t].warm);
  const target = targets.includes("purchase") ? "purchase" : targets[0];
  const models = target ? offline.figures[target].warm : {};
  const barBox = chartBox();
  const names = Object.keys(models);
  const served = ((offline.meta || {}).served || {})[target];
  const servedName = served ? served.model : "production";
  const lead = served ? `ndcg@${served.k}` : null;
  const body = card("Every baseline (offline evaluation)", {
    sub: `reco evaluate on ${(offline.meta.source || {}).events || "the data"}, recorded ${fmt.time(offline.recorded_at)} while ${offline.serving_version || "no version"} served; ${target}s of warm customers, test from ${fmt.date(offline.meta.cutoff)}.` +
      (served ? ` The served list (${modelName(servedName)}) is paired with each other list customer by customer: its lead and the lead's standard error.` : ""),
    wide: true,
  }, barBox, table([
    { label: "Model", value: (r) => h("span", { class: r.name === servedName ? "strong" : null }, modelName(r.name)) },
    ...METRICS.slice(0, 6).map((m) => ({ label: m, num: true, value: (r) => fmt.metric(r.v[m]) })),
    { label: "Customers", num: true, value: (r) => fmt.int(r.v.users) },
    ...(served ? [{ label: `Served list's lead, ${lead}`, num: true, value: (r) => leadCell(r.name === servedName ? "served" : ((served.against[r.name] || {})[lead])) }] : []),
  ], names.map((name) => ({ name, v: models[name] })), { id: "offline-figures" }));
  setTimeout(() => Charts.bars(barBox, { labels: names.map((n) => SHORT_NAMES[n] || label(n)), values: names.map((n) => models[n]["ndcg@10"] || 0), format: (v) => v.toFixed(3), name: "ndcg@10", height: 180 }), 0);
  return body;
}

/* The served list's paired lead over one other list: "+6.3% ± 0.6", green when clear of twice its standard error. */
function leadCell(g) {
  if (g === "served") return badge("served", "good");
  if (!g || !Number.isFinite(g.gain)) return "–";
  const clear = Math.abs(g.gain) >= 2 * g.stderr;
  return h("span", { class: clear ? (g.gain > 0 ? "up" : "down") : null, title: `z ${g.z}` }, `${g.gain >= 0 ? "+" : ""}${fmt.pct(g.gain)} ± ${fmt.pct(g.stderr)}`);
}
