"""The stress report (``marginflow stress --report``) opened from its file in Chromium:
every chart's SVG is laid out with a size, the sections and the set's fingerprint are on
the page, and a hostile account name reads as itself (no script runs, no dialog opens)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from marginflow.stress.library import builtin_set
from tests.cli_runner import invoke
from tests.service.browser.conftest import artifacts_dir
from tests.stress.books import HOSTILE_ACCOUNT, HOSTILE_MEMBER, stress_book

SECTIONS = (
    "Firm",
    "Stress losses by member",
    "P&L distribution of the worst accounts",
    "Default fund sizing",
    "Reverse stress",
    "Worst scenarios",
    "Cover-2 members by day",
)


def test_the_stress_report_renders_every_chart(browser: Any, tmp_path: Path) -> None:
    book = stress_book(tmp_path / "book")
    report = tmp_path / "stress.html"
    res = invoke(
        ["stress", "--book", book, "--margin-scenarios", book / "margin.csv",
         "--set", "published", "--history-days", "3", "--report", report]
    )  # fmt: skip
    assert res.exit_code == 0, res.stderr
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    dialogs: list[str] = []
    errors: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        page.goto(report.as_uri())
        figures = page.locator("figure")
        # members, three worst accounts, Cover-1/2 by day
        assert figures.count() == 5
        for k in range(figures.count()):
            svg = figures.nth(k).locator("svg")
            box = svg.bounding_box()
            assert box is not None, k
            assert box["width"] > 100, (k, box)
            assert box["height"] > 100, (k, box)
            # drawn, not empty: matplotlib's paths are there
            assert svg.locator("path").count() > 10, k
            assert figures.nth(k).locator("figcaption").inner_text().strip()
        headings = page.locator("h2").all_inner_texts()
        assert list(SECTIONS) == headings
        body = page.inner_text("body")
        assert builtin_set("published").fingerprint in body
        assert HOSTILE_ACCOUNT in body  # the text itself, shown
        assert HOSTILE_MEMBER in body
        # in the charts too: the member axis label and the account's histogram title
        svg_text = " ".join(page.locator("figure svg text").all_text_contents())
        assert HOSTILE_MEMBER in svg_text
        assert HOSTILE_ACCOUNT in svg_text
        assert page.locator("script").count() == 0
        for table in ("#firm", "#members", "#cover", "#contributions", "#reverse", "#history"):
            assert page.locator(f"{table} tr").count() >= 2, table
        page.screenshot(path=str(artifacts_dir() / "stress-report.png"), full_page=True)
    finally:
        context.close()
    assert dialogs == []
    assert errors == []
