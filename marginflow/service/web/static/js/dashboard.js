// The margin dashboard: every member's margin (the house: the firm total too), each
// member's margin over time rebuilt from the stored account margins, and the accounts
// with links to their drill-down. The live feed updates all three without a reload.

import {
  DASH,
  accountHref,
  api,
  byId,
  el,
  failure,
  fillRows,
  flash,
  money,
  numCell,
  utc,
  whoAmI,
} from "./common.js";
import { latestDay, stepChart } from "./charts.js";
import { follow } from "./live.js";

const PAGE = 50;
const HISTORY_PAGES = 3;
const HISTORY_PAGE = 1000;

const state = {
  house: false,
  firm: null,
  members: new Map(), // member -> {margin, accounts, updated}
  rows: new Map(), // account -> its margin as shown in the table
  offset: 0,
  total: 0,
  filter: "",
  history: null, // {latest: member -> Map(account -> margin), series: member -> points}
};

// -- members ------------------------------------------------------------------------------
function renderMembers() {
  const cards = [];
  if (state.house) {
    cards.push(
      el(
        "div",
        { class: "card stat", id: "firm-card" },
        el("span", { class: "label", text: "Firm total margin (USD)" }),
        el("span", { class: "value", id: "firm-total", text: money(state.firm) }),
      ),
    );
  } else {
    for (const [member, m] of state.members) {
      cards.push(
        el(
          "div",
          { class: "card stat" },
          el("span", { class: "label", text: `${member} margin (USD)` }),
          el("span", { class: "value member-total", "data-member": member, text: money(m.margin) }),
        ),
      );
    }
  }
  byId("firm").replaceChildren(...cards);
  const rows = [...state.members.entries()].map(([member, m]) =>
    el(
      "tr",
      { "data-member": member },
      el("td", { text: member }),
      numCell(String(m.accounts)),
      numCell(money(m.margin), "margin"),
      el("td", { class: "updated", text: m.updated ? utc(m.updated) : DASH }),
    ),
  );
  fillRows(byId("members").tBodies[0], rows, "No member has a stored margin yet.");
}

async function loadMembers() {
  const members = await api("/members");
  state.members = new Map(members.map((m) => [m.member, { margin: m.margin, accounts: m.accounts, updated: null }]));
  if (state.house) state.firm = (await api("/firm")).margin;
  renderMembers();
  const select = byId("member-filter");
  if (state.house && members.length > 1) {
    byId("member-filter-label").hidden = false;
    select.replaceChildren(
      el("option", { value: "", text: "every member" }),
      ...members.map((m) => el("option", { value: m.member, text: m.member })),
    );
    select.value = state.filter;
  }
}

function onMember(t) {
  const m = state.members.get(t.member) || { margin: 0, accounts: 0, updated: null };
  m.margin = t.margin;
  m.accounts = t.accounts;
  state.members.set(t.member, m);
  if (typeof t.firm === "number") state.firm = t.firm;
  renderMembers();
  const row = document.querySelector(`#members tr[data-member="${CSS.escape(t.member)}"]`);
  if (row) flash(row);
  const firm = byId("firm-total");
  if (firm && typeof t.firm === "number") flash(firm);
}

// -- history ------------------------------------------------------------------------------
function addToHistory(m) {
  const h = state.history;
  if (!h) return;
  if (!h.latest.has(m.member)) h.latest.set(m.member, new Map());
  const accounts = h.latest.get(m.member);
  accounts.set(m.account, m.margin);
  // an account not margined yet holds no margin, but one margined before a truncated
  // history's first row does: there, wait until every account has been seen
  const expected = h.complete ? 0 : state.members.get(m.member)?.accounts || 0;
  if (accounts.size < expected) return;
  let total = 0;
  for (const v of accounts.values()) total += v;
  if (!h.series.has(m.member)) h.series.set(m.member, []);
  const points = h.series.get(m.member);
  const t = Date.parse(m.time);
  if (points.length && points.at(-1)[0] === t) points.at(-1)[1] = total;
  else points.push([t, total]);
}

function drawHistory() {
  const h = state.history;
  const series = [...h.series.entries()]
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([name, points]) => ({ name, points: [...points].sort((a, b) => a[0] - b[0]) }));
  const whole = byId("history-range").value === "all";
  stepChart(byId("history"), {
    series,
    from: whole ? undefined : latestDay(series),
    yTitle: "margin (USD)",
    label: "Margin by member over time",
    emptyText: "No stored margins yet: the chart fills in as margins are computed.",
  });
}

async function loadHistory() {
  const rows = [];
  let total = 0;
  for (let page = 0; page < HISTORY_PAGES; page += 1) {
    const got = await api(`/margins?newest_first=true&limit=${HISTORY_PAGE}&offset=${page * HISTORY_PAGE}`);
    rows.push(...got.items);
    total = got.total;
    if (rows.length >= total) break;
  }
  rows.reverse();
  state.history = { latest: new Map(), series: new Map(), complete: rows.length >= total };
  for (const m of rows) {
    addToHistory(m);
    const member = state.members.get(m.member);
    if (member && (!member.updated || Date.parse(m.time) > member.updated)) member.updated = Date.parse(m.time);
  }
  drawHistory();
  renderMembers();
  if (total > rows.length) {
    byId("history").append(
      el("p", { class: "hint", text: `The chart shows the latest ${rows.length.toLocaleString("en-US")} of ${total.toLocaleString("en-US")} stored margins.` }),
    );
  }
}

// -- accounts -----------------------------------------------------------------------------
function accountRow(m) {
  return el(
    "tr",
    { "data-account": m.account },
    el("td", {}, el("a", { href: accountHref(m.account), class: "account-link", text: m.account })),
    el("td", { text: m.member }),
    numCell(money(m.margin), "margin"),
    numCell(money(m.es), "es"),
    numCell(money(m.var), "var"),
    numCell(money(m.apc), "apc"),
    numCell(money(m.concentration), "concentration"),
    el("td", { class: "driver", text: m.driver || DASH }),
    el("td", { class: "time", text: utc(m.time) }),
  );
}

let accountLoads = 0;

async function loadAccounts() {
  const mine = (accountLoads += 1); // only the latest page asked for is shown
  const member = state.filter ? `&member=${encodeURIComponent(state.filter)}` : "";
  const page = await api(`/accounts?limit=${PAGE}&offset=${state.offset}${member}`);
  if (mine !== accountLoads) return;
  state.total = page.total;
  state.rows = new Map(page.items.map((m) => [m.account, m]));
  fillRows(byId("accounts").tBodies[0], page.items.map(accountRow), "No account has a stored margin yet.");
  const last = Math.min(state.offset + PAGE, page.total);
  byId("page-info").textContent = page.total
    ? `${(state.offset + 1).toLocaleString("en-US")}–${last.toLocaleString("en-US")} of ${page.total.toLocaleString("en-US")}`
    : "";
  byId("prev").disabled = state.offset === 0;
  byId("next").disabled = last >= page.total;
}

function onMargin(m) {
  const member = state.members.get(m.member);
  if (member && Date.parse(m.time) > (member.updated || 0)) {
    member.updated = Date.parse(m.time);
    const cell = document.querySelector(`#members tr[data-member="${CSS.escape(m.member)}"] .updated`);
    if (cell) cell.textContent = utc(member.updated);
  }
  addToHistory(m);
  drawHistory();
  const shown = state.rows.get(m.account);
  if (!shown || m.event_time_ns < shown.event_time_ns) return;
  state.rows.set(m.account, m);
  const row = document.querySelector(`#accounts tr[data-account="${CSS.escape(m.account)}"]`);
  if (row) {
    const fresh = accountRow(m);
    row.replaceWith(fresh);
    flash(fresh);
  }
}

async function resync() {
  try {
    await loadMembers();
    await Promise.all([loadHistory(), loadAccounts()]);
  } catch (err) {
    failure(err);
  }
}

async function main() {
  try {
    const me = await whoAmI();
    state.house = me.member === null;
    byId("prev").addEventListener("click", () => {
      state.offset = Math.max(0, state.offset - PAGE);
      loadAccounts().catch(failure);
    });
    byId("next").addEventListener("click", () => {
      state.offset += PAGE;
      loadAccounts().catch(failure);
    });
    byId("history-range").addEventListener("change", () => state.history && drawHistory());
    byId("member-filter").addEventListener("change", (e) => {
      state.filter = e.target.value;
      state.offset = 0;
      loadAccounts().catch(failure);
    });
    await loadMembers();
    await Promise.all([loadHistory(), loadAccounts()]);
    follow({ margin: onMargin, member: onMember, resync });
  } catch (err) {
    failure(err);
  }
}

main();
