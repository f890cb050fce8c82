// Sign-in: posts the form as JSON to /api/v1/auth/login; the server sets the session and
// CSRF cookies and the page keeps nothing else. Then on to the page asked for (a path on
// this site only) or the dashboard.

import { API, byId } from "./common.js";

function destination() {
  const next = new URLSearchParams(location.search).get("next") || "/";
  // only a path on this origin: not "//host", not "/\host", not a scheme
  return /^\/(?![/\\])/.test(next) ? next : "/";
}

async function submit(event) {
  event.preventDefault();
  const error = byId("login-error");
  const button = byId("sign-in");
  error.hidden = true;
  button.disabled = true;
  try {
    const response = await fetch(`${API}/auth/login`, {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      credentials: "same-origin",
      body: JSON.stringify({ username: byId("username").value, password: byId("password").value }),
    });
    if (response.ok) {
      location.assign(destination());
      return;
    }
    let reason = `sign-in failed (${response.status})`;
    try {
      const body = await response.json();
      if (body && body.error && body.error.reason) reason = body.error.reason;
    } catch {
      /* keep the status line */
    }
    error.textContent = reason;
    error.hidden = false;
    byId("password").value = "";
    byId("password").focus();
  } catch {
    error.textContent = "the service did not answer: check the connection and try again";
    error.hidden = false;
  } finally {
    button.disabled = false;
  }
}

byId("login-form").addEventListener("submit", submit);
