// What every page shares: the API client, number and time formats, DOM building and the
// page frame (sign-out, notices). The DOM is built with createElement and textContent
// only, so whatever the API returns is shown as text, never interpreted as markup.

export const API = "/api/v1";

/** The CSRF token the server set at sign-in (sent back as X-CSRF-Token on changes). */
export function csrfToken() {
  for (const part of document.cookie.split(";")) {
    const [name, ...rest] = part.trim().split("=");
    if (name === "mf_csrf") return decodeURIComponent(rest.join("="));
  }
  return "";
}

export class ApiError extends Error {
  constructor(status, reason, field, requestId) {
    super(reason);
    this.status = status;
    this.field = field || null;
    this.requestId = requestId || "";
  }

  /** One line for a person: the field at fault, the reason and the request id. */
  describe() {
    const where = this.field ? `${this.field}: ` : "";
    const id = this.requestId ? ` (request ${this.requestId})` : "";
    return `${where}${this.message}${id}`;
  }
}

export function signInAgain() {
  const next = location.pathname + location.search;
  location.assign(`/login?next=${encodeURIComponent(next)}`);
}

/**
 * Call the API. `body` is sent as JSON, `form` as multipart; every method but GET sends
 * the CSRF token. Resolves to the JSON answer (null for 204); rejects with an ApiError
 * carrying the one error body's field, reason and request id. A 401 sends the browser
 * to the sign-in page.
 */
export async function api(path, { method = "GET", body, form, signal } = {}) {
  const headers = { Accept: "application/json" };
  let payload;
  if (method !== "GET") headers["X-CSRF-Token"] = csrfToken();
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    payload = JSON.stringify(body);
  } else if (form !== undefined) {
    payload = form;
  }
  let response;
  try {
    response = await fetch(API + path, {
      method,
      headers,
      body: payload,
      credentials: "same-origin",
      signal,
    });
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError(0, "the service did not answer: check the connection and try again");
  }
  if (response.status === 401) {
    signInAgain();
    throw new ApiError(401, "signed out: sign in again");
  }
  if (response.status === 204) return null;
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (!response.ok) {
    const e = (data && data.error) || {};
    throw new ApiError(response.status, e.reason || response.statusText, e.field, e.request_id);
  }
  return data;
}

// -- formats ------------------------------------------------------------------------------
const whole = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });
const compact = new Intl.NumberFormat("en-US", { notation: "compact", maximumFractionDigits: 2 });
const qty = new Intl.NumberFormat("en-US", { maximumFractionDigits: 4 });
export const DASH = "—";

function finite(x) {
  return typeof x === "number" && Number.isFinite(x);
}

/** An amount in whole currency units with thousands separators ("12,345,678"). */
export function money(x) {
  return finite(x) ? whole.format(x).replace("-", "−") : DASH;
}

/** An amount with its sign ("+1,234" / "−1,234"). */
export function signedMoney(x) {
  if (!finite(x)) return DASH;
  return (x > 0 ? "+" : "") + money(x);
}

/** An amount in few characters for chart axes ("12.35M"). */
export function shortMoney(x) {
  return finite(x) ? compact.format(x).replace("-", "−") : DASH;
}

export function quantity(x) {
  return finite(x) ? qty.format(x).replace("-", "−") : DASH;
}

export function percent(x, digits = 1) {
  return finite(x) ? `${(x * 100).toFixed(digits).replace("-", "−")}%` : DASH;
}

function two(n) {
  return String(n).padStart(2, "0");
}

/** A time as "YYYY-MM-DD HH:MM:SS UTC" (from ISO text or epoch milliseconds). */
export function utc(value) {
  if (value === null || value === undefined || value === "") return DASH;
  const d = value instanceof Date ? value : new Date(value);
  if (Number.isNaN(d.getTime())) return String(value);
  const date = `${d.getUTCFullYear()}-${two(d.getUTCMonth() + 1)}-${two(d.getUTCDate())}`;
  const time = `${two(d.getUTCHours())}:${two(d.getUTCMinutes())}:${two(d.getUTCSeconds())}`;
  return `${date} ${time} UTC`;
}

// -- DOM ----------------------------------------------------------------------------------
/**
 * An element: `props` sets `class`, `text` (as textContent), `href` (a path built by the
 * caller with encodeURIComponent), `data-*`, `aria-*` and other attributes; children are
 * nodes or strings (added as text).
 */
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "text") node.textContent = String(value);
    else if (key === "class") node.className = value;
    else if (key === "hidden") node.hidden = Boolean(value);
    else if (key === "disabled") node.disabled = Boolean(value);
    else if (key === "on") {
      for (const [name, handler] of Object.entries(value)) node.addEventListener(name, handler);
    } else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function byId(id) {
  return document.getElementById(id);
}

/** A number cell (right-aligned) with `text`. */
export function numCell(text, extra = "") {
  return el("td", { class: `num ${extra}`.trim(), text });
}

/** Replace `tbody`'s rows with `rows`, or one row saying `empty` when there are none. */
export function fillRows(tbody, rows, empty) {
  const columns = tbody.closest("table")?.querySelectorAll("thead th").length || 1;
  if (!rows.length) {
    tbody.replaceChildren(el("tr", { class: "empty" }, el("td", { colspan: columns, text: empty })));
    return;
  }
  tbody.replaceChildren(...rows);
}

export function accountHref(account) {
  return `/accounts/${encodeURIComponent(account)}`;
}

/** Mark `node` as just changed for a moment (the live feed's updates). */
export function flash(node) {
  node.classList.remove("flash");
  void node.offsetWidth; // restart the animation
  node.classList.add("flash");
}

// -- the page frame -----------------------------------------------------------------------
/** Show `text` in the page's notice line (kind: "error", "ok" or "info"). */
export function notify(text, kind = "error") {
  const box = byId("notice");
  if (!box) return;
  box.textContent = text;
  box.dataset.kind = kind;
  box.hidden = !text;
}

export function failure(err) {
  if (err instanceof ApiError) {
    if (err.status !== 401) notify(err.describe(), "error");
  } else if (err && err.name !== "AbortError") {
    notify(`something failed in the page: ${err.message || err}`, "error");
  }
}

let me = null;

/** Who is signed in (GET /api/v1/auth/me, read once per page). */
export async function whoAmI() {
  if (me === null) me = await api("/auth/me");
  return me;
}

export function can(who, permission) {
  return who.permissions.includes(permission);
}

function frame() {
  const out = byId("sign-out");
  if (out) {
    out.addEventListener("click", async () => {
      out.disabled = true;
      try {
        await api("/auth/logout", { method: "POST" });
      } catch (err) {
        if (!(err instanceof ApiError) || err.status !== 401) {
          out.disabled = false;
          failure(err);
          return;
        }
      }
      location.assign("/login");
    });
  }
}

frame();
