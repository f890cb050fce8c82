// The live margin feed (Server-Sent Events from /api/v1/events/margins). The header's
// indicator shows its state and counts the updates received; after a reconnection the
// page is told to read the API again, since events sent meanwhile were missed.

import { API, api, byId, signInAgain } from "./common.js";

/**
 * Follow the feed: `handlers.margin(m)` for each stored margin, `handlers.member(t)` for
 * each member total, `handlers.resync()` when the page should read the API again.
 */
export function follow(handlers) {
  const indicator = byId("live");
  let updates = 0;
  let lost = false;
  const show = (state, text) => {
    if (!indicator) return;
    indicator.hidden = false;
    indicator.dataset.state = state;
    indicator.dataset.updates = String(updates);
    indicator.textContent = text;
  };
  const source = new EventSource(`${API}/events/margins`);
  show("off", "live: connecting…");
  source.addEventListener("open", () => {
    show("on", updates ? `live · ${updates} updates` : "live");
    if (lost && handlers.resync) handlers.resync();
    lost = false;
  });
  source.addEventListener("error", async () => {
    lost = true;
    show("off", "live: reconnecting…");
    if (source.readyState === EventSource.CLOSED) {
      try {
        await api("/auth/me"); // a 401 sends the browser to sign in
      } catch {
        /* shown by the indicator */
      }
    }
  });
  const count = () => {
    updates += 1;
    show("on", `live · ${updates} updates`);
  };
  source.addEventListener("margin", (e) => {
    count();
    if (handlers.margin) handlers.margin(JSON.parse(e.data));
  });
  source.addEventListener("member", (e) => {
    count();
    if (handlers.member) handlers.member(JSON.parse(e.data));
  });
  source.addEventListener("resync", () => {
    count();
    if (handlers.resync) handlers.resync();
  });
  source.addEventListener("signed-out", () => {
    source.close();
    signInAgain();
  });
  window.addEventListener("pagehide", () => source.close());
  return source;
}
