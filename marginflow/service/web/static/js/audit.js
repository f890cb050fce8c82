// The audit trail, newest first, with a check of its hash chain.

import { DASH, api, byId, el, failure, fillRows, numCell, utc } from "./common.js";

const LIMIT = 100;
let shown = [];

function row(e) {
  return el(
    "tr",
    { class: e.security ? "security" : "", "data-seq": e.seq },
    numCell(String(e.seq)),
    el("td", { text: utc(e.time) }),
    el("td", { text: e.actor }),
    el("td", { text: e.action }),
    el("td", { class: `outcome ${e.outcome === "ok" ? "" : "bad"}`, text: e.outcome }),
    el("td", { class: "subject", text: e.subject || DASH }),
    el("td", { text: e.member || DASH }),
    el("td", { text: e.client || DASH }),
    el("td", {}, el("code", { class: "detail", text: Object.keys(e.detail || {}).length ? JSON.stringify(e.detail) : DASH })),
  );
}

function query(before) {
  const params = new URLSearchParams({ limit: String(LIMIT) });
  const action = byId("a-action").value.trim();
  const member = byId("a-member").value.trim();
  if (action) params.set("action", action);
  if (member) params.set("member", member);
  if (before) params.set("before", String(before));
  return `/audit/entries?${params}`;
}

let loads = 0;

async function load(more = false) {
  const mine = (loads += 1); // only the latest load is shown
  try {
    const before = more && shown.length ? shown.at(-1).seq : null;
    const page = await api(query(before));
    if (mine !== loads) return;
    shown = more ? shown.concat(page.items) : page.items;
    fillRows(byId("entries").tBodies[0], shown.map(row), "No entry matches.");
    const left = more ? page.total - page.items.length : page.total - shown.length;
    byId("older").hidden = left <= 0;
    byId("entries-info").textContent = `${shown.length.toLocaleString("en-US")} shown`;
  } catch (err) {
    failure(err);
  }
}

async function verify() {
  const out = byId("verify-result");
  out.textContent = "Verifying…";
  out.className = "";
  try {
    const v = await api("/audit/verify");
    if (v.ok) {
      out.textContent = `Chain intact: ${v.entries.toLocaleString("en-US")} entries, head #${v.head_seq} (${v.head_hash.slice(0, 16)}…).`;
      out.className = "ok";
    } else {
      out.textContent = `Chain BROKEN: ${v.problems.join("; ")}`;
      out.className = "error";
    }
  } catch (err) {
    out.textContent = "";
    failure(err);
  }
}

byId("verify").addEventListener("click", verify);
byId("older").addEventListener("click", () => load(true));
byId("audit-filter").addEventListener("submit", (e) => {
  e.preventDefault();
  load();
});
load();
