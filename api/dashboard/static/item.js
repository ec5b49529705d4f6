/* An item: who buys it again and how often, similar items. */
"use strict";

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
