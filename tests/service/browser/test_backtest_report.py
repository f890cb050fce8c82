"""The back-test report in Chromium: every chart's SVG drawn with a non-zero size, the
coverage table coloured by zone, and a hostile account name shown as text (no script run)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from marginflow.app.backtest import backtest_book, backtest_report
from marginflow.io.book import LoadedBook
from tests.backtest.conftest import SETTINGS, one_equity_book
from tests.service.browser.conftest import artifacts_dir

HOSTILE = "<script>alert(1)</script>"


def test_backtest_report_renders(browser: Any, tmp_path: Path) -> None:
    book = one_equity_book(calls=-2.0, accounts=(HOSTILE, "ACC $x$"))
    d = book.history.dates  # type: ignore[union-attr]
    bt = backtest_book(
        LoadedBook(book),
        settings=SETTINGS,
        models=["es", "span", "pm"],
        confidences=[0.99, 0.995],
        start=d[150].astype(dt.date),
        end=d[190].astype(dt.date),
        # the hand book's crash is 57 of its sigmas: the vol map would take the short calls'
        # vol so high that no row stays green, and the test wants every zone's colour
        realised_vols="held",
    )
    path = tmp_path / "backtest.html"
    path.write_text(backtest_report(bt).html(), encoding="utf-8")
    context = browser.new_context()
    page = context.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda dlg: (dialogs.append(dlg.message), dlg.dismiss()))
    try:
        page.goto(path.as_uri())
        svgs = page.locator("figure svg")
        count = svgs.count()
        assert count >= 5  # firm, the worst accounts' loss and distribution, the zones
        for i in range(count):
            box = svgs.nth(i).bounding_box()
            assert box is not None
            assert box["width"] > 100
            assert box["height"] > 50
            # drawn: the chart holds lines or bars, not an empty frame
            assert svgs.nth(i).locator("path").count() > 5
        text = page.inner_text("body")
        assert HOSTILE in text  # the name, as text
        assert "ACC $x$" in text
        assert dialogs == []  # no script ran
        assert page.locator("script").count() == 0
        for table in ("#coverage", "#accounts", "#worst", "#comparison"):
            assert page.locator(table).count() == 1
        # zones coloured: a red or yellow row is not in the default text colour
        coloured = page.locator("#coverage tr.zone-green td").first
        colour = coloured.evaluate("e => getComputedStyle(e).color")
        assert colour == "rgb(23, 109, 44)"
        worst_svg_text = page.locator("figure svg text").all_text_contents()
        assert any(HOSTILE in t for t in worst_svg_text)  # a chart's caption or legend
        page.screenshot(path=str(artifacts_dir() / "backtest-report.png"), full_page=True)
    finally:
        context.close()
