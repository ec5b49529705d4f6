/* Overview: versions (with rollback), job stages, live ingestion, requests, Redis. */
"use strict";

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
  const cur = d.current, live = d.live, redis = d.redis;
  const lastMinutes = live.per_minute.slice(-5).reduce((a, b) => a + b, 0);
  const later = []; // charts draw once their box is on the page (they take its width)
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
      versionsCard(cur, d.previous),
      stagesCard(cur),
      liveCard(live, later),
      requestsCard(d.requests, later),
      redisCard(redis)));
  later.forEach((draw) => draw());
}

function versionsCard(cur, prev) {
  const rollback = h("button", { class: "button danger", id: "rollback", disabled: prev ? null : true, onclick: rollbackFlow, title: prev ? "Serve the previous version again" : "There is no previous version" }, "Roll back");
  return card("Versions", { sub: "What reco train published, serving and previous (kept for rollback).", actions: rollback, wide: true },
    table([
      { label: "", value: (r) => h("span", { class: "row-label" }, r.name) },
      { label: "Serving", value: (r) => r.cur },
      { label: "Previous", value: (r) => r.prev },
    ], versionRows(cur, prev), { class: "versions" }),
    cur && cur.load ? h("h3", {}, "Input files of the serving version") : null,
    loadReports(cur));
}

function stagesCard(cur) {
  const stages = cur && cur.seconds ? Object.entries(cur.seconds) : [];
  return card("Job stages", { sub: "Seconds per stage of the run that published the serving version." },
    stages.length ? barList(stages.map(([k, v]) => [k, v, fmt.seconds(v)])) : note("Stage times are recorded by runs of reco train from this release on."));
}

function liveCard(live, later) {
  const box = chartBox();
  const minutes = live.per_minute.map((_, i) => `-${live.window_minutes - i} min`);
  later.push(() => Charts.bars(box, { labels: minutes, values: live.per_minute, name: "events", height: 150, color: "#4f46e5" }));
  return card("Live ingestion", { sub: `Events per minute over the last ${live.window_minutes} minutes (POST /events).` }, box,
    kv([["In the stream", fmt.int(live.stream_length)], ["Newest event", live.last_event_at ? `${fmt.time(live.last_event_at)} (${fmt.ago(live.last_event_at)})` : "none yet"],
      ["Archived up to", live.archived_upto || "–"]]));
}

function requestsCard(req, later) {
  const hist = req.rate_history || [];
  const box = hist.length >= 2 ? chartBox() : note("The request-rate chart fills in while this page stays open (it refreshes every 15 seconds).");
  if (hist.length >= 2) {
    later.push(() => Charts.line(box, { labels: hist.map(([t]) => new Date(t * 1000).toTimeString().slice(0, 5)), series: [{ name: "requests per second", values: hist.map(([, r]) => r) }], height: 140, format: (v) => `${+v.toFixed(2)}/s` }));
  }
  return card("Requests", { sub: `This worker (pid ${req.pid}), up ${fmt.duration(req.uptime_seconds)}; rates and percentiles over the last ${fmt.duration(req.window_seconds)} (since start when idle).` },
    box,
    table([
      { label: "Endpoint", value: (r) => h("code", {}, r.route) },
      { label: "Requests", num: true, value: (r) => fmt.int(r.requests) },
      { label: "Per second", num: true, value: (r) => fmt.num(r.per_second, 2) },
      { label: "p50 ms", num: true, value: (r) => fmt.ms(r.p50_ms) },
      { label: "p99 ms", num: true, value: (r) => fmt.ms(r.p99_ms) },
      { label: "4xx", num: true, value: (r) => fmt.int(r.client_errors) },
      { label: "5xx", num: true, value: (r) => (r.server_errors ? badge(fmt.int(r.server_errors), "bad") : "0") },
    ], req.routes, { id: "requests-table" }));
}

function redisCard(redis) {
  const hits = (redis.keyspace_hits || 0) + (redis.keyspace_misses || 0);
  const safe = redis.durability === "fsync-always";
  return card("Redis", { sub: "Health and durability of the cache." },
    kv([
      ["Server", `Redis ${redis.redis_version} (${redis.redis_mode}, ${redis.role})`],
      ["Up for", fmt.duration(redis.uptime_in_seconds)],
      ["Memory", `${fmt.bytes(redis.used_memory)} (peak ${fmt.bytes(redis.used_memory_peak)}${redis.maxmemory ? `, limit ${fmt.bytes(redis.maxmemory)}` : ", no limit"})`],
      ["Durability", h("span", {}, badge(redis.durability, safe ? "good" : "warn"), safe ? " every acknowledged write is on disk" : " acknowledged live events may be lost in a crash")],
      ["Append-only file", redis.aof_enabled ? `on, last write ${redis.aof_last_write_status}` : "off"],
      ["Last snapshot", `${redis.rdb_last_bgsave_status}, ${redis.rdb_last_save_time ? fmt.ago(new Date(redis.rdb_last_save_time * 1000).toISOString()) : "never"}`],
      ["Clients / ops per s", `${fmt.int(redis.connected_clients)} / ${fmt.int(redis.instantaneous_ops_per_sec)}`],
      ["Key hit rate", hits ? fmt.pct(redis.keyspace_hits / hits) : "–"],
    ]));
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
