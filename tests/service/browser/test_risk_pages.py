"""The stress and back-test pages in Chromium, over a demo day of a book whose largest
account and one member have names that look like markup (``tests/stress/books.py``): each
chart drawn (an SVG with marks in it), the Cover-1 / Cover-2 table, the coverage table with
its zones, and the hostile names shown literally, never run or parsed.

The module's ``web`` is its own service over that day (the session's demo day has no
hostile name), so ``signed_in`` opens sessions on it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from marginflow.sim.demo import run_demo
from tests.service.browser.conftest import SETTINGS, Session, Web, serve
from tests.stress.books import HOSTILE_ACCOUNT, HOSTILE_MEMBER, stress_book


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Web]:
    root = tmp_path_factory.mktemp("risk-pages")
    book = stress_book(root / "book-in")
    run_demo(
        root / "demo",
        book_dir=book,
        settings=SETTINGS,
        trades_count=200,
        market_moves=10,
        partitions=2,
    )
    with serve(root / "demo") as running:
        yield running


def drawn(s: Session, selector: str) -> int:
    """How many marks (rects, paths, circles) the SVG under ``selector`` holds, once its
    box has a size."""
    chart = s.page.locator(f"{selector} svg").first
    chart.wait_for()
    box = chart.bounding_box()
    assert box is not None
    assert box["width"] > 100
    assert box["height"] > 100
    return int(chart.locator("rect, path, circle").count())


def test_the_stress_page_draws_losses_cover_and_distributions(
    signed_in: Callable[..., Session], web: Web
) -> None:
    s = signed_in("risk.analyst", then="/stress")
    s.page.locator("#main[data-loaded='yes']").wait_for(timeout=180_000)
    assert drawn(s, "#members-chart") >= 3
    assert s.page.locator("#members-chart svg rect.bar").count() == 3
    assert drawn(s, "#distributions .distribution") > 5
    assert s.page.locator("#distributions svg rect.bar.tail").count() >= 1
    cover = s.page.locator("#cover tbody tr[data-cover]")
    assert cover.count() == 2
    assert cover.nth(1).locator("td.scenario").inner_text()
    # the hostile names: literal text in the tables, the chart labels and the headings
    names = s.page.locator("#members tbody td.name").all_inner_texts()
    assert HOSTILE_MEMBER in names
    assert HOSTILE_ACCOUNT in s.page.locator("#accounts tbody td.name").all_inner_texts()
    labels = s.page.locator("#members-chart svg text").all_text_contents()
    assert HOSTILE_MEMBER in labels
    headings = s.page.locator("#distributions h3").all_inner_texts()
    assert any(HOSTILE_ACCOUNT in h for h in headings)
    assert s.page.locator("main script").count() == 0
    assert s.page.locator("#s-report").get_attribute("href") == (
        "/api/v1/stress/report?set=historical&top=20"
    )
    # another set, run from the form
    s.page.select_option("#s-set", "published")
    s.page.click("#s-run")
    s.page.locator("#s-status", has_text="published version").wait_for(timeout=120_000)
    assert s.page.locator("#members-chart svg rect.bar").count() == 3
    s.shot("20-stress-page")
    assert s.dialogs == []
    assert s.csp_violations() == []


def test_a_member_sees_its_own_member_and_no_cover(
    signed_in: Callable[..., Session], web: Web
) -> None:
    member = next(m for m in web.members if m.startswith("M"))
    s = signed_in(f"{member.lower()}.user", then="/stress")
    s.page.locator("#main[data-loaded='yes']").wait_for(timeout=180_000)
    assert s.page.locator("#members tbody td.name").all_inner_texts() == [member]
    assert "clearing house" in s.page.locator("#cover tbody").inner_text()
    assert s.page.locator("#s-report").count() == 0  # the whole-firm report is not theirs
    members = s.page.locator("#accounts tbody tr[data-account] td:nth-child(2)").all_inner_texts()
    assert set(members) <= {member}
    assert s.dialogs == []


def test_the_back_test_page_draws_margin_against_loss_and_the_zones(
    signed_in: Callable[..., Session], web: Web
) -> None:
    s = signed_in("risk.analyst", then="/backtest")
    s.page.locator("#main[data-loaded='yes']").wait_for(timeout=300_000)
    rows = s.page.locator("#coverage tbody tr[data-zone]")
    assert rows.count() > 3
    zones = set(s.page.locator("#coverage tbody td.zone").all_inner_texts())
    assert zones <= {"green", "yellow", "red"}
    assert zones
    assert s.page.locator("#coverage tbody tr[data-level='firm']").count() == 1
    firm = s.page.locator("#series .distribution[data-level='firm']")
    assert firm.count() == 1
    assert drawn(s, "#series .distribution[data-level='firm']") >= 3
    assert s.page.locator("#series svg path.series").count() >= 2
    names = s.page.locator("#coverage tbody td.name").all_inner_texts()
    assert HOSTILE_MEMBER in names
    assert HOSTILE_ACCOUNT in names
    assert s.page.locator("main script").count() == 0
    s.shot("21-backtest-page")
    assert s.dialogs == []
    assert s.csp_violations() == []


def test_a_member_sees_its_own_back_test_without_the_whole_book(
    signed_in: Callable[..., Session], web: Web
) -> None:
    member = next(m for m in web.members if m.startswith("M"))
    s = signed_in(f"{member.lower()}.user", then="/backtest")
    s.page.locator("#main[data-loaded='yes']").wait_for(timeout=300_000)
    levels = set(s.page.locator("#coverage tbody tr[data-level]").evaluate_all(
        "rows => rows.map(r => r.dataset.level)"))  # fmt: skip
    assert levels
    assert "firm" not in levels
    provenance = s.page.locator("#b-provenance").inner_text()
    assert "Book load" not in provenance
    assert "market offset" not in provenance
    assert "accounts in your scope" in provenance
    assert s.dialogs == []


def test_the_pages_are_in_the_navigation_of_those_allowed(
    signed_in: Callable[..., Session], web: Web, tmp_path: Path
) -> None:
    analyst = signed_in("risk.analyst", then="/")
    nav = analyst.page.locator("header nav a").all_inner_texts()
    assert "Stress" in nav
    assert "Back-test" in nav
    ops = signed_in("ops", then="/ops")
    assert "Stress" not in ops.page.locator("header nav a").all_inner_texts()
    ops.go("/stress")
    assert "not allow" in ops.page.locator("main").inner_text()
