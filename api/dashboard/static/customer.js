/* A customer: RFM, the lists the services answer now, recent events. */
"use strict";

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
