"""The user scenario file: shocks per (scenario, underlying).

Columns (header line required, any order, extra columns ignored):

================  ==========================================================================
``scenario``      scenario name (rows with the same name form one scenario)
``underlying``    underlying id, or ``*`` for every underlying the scenario does not name
``spot_shock``    relative spot move over the horizon: -0.2 is a 20% fall (> -1, <= 10)
``vol_shock``     optional: relative move of the implied-vol smile: 0.5 is +50% (> -1, <= 10;
                  default 0)
``group``         optional: ``current`` (default) or ``stressed``
================  ==========================================================================

A scenario is the file's rows of one name, taken together, so a row is never dropped on its
own: a row that is rejected (a bad number, a second shock for the same underlying, an
underlying the book does not have) refuses its whole scenario, and each of the scenario's
other rows is rejected naming the line that refused it. Otherwise a rejected ``SPX`` row
would leave ``SPX`` to the ``*`` row, and a margin would be computed on a move nobody meant.
A file left with no scenario is an error.

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

from marginflow.core.errors import (
    MSG_OUT_OF_BOUNDS,
    MSG_SCENARIO_NONE,
    MSG_SCENARIO_REFUSED,
    MSG_SCENARIO_UNKNOWN_UNDERLYING,
    RowFailure,
    ValidationError,
)
from marginflow.io.book import read_table
from marginflow.io.bounds import SHOCK_MAX
from marginflow.io.csv_rows import Column, FieldError, ParsedRows, number, one_of
from marginflow.io.source import MAX_CONFIG_BYTES
from marginflow.scenarios.scenario_set import ScenarioGroup, ScenarioSet
from marginflow.scenarios.user_set import WILDCARD, ShockRow, scenario_set_from_rows


def _shock(text: str) -> float:
    value = number(text)
    if value <= -1.0:
        raise FieldError(f"must be > -1 (a relative move), got {text!r}")
    if value > SHOCK_MAX:
        interval = f"(-1, {SHOCK_MAX:g}]"
        raise FieldError(
            MSG_OUT_OF_BOUNDS.format(interval=interval, what="a relative move", value=text)
        )
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
    lines: tuple[int, ...] = ()
    """The file line of each of ``rows``."""

    def scenario_set(self, *, underlyings: Sequence[str], horizon_days: int) -> ScenarioSet:
        """The scenarios over ``underlyings`` (raises naming the first gap in coverage)."""
        return scenario_set_from_rows(self.rows, underlyings=underlyings, horizon_days=horizon_days)


def read_scenario_file(path: Path, *, underlyings: Sequence[str] | None) -> ScenarioFile:
    """The shocks of ``path`` for a book of ``underlyings``: every row is kept, or rejected
    with its scenario (see the module docstring); rows in = rows kept + rows rejected.

    ``underlyings=None`` reads the file without a book (a stored stress set, margined later
    on whatever book it is run against): any underlying name is kept."""
    parsed = read_table(path, COLUMNS, max_bytes=MAX_CONFIG_BYTES)
    failures = list(parsed.failures)
    known = None if underlyings is None else set(underlyings) | {WILDCARD}
    seen: dict[tuple[str, str], int] = {}
    good: list[int] = []
    v = parsed.values
    for i, line in enumerate(parsed.lines):
        key = (v["scenario"][i], v["underlying"][i])
        first = seen.setdefault(key, line)
        if first != line:
            reason = (
                f"duplicate shock for scenario {key[0]!r}, underlying {key[1]!r} "
                f"(first on line {first})"
            )
            failures.append(_failure(path, parsed, i, "underlying", reason))
        elif known is not None and key[1] not in known:
            reason = MSG_SCENARIO_UNKNOWN_UNDERLYING.format(value=key[1])
            failures.append(_failure(path, parsed, i, "underlying", reason))
        else:
            good.append(i)
    refused = _refused_scenarios(path, parsed, failures)
    rows: list[ShockRow] = []
    lines: list[int] = []
    causes = list(failures)  # the rows refused for what they hold, not for their scenario
    for i in good:
        name = v["scenario"][i]
        if name in refused:
            reason = MSG_SCENARIO_REFUSED.format(name=name, line=refused[name])
            failures.append(_failure(path, parsed, i, "scenario", reason))
            continue
        group = ScenarioGroup.STRESSED if v["group"][i] == "stressed" else ScenarioGroup.CURRENT
        rows.append(
            ShockRow(name, v["underlying"][i], v["spot_shock"][i], v["vol_shock"][i], group)
        )
        lines.append(parsed.lines[i])
    if not rows:
        f0 = min(causes, key=lambda f: f.line, default=None)
        why = f" (line {f0.line}: {f0.field}: {f0.reason})" if f0 else ""
        raise ValidationError("scenarios", f"{path} {MSG_SCENARIO_NONE}{why}")
    return ScenarioFile(tuple(rows), sorted(failures, key=lambda f: f.line), tuple(lines))


def _refused_scenarios(
    path: Path, parsed: ParsedRows, failures: list[RowFailure]
) -> dict[str, int]:
    """Scenario name -> the first line of it that was rejected. A rejected row whose scenario
    cannot be told (not CSV, or no name) could belong to any of them: the file is refused."""
    refused: dict[str, int] = {}
    kept = {line: i for i, line in enumerate(parsed.lines)}
    for f in sorted(failures, key=lambda f: f.line):
        if f.line in kept:
            name = parsed.values["scenario"][kept[f.line]]
        else:
            name = parsed.rejected.get(f.line, {}).get("scenario", "").strip()
        if not name:
            raise ValidationError(
                "scenario",
                f"{path}:{f.line}: the row is rejected ({f.field}: {f.reason}) and names no "
                "scenario, so no scenario of the file can be trusted",
            )
        refused.setdefault(name, f.line)
    return refused


def _failure(path: Path, parsed: ParsedRows, i: int, field: str, reason: str) -> RowFailure:
    return RowFailure(str(path), parsed.lines[i], field, reason, ",".join(parsed.raw[i].values()))
