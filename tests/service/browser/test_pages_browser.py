"""The pages in Chromium beyond the walk: signing in and out, user text shown literally,
the Content-Security-Policy obeyed, the four-eyes rule for a person holding both risk
roles, and the operators' and auditors' pages."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from urllib.parse import quote

import httpx

from tests.service.browser.conftest import LEAD, Session, Web

XSS = "<img src=x onerror=alert(1)>"


def test_a_page_without_a_session_goes_to_sign_in_and_back(
    signed_in: Callable[..., Session], web: Web
) -> None:
    s = signed_in("m001.user", sign_in=False)
    s.go("/accounts/A0000")
    s.page.wait_for_url(f"{web.url}/login?next=/accounts/A0000")
    s.shot("10-sign-in")
    s.sign_in("/accounts/A0000")
    s.page.locator("#headline .value.margin").wait_for()
    assert s.page.locator("#account-name").inner_text() == "A0000"


def test_a_wrong_password_is_told_and_nothing_is_kept(
    signed_in: Callable[..., Session], web: Web
) -> None:
    s = signed_in("m002.user", sign_in=False)
    s.go("/login")
    s.page.fill("#username", "m002.user")
    s.page.fill("#password", "not the password")
    s.page.click("#sign-in")
    error = s.page.locator("#login-error")
    error.wait_for()
    assert error.inner_text()
    assert s.page.url == f"{web.url}/login"
    assert not [c for c in s.context.cookies() if c["name"] == "mf_session"]
    s.shot("11-sign-in-refused")


def test_signing_out_ends_the_session(signed_in: Callable[..., Session], web: Web) -> None:
    s = signed_in("m002.user")
    s.page.locator("#accounts tbody tr[data-account]").first.wait_for()
    s.page.click("#sign-out")
    s.page.wait_for_url(f"{web.url}/login")
    s.go("/")
    s.page.wait_for_url(f"{web.url}/login?next=/")


def test_an_account_name_from_the_address_is_shown_as_text(
    signed_in: Callable[..., Session], web: Web
) -> None:
    s = signed_in("m001.user")
    s.go(f"/accounts/{quote(XSS)}")
    notice = s.page.locator("#notice[data-kind='error']")
    notice.wait_for()
    assert s.page.locator("#account-name").inner_text() == XSS
    assert f"no account '{XSS}'" in notice.inner_text()
    assert s.page.locator("main img").count() == 0
    s.shot("12-hostile-account-name")
    assert s.dialogs == []
    assert s.csp_violations() == []


def test_a_proposal_reason_with_markup_is_shown_as_text_everywhere(
    signed_in: Callable[..., Session], web: Web
) -> None:
    reason = f'{XSS} [bold]x[/] <script>alert("x")</script> {uuid.uuid4().hex[:8]}'
    s = signed_in("risk.analyst", then="/parameters")
    s.page.locator("#propose-form").wait_for()
    s.page.select_option("#p-parameter", "apc_buffer")
    s.page.fill("#p-value", "0.3")
    s.page.fill("#p-reason", reason)
    s.page.click("#propose")
    row = s.page.locator("#proposals tr[data-proposal]", has_text=reason[-8:])
    row.wait_for()
    assert row.locator("td.reason").inner_text() == reason
    assert s.page.locator("main img, main script").count() == 0
    # the audit trail shows the same text literally to the auditor
    auditor = signed_in("auditor", then="/audit")
    auditor.page.locator("#entries tbody tr[data-seq]").first.wait_for()
    assert auditor.page.locator("main img, main script").count() == 0
    assert s.dialogs == [] and auditor.dialogs == []  # noqa: PT018


def test_the_csp_is_sent_and_obeyed(signed_in: Callable[..., Session], web: Web) -> None:
    headers = httpx.get(f"{web.url}/login").headers
    assert "script-src 'self'" in headers["content-security-policy"]
    s = signed_in("risk.lead")
    for path in ("/", "/what-if", "/simm", "/parameters"):
        s.go(path)
        s.page.locator("main h1").wait_for()
        s.page.wait_for_load_state("load")  # every script has run (an event stream never idles)
    # an inline script injected into the page is refused by the browser
    s.page.evaluate(
        """() => {
            const tag = document.createElement("script");
            tag.textContent = "window.__inline_ran = true";
            document.body.append(tag);
        }"""
    )
    assert s.page.evaluate("() => window.__inline_ran === true") is False
    assert s.csp_violations()  # the refusal above, and nothing before it
    assert all("inline" in v.lower() for v in s.csp_violations())


def test_the_proposer_cannot_approve_their_own_change_even_as_an_approver(
    signed_in: Callable[..., Session], web: Web
) -> None:
    token = uuid.uuid4().hex[:8]
    lead = signed_in(LEAD, then="/parameters")
    lead.page.locator("#propose-form").wait_for()
    lead.page.select_option("#p-parameter", "participation")
    lead.page.fill("#p-value", "0.2")
    lead.page.fill("#p-reason", f"liquidity review {token}")
    lead.page.click("#propose")
    row = lead.page.locator("#proposals tr[data-proposal]", has_text=token)
    row.wait_for()
    assert row.locator("button.approve").is_disabled()
    assert row.locator("button.reject").is_disabled()
    assert "four eyes" in str(row.locator("button.approve").get_attribute("title"))
    lead.shot("13-four-eyes-own-proposal")
    # the API refuses it too, whatever the page shows
    proposal = str(row.get_attribute("data-proposal"))
    token_value = next(c["value"] for c in lead.context.cookies() if c["name"] == "mf_csrf")
    refused = lead.page.request.post(
        f"{web.url}/api/v1/parameters/proposals/{proposal}/approve",
        data={"note": ""},
        headers={"X-CSRF-Token": token_value},
    )
    assert refused.status == 403
    assert "four eyes" in refused.json()["error"]["reason"]
    # without the CSRF token the change is refused before anything else
    assert (
        lead.page.request.post(f"{web.url}/api/v1/parameters/proposals/{proposal}/withdraw").status
        == 403
    )
    row.locator("button.withdraw").click()
    lead.page.locator("#notice[data-kind='ok']", has_text=f"Withdrew {proposal}").wait_for()
    lead.page.select_option("#p-status", "withdrawn")
    # the row as the refreshed list shows it (the list drawn before the refresh still has
    # it proposed, and a loaded machine can be read between the two)
    lead.page.locator(
        f'#proposals tr[data-proposal="{proposal}"][data-status="withdrawn"]'
    ).wait_for()
    listed = lead.page.locator("#proposals tr[data-proposal]")
    assert set(listed.evaluate_all("rows => rows.map(r => r.dataset.status)")) == {"withdrawn"}


def test_operators_see_lag_and_dead_letters(signed_in: Callable[..., Session], web: Web) -> None:
    s = signed_in("ops", then="/ops")
    s.page.locator("#groups tbody tr[data-group]").first.wait_for()
    s.page.locator("#lag-chart svg rect.bar").first.wait_for()
    taken = s.page.inner_text("#taken")
    assert re.match(r"^Last read \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC\.$", taken)
    s.page.locator("#rejects tbody tr").first.wait_for()
    first = s.page.inner_text("#taken")
    s.page.wait_for_function(
        "(before) => document.querySelector('#taken').textContent !== before",
        arg=first,
        timeout=20_000,
    )  # refreshed by itself
    s.shot("14-ops-lag")
    assert s.csp_violations() == []


def test_the_auditor_verifies_the_chain(signed_in: Callable[..., Session], web: Web) -> None:
    s = signed_in("auditor", then="/audit")
    s.page.locator("#entries tbody tr[data-seq]").first.wait_for()
    s.page.click("#verify")
    result = s.page.locator("#verify-result.ok")
    result.wait_for()
    assert result.inner_text().startswith("Chain intact:")
    s.page.fill("#a-action", "auth.login")
    s.page.click("#audit-filter button[type=submit]")
    s.page.wait_for_function(
        """() => [...document.querySelectorAll('#entries tbody tr[data-seq] td:nth-child(4)')]
            .every((td) => td.textContent === 'auth.login')"""
    )
    s.shot("15-audit-verified")
