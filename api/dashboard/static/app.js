/* The search box, and the page for the address (deep links: /dashboard/customers/{id}, /dashboard/items/{id}). */
"use strict";

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
