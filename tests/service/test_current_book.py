"""The stored book now (:func:`marginflow.app.current_book.current_book`) over the service's
demo day, against the same book loaded through the CLI's path: the book folder with its
positions and market rewritten from what the store and the market topic say, read by
``load_book``. Same positions, same spots and vols, and the same margins as the stream
stored."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest

from marginflow.app.current_book import (
    MSG_NO_LOAD,
    current_book,
    settings_in_force,
)
from marginflow.app.margin import EsRun, margin_book
from marginflow.core.errors import ValidationError
from marginflow.engine.settings import MarginSettings
from marginflow.io.book import load_book
from marginflow.store import Database
from marginflow.stream import events as ev
from marginflow.stream.codec import Codec
from marginflow.stream.topics import MARKET, Topology


@pytest.fixture(scope="module")
def db(demo_dir: Path) -> Database:
    return Database(f"sqlite:///{demo_dir / 'margins.db'}")


def expected_positions(db: Database) -> dict[str, dict[str, int]]:
    """Each account's holdings read one account at a time at its latest margin's version."""
    current, _ = db.current_margins()
    return {m.account: db.positions(m.account, m.position_version) for m in current}


def expected_market(db: Database, book_dir: Path) -> dict[str, dict[str, str]]:
    """market.csv's rows moved by every stored price and surface-level vol update."""
    with (book_dir / "market.csv").open() as f:
        rows = {r["underlying"]: r for r in csv.DictReader(f)}
    codec: Codec[ev.Event] = Codec(Topology().spec(MARKET).events)
    for record in db.market_events():
        e = codec.decode(record.payload)
        if isinstance(e, ev.PriceUpdate):
            rows[e.underlying]["spot"] = repr(e.price)
        elif isinstance(e, ev.VolUpdate) and e.expiry is None and e.strike is None:
            if e.vol is not None:
                rows[e.underlying]["atm_vol"] = repr(e.vol)
            if e.skew is not None:
                rows[e.underlying]["skew"] = repr(e.skew)
    return rows


def cli_book(tmp: Path, book_dir: Path, db: Database) -> Path:
    folder = tmp / "book-now"
    shutil.copytree(book_dir, folder)
    market = expected_market(db, book_dir)
    with (folder / "market.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(next(iter(market.values()))))
        w.writeheader()
        w.writerows(market.values())
    with (folder / "positions.csv").open("w", newline="") as f:
        w2 = csv.writer(f)
        w2.writerow(["account", "instrument", "quantity"])
        for account, held in sorted(expected_positions(db).items()):
            w2.writerows([account, i, q] for i, q in sorted(held.items()))
    return folder


def held(book_positions: object, instruments: tuple[str, ...]) -> dict[str, dict[str, float]]:
    p = book_positions
    m = p.matrix.tocsr()  # type: ignore[attr-defined]
    out: dict[str, dict[str, float]] = {}
    for a, account in enumerate(p.accounts):  # type: ignore[attr-defined]
        row = m.getrow(a)
        found = {instruments[j]: float(q) for j, q in zip(row.indices, row.data, strict=True) if q}
        if found:
            out[account] = found
    return out


def test_the_stored_book_is_the_cli_book_with_the_stored_positions_and_market(
    db: Database, demo_dir: Path, tmp_path: Path
) -> None:
    now = current_book(db)
    cli = load_book(cli_book(tmp_path, demo_dir / "book", db)).book
    book = now.loaded.book
    assert now.market_offset == max(r.offset for r in db.market_events())
    assert now.load.id == db.book_loads()[-1].id
    # same positions (the CLI book lists every underlying; the stored one those held)
    want = {a: {i: float(q) for i, q in p.items()} for a, p in expected_positions(db).items()}
    assert held(book.positions, book.instruments.ids) == {a: p for a, p in want.items() if p}
    assert held(cli.positions, cli.instruments.ids) == held(book.positions, book.instruments.ids)
    # same spots, vols and smile slopes, underlying by underlying
    cli_u = cli.underlyings.index()
    rows = [cli_u[u] for u in book.underlyings.ids]
    assert set(book.underlyings.ids) <= set(cli.underlyings.ids)
    np.testing.assert_array_equal(book.market.spot, cli.market.spot[rows])
    np.testing.assert_array_equal(book.market.atm_vol, cli.market.atm_vol[rows])
    np.testing.assert_array_equal(book.market.skew, cli.market.skew[rows])
    assert (cli.market.spot != load_book(demo_dir / "book").book.market.spot).any()  # moved


def test_margins_on_the_stored_book_are_the_stream_s_to_the_bit(db: Database) -> None:
    now = current_book(db)
    run = margin_book(now.loaded, settings=now.settings)
    assert isinstance(run, EsRun)
    got = dict(zip(run.book.positions.accounts, run.engine.margin.tolist(), strict=True))
    stored = {m.account: m.margin for m in db.current_margins()[0]}
    assert stored
    assert {a: got[a] for a in stored} == stored


def test_the_key_names_load_offset_and_positions(db: Database) -> None:
    cache: dict[str, object] = {}
    first = current_book(db, cache=cache)  # type: ignore[arg-type]
    again = current_book(db, cache=cache)  # type: ignore[arg-type]
    assert first.key == again.key
    assert list(cache) == [first.load.id]
    assert first.key[:2] == (first.load.id, first.market_offset)
    assert first.describe()["accounts"] == len(first.loaded.book.positions.accounts)


def test_settings_in_force_fold_a_changed_model_into_the_settings() -> None:
    base = MarginSettings(confidence=0.99, apc="none", params=("participation=0.2",))
    model = base.model()
    assert settings_in_force(base, model) is base
    moved = settings_in_force(
        base,
        model.__class__(
            confidence=0.995, apc="buffer", apc_buffer=0.3, concentration=False, participation=0.2
        ),
    )
    assert moved.confidence == 0.995
    assert moved.apc == "buffer"
    assert moved.params == ("apc_buffer=0.3", "concentration=false", "participation=0.2")
    assert moved.model() == model.__class__(
        confidence=0.995, apc="buffer", apc_buffer=0.3, concentration=False, participation=0.2
    )


def test_an_empty_store_is_refused_in_one_line(tmp_path: Path) -> None:
    empty = Database(f"sqlite:///{tmp_path / 'empty.db'}")
    with pytest.raises(ValidationError, match="no start-of-day load") as info:
        current_book(empty)
    assert info.value.field == "book_load"
    assert MSG_NO_LOAD.startswith(str(info.value.reason)[:20])
