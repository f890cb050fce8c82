"""ISDA's published SIMM unit-test cases (versions 2.2 to 2.5, 10-day and 1-day).

Each case is a portfolio of the reference CRIF (``PortfolioID`` = case name); the call-side
SIMM, rounded half up to a whole dollar, must equal ISDA's expected total exactly. The whole
file is computed once per version and horizon; each case is its own test so a failure names
the case and the element it exercises.
"""

from __future__ import annotations

import csv
import functools
from decimal import ROUND_HALF_UP, Decimal

import pytest

from marginflow.io.crif import read_crif
from marginflow.simm.calculator import run_simm
from marginflow.simm.calibration import load_calibration
from marginflow.simm.fx import implied_from_crif
from tests.reference import reference_dir, reference_path

VERSIONS = (("2.2", 10), ("2.3", 10), ("2.3", 1), ("2.4", 10), ("2.4", 1), ("2.5", 10), ("2.5", 1))


def _cases() -> list[object]:
    params: list[object] = []
    for version, mpor in VERSIONS:
        path = reference_dir() / "simm-unit-tests" / f"v{version}" / f"tests_{mpor}d.csv"
        if not path.exists():
            params.append(pytest.param(version, mpor, "", 0, "", id=f"{version}-{mpor}d"))
            continue
        with path.open(newline="") as handle:
            for row in csv.DictReader(handle):
                params.append(
                    pytest.param(
                        version,
                        mpor,
                        row["Test"],
                        int(row["ExpectedTotal"]),
                        row["ElementTested"],
                        id=f"{version}-{mpor}d-{row['Test']}",
                    )
                )
    return params


@functools.cache
def _call_side_margins(version: str, mpor: int) -> dict[str, float]:
    path = reference_path(f"simm-unit-tests/v{version}/crif_{mpor}d.csv")
    calibration = load_calibration(version, mpor)
    load = read_crif(path, calibration=calibration)
    assert not load.failures, load.failures[:3]
    run = run_simm(load.crif, calibration=calibration, fx=implied_from_crif(load.crif))
    return {run.portfolios[u.unit.portfolio]: u.margin for u in run.units if u.unit.side == "call"}


def _dollars(value: float) -> int:
    return int(Decimal(repr(float(value))).quantize(Decimal(1), rounding=ROUND_HALF_UP))


@pytest.mark.parametrize(("version", "mpor", "case", "expected", "element"), _cases())
def test_isda_case(version: str, mpor: int, case: str, expected: int, element: str) -> None:
    # Exact to the dollar (the published figures are whole dollars, rounded half up).
    margins = _call_side_margins(version, mpor)
    assert _dollars(margins.get(case, 0.0)) == expected, f"{case}: {element}"
