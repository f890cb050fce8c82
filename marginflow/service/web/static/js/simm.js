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
    typeof node.amount === "number" ? el("span", { class: "amount", text: `${money(node.amount)} ${currency}` }) : null,
  );
  const children = node.children || [];
  if (!children.length) return el("div", { class: "leaf" }, label);
  const open = depth < 3;
  return el(
    "details",
    { class: "branch", open },
    el("summary", {}, label),
    ...children.map((c) => tree(c, depth + 1, currency)),
  );
}

const SHOWN = 200; // portfolio rows drawn at once; the filter narrows the rest
let result = { portfolios: [] };

function breakdownRow(p, columns) {
  const currency = p.currency || "USD";
  return el(
    "tr",
    { class: "breakdown" },
    el("td", { colspan: columns }, el("div", { class: "tree" }, tree(p.tree, 0, currency))),
  );
}

function portfolioRow(p) {
  const currency = p.currency || "USD";
  const toggle = el("button", { type: "button", class: "link", text: "Breakdown", "aria-expanded": "false" });
  const row = el(
    "tr",
    { "data-portfolio": p.portfolio },
    el("td", { text: p.portfolio }),
    el("td", { text: p.party || "—" }),
    el("td", { text: p.counterparty || "—" }),
    numCell(money(p.collect_im), "collect"),
    numCell(money(p.post_im), "post"),
    el("td", { text: currency }),
    el("td", { text: [p.collect_regulation, p.post_regulation].filter(Boolean).join(" / ") || "—" }),
    el("td", {}, p.tree ? toggle : null),
  );
  toggle.addEventListener("click", () => {
    const open = row.nextElementSibling?.classList.contains("breakdown");
    if (open) row.nextElementSibling.remove();
    else row.after(breakdownRow(p, row.cells.length));
    toggle.setAttribute("aria-expanded", open ? "false" : "true");
  });
  return row;
}

function drawPortfolios() {
  const needle = byId("portfolio-filter").value.trim().toLowerCase();
  const all = result.portfolios || [];
  const matching = needle ? all.filter((p) => p.portfolio.toLowerCase().includes(needle)) : all;
  fillRows(
    byId("portfolios").tBodies[0],
    matching.slice(0, SHOWN).map(portfolioRow),
    all.length ? "No portfolio matches." : "No portfolio could be margined from this file.",
  );
  byId("portfolio-count").textContent =
    matching.length > SHOWN
      ? `${SHOWN} of ${matching.length.toLocaleString("en-US")} portfolios shown: narrow them with the filter`
      : `${matching.length.toLocaleString("en-US")} portfolio(s)`;
}

function showResult(found, fileName) {
  result = found;
  const head = [found.name || fileName, found.version && `SIMM ${found.version}`, found.mpor && `${found.mpor}-day`, found.currency]
    .filter(Boolean)
    .join(" · ");
  byId("simm-summary").textContent = head;
  drawPortfolios();
  const rejected = found.rejected || [];
  byId("rejected").textContent = rejected
    .map((r) => r.message || `${fileName}:${r.line}: ${r.field}: ${r.reason}`)
    .join("\n");
  byId("rejected-box").hidden = !rejected.length;
  const problem = found.error;
  if (problem) notify(`${problem.field ? `${problem.field}: ` : ""}${problem.reason}`, "error");
  byId("simm-result").hidden = false;
}

async function loadUploads() {
  const page = await api("/simm/uploads?limit=50");
  const rows = page.items.map((u) => {
    const count = Array.isArray(u.portfolios) ? u.portfolios.length : u.portfolios;
    const refused = Boolean(u.error) || /refus|reject|fail/i.test(u.status || "");
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
byId("portfolio-filter").addEventListener("input", drawPortfolios);
loadUploads().catch(failure);
