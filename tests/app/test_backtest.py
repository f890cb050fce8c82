"""The back-test use case over a store: dynamic positions from a hand-made position history
and parameters from the audit of risk-parameter changes, in SQLite and PostgreSQL; the
report's contents and escaping; the export."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from marginflow.app.backtest import (
    Backtest,
    backtest_book,
    backtest_report,
    day_ends_ns,
    export_header,
    export_rows,
)
from marginflow.core.errors import ConfigurationError
from marginflow.io.book import LoadedBook
from marginflow.store import Database
from marginflow.store.rows import AuditedChange, PositionChange
from tests.backtest.conftest import CRASH_ROW, SETTINGS, one_equity_book
from tests.postgres import postgres_or_skip

HOSTILE = "<script>alert(1)</script>"
FIRST, LAST = 150, 190


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    url = f"sqlite:///{tmp_path / 's.db'}" if request.param == "sqlite" else postgres_or_skip()
    store = Database(url, prefix=f"t{uuid.uuid4().hex[:8]}_")
    try:
        yield store
    finally:
        store.drop()
        store.close()


def loaded() -> LoadedBook:
    return LoadedBook(one_equity_book(calls=2.0, accounts=("ACC", HOSTILE)))


def dates() -> np.ndarray:
    history = one_equity_book().history
    assert history is not None
    return history.dates


def window_dates() -> tuple[dt.date, dt.date]:
    d = dates()
    return d[FIRST].astype(dt.date), d[LAST].astype(dt.date)


def run(**kw: Any) -> Backtest:
    start, end = window_dates()
    return backtest_book(loaded(), settings=SETTINGS, start=start, end=end, **kw)


def at_noon(row: int) -> int:
    """UTC ns at noon of history row ``row``'s date (inside that day)."""
    d = dates()[row]
    return int(day_ends_ns(np.array([d]))[0]) - 12 * 3600 * 10**9


def test_dynamic_from_the_store(db: Database) -> None:
    # ACC: 500 shares from row 160, 1,000 from the crash's day; the hostile account never
    # trades (flat); OTHER is not in the book; a series the book does not list
    db.write(
        positions=[
            PositionChange("ACC", 1, 0, at_noon(160), ("XYZ",), (500,)),
            PositionChange("ACC", 2, 0, at_noon(CRASH_ROW), ("XYZ",), (1_000,)),
            PositionChange("OTHER", 3, 0, at_noon(150), ("XYZ",), (7,)),
            PositionChange("ACC", 4, 0, at_noon(165), ("NOPE 1C",), (3,)),
        ]
    )
    bt = run(database=db)
    r = bt.result
    assert [m.mode for m in r.modes] == ["static", "dynamic"]
    s, d = r.mode("static"), r.mode("dynamic")
    k1, k2 = 160 - FIRST, CRASH_ROW - FIRST
    # flat before the first change; half the static shares (the static call not held)
    assert (d.pnl[:k1] == 0).all()
    assert (d.margin["es@0.99"][:k1] == 0).all()
    closes_move = s.pnl[:, 0] / 1_000.0  # the stock's own move: static ACC holds 1,000
    np.testing.assert_allclose(d.pnl[k1:k2, 0], 500.0 * closes_move[k1:k2], rtol=1e-12)
    np.testing.assert_allclose(d.pnl[k2:, 0], s.pnl[k2:, 0], rtol=1e-12)
    assert (d.pnl[:, 1] == 0).all()
    # the breach days of the static book (the two before the crash) are breaches of the
    # dynamic one too: 500 shares, margin 0 before the crash
    dyn = bt.rows
    acc = next(x for x in dyn if x.name == "ACC" and x.mode == "dynamic")
    assert acc.stats.breaches == 2
    notes = " ".join(bt.notes)
    assert "1 stored accounts outside" in notes
    assert "'NOPE 1C'" in notes


def test_parameters_from_the_store(db: Database) -> None:
    effective = at_noon(CRASH_ROW + 5)
    db.write(
        changes=[
            AuditedChange(
                "c1", "es", "apc", "buffer", "ana", "bo", effective, effective, "market", 0, 1
            ),
            AuditedChange(
                "c2", "span", "x", 1.0, "ana", "bo", effective, effective, "market", 0, 2
            ),
        ]
    )
    plain = run(mode="static")
    stored = run(database=db, mode="static")
    a = plain.result.mode("static").margin["es@0.99"][:, 0]
    b = stored.result.mode("static").margin["es@0.99"][:, 0]
    k = CRASH_ROW + 5 - FIRST
    assert np.array_equal(a[:k], b[:k])
    np.testing.assert_allclose(b[k:], 1.25 * a[k:], rtol=1e-9)


def test_dynamic_unavailable_is_said(db: Database) -> None:
    with pytest.raises(ConfigurationError, match=r"dynamic back-test unavailable: .* holds no"):
        run(database=db, mode="dynamic")
    bt = run(database=db)  # auto: static only, and a note why
    assert [m.mode for m in bt.result.modes] == ["static"]
    assert any("holds no position history" in n for n in bt.notes)
    later = int(day_ends_ns(np.array([np.datetime64("2026-01-04")]))[0]) + 12 * 3600 * 10**9
    db.write(positions=[PositionChange("ACC", 1, 0, later, ("XYZ",), (5,))])
    with pytest.raises(ConfigurationError, match="starts on 2026-01-05, after the window"):
        run(database=db, mode="both")


def test_dynamic_needs_a_database() -> None:
    with pytest.raises(ConfigurationError, match="--mode dynamic needs --database"):
        run(mode="dynamic")


def test_report_escapes_and_shows_each_part() -> None:
    bt = run(models=["es", "span"], confidences=[0.99, 0.975])
    html = backtest_report(bt).html()
    assert HOSTILE not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    for part in ('id="coverage"', 'id="accounts"', 'id="worst"', 'id="comparison"'):
        assert part in html
    assert html.count("<svg") >= 4  # firm, the worst account's two, the zones
    assert 'class="zone-yellow"' in html or 'class="zone-red"' in html
    assert "ES 97.5%" in html


def test_export_rows() -> None:
    bt = run(models=["es", "pm"])
    r = bt.result
    header = export_header(r)
    assert header == ["mode", "day", "pnl_end", "account", "member", "held", "pnl",
                      "margin:es@0.99", "margin:pm", "breach:es@0.99", "breach:pm"]  # fmt: skip
    rows = list(export_rows(r))
    assert len(rows) == r.days.size * 2
    first = rows[0]
    assert first[:5] == ["static", str(r.days[0]), str(r.ends[0]), "ACC", "M1"]
    assert first[6] == r.mode("static").pnl[0, 0]
    breach = [row for row in rows if row[3] == "ACC" and row[9]]
    assert [row[1] for row in breach] == [str(r.days[CRASH_ROW - 2 - FIRST]),
                                          str(r.days[CRASH_ROW - 1 - FIRST])]  # fmt: skip
