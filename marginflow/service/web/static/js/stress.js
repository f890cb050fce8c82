// The stress page: runs POST /api/v1/stress on the stored book and shows the losses by
// member (bars), Cover-1 / Cover-2 with their setting scenario, the worst accounts' P&L
// distributions with the tail beyond margin marked, and the reverse stress. Names from the
// data are set as text only (el/textContent), never as markup.

import { DASH, api, byId, el, failure, fillRows, money, notify, numCell, percent } from "./common.js";
import { barChart, stressDistribution } from "./charts.js";

const reports = byId("main").dataset.reports === "yes";

function request() {
  const body = { set: byId("s-set").value, top: Number(byId("s-top").value) || 20 };
  const version = byId("s-version").value.trim();
  if (version) body.version = version;
  return body;
}

function reportHref(body) {
  const q = new URLSearchParams({ set: body.set, top: String(body.top) });
  if (body.version) q.set("version", body.version);
  return `/api/v1/stress/report?${q}`;
}

function renderMembers(d) {
  const rows = [...d.members].sort((a, b) => b.uncovered - a.uncovered);
  barChart(byId("members-chart"), {
    rows: rows.map((m) => ({ label: m.member, value: m.uncovered, alert: m.uncovered > m.contribution })),
    title: "worst loss beyond margin (USD)",
    label: `Stress losses beyond margin by member: ${d.stress_sets.map((s) => `${s.name} v${s.version}`).join(", ")}`,
    format: money,
    emptyText: "No member in your scope holds a position.",
  });
  fillRows(
    byId("members").tBodies[0],
    rows.map((m) =>
      el(
        "tr",
        { "data-member": m.member },
        el("td", { class: "name", text: m.member }),
        numCell(String(m.accounts)),
        numCell(money(m.margin)),
        numCell(money(m.gross_loss)),
        numCell(money(m.uncovered)),
        el("td", { text: m.uncovered_scenario }),
        numCell(money(m.uncovered_netted)),
        numCell(money(m.contribution)),
      ),
    ),
    "No member in your scope.",
  );
}

function renderCover(d) {
  const body = byId("cover").tBodies[0];
  if (!d.cover1 || !d.cover2) {
    byId("cover-note").textContent =
      "Cover-1 and Cover-2 name the members that set them: they are shown to the clearing house. Your member's contribution is in the table above.";
    fillRows(body, [], "Shown to the clearing house only.");
    return;
  }
  const fund = d.default_fund;
  byId("cover-note").textContent = `The fund is sized at Cover-${fund.cover}: ${money(fund.fund)} USD (contributions: ${fund.source}).`;
  fillRows(
    body,
    [d.cover1, d.cover2].map((c) =>
      el(
        "tr",
        { "data-cover": String(c.k) },
        el("th", { scope: "row", text: `Cover-${c.k}` }),
        numCell(money(c.fund)),
        el("td", { class: "scenario", text: c.scenario }),
        el("td", { text: c.members.map((m) => `${m.member} (${money(m.uncovered)})`).join(", ") || DASH }),
      ),
    ),
    "No fund.",
  );
}

function renderAccounts(d) {
  fillRows(
    byId("accounts").tBodies[0],
    d.accounts.map((a) =>
      el(
        "tr",
        { "data-account": a.account },
        el("td", { class: "name", text: a.account }),
        el("td", { text: a.member }),
        numCell(money(a.margin)),
        numCell(money(a.gross_loss)),
        numCell(money(a.uncovered)),
        el("td", { text: a.scenario }),
      ),
    ),
    "No account in your scope.",
  );
  const box = byId("distributions");
  box.replaceChildren();
  for (const x of d.distributions) {
    const chart = el("div", { class: "chart" });
    const beyond = x.scenarios.filter((s) => s.beyond_margin).length;
    box.append(
      el(
        "div",
        { class: "distribution", "data-account": x.account },
        el("h3", { text: `Account ${x.account} (member ${x.member})` }),
        el("p", {
          class: "hint",
          text: `Margin ${money(x.margin)} USD · worst loss ${money(x.worst_loss)} USD under ${x.worst_scenario} · ${beyond} of ${x.scenarios.length} scenarios beyond the margin`,
        }),
        chart,
      ),
    );
    stressDistribution(chart, {
      scenarios: x.scenarios,
      margin: x.margin,
      worstLoss: x.worst_loss,
      worstScenario: x.worst_scenario,
      label: `P&L of account ${x.account} over ${x.scenarios.length} stress scenarios; the tail beyond its margin marked`,
    });
  }
}

function renderReverse(d) {
  fillRows(
    byId("reverse").tBodies[0],
    d.reverse_stress.map((r) =>
      el(
        "tr",
        {},
        el("td", { text: r.member }),
        el("td", { text: r.direction }),
        numCell(r.exhausted ? percent(r.move, 1) : `beyond ±${percent(r.bound, 0)}`),
        numCell(r.exhausted ? money(r.gross_loss) : DASH),
      ),
    ),
    "No reverse stress in your scope.",
  );
}

async function run() {
  const body = request();
  const button = byId("s-run");
  button.disabled = true;
  byId("s-status").textContent = "Stressing the stored book…";
  notify("");
  try {
    const d = await api("/stress", { method: "POST", body });
    const sets = d.stress_sets.map((s) => `${s.name} version ${s.version} (${s.scenarios} scenarios, fingerprint ${s.fingerprint.slice(0, 12)})`).join("; ");
    byId("s-status").textContent = `${sets} · ${d.run.cached ? "from the cache" : `computed in ${d.run.seconds.toFixed(1)} s`} at ${d.run.computed_at}`;
    // a member's user is told the date alone (the whole book's counts are not its business)
    const whole = d.book.book_load === null ? "" :
      `Book load ${d.book.book_load.slice(0, 12)}, market offset ${d.book.market_offset}, `;
    const counts = d.book.accounts === null ? "" :
      `; ${d.book.accounts} accounts, ${d.book.positions} positions`;
    byId("s-provenance").textContent = `${whole}valuation date ${d.valuation_date}${counts}. ${d.betas}.`;
    renderMembers(d);
    renderCover(d);
    renderAccounts(d);
    renderReverse(d);
    if (reports) byId("s-report").setAttribute("href", reportHref(body));
    byId("main").dataset.loaded = "yes";
  } catch (err) {
    byId("s-status").textContent = "The stress test could not be run.";
    failure(err);
  } finally {
    button.disabled = false;
  }
}

byId("stress-form").addEventListener("submit", (e) => {
  e.preventDefault();
  run();
});
run();
