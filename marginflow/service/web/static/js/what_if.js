// What-if margin: hypothetical trades on one account (optionally in a series defined
// inline, not yet listed), margined on the market of its latest stored margin.

import {
  ApiError,
  DASH,
  accountHref,
  api,
  byId,
  el,
  failure,
  fillRows,
  money,
  notify,
  numCell,
  percent,
  quantity,
  signedMoney,
} from "./common.js";

const tbody = byId("trades").tBodies[0];

function tradeRow(instrument = "", qty = "") {
  const row = el(
    "tr",
    { class: "trade" },
    el(
      "td",
      {},
      el("input", { class: "instrument", list: "instruments", maxlength: 64, required: true, value: instrument, "aria-label": "instrument" }),
    ),
    el("td", {}, el("input", { class: "quantity", type: "number", step: "any", required: true, value: qty, "aria-label": "quantity" })),
    el("td", {}),
  );
  const remove = el("button", { type: "button", class: "link", text: "Remove" });
  remove.addEventListener("click", () => {
    row.remove();
    if (!tbody.rows.length) tbody.append(tradeRow());
  });
  row.cells[2].append(remove);
  return row;
}

let listed = null; // every listed series: [{instrument, underlying}]

async function allSeries() {
  if (listed === null) {
    listed = [];
    try {
      for (let offset = 0; offset < 5000; offset += 1000) {
        const page = await api(`/instruments?limit=1000&offset=${offset}`);
        listed.push(...page.items);
        if (listed.length >= page.total) break;
      }
    } catch (err) {
      if (!(err instanceof ApiError) || err.status !== 404) throw err;
    }
  }
  return listed;
}

/** The account's holdings first (with the quantity held), then every other listed series. */
async function loadPositions(account) {
  const list = byId("instruments");
  list.replaceChildren();
  if (!account) return;
  try {
    const [held, series] = await Promise.all([
      api(`/accounts/${encodeURIComponent(account)}/positions`),
      allSeries(),
    ]);
    const holds = new Set(held.positions.map((p) => p.instrument));
    list.replaceChildren(
      ...held.positions.map((p) => el("option", { value: p.instrument, label: `held: ${quantity(p.quantity)}` })),
      ...series
        .filter((x) => !holds.has(x.instrument))
        .map((x) => el("option", { value: x.instrument, label: `on ${x.underlying}` })),
    );
  } catch (err) {
    failure(err);
  }
}

async function loadAccounts() {
  const select = byId("wi-account");
  const wanted = new URLSearchParams(location.search).get("account") || "";
  const page = await api("/accounts?limit=1000");
  const names = page.items.map((m) => m.account);
  if (wanted && !names.includes(wanted)) names.unshift(wanted);
  select.replaceChildren(...names.map((a) => el("option", { value: a, text: a })));
  if (!names.length) {
    select.append(el("option", { value: "", text: "no account in your scope" }));
  }
  select.value = wanted || names[0] || "";
  await loadPositions(select.value);
}

function listing() {
  if (!byId("new-series").checked) return [];
  const value = (id) => byId(id).value.trim();
  const strike = value("s-strike");
  return [
    {
      id: value("s-id"),
      underlying: value("s-underlying"),
      kind: value("s-kind"),
      strike: strike === "" ? null : Number(strike),
      expiry: value("s-expiry") || null,
      style: value("s-style"),
      multiplier: Number(value("s-multiplier") || "100"),
    },
  ];
}

function card(label, value, cls) {
  return el(
    "div",
    { class: `card stat ${cls}` },
    el("span", { class: "label", text: label }),
    el("span", { class: "value", text: value }),
  );
}

function show(result, account) {
  const change = result.after - result.before;
  const rel = result.before ? change / result.before : NaN;
  byId("wi-cards").replaceChildren(
    card("Margin before (USD)", money(result.before), "before"),
    card("Margin after (USD)", money(result.after), "after"),
    card("Change (USD)", `${signedMoney(change)} (${Number.isFinite(rel) ? (rel > 0 ? "+" : "") + percent(rel) : DASH})`, change > 0 ? "change up" : "change down"),
  );
  const b = result.breakdown_after || { components: {} };
  fillRows(
    byId("wi-components").tBodies[0],
    Object.entries(b.components).map(([k, v]) => el("tr", {}, el("td", { text: k }), numCell(money(v)))),
    "No components.",
  );
  byId("wi-driver").textContent = b.driving_scenario
    ? `Driving scenario after the trades: ${b.driving_scenario} (loss ${money(b.driving_loss)} USD)`
    : "";
  const contributions = b.contributions || b.top_positions || [];
  fillRows(
    byId("wi-contributions").tBodies[0],
    [...contributions]
      .sort((x, y) => Math.abs(y.amount) - Math.abs(x.amount))
      .map((c) => el("tr", {}, el("td", { text: c.instrument }), numCell(quantity(c.quantity)), numCell(money(c.amount)))),
    "No contributions.",
  );
  const back = byId("wi-back");
  back.setAttribute("href", accountHref(account));
  back.textContent = `Back to account ${account}`;
  byId("result").hidden = false;
}

async function submit(event) {
  event.preventDefault();
  notify("");
  const account = byId("wi-account").value;
  const trades = [...tbody.rows].map((r) => ({
    instrument: r.querySelector(".instrument").value.trim(),
    quantity: Number(r.querySelector(".quantity").value),
  }));
  const button = byId("run-what-if");
  button.disabled = true;
  button.textContent = "Computing…";
  try {
    const result = await api(`/accounts/${encodeURIComponent(account)}/what-if`, {
      method: "POST",
      body: { trades, listings: listing() },
    });
    show(result, account);
  } catch (err) {
    byId("result").hidden = true;
    failure(err);
  } finally {
    button.disabled = false;
    button.textContent = "Compute what-if margin";
  }
}

async function main() {
  tbody.append(tradeRow());
  byId("add-trade").addEventListener("click", () => tbody.append(tradeRow()));
  byId("new-series").addEventListener("change", (e) => {
    byId("series").hidden = !e.target.checked;
  });
  byId("s-id").addEventListener("change", (e) => {
    const id = e.target.value.trim();
    if (id) byId("instruments").append(el("option", { value: id, label: "the new series" }));
  });
  byId("wi-account").addEventListener("change", (e) => loadPositions(e.target.value));
  byId("what-if-form").addEventListener("submit", submit);
  try {
    await loadAccounts();
  } catch (err) {
    failure(err);
  }
}

main();
