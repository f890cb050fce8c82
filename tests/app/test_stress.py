"""``run_stress`` against hand-computed cases and an independent revaluation.

The hand book: three members, equities only, no history (so every underlying takes the
market move as it is), margin on a user scenario file of two scenarios (ES = the worst
loss: k = 2 × 1% < 1), so every figure below is quantity × spot × shock by hand.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import numpy as np
import pytest

from marginflow.app.stress import (
    StressResult,
    contributions,
    cover,
    history_spots,
    run_stress,
    uncovered_by_account,
)
from marginflow.core.batch import OptionBatch
from marginflow.core.book import InstrumentKind
from marginflow.core.errors import ConfigurationError, ValidationError
from marginflow.engine.revaluation import RevaluationSettings
from marginflow.engine.settings import MarginSettings
from marginflow.io.book import load_book, write_book
from marginflow.pricing.api import price
from marginflow.sim.synthetic_book import generate_book
from marginflow.stress.default_fund import read_default_fund
from marginflow.stress.scenarios import Shock, StressScenario, StressSet

SETTINGS = MarginSettings()

# spots X 100, Y 50, Z 20
# M1: A1 long 1,000 X (100k); A2 short 2,000 Y (-100k)   margins 10k, 10k
# M2: B1 long 3,000 Z (60k) and 200 Y (10k)              margin 7k
# M3: C1 short 400 X (-40k)                              margin 4k
HAND_POSITIONS = (
    "account,instrument,quantity\nA1,X,1000\nA2,Y,-2000\nB1,Z,3000\nB1,Y,200\nC1,X,-400\n"
)


def hand_book(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "market.csv").write_text(
        "underlying,date,spot,atm_vol\nX,2018-12-31,100,0.3\nY,2018-12-31,50,0.3\n"
        "Z,2018-12-31,20,0.3\n"
    )
    (folder / "accounts.csv").write_text("account,member\nA1,M1\nA2,M1\nB1,M2\nC1,M3\n")
    (folder / "instruments.csv").write_text(
        "instrument,underlying,type\nX,X,stock\nY,Y,stock\nZ,Z,stock\n"
    )
    (folder / "positions.csv").write_text(HAND_POSITIONS)
    (folder / "margin.csv").write_text("scenario,underlying,spot_shock\ndown,*,-0.1\nup,*,0.1\n")
    return folder


def hand_set() -> StressSet:
    return StressSet(
        name="hand",
        version="1",
        scaling="none",
        scenarios=(
            StressScenario("s1", Shock(-0.30)),
            StressScenario("s2", Shock(0.0), named={"X": Shock(-0.35), "Y": Shock(0.10)}),
            StressScenario("s3", Shock(0.15)),
        ),
    )


def run_hand(folder: Path, **kw: object) -> StressResult:
    loaded = load_book(folder)
    assert loaded.failures == []
    return run_stress(
        loaded,
        hand_set(),
        settings=SETTINGS,
        margin_scenarios_file=folder / "margin.csv",
        **kw,  # type: ignore[arg-type]
    )


@pytest.fixture(scope="module")
def hand(tmp_path_factory: pytest.TempPathFactory) -> StressResult:
    return run_hand(hand_book(tmp_path_factory.mktemp("hand")), reverse=False)


def test_hand_pnl_and_margins(hand: StressResult) -> None:
    # P&L = quantity × spot × shock, per scenario s1, s2, s3
    expected = np.array(
        [
            [-30_000.0, -35_000.0, 15_000.0],  # A1: 1,000 × 100 × (-30%, -35%, +15%)
            [30_000.0, -10_000.0, -15_000.0],  # A2: -2,000 × 50 × (-30%, +10%, +15%)
            [-21_000.0, 1_000.0, 10_500.0],  # B1: 60k Z, 10k Y
            [12_000.0, 14_000.0, -6_000.0],  # C1: -400 × 100
        ]
    )
    np.testing.assert_allclose(hand.pnl, expected, rtol=1e-6)
    np.testing.assert_allclose(hand.margin, [10_000, 10_000, 7_000, 4_000], rtol=1e-6)
    assert hand.pnl.dtype == np.float64
    assert hand.labels == ("s1", "s2", "s3")


def test_hand_losses_gross_and_beyond_margin(hand: StressResult) -> None:
    worst, s = hand.account_worst
    np.testing.assert_allclose(worst, [35_000, 15_000, 21_000, 6_000], rtol=1e-6)
    assert [hand.labels[i] for i in s] == ["s2", "s3", "s1", "s3"]
    unc, _ = hand.account_uncovered
    np.testing.assert_allclose(unc, [25_000, 5_000, 14_000, 2_000], rtol=1e-6)
    # by account: M1 = max(L_A1 - 10k, 0) + max(L_A2 - 10k, 0)
    np.testing.assert_allclose(
        hand.member_uncovered,
        [[20_000, 25_000, 5_000], [14_000, 0, 0], [0, 0, 2_000]],
        rtol=1e-6,
        atol=1e-6,
    )
    # member-netted: M1's P&L 0, -45k, 0 against 20k of margin
    np.testing.assert_allclose(
        hand.member_netted,
        [[0, 25_000, 0], [14_000, 0, 0], [0, 0, 2_000]],
        rtol=1e-6,
        atol=1e-6,
    )
    members = {m["member"]: m for m in hand.members_table()}
    assert members["M1"]["gross_loss"] == pytest.approx(45_000)
    assert members["M1"]["gross_loss_scenario"] == "s2"
    assert members["M1"]["uncovered"] == pytest.approx(25_000)
    assert members["M2"]["uncovered_scenario"] == "s1"
    firm = hand.firm()
    # firm P&L: s1 -9k, s2 -30k, s3 +4.5k; uncovered 34k, 25k, 7k
    assert firm["gross_loss"] == pytest.approx(30_000)
    assert firm["gross_loss_scenario"] == "s2"
    assert firm["uncovered"] == pytest.approx(34_000)
    assert firm["uncovered_scenario"] == "s1"
    assert firm["margin"] == pytest.approx(31_000)


def test_hand_cover_1_and_2_and_contributions(hand: StressResult) -> None:
    # Cover-1 per scenario 20k, 25k, 5k; Cover-2 34k, 25k, 7k
    np.testing.assert_allclose(hand.cover1.by_scenario, [20_000, 25_000, 5_000], rtol=1e-6)
    np.testing.assert_allclose(hand.cover2.by_scenario, [34_000, 25_000, 7_000], rtol=1e-6)
    assert hand.cover1.fund == pytest.approx(25_000)
    assert hand.labels[hand.cover1.scenario] == "s2"
    assert [hand.members[m] for m in hand.cover1.members] == ["M1"]
    assert hand.cover2.fund == pytest.approx(34_000)
    assert hand.labels[hand.cover2.scenario] == "s1"
    assert [hand.members[m] for m in hand.cover2.members] == ["M1", "M2"]
    # Cover-2 fund pro-rata to s1's uncovered losses 20k : 14k : 0
    np.testing.assert_allclose(hand.contributions, [20_000, 14_000, 0], rtol=1e-6, atol=1e-6)


def test_cover_and_contributions_on_a_table() -> None:
    u = np.array([[5.0, 1.0], [4.0, 0.0], [3.0, 6.0]])
    c2 = cover(u, 2)
    assert (c2.fund, c2.scenario, c2.members) == (9.0, 0, (0, 1))  # 5+4 vs 6+1
    c1 = cover(u, 1)
    assert (c1.fund, c1.scenario, c1.members) == (6.0, 1, (2,))
    np.testing.assert_allclose(contributions(u, c2), [3.75, 3.0, 2.25])  # 9 × (5, 4, 3)/12
    np.testing.assert_allclose(contributions(u, c2, floor=3.5), [3.75, 3.5, 3.5])
    assert cover(np.zeros((1, 3)), 2).members == ()  # fewer members than k, no loss
    with pytest.raises(ValidationError, match="min_contribution"):
        contributions(u, c2, floor=-1.0)


def test_uncovered_does_not_offset_accounts() -> None:
    pnl = np.array([[-10.0], [8.0]])  # two accounts of one member
    got = uncovered_by_account(pnl, np.array([4.0, 1.0]), np.array([0, 0]), 1)
    assert got.tolist() == [[6.0]]  # the second account's gain and margin do not help


def test_hand_reverse_stress(tmp_path: Path) -> None:
    folder = hand_book(tmp_path)
    fund = {"M1": 5_500.0, "M2": 10_000.0, "M3": 1_000.0}
    r = run_hand(folder, default_fund=fund, default_fund_source="fund.csv")
    assert r.contributions.tolist() == [5_500.0, 10_000.0, 1_000.0]
    assert r.contributions_source == "file fund.csv"
    moves = {(r.members[m.member], m.direction): m for m in r.reverse}
    # M1 down: A1 loses 100k·x beyond 10k > 5.5k  ⇒ x > 0.155; up: A2 the same
    # M2 down: B1 loses 70k·x beyond 7k > 10k     ⇒ x > 17/70; up: never
    # M3 up: C1 loses 40k·x beyond 4k > 1k        ⇒ x > 0.125; down: never
    solved = {
        ("M1", "down"): -0.155,
        ("M1", "up"): 0.155,
        ("M2", "down"): -17 / 70,
        ("M3", "up"): 0.125,
    }
    for key, x in solved.items():
        m = moves[key]
        assert m.move is not None, key
        assert abs(x) <= abs(m.move) <= abs(x) + 1e-3, (key, m.move)
        assert np.sign(m.move) == np.sign(x)
    assert moves[("M2", "up")].move is None
    assert moves[("M3", "down")].move is None
    assert not moves[("M3", "down")].exhausted
    m2 = moves[("M2", "down")]
    assert m2.gross_loss == pytest.approx(70_000 * abs(m2.move or 0), rel=1e-6)
    assert m2.uncovered == pytest.approx(70_000 * abs(m2.move or 0) - 7_000, rel=1e-6)


def test_default_fund_must_name_every_member(tmp_path: Path) -> None:
    folder = hand_book(tmp_path)
    with pytest.raises(ValidationError, match="no contribution for member 'M3'"):
        run_hand(folder, default_fund={"M1": 1.0, "M2": 1.0}, reverse=False)


def test_read_default_fund_refusals(tmp_path: Path) -> None:
    members = ("M1", "M2")
    path = tmp_path / "fund.csv"
    path.write_text("member,contribution\nM1,100\nM2,250.5\n")
    assert read_default_fund(path, members) == {"M1": 100.0, "M2": 250.5}
    cases = [
        ("member,contribution\nM1,100\nM2,lots\n", rf"contribution: {path}:3: is not a number"),
        ("member,contribution\nM1,100\nM2,-5\n", rf"contribution: {path}:3: must be >= 0"),
        ("member,contribution\nM1,1\nM1,2\nM2,3\n", rf"member: {path}:3: member 'M1' is given"),
        ("member,contribution\nM1,1\nM9,2\nM2,3\n", rf"member: {path}:3: 'M9' is not a member"),
        ("member,contribution\nM1,1\n", rf"member: {path}: no contribution for member 'M2'"),
        ("member,amount\nM1,1\n", "contribution: column is missing"),
    ]
    for text, message in cases:
        path.write_text(text)
        with pytest.raises(ValidationError, match=message):
            read_default_fund(path, members)
    with pytest.raises(ValidationError, match="no such file"):
        read_default_fund(tmp_path / "absent.csv", members)


def test_two_sets_with_one_label_are_refused(tmp_path: Path) -> None:
    folder = hand_book(tmp_path)
    other = dataclasses.replace(hand_set(), name="other")
    with pytest.raises(ConfigurationError, match="both have a scenario labelled 's1'"):
        run_stress(
            load_book(folder),
            [hand_set(), other],
            settings=SETTINGS,
            margin_scenarios_file=folder / "margin.csv",
        )


# --- an option book against an independent revaluation ---------------------------------


@pytest.fixture(scope="module")
def option_book(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("options")
    sb = generate_book(members=3, accounts=6, underlyings=4, series=40, positions=60, seed=11)
    write_book(folder, sb.book)
    (folder / "margin.csv").write_text(
        "scenario,underlying,spot_shock,vol_shock\ndown,*,-0.1,0.2\nup,*,0.1,-0.1\n"
    )
    return folder


def test_option_pnl_matches_an_independent_revaluation(option_book: Path) -> None:
    loaded = load_book(option_book)
    book = loaded.book
    u_ids = book.underlyings.ids
    stress = StressSet(
        name="opt",
        version="1",
        scaling="none",
        scenarios=(
            StressScenario("crash", Shock(-0.2, 0.8), named={u_ids[2]: Shock(-0.35, 1.2)}),
            StressScenario("rally", Shock(0.12, -0.25)),
            StressScenario("vol", Shock(0.0, 0.5)),
        ),
    )
    settings = MarginSettings(revaluation="exact")
    r = run_stress(
        loaded,
        stress,
        settings=settings,
        margin_scenarios_file=option_book / "margin.csv",
        reverse=False,
    )
    ins, mk = book.instruments, book.market
    floor = RevaluationSettings().vol_floor
    opt = np.flatnonzero(ins.is_option)
    assert opt.size > 10
    assert ins.is_american[opt].any()
    u = ins.underlying

    def values(spot: np.ndarray, vol_mult: np.ndarray) -> np.ndarray:
        """Every instrument's value × multiplier with each underlying at ``spot`` and its
        smile (sticky moneyness) times ``vol_mult``."""
        out = spot[u].copy()
        s = spot[u[opt]]
        k = ins.strike[opt]
        vol = vol_mult[u[opt]] * np.maximum(
            floor, mk.atm_vol[u[opt]] + mk.skew[u[opt]] * np.log(k / s)
        )
        out[opt] = price(
            OptionBatch.of(
                is_call=ins.kind[opt] == InstrumentKind.CALL,
                is_american=ins.is_american[opt],
                spot=s,
                strike=k,
                expiry_years=ins.expiry_years[opt],
                rate=mk.rate[u[opt]],
                dividend_yield=mk.dividend_yield[u[opt]],
                vol=vol,
            )
        )
        return out * ins.multiplier

    today = values(mk.spot, np.ones(len(u_ids)))
    q = book.positions.matrix.toarray()
    for s, sc in enumerate(stress.scenarios):
        assert sc.market is not None
        spot_shock = np.full(len(u_ids), sc.market.spot)
        vol_shock = np.full(len(u_ids), sc.market.vol)
        for name, shock in sc.named.items():
            spot_shock[u_ids.index(name)] = shock.spot
            vol_shock[u_ids.index(name)] = shock.vol
        moved = values(mk.spot * (1 + spot_shock), 1 + vol_shock)
        expected = q @ (moved - today)
        scale = np.abs(q) @ np.abs(today) + 1.0
        assert np.all(np.abs(r.pnl[:, s] - expected) <= 2e-6 * scale), sc.label


def test_history_spots_end_at_today(option_book: Path) -> None:
    book = load_book(option_book).book
    dates, spots = history_spots(book, 3)
    assert len(dates) == 3
    assert dates[-1] <= book.market.valuation_date
    np.testing.assert_allclose(spots[-1], book.market.spot, rtol=1e-12)
    assert book.history is not None
    h = book.history.select(list(book.underlyings.ids))
    # the day before: today's spot moved back by today's log return
    np.testing.assert_allclose(spots[-2], book.market.spot * np.exp(-h.log_returns[-1]), rtol=1e-12)
    with pytest.raises(ValidationError, match="history_days"):
        history_spots(book, 0)


def test_cover_history_lists_two_members_a_day(option_book: Path) -> None:
    loaded = load_book(option_book)
    stress = StressSet(
        name="h", version="1", scaling="none", scenarios=(StressScenario("c", Shock(-0.2, 0.5)),)
    )
    r = run_stress(
        loaded,
        stress,
        settings=SETTINGS,
        margin_scenarios_file=option_book / "margin.csv",
        reverse=False,
        history_days=3,
    )
    assert [d.date for d in r.history] == history_spots(loaded.book, 3)[0]
    last = r.history[-1]  # today's spots: the same as the run itself
    assert last.cover2.fund == pytest.approx(r.cover2.fund, rel=1e-9)
    assert last.margin == pytest.approx(float(r.margin.sum()), rel=1e-9)
    assert isinstance(last.date, dt.date)
