// Lag and drift: each consumer group's lag behind its sources, read from the log every few
// seconds (table and bar chart), the drift between stages, and the dead letters.

import { DASH, api, byId, el, failure, fillRows, notify, numCell, utc } from "./common.js";
import { barChart } from "./charts.js";

const EVERY_MS = 5000;
const seconds = (x) => (typeof x === "number" && Number.isFinite(x) ? x.toFixed(2) : DASH);
const count = (x) => (typeof x === "number" ? x.toLocaleString("en-US") : DASH);

function watermark(ns) {
  return ns ? utc(ns / 1e6) : "none yet";
}

async function refresh() {
  let lag;
  try {
    lag = await api("/ops/lag");
  } catch (err) {
    failure(err);
    return;
  }
  notify("");
  byId("taken").textContent = `Last read ${utc(lag.taken)}.`;
  const groups = [...lag.groups].sort((a, b) => b.messages - a.messages);
  fillRows(
    byId("groups").tBodies[0],
    groups.map((g) =>
      el(
        "tr",
        { class: g.alert ? "alert" : "", "data-group": g.group },
        el("td", { text: g.group }),
        el("td", { text: g.topic }),
        numCell(count(g.messages)),
        numCell(seconds(g.wall_seconds)),
        numCell(seconds(g.event_seconds)),
        el("td", { text: watermark(g.watermark_ns) }),
        el("td", { text: g.alert ? "over threshold" : "ok" }),
      ),
    ),
    "No consumer group has read the log yet.",
  );
  barChart(byId("lag-chart"), {
    rows: groups.map((g) => ({ label: `${g.group} ← ${g.topic}`, value: g.messages, alert: g.alert })),
    title: "messages behind the end of the log",
    label: "Lag per consumer group (messages)",
    format: count,
    emptyText: "No consumer group yet.",
  });
  fillRows(
    byId("drift").tBodies[0],
    lag.drift.map((d) =>
      el("tr", {}, el("td", { text: d.upstream }), el("td", { text: d.downstream }), numCell(seconds(d.seconds))),
    ),
    "No two stages to compare yet.",
  );
}

async function loadRejects() {
  try {
    const page = await api("/ops/rejects?limit=100");
    fillRows(
      byId("rejects").tBodies[0],
      page.items.map((r) =>
        el(
          "tr",
          {},
          el("td", { text: `${r.topic}[${r.partition}]@${r.offset}` }),
          el("td", { text: r.field }),
          el("td", { text: r.reason }),
          el("td", { text: utc(r.time) }),
          el("td", {}, el("code", { class: "raw", text: r.raw })),
        ),
      ),
      "No dead letters: every event was accepted.",
    );
  } catch (err) {
    failure(err);
  }
}

async function tick() {
  if (!document.hidden) await Promise.all([refresh(), loadRejects()]);
  setTimeout(tick, EVERY_MS);
}

tick();
