// One account's drill-down: its current margin, the breakdown recomputed from the stored
// inputs (components, driving scenario, every position's contribution), the scenario P&L
// distribution with the ES tail marked, and its margin history, kept live.

import {
  DASH,
  api,
  byId,
  el,
  failure,
  fillRows,
  flash,
  money,
  numCell,
  percent,
  quantity,
  utc,
} from "./common.js";
import { histogram, latestDay, stepChart } from "./charts.js";
import { follow } from "./live.js";

const account = byId("main").dataset.account;
const COMPONENTS = {
  es: "Expected shortfall",
  apc: "Anti-procyclicality add-on",
  apc_buffer: "Anti-procyclicality add-on",
  concentration: "Concentration add-on",
  var: "Value at risk (shown for reference, not added)",
};
const ORDER = ["es", "apc", "apc_buffer", "concentration", "var"];

let current = null;
let detailOf = null; // the margin whose breakdown is shown
let history = [];

function stat(label, value, cls) {
  return el(
    "div",
    { class: "card stat" },
    el("span", { class: "label", text: label }),
    el("span", { class: `value ${cls}`, text: value }),
  );
}

function renderHeadline(m) {
  byId("headline").replaceChildren(
    stat("Margin (USD)", money(m.margin), "margin"),
    stat("Expected shortfall", money(m.es), "es"),
    stat("VaR", money(m.var), "var"),
    stat("APC add-on", money(m.apc), "apc"),
    stat("Concentration add-on", money(m.concentration), "concentration"),
    el(
      "div",
      { class: "card stat small" },
      el("span", { class: "label", text: "Member" }),
      el("span", { class: "value", text: m.member }),
      el("span", { class: "label", text: "As of (event time)" }),
      el("span", { class: "value as-of", text: utc(m.time) }),
      el("span", { class: "label", text: `Model ${m.model} · positions v${m.position_version} · market #${m.market_offset}` }),
    ),
  );
}

function drawHistory() {
  const points = history
    .map((m) => [Date.parse(m.time), m.margin])
    .sort((a, b) => a[0] - b[0]);
  const series = [{ name: account, points }];
  stepChart(byId("history"), {
    series,
    from: byId("history-range").value === "all" ? undefined : latestDay(series),
    yTitle: "margin (USD)",
    label: `Margin of account ${account} over time`,
    emptyText: "No stored margin for this account yet.",
  });
}

function renderDetail(d) {
  const b = d.breakdown;
  const total = d.margin.margin;
  const rank = (k) => (ORDER.includes(k) ? ORDER.indexOf(k) : ORDER.length);
  const keys = Object.keys(b.components).sort((x, y) => rank(x) - rank(y));
  const rows = keys.map((k) =>
    el(
      "tr",
      { "data-component": k },
      el("td", { text: COMPONENTS[k] || k }),
      numCell(money(b.components[k])),
      numCell(k === "var" ? DASH : percent(total ? b.components[k] / total : NaN)),
    ),
  );
  rows.push(
    el("tr", { class: "total" }, el("th", { scope: "row", text: "Margin" }), numCell(money(total)), numCell("100.0%")),
  );
  const table = byId("components");
  fillRows(table.tBodies[0], rows, "No components.");
  table.hidden = false;
  const level = percent(d.confidence, 1).replace(".0%", "%");
  byId("driver").textContent = b.driving_scenario
    ? `Driving scenario: ${b.driving_scenario} (loss ${money(b.driving_loss)} USD) · ES at ${level} over ${d.scenarios.length.toLocaleString("en-US")} scenarios`
    : `ES at ${level} over ${d.scenarios.length.toLocaleString("en-US")} scenarios`;
  byId("breakdown-status").textContent = `Breakdown of the margin stored for ${utc(d.margin.time)}.`;

  histogram(byId("histogram"), {
    scenarios: d.scenarios,
    varLoss: b.components.var ?? d.margin.var,
    esLoss: b.components.es ?? d.margin.es,
    confidence: d.confidence,
    label: `Scenario P&L of account ${account}: ${d.scenarios.length} scenarios, ES tail marked`,
  });
  const tail = d.scenarios.filter((s) => s.tail_share > 0).sort((x, y) => x.pnl - y.pnl);
  fillRows(
    byId("tail").tBodies[0],
    tail.map((s) => el("tr", {}, el("td", { text: s.label }), numCell(money(s.pnl)), numCell(percent(s.tail_share, 2)))),
    "No scenario in the tail.",
  );
  byId("tail-details").querySelector("summary").textContent = `Scenarios in the ES tail (${tail.length})`;

  const held = new Map((d.positions || []).map((p) => [p.instrument, p.quantity]));
  const contributions = b.contributions || b.top_positions || [];
  const es = b.components.es;
  const seen = new Set();
  const rowsC = [...contributions]
    .sort((x, y) => Math.abs(y.amount) - Math.abs(x.amount))
    .map((c) => {
      seen.add(c.instrument);
      return el(
        "tr",
        { "data-instrument": c.instrument, class: c.amount < 0 ? "hedge" : "" },
        el("td", { text: c.instrument }),
        numCell(quantity(held.get(c.instrument) ?? c.quantity)),
        numCell(money(c.amount)),
        numCell(es ? percent(c.amount / es) : DASH),
      );
    });
  for (const [instrument, q] of held) {
    if (!seen.has(instrument)) {
      rowsC.push(el("tr", {}, el("td", { text: instrument }), numCell(quantity(q)), numCell(DASH), numCell(DASH)));
    }
  }
  fillRows(byId("contributions").tBodies[0], rowsC, "The account holds no position.");
}

async function loadDetail() {
  byId("stale").hidden = true;
  byId("breakdown-status").textContent = "Computing the breakdown from the stored inputs…";
  try {
    const d = await api(`/accounts/${encodeURIComponent(account)}/detail`);
    detailOf = d.margin;
    renderDetail(d);
  } catch (err) {
    byId("breakdown-status").textContent = "The breakdown could not be computed.";
    const none = el("p", { class: "empty-chart", text: "No scenario P&L: the breakdown could not be computed." });
    byId("histogram").replaceChildren(none);
    fillRows(byId("contributions").tBodies[0], [], "No contributions: the breakdown could not be computed.");
    failure(err);
  }
}

async function loadHistory() {
  const page = await api(`/margins?account=${encodeURIComponent(account)}&newest_first=true&limit=1000`);
  history = page.items.reverse();
  drawHistory();
}

function onMargin(m) {
  if (m.account !== account) return;
  history.push(m);
  drawHistory();
  if (current && m.event_time_ns < current.event_time_ns) return;
  current = m;
  renderHeadline(m);
  flash(byId("headline"));
  if (detailOf && (m.position_version !== detailOf.position_version || m.market_offset !== detailOf.market_offset)) {
    byId("stale").hidden = false;
  }
}

async function main() {
  byId("what-if-link").setAttribute("href", `/what-if?account=${encodeURIComponent(account)}`);
  try {
    current = await api(`/accounts/${encodeURIComponent(account)}`);
  } catch (err) {
    failure(err);
    for (const id of ["breakdown-h", "pnl-h", "contrib-h", "acc-history-h"]) {
      byId(id).closest("section").hidden = true;
    }
    return;
  }
  renderHeadline(current);
  byId("recompute").addEventListener("click", () => loadDetail());
  byId("history-range").addEventListener("change", drawHistory);
  await Promise.all([loadHistory().catch(failure), loadDetail()]);
  follow({
    margin: onMargin,
    resync: async () => {
      try {
        current = await api(`/accounts/${encodeURIComponent(account)}`);
        renderHeadline(current);
        await loadHistory();
      } catch (err) {
        failure(err);
      }
    },
  });
}

main();
