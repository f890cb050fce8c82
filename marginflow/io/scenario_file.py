"""The user scenario file: shocks per (scenario, underlying).

Columns (header line required, any order, extra columns ignored):

================  ==========================================================================
``scenario``      scenario name (rows with the same name form one scenario)
``underlying``    underlying id, or ``*`` for every underlying the scenario does not name
``spot_shock``    relative spot move over the horizon: -0.2 is a 20% fall (> -1)
``vol_shock``     optional: relative move of the implied-vol smile: 0.5 is +50% (> -1; default 0)
``group``         optional: ``current`` (default) or ``stressed``
================  ==========================================================================

Example::

    scenario,underlying,spot_shock,vol_shock
    crash,*,-0.20,0.60
    crash,SPX,-0.15,0.80
    rally,*,0.10,-0.20
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from marginflow.core.errors import RowFailure
from marginflow.io.book import read_table
from marginflow.io.csv_rows import Column, FieldError, number, one_of
from marginflow.scenarios.scenario_set import ScenarioGroup, ScenarioSet
from marginflow.scenarios.user_set import ShockRow, scenario_set_from_rows


def _shock(text: str) -> float:
    value = number(text)
    if value <= -1.0:
        raise FieldError(f"must be > -1 (a relative move), got {text!r}")
    return value


def _name(text: str) -> str:
    return text


COLUMNS = (
    Column("scenario", _name),
    Column("underlying", _name),
    Column("spot_shock", _shock),
    Column("vol_shock", _shock, required=False, default="0"),
    Column("group", one_of("current", "stressed"), required=False, default="current"),
)


@dataclass(frozen=True, slots=True)
class ScenarioFile:
    rows: tuple[ShockRow, ...]
    failures: list[RowFailure]

    def scenario_set(self, *, underlyings: Sequence[str], horizon_days: int) -> ScenarioSet:
        """The scenarios over ``underlyings`` (raises naming the first gap in coverage)."""
        return scenario_set_from_rows(self.rows, underlyings=underlyings, horizon_days=horizon_days)


def read_scenario_file(path: Path) -> ScenarioFile:
    parsed = read_table(path, COLUMNS)
    failures = list(parsed.failures)
    seen: dict[tuple[str, str], int] = {}
    rows: list[ShockRow] = []
    v = parsed.values
    for i, line in enumerate(parsed.lines):
        key = (v["scenario"][i], v["underlying"][i])
        first = seen.setdefault(key, line)
        if first != line:
            failures.append(
                RowFailure(
                    str(path),
                    line,
                    "underlying",
                    f"duplicate shock for scenario {key[0]!r}, underlying {key[1]!r} "
                    f"(first on line {first})",
                    ",".join(parsed.raw[i].values()),
                )
            )
            continue
        group = ScenarioGroup.STRESSED if v["group"][i] == "stressed" else ScenarioGroup.CURRENT
        rows.append(ShockRow(key[0], key[1], v["spot_shock"][i], v["vol_shock"][i], group))
    return ScenarioFile(tuple(rows), sorted(failures, key=lambda f: f.line))
