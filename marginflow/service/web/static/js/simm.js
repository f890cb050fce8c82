// SIMM: upload a CRIF, see initial margin both ways per portfolio with its breakdown tree
// (risk class, risk type, bucket...), the rows refused as file:line: field: reason, and the
// earlier uploads.

import { api, byId, el, failure, fillRows, money, notify, numCell, utc } from "./common.js";

function tree(node, depth, currency) {
  const label = el(
    "span",
    { class: "node" },
    el("span", { class: "name", text: node.name }),
    node.level ? el("span", { class: "level", text: node.level }) : null,
    el("span", { class: "amount", text: `${money(node.amount)} ${currency}` }),
  );
  const children = node.children || [];
  if (!children.length) return el("div", { class: "leaf" }, label);
  const open = depth < 2;
  return el(
    "details",
    { class: "branch", open },
    el("summary", {}, label),
    ...children.map((c) => tree(c, depth + 1, currency)),
  );
}

function portfolioCard(p) {
  const currency = p.currency || "USD";
  return el(
    "article",
    { class: "card portfolio", "data-portfolio": p.portfolio },
    el("h3", { text: `Portfolio ${p.portfolio}` }),
    el("p", { class: "hint", text: `${p.party || "—"} with ${p.counterparty}` }),
    el(
      "div",
      { class: "cards" },
      el("div", { class: "card stat" }, el("span", { class: "label", text: `IM to collect (${currency})` }), el("span", { class: "value collect", text: money(p.collect_im) })),
      el("div", { class: "card stat" }, el("span", { class: "label", text: `IM to post (${currency})` }), el("span", { class: "value post", text: money(p.post_im) })),
    ),
    p.tree ? el("div", { class: "tree" }, tree(p.tree, 0, currency)) : null,
  );
}

function showResult(result, fileName) {
  const portfolios = result.portfolios || [];
  byId("portfolios").replaceChildren(
    ...(portfolios.length
      ? portfolios.map(portfolioCard)
      : [el("p", { class: "hint", text: "No portfolio could be margined from this file." })]),
  );
  const rejected = result.rejected || [];
  byId("rejected").textContent = rejected
    .map((r) => r.message || `${fileName}:${r.line}: ${r.field}: ${r.reason}`)
    .join("\n");
  const problem = result.error;
  if (problem) notify(`${problem.field ? `${problem.field}: ` : ""}${problem.reason}`, "error");
  byId("rejected-box").hidden = !rejected.length;
  byId("simm-result").hidden = false;
}

async function loadUploads() {
  const page = await api("/simm/uploads?limit=50");
  const rows = page.items.map((u) => {
    const count = Array.isArray(u.portfolios) ? u.portfolios.length : u.portfolios;
    const refused = u.status && u.status !== "ok" && u.status !== "margined";
    const open = el("button", { type: "button", class: "link", text: "Show" });
    open.addEventListener("click", async () => {
      try {
        showResult(await api(`/simm/uploads/${encodeURIComponent(u.id)}`), u.name);
      } catch (err) {
        failure(err);
      }
    });
    return el(
      "tr",
      { "data-upload": u.id, class: refused ? "alert" : "" },
      el("td", { text: u.name }),
      el("td", { text: utc(u.created) }),
      el("td", { text: u.status || "" }),
      numCell(count === undefined ? "" : String(count)),
      numCell(typeof u.collect_im === "number" ? `${money(u.collect_im)} ${u.currency || ""}`.trim() : ""),
      numCell(typeof u.post_im === "number" ? `${money(u.post_im)} ${u.currency || ""}`.trim() : ""),
      el("td", { text: u.error || "" }),
      el("td", {}, open),
    );
  });
  fillRows(byId("uploads").tBodies[0], rows, "No CRIF uploaded yet.");
}

async function submit(event) {
  event.preventDefault();
  notify("");
  const file = byId("crif").files[0];
  if (!file) return;
  const form = new FormData();
  form.append("file", file, file.name);
  for (const [id, key] of [
    ["simm-version", "version"],
    ["simm-mpor", "mpor"],
    ["simm-currency", "currency"],
  ]) {
    const value = byId(id).value.trim();
    if (value) form.append(key, key === "currency" ? value.toUpperCase() : value);
  }
  const button = byId("upload");
  button.disabled = true;
  button.textContent = "Margining…";
  try {
    showResult(await api("/simm/uploads", { method: "POST", form }), file.name);
    await loadUploads();
  } catch (err) {
    failure(err);
  } finally {
    button.disabled = false;
    button.textContent = "Upload and margin";
  }
}

byId("simm-form").addEventListener("submit", submit);
loadUploads().catch(failure);
