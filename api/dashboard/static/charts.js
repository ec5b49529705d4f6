/* Small SVG charts for the dashboard: lines over time and vertical bars, with a hover read-out.
 *
 * Written here rather than taken from a chart library: the dashboard must be served from the Python package with no
 * CDN, no Python package ships a browser chart library as data, and the two chart kinds needed fit in this file
 * (a vendored general-purpose library would be 50-200 KB of someone else's code to keep up to date).
 * Charts draw at the width of their container and redraw when it changes (phone rotation, window resize).
 */
"use strict";

const Charts = (() => {
  const NS = "http://www.w3.org/2000/svg";
  const PALETTE = ["#4f46e5", "#0d9488", "#d97706", "#db2777", "#64748b", "#16a34a"];
  const observer = new ResizeObserver((entries) => {
    for (const entry of entries) {
      const box = entry.target;
      if (box._chart && Math.abs(box.clientWidth - box._chart.width) > 2) box._chart.draw();
    }
  });

  function svg(tag, attrs, parent) {
    const el = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, v);
    if (parent) parent.appendChild(el);
    return el;
  }

  /* Round tick steps (1, 2, 2.5, 5 x 10^n) covering [lo, hi] with about `count` ticks. */
  function ticks(lo, hi, count) {
    if (!(hi > lo)) hi = lo + 1;
    const raw = (hi - lo) / count;
    const mag = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw);
    const out = [];
    for (let v = Math.floor(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(+v.toPrecision(12));
    if (out[out.length - 1] < hi) out.push(+(out[out.length - 1] + step).toPrecision(12));
    return out;
  }

  function legend(box, series) {
    if (series.length < 2) return;
    const row = document.createElement("div");
    row.className = "chart-legend";
    series.forEach((s, i) => {
      const item = document.createElement("span");
      const dot = document.createElement("i");
      dot.style.background = s.color || PALETTE[i % PALETTE.length];
      item.append(dot, s.name);
      row.appendChild(item);
    });
    box.appendChild(row);
  }

  function mount(box, height, drawInto) {
    const chart = {
      width: 0,
      draw() {
        box.querySelectorAll("svg, .chart-tip").forEach((el) => el.remove());
        chart.width = box.clientWidth;
        if (chart.width < 40) return;
        const root = svg("svg", { width: chart.width, height, role: "img", class: "chart" }, box);
        drawInto(root, chart.width, height);
      },
    };
    box._chart = chart;
    box.classList.add("chart-box");
    chart.draw();
    observer.observe(box);
    return chart;
  }

  function frame(root, w, h, yTicks, fmt, pad) {
    const y = (v) => pad.top + (h - pad.top - pad.bottom) * (1 - (v - yTicks[0]) / (yTicks[yTicks.length - 1] - yTicks[0]));
    for (const t of yTicks) {
      svg("line", { x1: pad.left, x2: w - pad.right, y1: y(t), y2: y(t), class: t === 0 ? "axis" : "grid" }, root);
      svg("text", { x: pad.left - 8, y: y(t) + 4, class: "tick", "text-anchor": "end" }, root).textContent = fmt(t);
    }
    return y;
  }

  function tooltip(box, root, w, h, pad, xs, lines) {
    const tip = document.createElement("div");
    tip.className = "chart-tip";
    tip.hidden = true;
    box.appendChild(tip);
    const guide = svg("line", { y1: pad.top, y2: h - pad.bottom, class: "guide", visibility: "hidden" }, root);
    root.addEventListener("pointermove", (ev) => {
      const rect = root.getBoundingClientRect();
      const px = ev.clientX - rect.left;
      let best = 0;
      xs.forEach((x, i) => { if (Math.abs(x - px) < Math.abs(xs[best] - px)) best = i; });
      guide.setAttribute("x1", xs[best]);
      guide.setAttribute("x2", xs[best]);
      guide.setAttribute("visibility", "visible");
      tip.replaceChildren(...lines(best));
      tip.hidden = false;
      const left = Math.min(Math.max(xs[best] + 12, 0), w - tip.offsetWidth - 4);
      tip.style.left = `${xs[best] + 12 + tip.offsetWidth > w ? xs[best] - tip.offsetWidth - 12 : left}px`;
      tip.style.top = `${pad.top}px`;
    });
    root.addEventListener("pointerleave", () => { tip.hidden = true; guide.setAttribute("visibility", "hidden"); });
  }

  function tipLine(color, label, value) {
    const line = document.createElement("div");
    if (color) {
      const dot = document.createElement("i");
      dot.style.background = color;
      line.appendChild(dot);
    }
    line.append(label + (value === undefined ? "" : ": "));
    if (value !== undefined) {
      const b = document.createElement("b");
      b.textContent = value;
      line.appendChild(b);
    }
    return line;
  }

  /* Lines over a shared x axis. opts: labels (x labels), series [{name, values, color}], format (y values),
   * height, zero (start the y axis at 0, default true). Missing values (null) break the line. */
  function line(box, opts) {
    const series = opts.series.map((s, i) => ({ ...s, color: s.color || PALETTE[i % PALETTE.length] }));
    legend(box, series);
    const fmt = opts.format || ((v) => String(v));
    return mount(box, opts.height || 220, (root, w, h) => {
      const values = series.flatMap((s) => s.values).filter((v) => v !== null && Number.isFinite(v));
      if (!values.length) return;
      const lo = opts.zero === false ? Math.min(...values) : Math.min(0, ...values);
      const yTicks = ticks(lo, Math.max(...values), 4);
      const pad = { top: 10, right: 14, bottom: 26, left: Math.max(...yTicks.map((t) => fmt(t).length)) * 7 + 14 };
      const y = frame(root, w, h, yTicks, fmt, pad);
      const n = opts.labels.length;
      const x = (i) => pad.left + (n === 1 ? (w - pad.left - pad.right) / 2 : (i * (w - pad.left - pad.right)) / (n - 1));
      const every = Math.max(1, Math.ceil(n / Math.max(2, Math.floor((w - pad.left) / 90))));
      opts.labels.forEach((label, i) => {
        if (i % every === 0 || i === n - 1) {
          if (i !== n - 1 && n - 1 - i <= every / 2) return;
          svg("text", { x: x(i), y: h - 6, class: "tick", "text-anchor": i === 0 && n > 1 ? "start" : i === n - 1 && n > 1 ? "end" : "middle" }, root).textContent = label;
        }
      });
      for (const s of series) {
        let d = "";
        s.values.forEach((v, i) => {
          if (v === null || !Number.isFinite(v)) { d += " "; return; }
          d += `${d && !d.endsWith(" ") ? "L" : "M"}${x(i).toFixed(1)},${y(v).toFixed(1)}`;
        });
        svg("path", { d: d.trim(), class: "line", stroke: s.color }, root);
        if (n <= 40) s.values.forEach((v, i) => {
          if (v !== null && Number.isFinite(v)) svg("circle", { cx: x(i), cy: y(v), r: 2.5, fill: s.color, class: "dot" }, root);
        });
      }
      const xs = opts.labels.map((_, i) => x(i));
      tooltip(box, root, w, h, pad, xs, (i) => [
        tipLine(null, opts.labels[i]),
        ...series.map((s) => tipLine(s.color, s.name, s.values[i] === null ? "–" : fmt(s.values[i]))),
      ]);
    });
  }

  /* Vertical bars. opts: labels, values, format, height, color, name (for the read-out). */
  function bars(box, opts) {
    const fmt = opts.format || ((v) => String(v));
    const color = opts.color || PALETTE[0];
    return mount(box, opts.height || 200, (root, w, h) => {
      const yTicks = ticks(0, Math.max(...opts.values) > 0 ? Math.max(...opts.values) : 1, 4);
      const pad = { top: 10, right: 8, bottom: 26, left: Math.max(...yTicks.map((t) => fmt(t).length)) * 7 + 14 };
      const y = frame(root, w, h, yTicks, fmt, pad);
      const n = opts.values.length;
      const slot = (w - pad.left - pad.right) / Math.max(n, 1);
      const barW = Math.max(1, Math.min(48, slot * 0.72));
      const every = Math.max(1, Math.ceil(n / Math.max(2, Math.floor((w - pad.left) / 56))));
      const xs = [];
      opts.values.forEach((v, i) => {
        const cx = pad.left + slot * i + slot / 2;
        xs.push(cx);
        svg("rect", { x: cx - barW / 2, y: y(Math.max(v, 0)), width: barW, height: Math.max(0, y(0) - y(Math.max(v, 0))), rx: Math.min(3, barW / 3), fill: color, class: "bar" }, root);
        if (i % every === 0) svg("text", { x: cx, y: h - 6, class: "tick", "text-anchor": "middle" }, root).textContent = opts.labels[i];
      });
      tooltip(box, root, w, h, pad, xs, (i) => [tipLine(null, opts.labels[i]), tipLine(color, opts.name || "value", fmt(opts.values[i]))]);
    });
  }

  return { line, bars, PALETTE };
})();
