/* The dashboard's shared pieces: DOM and number formatting helpers, the API client (with the read key once it
 * was asked for, kept for the browser tab's session), the key dialog, and the layout blocks every page is built of.
 * Pages are in overview.js, quality.js, repeat-sales.js, customer.js and item.js; app.js picks one from the address. */
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

/* What the service offers (keys, the experiment route, segment names), asked once per page. */
async function aboutInfo() {
  if (!state.about) state.about = await api("/dashboard/api/about");
  return state.about;
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
