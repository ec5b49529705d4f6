/* The dashboard: one script for every page. The page to show comes from the address (deep links), the data from the
 * API's JSON endpoints, with the X-API-Key header once a key was asked for (kept for the browser tab's session). */
"use strict";

const KEY_STORE = "shop-reco.read-key";
const state = { about: null, timer: null, period: "month" };

/* ---------- small DOM and format helpers ---------- */

function h(tag, attrs, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") el.className = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const kid of kids.flat(Infinity)) {
    if (kid === null || kid === undefined || kid === false) continue;
    el.append(kid instanceof Node ? kid : String(kid));
  }
  return el;
}

const nf = new Intl.NumberFormat("en-US");
const fmt = {
  int: (v) => (v === null || v === undefined ? "–" : nf.format(Math.round(v))),
  num: (v, d = 2) => (v === null || v === undefined || !Number.isFinite(v) ? "–" : v.toLocaleString("en-US", { minimumFractionDigits: d, maximumFractionDigits: d })),
  pct: (v, d = 1) => (v === null || v === undefined || !Number.isFinite(v) ? "–" : `${(v * 100).toFixed(d)}%`),
  metric: (v) => (v === null || v === undefined || !Number.isFinite(v) ? "–" : v.toFixed(4)),
  ms: (v) => (v === null || v === undefined ? "–" : v < 10 ? v.toFixed(2) : v.toFixed(1)),
  bytes: (v) => {
    if (!v) return "0 B";
    const units = ["B", "KB", "MB", "GB", "TB"];
    const i = Math.min(units.length - 1, Math.floor(Math.log(v) / Math.log(1024)));
    return `${(v / Math.pow(1024, i)).toFixed(i ? 1 : 0)} ${units[i]}`;
  },
  date: (s) => (s ? String(s).slice(0, 10) : "–"),
  time: (s) => (s ? String(s).replace("T", " ").slice(0, 16) : "–"),
  seconds: (v) => (v === null || v === undefined ? "–" : v < 60 ? `${v.toFixed(1)} s` : `${Math.floor(v / 60)} min ${Math.round(v % 60)} s`),
  duration: (s) => {
    if (s === null || s === undefined) return "–";
    const d = Math.floor(s / 86400), hr = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60);
    return d ? `${d} d ${hr} h` : hr ? `${hr} h ${m} min` : `${m} min`;
  },
  ago: (s) => {
    if (!s) return "never";
    const secs = (Date.now() - Date.parse(s.endsWith("Z") || s.includes("+") ? s : `${s}Z`)) / 1000;
    if (!Number.isFinite(secs)) return s;
    if (secs < 90) return "just now";
    if (secs < 5400) return `${Math.round(secs / 60)} min ago`;
    if (secs < 172800) return `${Math.round(secs / 3600)} h ago`;
    return `${Math.round(secs / 86400)} days ago`;
  },
};

function money(v, unit) {
  if (v === null || v === undefined) return "–";
  return unit === "units" ? `${fmt.int(v)} units` : fmt.num(v, 2);
}

const label = (name) => String(name).replace(/_/g, " ").replace(/^\w/, (c) => c.toUpperCase());
const itemHref = (id) => `/dashboard/items/${encodeURIComponent(id)}`;
const customerHref = (id) => `/dashboard/customers/${encodeURIComponent(id)}`;

/* ---------- talking to the API ---------- */

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function request(path, options = {}) {
  const headers = { Accept: "application/json", ...(options.headers || {}) };
  const key = sessionStorage.getItem(KEY_STORE);
  if (key && !headers["X-API-Key"]) headers["X-API-Key"] = key;
  const res = await fetch(path, { ...options, headers });
  const body = await res.json().catch(() => null);
  if (!res.ok) {
    const detail = body && (body.message || body.detail);
    throw new ApiError(res.status, typeof detail === "string" ? detail : `${res.status} ${res.statusText}`);
  }
  return body;
}

/* GET with the read key: on 401 the page asks for it once and tries again. */
async function api(path) {
  try {
    return await request(path);
  } catch (err) {
    if (err.status !== 401) throw err;
    sessionStorage.removeItem(KEY_STORE);
    const key = await askKey({
      title: "Read key needed",
      text: "This service is set up with a read key (RECO_READ_API_KEY). Enter it to see the dashboard; it is kept for this browser tab only.",
      field: "Read key",
      submit: "Open the dashboard",
    });
    if (!key) throw new ApiError(401, "The dashboard needs the read key.");
    sessionStorage.setItem(KEY_STORE, key);
    return request(path);
  }
}

/* ---------- the key dialog (read key and write key) ---------- */

function askKey({ title, text, field, submit, onSubmit }) {
  const dialog = document.getElementById("key-dialog");
  const form = dialog.querySelector("form");
  const input = dialog.querySelector("input");
  const error = dialog.querySelector(".dialog-error");
  dialog.querySelector("h2").textContent = title;
  dialog.querySelector(".dialog-text").textContent = text;
  dialog.querySelector("label span").textContent = field;
  dialog.querySelector("button[type=submit]").textContent = submit;
  input.value = "";
  error.hidden = true;
  return new Promise((resolve) => {
    const finish = (value) => {
      form.onsubmit = null;
      dialog.querySelector(".cancel").onclick = null;
      dialog.close();
      resolve(value);
    };
    form.onsubmit = async (ev) => {
      ev.preventDefault();
      if (!input.value) return;
      if (!onSubmit) return finish(input.value);
      try {
        finish(await onSubmit(input.value));
      } catch (err) {
        error.textContent = err.message;
        error.hidden = false;
      }
    };
    dialog.querySelector(".cancel").onclick = () => finish(null);
    dialog.showModal();
    input.focus();
  });
}

function toast(message, kind = "ok") {
  const el = h("div", { class: `toast ${kind}`, role: "status" }, message);
  document.body.appendChild(el);
  setTimeout(() => el.remove(), 6000);
}

/* ---------- layout pieces ---------- */

function card(title, opts, ...body) {
  const { sub, actions, wide, id } = opts || {};
  return h("section", { class: `card${wide ? " wide" : ""}`, id },
    h("div", { class: "card-head" }, h("div", {}, h("h2", {}, title), sub ? h("p", { class: "sub" }, sub) : null), actions || null),
    ...body);
}

function tiles(list) {
  return h("div", { class: "tiles" }, list.map((t) =>
    h("div", { class: "tile", "data-tile": t.id || null },
      h("div", { class: "tile-label" }, t.label),
      h("div", { class: `tile-value${t.small ? " small" : ""}` }, t.value),
      t.note ? h("div", { class: `tile-note ${t.tone || ""}` }, t.note) : null)));
}

/* columns: [{label, num (right-aligned), value(row) -> node or text}] */
function table(columns, rows, attrs) {
  return h("div", { class: "table-wrap" },
    h("table", attrs || {},
      h("thead", {}, h("tr", {}, columns.map((c) => h("th", { class: c.num ? "num" : null }, c.label)))),
      h("tbody", {}, rows.length ? rows.map((r) => h("tr", r.__attrs || {}, columns.map((c) => h("td", { class: c.num ? "num" : null }, c.value(r)))))
        : h("tr", {}, h("td", { colspan: columns.length, class: "empty" }, "Nothing to show yet.")))));
}

function kv(pairs) {
  return h("dl", { class: "kv" }, pairs.filter(Boolean).map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
}

/* Horizontal bars as HTML rows: [label, value, shown text]; lengths relative to the largest value. */
function barList(rows) {
  const top = Math.max(1e-9, ...rows.map((r) => r[1]));
  return h("div", { class: "bar-list" }, rows.map(([name, v, text]) => h("div", { class: "bar-row" },
    h("span", { class: "bar-label" }, name),
    h("span", { class: "bar-track" }, h("i", { style: `width:${((100 * Math.max(v, 0)) / top).toFixed(1)}%` })),
    h("span", { class: "bar-value" }, text))));
}

const badge = (text, tone) => h("span", { class: `badge ${tone || ""}` }, text);
const chartBox = () => h("div", { class: "chart-area" });
const note = (...text) => h("p", { class: "note" }, ...text);

function itemCell(row, withPrice) {
  const price = withPrice && row.price !== null && row.price !== undefined ? fmt.num(row.price, 2) : null;
  return h("div", { class: "item-cell" },
    h("a", { href: itemHref(row.item_id), class: "item-title" }, row.title || row.item_id),
    h("span", { class: "item-meta" }, [row.item_id, row.category, price].filter(Boolean).join(" · ")));
}

function setPage(title, nav, ...content) {
  document.title = `${title} · Shop recommendations`;
  document.querySelectorAll(".tabs a").forEach((a) => a.classList.toggle("active", a.dataset.page === nav));
  const main = document.getElementById("main");
  main.replaceChildren(...content);
  main.dataset.ready = "true";
}

function showError(err) {
  setPage("Error", null, h("div", { class: "page-head" }, h("h1", {}, err.status === 404 ? "Not found" : "Something went wrong")),
    h("div", { class: "card" }, h("p", { class: "error-text" }, err.message),
      h("p", {}, h("a", { href: "/dashboard" }, "Back to the overview"))));
}

/* ---------- Overview ---------- */

async function overviewPage() {
  const data = await api("/dashboard/api/overview");
  renderOverview(data);
  clearInterval(state.timer);
  state.timer = setInterval(async () => {
    if (document.hidden || document.getElementById("key-dialog").open) return;
    try { renderOverview(await api("/dashboard/api/overview")); } catch (err) { /* keep the last figures */ }
  }, 15000);
}

function gateText(ev) {
  if (!ev) return "not run";
  if (ev.skipped) return `skipped: ${ev.skipped}`;
  return ev.decision || "–";
}

function versionRows(cur, prev) {
  const c = (m, f) => (m ? f(m) : "–");
  const count = (name) => (m) => fmt.int((m.counts || {})[name]);
  const total = (m) => (m.seconds ? fmt.seconds(Object.values(m.seconds).reduce((a, b) => a + b, 0)) : "–");
  const gate = (m) => (m.evaluation && Number.isFinite(m.evaluation.candidate)
    ? `${fmt.metric(m.evaluation.candidate)} vs ${fmt.metric(m.evaluation.recent_popularity)}` : "–");
  const fields = [
    ["Version", (m) => h("code", {}, m.version)],
    ["Published", (m) => `${fmt.time(m.created_at)} (${fmt.ago(m.created_at)})`],
    ["Data as of", (m) => fmt.time(m.as_of)],
    ["Input", (m) => (m.source ? `${String(m.source.events || "").split("/").pop()} (${m.source.format})` : "–")],
    ["Events", count("events")],
    ["Users / items", (m) => `${fmt.int((m.counts || {}).users)} / ${fmt.int((m.counts || {}).items)}`],
    ["Lists precomputed (personal / next purchase)", (m) => `${fmt.int((m.counts || {}).personal_lists)} / ${fmt.int((m.counts || {}).next_purchase_lists)}`],
    ["Customers computed on request", (m) => ((m.counts || {}).on_request_customers === undefined ? "–" : fmt.int(m.counts.on_request_customers))],
    ["Similar-item lists", count("similar_lists")],
    ["Live events taken", count("live_events")],
    ["Gate ndcg@10 (model vs popularity)", gate],
    ["Gate decision", (m) => h("span", { class: "wrap" }, gateText(m.evaluation))],
    ["Job time", total],
  ];
  return fields.map(([name, f]) => ({ name, cur: c(cur, f), prev: c(prev, f) }));
}

function loadReports(m) {
  if (!m || !m.load || !m.load.length) return null;
  return table([
    { label: "File", value: (r) => String(r.source).split("/").pop() },
    { label: "Rows read", num: true, value: (r) => fmt.int(r.rows_read) },
    { label: "Kept", num: true, value: (r) => fmt.int(r.rows_kept) },
    { label: "Bad", num: true, value: (r) => fmt.int(r.rows_bad) },
    { label: "Excluded by format rules", value: (r) => Object.entries(r.excluded || {}).map(([k, n]) => `${fmt.int(n)} ${k}`).join(", ") || "–" },
  ], m.load);
}

function renderOverview(d) {
  const cur = d.current, prev = d.previous, redis = d.redis, live = d.live, req = d.requests;
  const hits = (redis.keyspace_hits || 0) + (redis.keyspace_misses || 0);
  const lastMinutes = live.per_minute.slice(-5).reduce((a, b) => a + b, 0);
  const rollback = h("button", { class: "button danger", id: "rollback", disabled: prev ? null : true, onclick: rollbackFlow, title: prev ? "Serve the previous version again" : "There is no previous version" }, "Roll back");
  const stages = cur && cur.seconds ? Object.entries(cur.seconds) : [];
  const stageBox = chartBox();
  const liveBox = chartBox();
  const rateBox = chartBox();
  setPage("Overview", "overview",
    h("div", { class: "page-head" }, h("h1", {}, "Overview"),
      h("p", { class: "sub" }, cur ? ["Serving ", h("code", { id: "serving-version" }, cur.version), ` · data as of ${fmt.time(cur.as_of)}`] : "Nothing is published yet: run reco train.")),
    tiles([
      { id: "version", label: "Serving version", value: cur ? fmt.ago(cur.created_at) : "none", small: true, note: cur ? `published ${fmt.time(cur.created_at)}` : "" },
      { id: "users", label: "Users in the model", value: fmt.int(cur && cur.counts.users), note: cur ? `${fmt.int(cur.counts.next_purchase_customers ?? cur.counts.next_purchase_lists)} with purchases` : "" },
      { id: "items", label: "Items in the model", value: fmt.int(cur && cur.counts.items), note: cur ? `${fmt.int(cur.counts.catalogue)} in the catalogue` : "" },
      { id: "redis", label: "Redis memory", value: fmt.bytes(redis.used_memory), note: `durability: ${redis.durability}`, tone: redis.durability === "fsync-always" ? "good" : "warn" },
      { id: "live", label: "Live events, last hour", value: fmt.int(live.in_window) + (live.capped ? "+" : ""), note: `${fmt.int(lastMinutes)} in the last 5 min` },
    ]),
    h("div", { class: "grid" },
      card("Versions", { sub: "What reco train published, serving and previous (kept for rollback).", actions: rollback, wide: true },
        table([
          { label: "", value: (r) => h("span", { class: "row-label" }, r.name) },
          { label: "Serving", value: (r) => r.cur },
          { label: "Previous", value: (r) => r.prev },
        ], versionRows(cur, prev), { class: "versions" }),
        cur && cur.load ? h("h3", {}, "Input files of the serving version") : null,
        loadReports(cur)),
      card("Job stages", { sub: "Seconds per stage of the run that published the serving version." }, stageBox),
      card("Live ingestion", { sub: `Events per minute over the last ${live.window_minutes} minutes (POST /events).` }, liveBox,
        kv([["In the stream", fmt.int(live.stream_length)], ["Newest event", live.last_event_at ? `${fmt.time(live.last_event_at)} (${fmt.ago(live.last_event_at)})` : "none yet"],
          ["Archived up to", live.archived_upto || "–"]])),
      card("Requests", { sub: `This worker (pid ${req.pid}), up ${fmt.duration(req.uptime_seconds)}; rates and percentiles over the last ${fmt.duration(req.window_seconds)} (since start when idle).` },
        rateBox,
        table([
          { label: "Endpoint", value: (r) => h("code", {}, r.route) },
          { label: "Requests", num: true, value: (r) => fmt.int(r.requests) },
          { label: "Per second", num: true, value: (r) => fmt.num(r.per_second, 2) },
          { label: "p50 ms", num: true, value: (r) => fmt.ms(r.p50_ms) },
          { label: "p99 ms", num: true, value: (r) => fmt.ms(r.p99_ms) },
          { label: "4xx", num: true, value: (r) => fmt.int(r.client_errors) },
          { label: "5xx", num: true, value: (r) => (r.server_errors ? badge(fmt.int(r.server_errors), "bad") : "0") },
        ], req.routes, { id: "requests-table" })),
      card("Redis", { sub: "Health and durability of the cache." },
        kv([
          ["Server", `Redis ${redis.redis_version} (${redis.redis_mode}, ${redis.role})`],
          ["Up for", fmt.duration(redis.uptime_in_seconds)],
          ["Memory", `${fmt.bytes(redis.used_memory)} (peak ${fmt.bytes(redis.used_memory_peak)}${redis.maxmemory ? `, limit ${fmt.bytes(redis.maxmemory)}` : ", no limit"})`],
          ["Durability", h("span", {}, badge(redis.durability, redis.durability === "fsync-always" ? "good" : "warn"), redis.durability === "fsync-always" ? " every acknowledged write is on disk" : " acknowledged live events may be lost in a crash")],
          ["Append-only file", redis.aof_enabled ? `on, last write ${redis.aof_last_write_status}` : "off"],
          ["Last snapshot", `${redis.rdb_last_bgsave_status}, ${redis.rdb_last_save_time ? fmt.ago(new Date(redis.rdb_last_save_time * 1000).toISOString()) : "never"}`],
          ["Clients / ops per s", `${fmt.int(redis.connected_clients)} / ${fmt.int(redis.instantaneous_ops_per_sec)}`],
          ["Key hit rate", hits ? fmt.pct(redis.keyspace_hits / hits) : "–"],
        ])),
    ));
  if (stages.length) stageBox.replaceWith(barList(stages.map(([k, v]) => [k, v, fmt.seconds(v)])));
  else stageBox.replaceWith(note("Stage times are recorded by runs of reco train from this release on."));
  const minutes = live.per_minute.map((_, i) => `-${live.window_minutes - i} min`);
  Charts.bars(liveBox, { labels: minutes, values: live.per_minute, name: "events", height: 150, color: "#4f46e5" });
  const hist = req.rate_history || [];
  if (hist.length >= 2) {
    Charts.line(rateBox, { labels: hist.map(([t]) => new Date(t * 1000).toTimeString().slice(0, 5)), series: [{ name: "requests per second", values: hist.map(([, r]) => r) }], height: 140, format: (v) => `${+v.toFixed(2)}/s` });
  } else {
    rateBox.replaceWith(note("The request-rate chart fills in while this page stays open (it refreshes every 15 seconds)."));
  }
}

async function rollbackFlow() {
  const done = await askKey({
    title: "Roll back to the previous version",
    text: "The previous version will serve every list again (a second rollback undoes it). Enter the write key (RECO_API_KEY).",
    field: "Write key",
    submit: "Roll back",
    onSubmit: async (key) => {
      try {
        return await request("/admin/rollback", { method: "POST", headers: { "X-API-Key": key } });
      } catch (err) {
        if (err.status === 401) throw new Error("Refused: the write key is missing or wrong.");
        if (err.status === 403) throw new Error("Refused: writing is disabled on this server (RECO_API_KEY is not set).");
        throw err;
      }
    },
  });
  if (!done) return;
  toast(`Rolled back: now serving ${done.version}.`);
  renderOverview(await api("/dashboard/api/overview"));
}

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
  grid.appendChild(card("Serving version against recent popularity", { sub: "Every metric of the gate's holdout, warm customers. The production list is what /recommend serves.", wide: true },
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

const MODEL_NAMES = { production: "Production list (served)", als: "ALS", als_new: "ALS, new items only", item_knn_cosine: "Item kNN (cosine)", item_knn_bm25: "Item kNN (BM25)" };
const modelName = (name) => MODEL_NAMES[name] || label(name);
const SHORT_NAMES = { production: "Production", als: "ALS", als_new: "ALS new", global_popularity: "Popularity", recent_popularity: "Recent pop.", item_knn_cosine: "kNN cosine", item_knn_bm25: "kNN BM25", personal_top_frequency: "Own top items" };

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
  const body = card("Every baseline (offline evaluation)", {
    sub: `reco evaluate on ${(offline.meta.source || {}).events || "the data"}, recorded ${fmt.time(offline.recorded_at)} while ${offline.serving_version || "no version"} served; ${target}s of warm customers, test from ${fmt.date(offline.meta.cutoff)}.`,
    wide: true,
  }, barBox, table([
    { label: "Model", value: (r) => h("span", { class: r.name === "production" ? "strong" : null }, modelName(r.name)) },
    ...METRICS.slice(0, 6).map((m) => ({ label: m, num: true, value: (r) => fmt.metric(r.v[m]) })),
    { label: "Customers", num: true, value: (r) => fmt.int(r.v.users) },
  ], names.map((name) => ({ name, v: models[name] })), { id: "offline-figures" }));
  setTimeout(() => Charts.bars(barBox, { labels: names.map((n) => SHORT_NAMES[n] || label(n)), values: names.map((n) => models[n]["ndcg@10"] || 0), format: (v) => v.toFixed(3), name: "ndcg@10", height: 180 }), 0);
  return body;
}

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

async function aboutInfo() {
  if (!state.about) state.about = await api("/dashboard/api/about");
  return state.about;
}

/* ---------- a customer ---------- */

async function customerPage(userId) {
  const id = encodeURIComponent(userId);
  const c = await api(`/dashboard/api/customers/${id}`);
  const [picks, next, fresh] = await Promise.all([
    api(`/recommend?user_id=${id}&n=10`),
    c.has_purchases ? api(`/next-purchase/${id}?n=10`) : null,
    api(`/new-arrivals?user_id=${id}&n=10`),
  ]);
  const seg = c.segment;
  const scoreDots = (n) => h("span", { class: "score", title: `${n} of 5` }, [1, 2, 3, 4, 5].map((i) => h("i", { class: i <= n ? "on" : null })));
  const pickTable = (list, extra, name) => table([
    { label: "#", num: true, value: (r) => String(r.__rank) },
    { label: "Item", value: (r) => itemCell(r, true) },
    extra,
  ], list.map((r, i) => ({ ...r, __rank: i + 1, __attrs: { "data-item-id": r.item_id } })), { "data-list": name, class: "compact" });
  setPage(`Customer ${userId}`, null,
    h("div", { class: "page-head" }, h("p", { class: "crumb" }, "Customer"), h("h1", { id: "customer-id" }, userId),
      h("p", { class: "sub" }, seg ? [badge(seg.label, "accent"), ` ${seg.description}`] : c.has_personal ? "Known to the model, no purchases yet." : "Not in the published model: lists fall back to live events and bestsellers.")),
    seg ? tiles([
      { id: "recency", label: "Recency", value: scoreDots(seg.r_score), note: `last order ${fmt.int(seg.recency_days)} days ago` },
      { id: "frequency", label: "Frequency", value: scoreDots(seg.f_score), note: `${fmt.int(seg.frequency)} orders` },
      { id: "monetary", label: "Monetary", value: scoreDots(seg.m_score), note: `${money(seg.monetary, seg.monetary_unit)} spent` },
      { id: "action", label: "Suggested action", value: seg.action, small: true, note: `e-mail list: ${label(seg.strategy)}` },
    ]) : null,
    h("div", { class: "grid three" },
      card("Personal picks", { sub: `What /recommend answers now (source: ${picks.source}).` },
        pickTable(picks.items, { label: "Score", num: true, value: (r) => fmt.num(r.score, 3) }, "personal")),
      card("Next purchase", { sub: next ? "Items due again with the expected date, then items that go with their purchases." : "Only for customers with purchases." },
        next ? pickTable(next.items, { label: "Why", value: (r) => (r.reason === "due_again" ? h("div", { class: "why" }, badge("due again", "good"), r.due ? h("span", { class: "item-meta" }, fmt.date(r.due)) : null) : badge(REASONS[r.reason] || label(r.reason))) }, "next") : note("No purchase history in the published version.")),
      card("New arrivals for them", { sub: `Source: ${fresh.source}.` },
        pickTable(fresh.items, { label: "Score", num: true, value: (r) => fmt.num(r.score, 2) }, "new"))),
    card("Recent events", { sub: "Live events since the last run, then the latest purchases and other events the job saw.", wide: true },
      table([
        { label: "When", value: (e) => fmt.time(e.timestamp) },
        { label: "Event", value: (e) => badge(e.event_type, e.event_type === "purchase" ? "good" : e.event_type === "return" ? "bad" : "") },
        { label: "Item", value: itemCell },
        { label: "Qty", num: true, value: (e) => (e.quantity === undefined || e.quantity === null ? "" : fmt.int(e.quantity)) },
        { label: "Price", num: true, value: (e) => (e.price === null || e.price === undefined ? "–" : fmt.num(e.price, 2)) },
        { label: "Source", value: (e) => (e.source === "live" ? badge("live", "accent") : "nightly data") },
      ], c.events, { id: "events-table" })));
}

const REASONS = { goes_with_your_purchases: "goes with", new_arrival: "new", bestseller: "bestseller" };

/* ---------- an item ---------- */

async function itemPage(itemId) {
  const id = encodeURIComponent(itemId);
  const it = await api(`/dashboard/api/items/${id}`);
  const similar = it.has_similar ? await api(`/similar/${id}?n=10`) : null;
  const s = it.stats;
  const countBox = chartBox();
  setPage(it.title || `Item ${itemId}`, null,
    h("div", { class: "page-head" }, h("p", { class: "crumb" }, "Item"), h("h1", { id: "item-title" }, it.title || itemId),
      h("p", { class: "sub" }, h("code", {}, itemId), it.category ? ` · ${it.category}` : "", it.price !== null && it.price !== undefined ? ` · ${fmt.num(it.price, 2)}` : "", " ",
        it.available ? badge("available", "good") : badge("unavailable: never recommended", "bad"))),
    tiles([
      { id: "buyers", label: "Buyers", value: fmt.int(s ? s.buyers : 0), note: s ? `${fmt.int(s.units)} units on ${fmt.int(s.purchase_days)} purchase days` : "never bought" },
      { id: "repeat-buyers", label: "Buy it again", value: fmt.int(s ? s.repeat_buyers : 0), note: s ? `${fmt.pct(s.repeat_rate)} of its buyers` : "" },
      { id: "gap", label: "Typical days between purchases", value: s && s.median_gap_days !== null ? fmt.num(s.median_gap_days, 1) : "–", note: "median over repeat buyers" },
    ]),
    h("div", { class: "grid" },
      card("How often its buyers buy it", { sub: "Buyers by the number of days they bought it on." }, s ? countBox : note("Nobody bought it in the data the job saw.")),
      card("Who buys it again", { sub: "Customers with the most purchase days of this item." },
        table([
          { label: "Customer", value: (r) => h("a", { href: customerHref(r[0]) }, r[0]) },
          { label: "Purchase days", num: true, value: (r) => fmt.int(r[1]) },
          { label: "Every (days)", num: true, value: (r) => fmt.num(r[2], 1) },
        ], s ? s.top_repeat_buyers : [], { id: "repeat-buyers-table" })),
      card("Similar items", { sub: "What /similar answers: items bought and viewed by the same people.", wide: true },
        similar ? table([
          { label: "#", num: true, value: (r) => String(r.__rank) },
          { label: "Item", value: itemCell },
          { label: "Price", num: true, value: (r) => (r.price === null || r.price === undefined ? "–" : fmt.num(r.price, 2)) },
          { label: "Similarity", num: true, value: (r) => fmt.num(r.score, 3) },
        ], similar.items.map((r, i) => ({ ...r, __rank: i + 1, __attrs: { "data-item-id": r.item_id } })), { "data-list": "similar" }) : note("Not in the model (no interactions in the data the job saw)."))));
  if (s) Charts.bars(countBox, { labels: Object.keys(s.buy_counts).map((k) => (k === "1" ? "once" : `${k} days`)), values: Object.values(s.buy_counts), name: "buyers", color: "#0d9488", format: (v) => fmt.int(v), height: 280 });
}

/* ---------- search ---------- */

function setupSearch() {
  const input = document.getElementById("search");
  const box = document.getElementById("search-results");
  let seq = 0;
  let timer = null;
  const go = (href) => { location.href = href; };
  const show = (res, q) => {
    const links = [
      ...res.customers.map((c) => h("a", { href: customerHref(c), class: "result" }, badge("customer", "accent"), h("span", {}, c))),
      ...res.items.map((i) => h("a", { href: itemHref(i.item_id), class: "result" }, badge("item"), h("span", {}, i.title || i.item_id), h("span", { class: "item-meta" }, i.item_id))),
    ];
    box.replaceChildren(...(links.length ? links : [h("div", { class: "result none" }, `No customer or item matches “${q}”.`)]));
    box.hidden = false;
    return links;
  };
  const lookup = async (q) => {
    const mine = ++seq;
    const res = await api(`/dashboard/api/search?q=${encodeURIComponent(q)}`);
    return mine === seq ? res : null;
  };
  input.addEventListener("input", () => {
    clearTimeout(timer);
    const q = input.value.trim();
    if (!q) { box.hidden = true; return; }
    timer = setTimeout(async () => { const res = await lookup(q).catch(() => null); if (res) show(res, q); }, 250);
  });
  input.form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    clearTimeout(timer);
    const q = input.value.trim();
    if (!q) return;
    const res = await lookup(q).catch(() => null);
    if (!res) return;
    const exactItem = res.items.find((i) => i.item_id === q);
    if (res.customers.length && !exactItem) return go(customerHref(res.customers[0]));
    if (exactItem && !res.customers.length) return go(itemHref(exactItem.item_id));
    if (!res.customers.length && res.items.length === 1) return go(itemHref(res.items[0].item_id));
    show(res, q);
  });
  document.addEventListener("click", (ev) => { if (!input.form.contains(ev.target)) box.hidden = true; });
  input.addEventListener("keydown", (ev) => { if (ev.key === "Escape") box.hidden = true; });
}

/* ---------- routing ---------- */

async function main() {
  setupSearch();
  const path = decodeURIComponent(location.pathname.replace(/\/+$/, ""));
  try {
    await aboutInfo();
    let m;
    if (path === "/dashboard") await overviewPage();
    else if (path === "/dashboard/quality") await qualityPage();
    else if (path === "/dashboard/repeat-sales") await repeatPage();
    else if ((m = path.match(/^\/dashboard\/customers\/(.+)$/))) await customerPage(m[1]);
    else if ((m = path.match(/^\/dashboard\/items\/(.+)$/))) await itemPage(m[1]);
    else throw new ApiError(404, "There is no such page.");
  } catch (err) {
    showError(err);
  }
}

document.addEventListener("DOMContentLoaded", main);
