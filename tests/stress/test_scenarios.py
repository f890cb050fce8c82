"""Stress sets: validation, fingerprints, the materialised ScenarioSet, betas, the TOML file
form (round trip and hostile files) and hypothetical sets from the user scenario file."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import numpy as np
import pytest

from marginflow.core.errors import ValidationError
from marginflow.core.history import ReturnHistory
from marginflow.io.scenario_file import read_scenario_file
from marginflow.stress.scenarios import (
    Shock,
    StressScenario,
    StressSet,
    load_stress_set,
    market_betas,
    save_stress_set,
    stress_set_from_scenario_file,
    stress_set_toml,
)

D = dt.date


def _set(**changes: object) -> StressSet:
    crash = StressScenario(
        label="crash",
        market=Shock(-0.2, 0.6),
        named={"NDX": Shock(-0.25, 0.7)},
        start=D(2008, 10, 15),
        end=D(2008, 10, 15),
        horizon_days=1,
        source="hand",
        vol_source="hand",
        note="a note",
    )
    rally = StressScenario(label="rally", market=Shock(0.1, -0.2), horizon_days=5)
    kw: dict[str, object] = {
        "name": "demo",
        "version": "1",
        "scenarios": (crash, rally),
        "scaling": "beta",
        "description": "two scenarios",
        "params": {"data": "hand", "count": 2, "calibration": {"b": -8.5, "first": D(2014, 1, 3)}},
    }
    kw.update(changes)
    return StressSet(**kw)  # type: ignore[arg-type]


# --- the model ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spot", "vol", "field", "reason"),
    [
        (-1.0, 0.0, "spot_shock", "must be > -1 (a relative move), got -1.0"),
        (-1.5, 0.0, "spot_shock", "must be > -1"),
        (10.5, 0.0, "spot_shock", "must be within (-1, 10]"),
        (float("nan"), 0.0, "spot_shock", "must be finite"),
        (0.0, float("inf"), "vol_shock", "must be finite"),
        (0.0, -1.0, "vol_shock", "must be > -1"),
    ],
)
def test_shock_bounds(spot: float, vol: float, field: str, reason: str) -> None:
    with pytest.raises(ValidationError, match=f"^{field}: ") as exc:
        Shock(spot, vol)
    assert reason in str(exc.value)


@pytest.mark.parametrize(
    ("changes", "field", "reason"),
    [
        ({"label": ""}, "label", "must not be empty"),
        ({"label": "a\x1b[31m"}, "label", "printable"),
        ({"label": "x\u202ey"}, "label", "printable"),  # a bidi override
        ({"label": " padded"}, "label", "blanks"),
        ({"market": None}, "spot_shock", "moves nothing"),
        ({"start": D(2008, 1, 2)}, "end", "give both"),
        ({"start": D(2008, 1, 3), "end": D(2008, 1, 2)}, "end", "before start"),
        ({"horizon_days": 0}, "horizon_days", "must be in 1..2520"),
        ({"market": Shock(0.1), "named": {"*": Shock(0.1)}}, "shocks", "market move"),
        ({"note": "two\nlines"}, "note", "printable"),
    ],
)
def test_scenario_validation(changes: dict[str, object], field: str, reason: str) -> None:
    kw: dict[str, object] = {"label": "s", "market": Shock(-0.1)}
    kw.update(changes)
    with pytest.raises(ValidationError, match=f"^{field}: .*{reason}"):
        StressScenario(**kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"name": "Has Caps"}, "name"),
        ({"name": "../etc"}, "name"),
        ({"version": ""}, "version"),
        ({"version": "1 2"}, "version"),
        ({"scaling": "sector"}, "scaling"),
        ({"scenarios": ()}, "scenario"),
        ({"params": {"x": float("nan")}}, "params.x"),
        ({"params": {"x": [1, {"y": object()}]}}, "params.x[1].y"),
    ],
)
def test_set_validation(changes: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as exc:
        _set(**changes)
    assert exc.value.field == field


def test_labels_are_unique() -> None:
    s = StressScenario(label="same", market=Shock(-0.1))
    with pytest.raises(ValidationError, match="'same' labels two scenarios"):
        _set(scenarios=(s, s))


def test_user_text_is_kept_as_data() -> None:
    hostile = ("<script>alert(1)</script>", "=cmd|' /C calc'!A0", "[/x]", "§5 — ünïcode")
    scen = tuple(StressScenario(label=t, market=Shock(-0.1), note=t) for t in hostile)
    s = _set(scenarios=scen, description=hostile[0])
    assert s.labels == hostile


# --- fingerprints ---------------------------------------------------------------------------


def test_fingerprint_is_pinned() -> None:
    # canonical JSON of the content: a change of the form shows as a change of this value
    assert _set().fingerprint == FINGERPRINT


FINGERPRINT = "4382660e282ba9b8d714062160732746f41a5ce4a48949009639d0838ef2eff9"


def test_fingerprint_ignores_labels_of_the_set_and_key_order() -> None:
    s = _set()
    renamed = _set(name="other", version="7", description="another text")
    reordered = _set(params={"calibration": {"first": D(2014, 1, 3), "b": -8.5}, "count": 2,
                             "data": "hand"})  # fmt: skip
    assert renamed.fingerprint == s.fingerprint == reordered.fingerprint
    assert renamed.identity == {"name": "other", "version": "7", "fingerprint": s.fingerprint}


def test_fingerprint_changes_with_content() -> None:
    s = _set()
    crash, rally = s.scenarios
    variants = [
        _set(scenarios=(dataclasses.replace(crash, market=Shock(-0.2 + 1e-12, 0.6)), rally)),
        _set(scenarios=(dataclasses.replace(crash, market=Shock(-0.2, 0.61)), rally)),
        _set(scenarios=(dataclasses.replace(crash, named={"NDX": Shock(-0.25, 0.71)}), rally)),
        _set(scenarios=(dataclasses.replace(crash, named={}), rally)),
        _set(scenarios=(dataclasses.replace(crash, label="crash2"), rally)),
        _set(scenarios=(dataclasses.replace(crash, end=D(2008, 10, 16)), rally)),
        _set(scenarios=(dataclasses.replace(crash, source="other"), rally)),
        _set(scenarios=(rally, crash)),
        _set(scenarios=(crash,)),
        _set(scaling="none"),
        _set(params={"data": "hand", "count": 3}),
    ]
    prints = {v.fingerprint for v in variants}
    assert s.fingerprint not in prints
    assert len(prints) == len(variants)


# --- materialising ---------------------------------------------------------------------------


def test_materialised_shapes_and_values() -> None:
    s = _set()
    out = s.scenario_set(["SPX", "NDX", "IBM", "ZZZ"], betas={"SPX": 1.0, "IBM": 2.0, "NDX": 1.3})
    assert out.spot_shock.shape == out.vol_shock.shape == (4, 2)
    assert out.spot_shock.dtype == out.vol_shock.dtype == np.float32
    assert out.labels == ("crash", "rally")
    # IBM: beta 2 in log returns: (1 - 0.2)^2 - 1 = -0.36; (1.1)^2 - 1 = 0.21
    expected_spot = np.array([[-0.2, 0.1], [-0.25, 1.1**1.3 - 1], [-0.36, 0.21], [-0.2, 0.1]])
    expected_vol = np.array([[0.6, -0.2], [0.7, -0.2], [0.6, -0.2], [0.6, -0.2]])
    np.testing.assert_allclose(out.spot_shock, expected_spot, rtol=1e-6)
    np.testing.assert_allclose(out.vol_shock, expected_vol, rtol=1e-6)
    assert out.horizon_days == 5  # the longest window
    assert out.source == "stress"
    assert out.group.tolist() == [0, 0]
    assert out.params["stress_set"] == "demo"
    assert out.params["fingerprint"] == s.fingerprint
    assert out.params["betas"] is not None
    assert s.scenario_set(["IBM"], horizon_days=2).horizon_days == 2


def test_without_betas_every_underlying_moves_with_the_market() -> None:
    out = _set().scenario_set(["IBM", "NDX"])
    np.testing.assert_allclose(out.spot_shock, [[-0.2, 0.1], [-0.25, 0.1]], rtol=1e-6)
    assert out.params["betas"] is None


def test_scaling_none_applies_the_market_move_as_it_is() -> None:
    out = _set(scaling="none").scenario_set(["IBM"], betas={"IBM": 2.0})
    np.testing.assert_allclose(out.spot_shock, [[-0.2, 0.1]], rtol=1e-6)


def test_a_beta_never_takes_a_price_through_zero() -> None:
    out = _set().scenario_set(["X"], betas={"X": 40.0})
    assert (out.spot_shock > -1).all()
    assert out.spot_shock[0, 0] == pytest.approx(0.8**40 - 1, abs=1e-7)


def test_a_gap_names_scenario_and_underlying() -> None:
    only = StressScenario(label="ndx only", market=None, named={"NDX": Shock(-0.1)})
    s = _set(scenarios=(only,))
    assert s.scenario_set(["NDX"]).spot_shock[0, 0] == pytest.approx(-0.1)
    with pytest.raises(ValidationError, match="'ndx only' has no shock for underlying 'IBM'"):
        s.scenario_set(["NDX", "IBM"])


def test_a_beta_must_be_finite() -> None:
    with pytest.raises(ValidationError, match="beta of 'IBM' must be finite"):
        _set().scenario_set(["IBM"], betas={"IBM": float("nan")})


# --- betas -----------------------------------------------------------------------------------


def _history(n: int = 300) -> ReturnHistory:
    rng = np.random.default_rng(3)
    m = rng.normal(0.0, 0.01, n)
    dm = m - m.mean()
    noise = rng.normal(0.0, 0.01, n)
    noise -= noise.mean()
    noise -= (noise @ dm) / (dm @ dm) * dm  # orthogonal to the market's demeaned returns
    cols = np.column_stack([m, 1.5 * m + 0.001 + noise, -0.5 * m, 2.0 * m])
    dates = np.busday_offset("2020-01-01", np.arange(n), roll="forward").astype("datetime64[D]")
    return ReturnHistory(dates, ("SPX", "ABC", "HEDGE", "RUT"), cols)


def test_market_betas_are_the_ols_slopes() -> None:
    # ABC = 1.5 m + constant + noise orthogonal to m: its OLS slope is exactly 1.5
    b = market_betas(_history(), market="SPX", indices=("RUT",))
    assert b == pytest.approx({"SPX": 1.0, "ABC": 1.5, "HEDGE": -0.5, "RUT": 1.0}, abs=1e-12)


def test_market_betas_refusals() -> None:
    h = _history()
    with pytest.raises(ValidationError, match="no price history for underlying 'NOPE'"):
        market_betas(h, market="NOPE")
    with pytest.raises(ValidationError, match="10 days, a beta needs 20"):
        market_betas(h.until(h.dates[9]), market="SPX")


# --- the file form ----------------------------------------------------------------------------


def test_file_round_trip(tmp_path: Path) -> None:
    hostile = '<script>"quoted" \\ back ünï — 😀 =cmd|'
    s = _set(
        scenarios=(
            *_set().scenarios,
            StressScenario(label=hostile, market=None, named={"BRK.B": Shock(-0.3, 1.0),
                                                              hostile: Shock(0.5)}),
        ),
        description=hostile,
    )  # fmt: skip
    p = tmp_path / "s.toml"
    save_stress_set(s, p)
    back = load_stress_set(p)
    assert back == s
    assert back.fingerprint == s.fingerprint
    assert stress_set_toml(back) == p.read_text(encoding="utf-8")


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "set.toml"
    p.write_text(text, encoding="utf-8")
    return p


GOOD = """format = "marginflow-stress-set/1"
name = "h"
version = "1"

[[scenario]]
label = "crash"
spot_shock = -0.2
vol_shock = 0.5

[[scenario]]
label = "tech"
spot_shock = -0.1
[scenario.shocks]
NDX = { spot_shock = -0.3, vol_shock = 0.8 }
"""


def test_a_good_hand_written_file(tmp_path: Path) -> None:
    s = load_stress_set(_write(tmp_path, GOOD))
    assert s.scaling == "beta"
    assert s.scenarios[1].named["NDX"] == Shock(-0.3, 0.8)
    assert s.scenarios[1].market == Shock(-0.1, 0.0)  # vol_shock defaults to 0


@pytest.mark.parametrize(
    ("old", "new", "field", "line", "reason"),
    [
        ("spot_shock = -0.2", "spot_shock = -1.5", "spot_shock", 7,
         "scenario 'crash': must be > -1"),
        ("spot_shock = -0.2", "spot_shock = nan", "spot_shock", 7, "must be finite"),
        ("spot_shock = -0.2", "spot_shock = inf", "spot_shock", 7, "must be finite"),
        ("spot_shock = -0.2", "spot_shock = 1e400", "spot_shock", 7, "must be finite"),
        ("spot_shock = -0.2", 'spot_shock = "-0.2"', "spot_shock", 7, "must be a number"),
        ("spot_shock = -0.2", "spot_shock = true", "spot_shock", 7, "must be a number"),
        ("vol_shock = 0.5", "vol_shock = 11.0", "vol_shock", 8, "must be within (-1, 10]"),
        ("vol_shock = 0.5", "vol_shok = 0.5", "vol_shok", 8, "scenario 'crash': unknown key"),
        ('label = "crash"', 'label = ""', "label", 6, "must not be empty"),
        ('label = "crash"', 'label = "a\\u001b[2J"', "label", 6, "printable"),
        ('label = "crash"', "label = 3", "label", 6, "must be text"),
        ('label = "crash"', 'label = "tech"', "label", 11, "'tech' labels two scenarios"),
        ('label = "crash"', "", "label", 5, "scenario 1: is missing"),
        ("vol_shock = 0.5", "vol_shock = 0.5\nstart = 2008-10-15T10:00:00",
         "start", 9, "must be a date"),
        ("vol_shock = 0.5", "vol_shock = 0.5\nstart = 2008-10-15\nend = 2008-10-14",
         "end", 10, "is before start"),
        ("vol_shock = 0.5", "vol_shock = 0.5\nhorizon_days = 2.5", "horizon_days", 9,
         "must be a whole number"),
        ("vol_shock = 0.5", "vol_shock = 0.5\nhorizon_days = 0", "horizon_days", 9, "1..2520"),
        ("NDX = { spot_shock = -0.3, vol_shock = 0.8 }", "NDX = { spot_shock = -3.0 }",
         "shocks.NDX.spot_shock", 14, "scenario 'tech': must be > -1"),
        ("NDX = { spot_shock = -0.3, vol_shock = 0.8 }", "NDX = { vol_shock = 0.8 }",
         "shocks.NDX.spot_shock", 14, "is missing"),
        ("NDX = { spot_shock = -0.3, vol_shock = 0.8 }", "NDX = { spot = -0.3 }",
         "shocks.NDX.spot", 14, "unknown key"),
        ("NDX = { spot_shock = -0.3, vol_shock = 0.8 }", "NDX = -0.3", "shocks", 14,
         "'NDX' must be a table"),
        ("NDX = { spot_shock = -0.3, vol_shock = 0.8 }", '"*" = { spot_shock = -0.3 }',
         "shocks", 13, "market move"),
        ('version = "1"', 'version = "1 beta"', "version", 3, "must be letters"),
        ('name = "h"', 'name = "H"', "name", 2, "lower-case"),
        ('name = "h"', "", "name", None, "is missing"),
        ('format = "marginflow-stress-set/1"', 'format = "marginflow-stress-set/9"', "format",
         1, "must be 'marginflow-stress-set/1'"),
        ('version = "1"', 'version = "1"\nscaling = "sector"', "scaling", 4, "must be one of"),
        ('version = "1"', 'version = "1"\nextra = 1', "extra", 4, "unknown key"),
        ('version = "1"', 'version = "1"\n[params]\nx = nan', "params.x", 4, "must be finite"),
    ],
)  # fmt: skip
def test_hostile_files_are_refused_naming_file_line_and_field(
    tmp_path: Path, old: str, new: str, field: str, line: int | None, reason: str
) -> None:
    assert old in GOOD
    p = _write(tmp_path, GOOD.replace(old, new, 1))
    with pytest.raises(ValidationError) as exc:
        load_stress_set(p)
    text = str(exc.value)
    assert "\n" not in text
    assert exc.value.field == field
    at = str(p) if line is None else f"{p}:{line}:"
    assert text.startswith(f"{field}: {at}"), text
    assert reason in text, text


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "must be 'marginflow-stress-set/1'"),
        (b"format = \n", "not TOML"),
        (b'format = "marginflow-stress-set/1"\nname = "\xff"\n', "is not UTF-8"),
        (b'format = "marginflow-stress-set/1"\nname = "h"\nversion = "1"\n', "no [[scenario]]"),
        (b'format = "marginflow-stress-set/1"\nscenario = 1\n', "no [[scenario]]"),
        (b'format = "marginflow-stress-set/1"\nname = "h"\nversion = "1"\nscenario = [1]\n',
         "scenario 1: must be a table"),
        (b"a = " + b"[" * 100_000 + b"]" * 100_000, "not TOML"),
    ],
)  # fmt: skip
def test_files_that_are_not_stress_sets(tmp_path: Path, content: bytes, reason: str) -> None:
    p = tmp_path / "x.toml"
    p.write_bytes(content)
    with pytest.raises(ValidationError) as exc:
        load_stress_set(p)
    assert "\n" not in str(exc.value)
    assert str(p) in str(exc.value)
    assert reason in str(exc.value)


def test_an_inline_array_of_scenarios_reads_but_names_no_line(tmp_path: Path) -> None:
    text = (
        'format = "marginflow-stress-set/1"\nname = "h"\nversion = "1"\n'
        'scenario = [{ label = "a", spot_shock = -0.1 }, { label = "b", spot_shock = -2.0 }]\n'
    )
    with pytest.raises(ValidationError, match=r"^spot_shock: \S+set\.toml: scenario 'b': must"):
        load_stress_set(_write(tmp_path, text))


def test_a_scenario_that_leaves_a_book_underlying_unmoved_is_refused_at_its_line(
    tmp_path: Path,
) -> None:
    # 'tech' names NDX only once its market move is gone: SPX and IBM get no move
    p = _write(tmp_path, GOOD.replace("spot_shock = -0.1\n", ""))
    assert load_stress_set(p).gap(["SPX", "NDX", "IBM"]) == (1, "SPX", 2)
    assert load_stress_set(p, underlyings=["NDX"]).labels == ("crash", "tech")
    with pytest.raises(ValidationError) as exc:
        load_stress_set(p, underlyings=["SPX", "NDX", "IBM"])
    assert str(exc.value) == (
        f"shocks: {p}:12: scenario 'tech': moves 'SPX' of the book by nothing: no market "
        "move, no shock of its own (2 such gaps in the set)"
    )  # line 12: its [scenario.shocks]


def test_a_value_of_the_wrong_type_is_located_once(tmp_path: Path) -> None:
    p = _write(tmp_path, GOOD.replace('version = "1"', "version = 1"))
    with pytest.raises(ValidationError) as exc:
        load_stress_set(p)
    assert str(exc.value) == f"version: {p}:3: must be text, got 1"


@pytest.mark.parametrize(
    ("key", "field"),
    [("k" * 100_000, repr("k" * 100_000)[:80]), ('""', "''"), ('" x"', "' x'"),
     ('"\\u001b[2J"', "'\\x1b[2J'")],
)  # fmt: skip
def test_keys_named_as_fields_are_quoted_and_cut(tmp_path: Path, key: str, field: str) -> None:
    p = _write(tmp_path, GOOD.replace('version = "1"', f'version = "1"\n{key} = 1'))
    with pytest.raises(ValidationError) as exc:
        load_stress_set(p)
    assert exc.value.field == field
    assert len(str(exc.value)) < 300


def test_missing_and_special_files(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="no such file"):
        load_stress_set(tmp_path / "none.toml")
    with pytest.raises(ValidationError, match="is a directory"):
        load_stress_set(tmp_path)


# --- hypothetical sets from the user scenario file --------------------------------------------

CSV = (
    "scenario,underlying,spot_shock,vol_shock,group\n"
    "crash,*,-0.20,0.60,stressed\n"
    "crash,SPX,-0.15,0.80,\n"
    "rally,*,0.10,,\n"
    "tech,NDX,-0.30,0.50,\n"
    "tech,AAPL,-0.25,0.40,\n"
)


def test_hypothetical_set_from_the_scenario_file(tmp_path: Path) -> None:
    p = tmp_path / "shocks.csv"
    p.write_text(CSV, encoding="utf-8")
    s = stress_set_from_scenario_file(p, name="hypo", version="2024.1", horizon_days=2)
    assert s.scaling == "none"
    assert s.labels == ("crash", "rally", "tech")
    assert s.scenarios[0].market == Shock(-0.2, 0.6)
    assert dict(s.scenarios[0].named) == {"SPX": Shock(-0.15, 0.8)}
    assert s.scenarios[2].market is None
    # materialised, it is what the CLI's reader makes of the same file for the same book
    book = ["SPX", "IBM"]
    ours = _set(scenarios=s.scenarios[:2], scaling="none").scenario_set(book, betas={"IBM": 2})
    two = tmp_path / "two.csv"
    two.write_text("".join(CSV.splitlines(keepends=True)[:4]), encoding="utf-8")
    theirs = read_scenario_file(two, underlyings=book).scenario_set(
        underlyings=book, horizon_days=2
    )
    np.testing.assert_array_equal(ours.spot_shock, theirs.spot_shock)
    np.testing.assert_array_equal(ours.vol_shock, theirs.vol_shock)
    # the tech scenario names only NDX and AAPL: a book holding IBM has a gap
    with pytest.raises(ValidationError, match="'tech' has no shock for underlying 'SPX'"):
        s.scenario_set(book)
    np.testing.assert_allclose(s.scenario_set(["NDX"]).spot_shock, [[-0.2, 0.1, -0.3]], rtol=1e-6)


def test_a_hypothetical_scenario_that_leaves_a_book_underlying_out_is_refused(
    tmp_path: Path,
) -> None:
    p = tmp_path / "shocks.csv"
    p.write_text(CSV, encoding="utf-8")
    assert stress_set_from_scenario_file(p, name="h", version="1", underlyings=["NDX"])
    with pytest.raises(ValidationError) as exc:
        stress_set_from_scenario_file(p, name="h", version="1", underlyings=["SPX", "NDX"])
    assert str(exc.value) == (
        f"underlying: {p}:5: scenario 'tech' has no row for 'SPX' of the book and no '*' row"
    )  # line 5: the first row of 'tech'


@pytest.mark.parametrize(
    ("row", "field", "line", "reason"),
    [
        ("crash,IBM,-1.5,0,\n", "spot_shock", 7, "must be > -1"),
        ("crash,SPX,-0.1,0,\n", "underlying", 7, "duplicate shock for scenario 'crash'"),
        ("odd,SPX,x,0,\n", "spot_shock", 7, "is not a number"),
        ("\x1b[2J,SPX,-0.1,0,\n", "scenario", 7, "printable"),
        ("ok,\u202eSPX,-0.1,0,\n", "underlying", 7, "printable"),
    ],
)
def test_a_rejected_row_refuses_the_hypothetical_set(
    tmp_path: Path, row: str, field: str, line: int, reason: str
) -> None:
    p = tmp_path / "shocks.csv"
    p.write_text(CSV + row, encoding="utf-8")
    with pytest.raises(ValidationError) as exc:
        stress_set_from_scenario_file(p, name="hypo", version="1")
    assert exc.value.field == field
    assert str(exc.value).startswith(f"{field}: {p}:{line}: ")
    assert reason in str(exc.value)
