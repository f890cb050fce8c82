// Charts drawn as SVG with createElementNS: a step line over time, a histogram of scenario
// P&L with the expected-shortfall tail marked, and horizontal bars. Labels are set with
// textContent, so names from the data are shown as text.

import { shortMoney, utc } from "./common.js";

const NS = "http://www.w3.org/2000/svg";
const W = 900;
const MARGIN = { top: 26, right: 24, bottom: 46, left: 78 };

function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v !== undefined && v !== null) node.setAttribute(k, String(v));
  }
  if (text !== undefined) node.textContent = String(text);
  return node;
}

function frame(container, height, label) {
  const root = svg("svg", {
    viewBox: `0 0 ${W} ${height}`,
    role: "img",
    "aria-label": label,
    class: "plot",
    preserveAspectRatio: "xMidYMid meet",
  });
  root.append(svg("title", {}, label));
  container.replaceChildren(root);
  return root;
}

function empty(container, text) {
  const p = document.createElement("p");
  p.className = "empty-chart";
  p.textContent = text;
  container.replaceChildren(p);
}

/**
 * About `count` round tick values over [lo, hi]; with `cover`, the first is at or below
 * `lo` and the last at or above `hi` (an axis that holds every value).
 */
export function ticks(lo, hi, count = 6, cover = false) {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / count;
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * power).find((s) => s >= raw) || raw;
  const eps = step * 1e-9;
  const first = (cover ? Math.floor((lo + eps) / step) : Math.ceil((lo - eps) / step)) * step;
  const out = [];
  for (let v = first; cover ? v < hi + step - eps : v <= hi + eps; v += step) {
    out.push(Math.abs(v) < eps ? 0 : v);
  }
  return out;
}

const TIME_STEPS = [
  1, 2, 5, 10, 20, 50, 100, 200, 500, 1e3, 2e3, 5e3, 15e3, 30e3, 60e3, 300e3, 900e3, 1800e3, 3600e3, 3 * 3600e3, 6 * 3600e3,
  12 * 3600e3, 86400e3, 7 * 86400e3, 30 * 86400e3, 91 * 86400e3, 365 * 86400e3,
];

function timeTicks(lo, hi, count = 6) {
  const step = TIME_STEPS.find((s) => (hi - lo) / s <= count) || TIME_STEPS.at(-1);
  const out = [];
  for (let t = Math.ceil(lo / step) * step; t <= hi; t += step) out.push(t);
  return { values: out, step };
}

function timeLabel(t, step, span) {
  const text = utc(t).replace(" UTC", "");
  if (span > 2 * 86400e3 || step >= 86400e3) return text.slice(0, step >= 86400e3 ? 10 : 16);
  if (step < 1e3) return `${text.slice(11, 19)}.${String(Math.round(t) % 1000).padStart(3, "0")}`;
  return step < 60e3 ? text.slice(11, 19) : text.slice(11, 16);
}

function axes(root, { x0, x1, y0, y1 }) {
  root.append(svg("line", { x1: x0, y1: y1, x2: x1, y2: y1, class: "axis" }));
  root.append(svg("line", { x1: x0, y1: y0, x2: x0, y2: y1, class: "axis" }));
}

function yAxis(root, scale, values, box, format) {
  for (const v of values) {
    const y = scale(v);
    root.append(svg("line", { x1: box.x0, x2: box.x1, y1: y, y2: y, class: "grid" }));
    root.append(svg("text", { x: box.x0 - 8, y: y + 4, class: "tick end" }, format(v)));
  }
}

function axisTitles(root, box, height, xTitle, yTitle) {
  root.append(
    svg("text", { x: (box.x0 + box.x1) / 2, y: height - 6, class: "axis-title mid" }, xTitle),
  );
  root.append(
    svg(
      "text",
      { x: 14, y: (box.y0 + box.y1) / 2, class: "axis-title mid", transform: `rotate(-90 14 ${(box.y0 + box.y1) / 2})` },
      yTitle,
    ),
  );
}

/** `points` from time `from` on, led by the value in force then (if any). */
function clip(points, from) {
  if (from === undefined || from === null) return points;
  const before = points.filter((p) => p[0] < from);
  const after = points.filter((p) => p[0] >= from);
  return before.length ? [[from, before.at(-1)[1]], ...after] : after;
}

/**
 * The start of the latest UTC day with a point, at its first point: the window that shows
 * the latest session (a demo day's events can be milliseconds apart, after a start-of-day
 * margin days before).
 */
export function latestDay(series) {
  const times = series.flatMap((s) => s.points.map((p) => p[0]));
  if (!times.length) return undefined;
  const last = new Date(Math.max(...times));
  const midnight = Date.UTC(last.getUTCFullYear(), last.getUTCMonth(), last.getUTCDate());
  return Math.min(...times.filter((t) => t >= midnight));
}

/**
 * A step line per series over time: `series` is [{name, points: [[msSinceEpoch, value]]}]
 * in time order. The value holds until the next point (a margin stays in force until the
 * next one is stored).
 */
export function stepChart(container, { series, yTitle, label, emptyText, from }) {
  const drawn = series
    .map((s) => ({ name: s.name, points: clip(s.points, from) }))
    .filter((s) => s.points.length);
  if (!drawn.length) {
    empty(container, emptyText || "No stored margins yet.");
    return;
  }
  const height = 300;
  const root = frame(container, height, label);
  const box = { x0: MARGIN.left, x1: W - MARGIN.right, y0: MARGIN.top, y1: height - MARGIN.bottom };
  const all = drawn.flatMap((s) => s.points);
  let tLo = Math.min(...all.map((p) => p[0]));
  let tHi = Math.max(...all.map((p) => p[0]));
  if (tHi === tLo) {
    tLo -= 1e3;
    tHi += 1e3;
  }
  const vHi = Math.max(...all.map((p) => p[1]));
  const vLo = Math.min(0, ...all.map((p) => p[1]));
  const yTicks = ticks(vLo, vHi > vLo ? vHi : vLo + 1, 5, true);
  const yMax = yTicks.at(-1);
  const yMin = yTicks[0];
  const xs = (t) => box.x0 + ((t - tLo) / (tHi - tLo)) * (box.x1 - box.x0);
  const ys = (v) => box.y1 - ((v - yMin) / (yMax - yMin || 1)) * (box.y1 - box.y0);
  yAxis(root, ys, yTicks, box, shortMoney);
  const { values, step } = timeTicks(tLo, tHi);
  for (const t of values) {
    const x = xs(t);
    root.append(svg("line", { x1: x, x2: x, y1: box.y1, y2: box.y1 + 5, class: "axis" }));
    root.append(
      svg("text", { x, y: box.y1 + 18, class: "tick mid" }, timeLabel(t, step, tHi - tLo)),
    );
  }
  axes(root, box);
  axisTitles(root, box, height, "time (UTC)", yTitle);
  drawn.forEach((s, i) => {
    let d = "";
    s.points.forEach(([t, v], k) => {
      const x = xs(t).toFixed(1);
      const y = ys(v).toFixed(1);
      d += k === 0 ? `M${x},${y}` : `H${x}V${y}`;
    });
    d += `H${box.x1}`;
    root.append(svg("path", { d, class: `series s${i % 6}` }));
    const [t, v] = s.points.at(-1);
    const dot = svg("circle", { cx: xs(t), cy: ys(v), r: 3.5, class: `dot s${i % 6}` });
    dot.append(svg("title", {}, `${s.name}: ${shortMoney(v)} at ${utc(t)}`));
    root.append(dot);
  });
  if (drawn.length > 1) {
    drawn.forEach((s, i) => {
      const x = box.x0 + 10 + i * 150;
      root.append(svg("rect", { x, y: 6, width: 12, height: 12, class: `swatch s${i % 6}` }));
      root.append(svg("text", { x: x + 18, y: 16, class: "legend" }, s.name));
    });
  }
}

/**
 * A distribution of scenario P&L as stacked bars: the scenarios `inTail(s)` says are in
 * the tail (titled "N scenario(s) `tailTitle`") under the others, at most `maxBins` bins
 * over the P&L and the `lines` (each {at, text, cls, row}: a vertical line at P&L `at`,
 * labelled on the top row (0) or one lower (1), to its right unless within `labelRoom` of
 * the plot's right end); a legend naming the tail (`legend` [tail text, offset of the
 * second entry]).
 */
function pnlHistogram(container, { scenarios, inTail, tailTitle, maxBins, height, label, lines, labelRoom, xTitle, legend }) {
  if (!scenarios.length) {
    empty(container, "No scenarios: nothing to show.");
    return;
  }
  const root = frame(container, height, label);
  const box = { x0: MARGIN.left, x1: W - MARGIN.right, y0: MARGIN.top + 14, y1: height - MARGIN.bottom };
  const drawn = lines.filter((l) => typeof l.at === "number" && Number.isFinite(l.at));
  const pnl = scenarios.map((s) => s.pnl);
  let lo = Math.min(...pnl, ...drawn.map((l) => l.at));
  let hi = Math.max(...pnl, 0);
  if (hi === lo) {
    lo -= 1;
    hi += 1;
  }
  const bins = Math.max(10, Math.min(maxBins, Math.round(2 * Math.sqrt(scenarios.length))));
  const width = (hi - lo) / bins;
  const counts = Array.from({ length: bins }, () => ({ tail: 0, rest: 0 }));
  for (const s of scenarios) {
    const k = Math.min(bins - 1, Math.max(0, Math.floor((s.pnl - lo) / width)));
    if (inTail(s)) counts[k].tail += 1;
    else counts[k].rest += 1;
  }
  const top = Math.max(...counts.map((c) => c.tail + c.rest));
  const yTicks = ticks(0, Math.max(top, 1), 5, true).filter((v) => Number.isInteger(v));
  const yMax = Math.max(top, yTicks.at(-1) || 1);
  const xs = (v) => box.x0 + ((v - lo) / (hi - lo)) * (box.x1 - box.x0);
  const ys = (n) => box.y1 - (n / yMax) * (box.y1 - box.y0);
  yAxis(root, ys, yTicks, box, (v) => String(v));
  for (const v of ticks(lo, hi, 7)) {
    const x = xs(v);
    root.append(svg("line", { x1: x, x2: x, y1: box.y1, y2: box.y1 + 5, class: "axis" }));
    root.append(svg("text", { x, y: box.y1 + 18, class: "tick mid" }, shortMoney(v)));
  }
  counts.forEach((c, k) => {
    const x = xs(lo + k * width) + 0.5;
    const w = Math.max(1, xs(lo + (k + 1) * width) - xs(lo + k * width) - 1);
    const range = `${shortMoney(lo + k * width)} to ${shortMoney(lo + (k + 1) * width)}`;
    if (c.tail) {
      const bar = svg("rect", { x, width: w, y: ys(c.tail), height: box.y1 - ys(c.tail), class: "bar tail" });
      bar.append(svg("title", {}, `${range}: ${c.tail} scenario(s) ${tailTitle}`));
      root.append(bar);
    }
    if (c.rest) {
      const y = ys(c.tail + c.rest);
      const bar = svg("rect", { x, width: w, y, height: ys(c.tail) - y, class: "bar body" });
      bar.append(svg("title", {}, `${range}: ${c.rest} scenario(s)`));
      root.append(bar);
    }
  });
  axes(root, box);
  for (const { at, text, cls, row } of drawn) {
    const x = xs(at);
    const y = row === 0 ? box.y0 - 8 : box.y0 + 8;
    root.append(svg("line", { x1: x, x2: x, y1: box.y0 - 4, y2: box.y1, class: cls }));
    const right = x < box.x1 - labelRoom;
    root.append(svg("text", { x: x + (right ? 5 : -5), y, class: `mark ${right ? "start" : "end"} ${cls}-label` }, text));
  }
  axisTitles(root, box, height, xTitle, "scenarios");
  const [tailText, gap] = legend;
  const lx = box.x1 - gap - 130;
  root.append(svg("rect", { x: lx, y: 4, width: 12, height: 12, class: "bar tail" }));
  root.append(svg("text", { x: lx + 18, y: 14, class: "legend" }, tailText));
  root.append(svg("rect", { x: lx + gap, y: 4, width: 12, height: 12, class: "bar body" }));
  root.append(svg("text", { x: lx + gap + 18, y: 14, class: "legend" }, "other scenarios"));
}

/**
 * The distribution of scenario P&L: `scenarios` is [{label, pnl, tail_share}]; the bars
 * stack the scenarios in the ES tail (tail_share > 0) under the others. `varLoss` and
 * `esLoss` (positive losses) are drawn as lines at −VaR and −ES.
 */
export function histogram(container, { scenarios, varLoss, esLoss, confidence, label }) {
  const level = typeof confidence === "number" ? ` ${(confidence * 100).toFixed(1).replace(".0", "")}%` : "";
  const line = (loss, name, cls, row) => ({ at: -loss, text: `${name} −${shortMoney(loss)}`, cls, row });
  pnlHistogram(container, {
    scenarios, label, height: 320, maxBins: 60, labelRoom: 170,
    inTail: (s) => s.tail_share > 0,
    tailTitle: "in the ES tail",
    // the ES line's label on the top row, the VaR line's one row lower
    lines: [line(esLoss, `ES${level}`, "es-line", 0), line(varLoss, `VaR${level}`, "var-line", 1)],
    xTitle: "scenario P&L (USD; losses left of zero)",
    legend: ["in the ES tail", 120],
  });
}

/**
 * Horizontal bars: `rows` is [{label, value, alert}] drawn against `title` (the value's
 * meaning and unit).
 */
export function barChart(container, { rows, title, label, format = String, emptyText }) {
  if (!rows.length) {
    empty(container, emptyText || "Nothing to show.");
    return;
  }
  const rowH = 26;
  const left = 300;
  const height = MARGIN.top + rows.length * rowH + MARGIN.bottom;
  const root = frame(container, height, label);
  const box = { x0: left, x1: W - MARGIN.right - 60, y0: MARGIN.top, y1: height - MARGIN.bottom };
  const hi = Math.max(1, ...rows.map((r) => r.value));
  const whole = rows.every((r) => Number.isInteger(r.value));
  const xTicks = ticks(0, hi, 5, true).filter((v) => !whole || Number.isInteger(v));
  const xMax = Math.max(hi, xTicks.at(-1));
  const xs = (v) => box.x0 + (v / xMax) * (box.x1 - box.x0);
  for (const v of xTicks) {
    const x = xs(v);
    root.append(svg("line", { x1: x, x2: x, y1: box.y0, y2: box.y1, class: "grid" }));
    root.append(svg("text", { x, y: box.y1 + 18, class: "tick mid" }, format(v)));
  }
  rows.forEach((r, i) => {
    const y = box.y0 + i * rowH + 4;
    root.append(svg("text", { x: box.x0 - 8, y: y + 13, class: "tick end" }, r.label));
    const bar = svg("rect", {
      x: box.x0,
      y,
      width: Math.max(1, xs(r.value) - box.x0),
      height: rowH - 8,
      class: r.alert ? "bar alert" : "bar ok",
    });
    bar.append(svg("title", {}, `${r.label}: ${format(r.value)}`));
    root.append(bar);
    root.append(svg("text", { x: xs(r.value) + 6, y: y + 13, class: "tick" }, format(r.value)));
  });
  axes(root, box);
  root.append(svg("text", { x: (box.x0 + box.x1) / 2, y: height - 6, class: "axis-title mid" }, title));
}

/**
 * The P&L distribution of one account over stress scenarios: `scenarios` is
 * [{label, pnl, beyond_margin}]; the bars stack the scenarios whose loss exceeds the
 * account's `margin` (the tail) under the others, with lines at −margin and at the worst
 * scenario's P&L (`worstLoss`, a positive loss, named `worstScenario`).
 */
export function stressDistribution(container, { scenarios, margin, worstLoss, worstScenario, label }) {
  pnlHistogram(container, {
    scenarios, label, height: 300, maxBins: 50, labelRoom: 260,
    inTail: (s) => s.beyond_margin,
    tailTitle: "with a loss beyond the margin",
    lines: [
      { at: -margin, text: `−margin ${shortMoney(margin)}`, cls: "es-line", row: 0 },
      { at: -worstLoss, text: `worst: ${worstScenario}`, cls: "var-line", row: 1 },
    ],
    xTitle: "stress scenario P&L (USD; losses left of zero)",
    legend: ["loss beyond margin", 160],
  });
}

/**
 * A back-test series over days: `dates` (ISO days), the realised `loss` over the horizon
 * from each day, and `margins` [{name, values, breaches}] (breaches: indices of the days
 * whose loss exceeded that margin, drawn as crosses on the loss line).
 */
export function lossAgainstMargin(container, { dates, loss, margins, label }) {
  if (!dates.length) {
    empty(container, "No day in the window.");
    return;
  }
  const height = 300;
  const root = frame(container, height, label);
  const box = { x0: MARGIN.left, x1: W - MARGIN.right, y0: MARGIN.top, y1: height - MARGIN.bottom };
  const all = [...loss, ...margins.flatMap((m) => m.values)];
  const yTicks = ticks(Math.min(0, ...all), Math.max(1, ...all), 5, true);
  const yMin = yTicks[0];
  const yMax = yTicks.at(-1);
  const n = dates.length;
  const xs = (k) => box.x0 + (n > 1 ? k / (n - 1) : 0.5) * (box.x1 - box.x0);
  const ys = (v) => box.y1 - ((v - yMin) / (yMax - yMin || 1)) * (box.y1 - box.y0);
  yAxis(root, ys, yTicks, box, shortMoney);
  const every = Math.max(1, Math.ceil(n / 6));
  for (let k = 0; k < n; k += every) {
    const x = xs(k);
    root.append(svg("line", { x1: x, x2: x, y1: box.y1, y2: box.y1 + 5, class: "axis" }));
    root.append(svg("text", { x, y: box.y1 + 18, class: "tick mid" }, dates[k]));
  }
  axes(root, box);
  axisTitles(root, box, height, "day the horizon starts", "USD");
  const path = (values) => values.map((v, k) => `${k ? "L" : "M"}${xs(k).toFixed(1)},${ys(v).toFixed(1)}`).join("");
  margins.forEach((m, i) => {
    root.append(svg("path", { d: path(m.values), class: `series s${(i + 1) % 6}` }));
  });
  root.append(svg("path", { d: path(loss), class: "series loss" }));
  margins.forEach((m, i) => {
    for (const k of m.breaches) {
      const x = xs(k);
      const y = ys(loss[k]);
      const cross = svg("path", {
        d: `M${x - 5},${y - 5}L${x + 5},${y + 5}M${x - 5},${y + 5}L${x + 5},${y - 5}`,
        class: `breach s${(i + 1) % 6}`,
      });
      cross.append(svg("title", {}, `${dates[k]}: loss ${shortMoney(loss[k])} above ${m.name} margin ${shortMoney(m.values[k])}`));
      root.append(cross);
    }
  });
  const legend = [["loss over the horizon (−P&L)", "loss"], ...margins.map((m, i) => [`margin ${m.name}`, `s${(i + 1) % 6}`])];
  legend.forEach(([name, cls], i) => {
    const x = box.x0 + 10 + i * 210;
    root.append(svg("rect", { x, y: 4, width: 12, height: 12, class: `swatch ${cls}` }));
    root.append(svg("text", { x: x + 18, y: 14, class: "legend" }, name));
  });
}
