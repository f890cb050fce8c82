// The back-test page: runs POST /api/v1/backtest on the stored book and shows the coverage
// table with the traffic-light zones, and margin against the realised loss with breaches
// marked (the firm or the member, and the worst accounts). Names are set as text only.

import { api, byId, el, failure, fillRows, notify, numCell, percent } from "./common.js";
import { lossAgainstMargin } from "./charts.js";

const reports = byId("main").dataset.reports === "yes";

function request() {
  const body = { days: Number(byId("b-days").value) || 120 };
  const horizon = byId("b-horizon").value.trim();
  if (horizon) body.horizon = Number(horizon);
  body.models = [...document.querySelectorAll("input[name='b-model']:checked")].map((x) => x.value);
  const conf = byId("b-confidences").value.trim();
  body.confidences = conf ? conf.split(/[,\s]+/).filter(Boolean).map(Number) : [];
  body.realised_vols = byId("b-vols").value;
  body.pnl = byId("b-pnl").value;
  return body;
}

function reportHref(body) {
  const q = new URLSearchParams({ days: String(body.days) });
  if (body.horizon) q.set("horizon", String(body.horizon));
  for (const m of body.models) q.append("models", m);
  for (const c of body.confidences) q.append("confidences", String(c));
  q.set("realised_vols", body.realised_vols);
  q.set("pnl", body.pnl);
  return `/api/v1/backtest/report?${q}`;
}

const p3 = (x) => (Number.isFinite(x) ? x.toFixed(3) : "–");

function renderCoverage(d) {
  const order = { firm: 0, member: 1, account: 2 };
  const rows = [...d.coverage].sort((a, b) => order[a.level] - order[b.level] || b.breaches - a.breaches);
  const label = Object.fromEntries(d.columns.map((c) => [c.key, c.label]));
  fillRows(
    byId("coverage").tBodies[0],
    rows.map((r) =>
      el(
        "tr",
        { class: `zone-${r.zone}`, "data-level": r.level, "data-name": r.name, "data-zone": r.zone },
        el("td", { text: r.level }),
        el("td", { class: "name", text: r.name }),
        el("td", { text: r.mode }),
        el("td", { text: label[r.column] || r.column }),
        numCell(String(r.days)),
        numCell(String(r.breaches)),
        numCell(percent(r.coverage, 2)),
        numCell(p3(r.kupiec.p_value)),
        numCell(p3(r.independence.p_value)),
        numCell(p3(r.conditional_coverage.p_value)),
        el("td", { class: "zone", text: r.zone }),
      ),
    ),
    "No series in your scope.",
  );
}

function renderSeries(d) {
  const box = byId("series");
  box.replaceChildren();
  const label = Object.fromEntries(d.columns.map((c) => [c.key, c.label]));
  for (const s of d.series) {
    const chart = el("div", { class: "chart" });
    const title = s.level === "firm" ? "Firm" : s.level === "member" ? `Member ${s.name}` : `Account ${s.name} (member ${s.member})`;
    const breaches = Object.values(s.breaches).reduce((n, b) => n + b.length, 0);
    box.append(
      el(
        "div",
        { class: "distribution", "data-level": s.level, "data-name": s.name },
        el("h3", { text: `${title}, ${s.mode} positions` }),
        el("p", { class: "hint", text: `${breaches} breach(es) over ${d.window.days} days` }),
        chart,
      ),
    );
    lossAgainstMargin(chart, {
      dates: d.window.dates,
      loss: s.loss,
      margins: Object.keys(s.margins).map((k) => ({ name: label[k] || k, values: s.margins[k], breaches: s.breaches[k] || [] })),
      label: `${title}: loss over ${d.horizon_days} days against margin, breaches marked`,
    });
  }
}

async function run() {
  const body = request();
  const button = byId("b-run");
  button.disabled = true;
  byId("b-status").textContent = "Back-testing the stored book…";
  notify("");
  try {
    const d = await api("/backtest", { method: "POST", body });
    byId("b-status").textContent = `${d.window.days} days, ${d.window.start} to ${d.window.end}, horizon ${d.horizon_days} days, vols ${d.realised_vols === "held" ? "held" : "moved by the vol map"}, ${d.realised_pnl === "clean" ? "clean P&L" : "options aged"} · ${d.run.cached ? "from the cache" : `computed in ${d.run.seconds.toFixed(1)} s`} at ${d.run.computed_at}`;
    const whole = d.book.book_load === null ? "" :
      `Book load ${d.book.book_load.slice(0, 12)}, market offset ${d.book.market_offset}; `;
    byId("b-provenance").textContent = `${whole}${d.accounts} accounts in your scope; models ${d.columns.map((c) => c.label).join(", ")}.`;
    renderCoverage(d);
    renderSeries(d);
    byId("notes").replaceChildren(...(d.notes.length ? d.notes : ["No notes."]).map((n) => el("li", { text: n })));
    if (reports) byId("b-report").setAttribute("href", reportHref(body));
    byId("main").dataset.loaded = "yes";
  } catch (err) {
    byId("b-status").textContent = "The back-test could not be run.";
    failure(err);
  } finally {
    button.disabled = false;
  }
}

byId("backtest-form").addEventListener("submit", (e) => {
  e.preventDefault();
  run();
});
run();
