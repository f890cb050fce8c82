// Risk-parameter changes under four eyes: a risk analyst proposes, a different person with
// the approver role approves or rejects, the proposer may withdraw. The rule is shown, and
// the buttons its roles and identity do not allow are disabled with the reason.

import { DASH, api, byId, can, el, failure, fillRows, notify, numCell, utc, whoAmI } from "./common.js";

let me = null;

function same(a, b) {
  return String(a).trim().toLowerCase() === String(b).trim().toLowerCase();
}

function valueOf(text) {
  const t = text.trim();
  const n = Number(t);
  return t !== "" && Number.isFinite(n) ? n : t;
}

// The decision's buttons are disabled while it is in flight (a second click would be a second
// decision), and the notice comes after the list is reloaded, so the list never shows the
// proposal as still open beside a notice that says it was decided.
async function act(path, body, done, buttons) {
  for (const b of buttons) b.disabled = true;
  try {
    await api(path, { method: "POST", body });
  } catch (err) {
    for (const b of buttons) b.disabled = false;
    failure(err);
    return;
  }
  try {
    await load();
    notify(done, "ok");
  } catch (err) {
    failure(err);
  }
}

function decisionCell(p) {
  const cell = el("td", { class: "decision" });
  if (p.status !== "proposed") {
    const who = p.decided_by ? `${p.status} by ${p.decided_by}` : p.status;
    cell.append(el("span", { text: `${who} · ${utc(p.decided)}` }));
    if (p.decision_note) cell.append(el("div", { class: "note", text: p.decision_note }));
    return cell;
  }
  const mine = same(p.proposed_by, me.username);
  cell.append(
    el("div", { class: "four-eyes", text: `Proposed by ${p.proposed_by} — awaiting a second person` }),
  );
  const approver = can(me, "parameters.approve");
  let why = "";
  if (mine) why = "You proposed this change: a different person with the approver role must decide it (four eyes).";
  else if (!approver) why = "Deciding needs the risk-approver role.";
  const note = el("input", { class: "note-input", maxlength: 2000, placeholder: "note (optional)", "aria-label": "decision note", disabled: Boolean(why) });
  const approve = el("button", { type: "button", class: "approve", text: "Approve", disabled: Boolean(why), title: why || null });
  const reject = el("button", { type: "button", class: "reject secondary", text: "Reject", disabled: Boolean(why), title: why || null });
  approve.addEventListener("click", () =>
    act(`/parameters/proposals/${encodeURIComponent(p.id)}/approve`, { note: note.value }, `Approved ${p.id}: published to the calculators.`, [approve, reject]),
  );
  reject.addEventListener("click", () =>
    act(`/parameters/proposals/${encodeURIComponent(p.id)}/reject`, { note: note.value }, `Rejected ${p.id}.`, [approve, reject]),
  );
  cell.append(el("div", { class: "actions" }, note, approve, reject));
  if (why) cell.append(el("div", { class: "why", text: why }));
  if (mine && can(me, "parameters.propose")) {
    const withdraw = el("button", { type: "button", class: "withdraw secondary", text: "Withdraw" });
    withdraw.addEventListener("click", () =>
      act(`/parameters/proposals/${encodeURIComponent(p.id)}/withdraw`, undefined, `Withdrew ${p.id}.`, [withdraw]),
    );
    cell.append(el("div", { class: "actions" }, withdraw));
  }
  return cell;
}

function proposalRow(p) {
  return el(
    "tr",
    { "data-proposal": p.id, "data-status": p.status },
    el("td", { text: p.id }),
    el("td", { text: `${p.parameter} → ${p.value} (model ${p.model})` }),
    el("td", { class: "reason", text: p.reason || DASH }),
    el("td", { text: `${p.proposed_by} · ${utc(p.proposed)}` }),
    el("td", { class: "status", text: p.status }),
    decisionCell(p),
  );
}

let loads = 0;

async function load() {
  const mine = (loads += 1); // a later load supersedes this one: only the latest is shown
  const status = byId("p-status").value;
  const query = status ? `?status=${encodeURIComponent(status)}` : "";
  const [page, applied] = await Promise.all([
    api(`/parameters/proposals${query}`),
    api("/parameters/applied"),
  ]);
  if (mine !== loads) return;
  fillRows(
    byId("proposals").tBodies[0],
    page.items.map(proposalRow),
    status === "proposed" ? "No proposal awaits a decision." : "No proposal.",
  );
  fillRows(
    byId("applied").tBodies[0],
    [...applied].reverse().map((c) =>
      el(
        "tr",
        {},
        el("td", { text: c.change_id }),
        el("td", { text: `${c.parameter} (${c.model})` }),
        el("td", { text: String(c.value) }),
        el("td", { text: c.requested_by }),
        el("td", { text: c.approved_by }),
        el("td", { text: utc(c.effective) }),
        numCell(c.market_offset.toLocaleString("en-US")),
      ),
    ),
    "No change applied yet.",
  );
}

async function propose(event) {
  event.preventDefault();
  const body = {
    model: "es",
    parameter: byId("p-parameter").value,
    value: valueOf(byId("p-value").value),
    reason: byId("p-reason").value,
  };
  try {
    const made = await api("/parameters/proposals", { method: "POST", body });
    notify(`Proposed ${made.id}: ${made.parameter} → ${made.value}. A second person must approve it.`, "ok");
    byId("p-value").value = "";
    byId("p-reason").value = "";
    byId("p-status").value = "proposed";
    await load();
  } catch (err) {
    failure(err);
  }
}

async function main() {
  try {
    me = await whoAmI();
    if (can(me, "parameters.propose")) {
      byId("propose-form").hidden = false;
      byId("propose-form").addEventListener("submit", propose);
    }
    byId("p-status").addEventListener("change", () => load().catch(failure));
    await load();
  } catch (err) {
    failure(err);
  }
}

main();
