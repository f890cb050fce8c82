"""The acceptance walk in a real browser: a member from sign-in to the dashboard, an
account's drill-down (the P&L histogram with its ES tail), a what-if and back; a risk
analyst proposes a parameter change, a second person approves it, and once the pipeline
has applied it the member's page shows the new margins without a reload."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable

from tests.service.browser.conftest import Session, Web

MONEY = re.compile(r"^−?\d{1,3}(,\d{3})*$")  # whole units, thousands separated
XSS = "<img src=x onerror=alert(1)> [bold]x[/]"


def amount(text: str) -> float:
    return float(text.replace(",", "").replace("−", "-"))


def member_total(s: Session, member: str) -> str:
    return str(s.page.locator(f'.member-total[data-member="{member}"]').inner_text())


def test_member_walk_and_four_eyes_change_reach_the_page_live(
    signed_in: Callable[..., Session], web: Web
) -> None:
    member = web.members[0]  # M001: m001.user's
    user = signed_in(f"{member.lower()}.user")
    page = user.page

    # dashboard: the member's own margin, its history, its accounts
    page.locator(f'.member-total[data-member="{member}"]').wait_for()
    before = member_total(user, member)
    assert MONEY.match(before), before
    page.locator("#history svg path.series").first.wait_for()
    rows = page.locator("#accounts tbody tr[data-account]")
    rows.first.wait_for()
    members_shown = page.locator("#accounts tbody td:nth-child(2)").all_inner_texts()
    assert {t.strip() for t in members_shown} == {member}
    user.shot("01-member-dashboard")

    # drill-down: breakdown, contributions, the P&L histogram with the ES tail marked
    account = str(rows.first.get_attribute("data-account"))
    page.locator("#accounts a.account-link").first.click()
    page.wait_for_url(f"{web.url}/accounts/{account}")
    page.locator("#histogram svg rect.bar.tail").first.wait_for(timeout=120_000)
    assert page.locator("#histogram svg line.es-line").count() == 1
    assert page.locator("#histogram svg line.var-line").count() == 1
    assert page.locator("#components tbody tr[data-component='es']").count() == 1
    assert page.locator("#contributions tbody tr[data-instrument]").count() >= 1
    assert MONEY.match(page.locator("#headline .value.margin").inner_text())
    user.shot("02-account-drill-down")

    # what-if on this account, then back
    page.click("#what-if-link")
    page.wait_for_url(f"{web.url}/what-if?account={account}")
    page.wait_for_function("() => document.querySelectorAll('#instruments option').length > 0")
    instrument = page.locator("#instruments option").first.get_attribute("value")
    assert instrument
    page.fill("#trades .instrument", instrument)
    page.fill("#trades .quantity", "10")
    page.click("#run-what-if")
    page.locator("#result:not([hidden])").wait_for(timeout=120_000)
    assert MONEY.match(page.locator("#wi-cards .before .value").inner_text())
    assert MONEY.match(page.locator("#wi-cards .after .value").inner_text())
    assert re.match(r"^[+−]?[\d,]+ \(", page.locator("#wi-cards .change .value").inner_text())
    user.shot("03-what-if")
    page.click("#wi-back")
    page.wait_for_url(f"{web.url}/accounts/{account}")
    page.click("text=← Margins")
    page.wait_for_url(f"{web.url}/")
    page.locator(f'.member-total[data-member="{member}"]').wait_for()
    page.locator("#live[data-state='on']").wait_for()
    # a reload or a navigation would drop this mark
    page.evaluate("() => { window.__same_document = 'yes'; }")
    # the drill-down open beside the dashboard follows the account too
    drill = user.context.new_page()
    drill.goto(f"{web.url}/accounts/{account}")
    drill.locator("#histogram svg rect.bar.tail").first.wait_for(timeout=120_000)
    drill.locator("#live[data-state='on']").wait_for()
    drill_before = drill.locator("#headline .value.margin").inner_text()
    assert drill.locator("#stale").is_hidden()

    # a risk analyst proposes; the proposer cannot approve their own
    token = uuid.uuid4().hex[:8]
    analyst = signed_in("risk.analyst", then="/parameters")
    analyst.page.locator("#propose-form").wait_for()
    analyst.page.select_option("#p-parameter", "confidence")
    analyst.page.fill("#p-value", "0.995")
    analyst.page.fill("#p-reason", f"{XSS} {token}")
    analyst.page.click("#propose")
    row = analyst.page.locator("#proposals tr[data-proposal]", has_text=token)
    row.wait_for()
    proposal = str(row.get_attribute("data-proposal"))
    assert row.locator("td.reason").inner_text() == f"{XSS} {token}"
    assert row.locator("img").count() == 0
    assert row.locator("button.approve").is_disabled()
    assert "awaiting a second person" in row.locator(".four-eyes").inner_text()
    assert "You proposed this change" in row.locator(".why").inner_text()
    analyst.shot("04-analyst-proposed")

    # a second person approves
    approver = signed_in("risk.approver", then="/parameters")
    mine = approver.page.locator(f'#proposals tr[data-proposal="{proposal}"]')
    mine.wait_for()
    assert mine.locator("button.approve").is_enabled()
    approver.shot("05-approver-before")
    mine.locator("button.approve").click()
    approver.page.locator("#notice[data-kind='ok']").wait_for()
    assert proposal in approver.page.locator("#notice").inner_text()
    # the notice follows the reloaded list: the decided proposal has left "awaiting a decision"
    assert approver.page.locator(f'#proposals tr[data-proposal="{proposal}"]').count() == 0
    approver.page.select_option("#p-status", "approved")
    # the filter's reload is asynchronous: wait for the row as the approved list shows it
    done = approver.page.locator(
        f'#proposals tr[data-proposal="{proposal}"][data-status="approved"]'
    )
    done.wait_for()
    assert "approved by risk.approver" in done.locator("td.decision").inner_text()
    approver.shot("06-approver-approved")

    # the pipeline applies the change; the member's page updates without a reload
    web.run_pipeline()
    page.wait_for_function(
        """([member, before]) => {
            const node = document.querySelector(`.member-total[data-member="${member}"]`);
            return node && node.textContent !== before;
        }""",
        arg=[member, before],
        timeout=60_000,
    )
    after = member_total(user, member)
    assert amount(after) > amount(before)  # 99.5% ES is above 99% ES
    assert page.evaluate("() => window.__same_document") == "yes"
    assert page.url == f"{web.url}/"
    assert int(page.locator("#live").get_attribute("data-updates") or 0) > 0
    user.shot("07-member-dashboard-live-update")
    drill.wait_for_function(
        "(before) => document.querySelector('#headline .value.margin').textContent !== before",
        arg=drill_before,
        timeout=60_000,
    )
    assert drill.locator("#stale").is_visible()  # the breakdown shown is the earlier one's
    drill.screenshot(path=str(web.shots / "07b-account-live-update.png"), full_page=True)
    drill.click("#recompute")
    drill.locator("#stale").wait_for(state="hidden")
    drill.wait_for_function(
        "() => document.querySelector('#breakdown-status').textContent.startsWith('Breakdown')"
    )

    # the applied change is on the parameters page
    approver.page.reload()
    approver.page.locator("#applied tbody tr", has_text=proposal).wait_for()
    approver.shot("08-applied")
    for s in (user, analyst, approver):
        assert s.dialogs == []
        assert s.csp_violations() == []
