"""Stress scenario sets: named, versioned definitions of shocks, and the
:class:`~marginflow.scenarios.scenario_set.ScenarioSet` the engine revalues them as.

Conventions
-----------
Shocks follow :mod:`marginflow.scenarios.scenario_set`: a spot shock is the relative (simple)
move over the scenario's window (-0.2 is a 20% fall), a vol shock the relative move of the
whole implied-vol smile (0.5: every implied vol times 1.5). Both lie in (-1, 10], the bounds
of the user scenario file (:data:`marginflow.io.bounds.SHOCK_MAX`).

A :class:`StressScenario` holds

* ``market``: the market-wide move, for every underlying the scenario does not name;
* ``named``: the moves of particular underlyings (an index's own move over the window, a
  user's shock to one name), which win over the market move.

Materialising a set over a book's underlyings (:meth:`StressSet.scenario_set`):

* scaling ``"beta"`` (the historical and published sets): an underlying the scenario does
  not name moves with the market by its beta, in log returns as the factor model of the
  returns has it (:mod:`marginflow.scenarios.factors`): ``1 + spot = (1 + market) ** beta``.
  A beta of 2 on a 20% fall is a 36% fall, and no beta takes a price through zero. Betas
  are the caller's (:func:`market_betas` estimates them from a book's history); an
  underlying without one, and every underlying when none are given, moves by beta 1, and
  index underlyings take the index move (beta 1). The vol shock is the market's for every
  underlying: one implied-vol move market-wide (the VIX's or its proxy), not one per name.
* scaling ``"none"`` (a hypothetical set from a user scenario file): the market move applies
  as it is, as the file's ``*`` row does for ``marginflow margin --scenarios``.

A named underlying the book does not hold is left out (one stored set is run against many
books); an underlying the book holds that a scenario neither names nor covers with a market
move is an error naming both, never a silent zero move.

Fingerprint: the SHA-256 of the content (format, scaling, params and every field of every
scenario) as canonical JSON (:func:`marginflow.core.fingerprint.fingerprint`). Name, version
and description are labels, not content: two sets that shock alike share a fingerprint, and
a set whose content changed under the same name and version is told apart by it.

File form: TOML, read through the input checks of :mod:`marginflow.io.source`::

    format = "marginflow-stress-set/1"
    name = "published"
    version = "1"
    description = "One-day S&P 500 shocks of margin-worked-examples.md §5"
    scaling = "beta"              # or "none"

    [params]                      # provenance (data, calibration); content, fingerprinted

    [[scenario]]
    label = "pub:1987-10-19"
    spot_shock = -0.205           # the market move; leave out both to name underlyings only
    vol_shock = 1.16
    start = 1987-10-19            # first day of the move (the close before it anchors it)
    end = 1987-10-19              # last day of the move
    horizon_days = 1              # trading days the move spans
    source = "..."
    vol_source = "..."
    note = "..."

    [scenario.shocks]             # per-underlying moves, winning over the market's
    NDX = { spot_shock = -0.085, vol_shock = 0.3 }

A value the reader refuses is one :class:`~marginflow.core.errors.ValidationError` naming the
field, then the file and line: ``spot_shock: x.toml:12: scenario 'crash': must be > -1 (a
relative move), got -1.5``. Unknown keys are refused, not ignored (a misspelt ``vol_shok``
would otherwise be a zero vol move).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal, get_args

import numpy as np

from marginflow.core.batch import FloatArray
from marginflow.core.errors import MSG_OUT_OF_BOUNDS, ValidationError
from marginflow.core.fingerprint import fingerprint
from marginflow.core.history import ReturnHistory
from marginflow.io.bounds import SHOCK_MAX
from marginflow.io.scenario_file import read_scenario_file
from marginflow.io.source import MAX_CONFIG_BYTES, parse_toml, read_input_text
from marginflow.scenarios.scenario_set import ScenarioGroup, ScenarioSet
from marginflow.scenarios.user_set import WILDCARD

FORMAT = "marginflow-stress-set/1"
Scaling = Literal["beta", "none"]
SCALINGS: tuple[str, ...] = get_args(Scaling)

MAX_SCENARIOS = 100_000
"""Most scenarios of one set: far above any stress library, and a bound on what one file
can make the engine revalue."""
MAX_HORIZON_DAYS = 2520
"""Longest window of one scenario, in trading days (ten years, the APC floor's look-back)."""
MIN_BETA_DAYS = 20
"""Fewest daily returns a beta is estimated from (a month)."""
MAX_LABEL = 200
MAX_TEXT = 2000
MAX_PARAMS_DEPTH = 4
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
_VERSION = re.compile(r"[0-9A-Za-z][0-9A-Za-z.+_-]{0,31}")


def _shock_value(name: str, value: float) -> float:
    if not math.isfinite(value):
        raise ValidationError(name, f"must be finite, got {value!r}")
    if value <= -1.0:
        raise ValidationError(name, f"must be > -1 (a relative move), got {value!r}")
    if value > SHOCK_MAX:
        interval = f"(-1, {SHOCK_MAX:g}]"
        raise ValidationError(
            name, MSG_OUT_OF_BOUNDS.format(interval=interval, what="a relative move", value=value)
        )
    return value


def _check_text(name: str, value: str, *, limit: int, empty: bool = True) -> None:
    """User text is kept as data: one printable line (no control, format or bidi
    characters a terminal or a report would act on), of bounded length."""
    if not empty and not value.strip():
        raise ValidationError(name, "must not be empty")
    if len(value) > limit:
        raise ValidationError(name, f"is {len(value)} characters, more than {limit}")
    if not value.isprintable():
        raise ValidationError(name, f"must be printable text on one line, got {value!r:.80}")
    if value != value.strip():
        raise ValidationError(name, f"has blanks at its start or end: {value!r:.80}")


@dataclass(frozen=True, slots=True)
class Shock:
    """One relative spot move and one relative implied-vol move (see module docstring)."""

    spot: float
    vol: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "spot", _shock_value("spot_shock", float(self.spot)))
        object.__setattr__(self, "vol", _shock_value("vol_shock", float(self.vol)))

    def document(self) -> dict[str, float]:
        return {"spot_shock": self.spot, "vol_shock": self.vol}


@dataclass(frozen=True, slots=True)
class StressScenario:
    """One stress scenario: a market-wide move and/or moves of named underlyings over the
    window ``start``..``end`` (the first and last trading day of the move; the close before
    ``start`` anchors it), ``horizon_days`` trading days long.

    ``source`` says where the spot move comes from, ``vol_source`` where the vol move does
    (the VIX, or the proxy used), ``note`` anything a reader needs (e.g. the move's rank)."""

    label: str
    market: Shock | None
    named: Mapping[str, Shock] = field(default_factory=dict, hash=False)
    start: dt.date | None = None
    end: dt.date | None = None
    horizon_days: int = 1
    source: str = ""
    vol_source: str = ""
    note: str = ""

    def __post_init__(self) -> None:
        _check_text("label", self.label, limit=MAX_LABEL, empty=False)
        for name in ("source", "vol_source", "note"):
            _check_text(name, getattr(self, name), limit=MAX_TEXT)
        for u in self.named:
            _check_text("shocks", u, limit=MAX_LABEL, empty=False)
            if u == WILDCARD:
                raise ValidationError(
                    "shocks", f"{WILDCARD!r} is the market move: give it as spot_shock"
                )
        if self.market is None and not self.named:
            raise ValidationError(
                "spot_shock", "the scenario moves nothing (no market move, no named shock)"
            )
        if (self.start is None) != (self.end is None):
            raise ValidationError(
                "end" if self.end is None else "start", "give both start and end, or neither"
            )
        if self.start is not None and self.end is not None and self.start > self.end:
            raise ValidationError("end", f"{self.end} is before start {self.start}")
        if not 1 <= self.horizon_days <= MAX_HORIZON_DAYS:
            raise ValidationError(
                "horizon_days",
                f"must be in 1..{MAX_HORIZON_DAYS} trading days, got {self.horizon_days!r}",
            )
        object.__setattr__(self, "named", MappingProxyType(dict(self.named)))

    def document(self) -> dict[str, Any]:
        """The scenario as plain data (the file's keys; dates as dates, None where absent),
        for the fingerprint and the file."""
        doc: dict[str, Any] = {"label": self.label}
        if self.market is not None:
            doc.update(self.market.document())
        doc.update(
            start=self.start,
            end=self.end,
            horizon_days=self.horizon_days,
            source=self.source,
            vol_source=self.vol_source,
            note=self.note,
            shocks={u: s.document() for u, s in self.named.items()},
        )
        return doc


@dataclass(frozen=True, slots=True)
class StressSet:
    """A named, versioned stress scenario set (see module docstring).

    Attributes
    ----------
    name, version : str
        What a result cites, with :attr:`fingerprint`; ``name`` is lower-case letters,
        digits, ``-`` and ``_`` (it names the set's file), ``version`` letters, digits and
        ``.+-_``.
    scenarios : tuple[StressScenario, ...]
        At least one, labels unique.
    scaling : ``"beta"`` or ``"none"``
        How the market move reaches an underlying the scenario does not name.
    description : str
        One line for people.
    params : Mapping[str, Any]
        Provenance: the data and the calibration the shocks came from (text, numbers,
        dates, lists and tables of them).
    fingerprint : str
        SHA-256 (hex) of the content; derived, not given.
    """

    name: str
    version: str
    scenarios: tuple[StressScenario, ...]
    scaling: Scaling = "beta"
    description: str = ""
    params: Mapping[str, Any] = field(default_factory=dict, hash=False)
    fingerprint: str = field(init=False)

    def __post_init__(self) -> None:
        if not (isinstance(self.name, str) and _NAME.fullmatch(self.name)):
            raise ValidationError(
                "name",
                "must be lower-case letters, digits, '-' or '_' (at most 64), "
                f"got {self.name!r:.80}",
            )
        if not (isinstance(self.version, str) and _VERSION.fullmatch(self.version)):
            raise ValidationError(
                "version",
                "must be letters, digits, '.', '+', '-' or '_' (at most 32), "
                f"got {self.version!r:.80}",
            )
        if self.scaling not in SCALINGS:
            raise ValidationError(
                "scaling", f"must be one of {', '.join(SCALINGS)}, got {self.scaling!r:.80}"
            )
        _check_text("description", self.description, limit=MAX_TEXT)
        if not self.scenarios:
            raise ValidationError("scenario", "the set has no scenarios")
        if len(self.scenarios) > MAX_SCENARIOS:
            raise ValidationError(
                "scenario", f"{len(self.scenarios):,} scenarios, more than {MAX_SCENARIOS:,}"
            )
        seen: set[str] = set()
        for s in self.scenarios:
            if s.label in seen:
                raise ValidationError("label", f"{s.label!r} labels two scenarios")
            seen.add(s.label)
        _check_params(self.params, "params", 0)
        object.__setattr__(self, "scenarios", tuple(self.scenarios))
        object.__setattr__(self, "params", MappingProxyType(dict(self.params)))
        object.__setattr__(self, "fingerprint", fingerprint(self.content()))

    def content(self) -> dict[str, Any]:
        """What the fingerprint is of: everything but the name, version and description."""
        return {
            "format": FORMAT,
            "scaling": self.scaling,
            "params": _plain(self.params),
            "scenarios": [s.document() for s in self.scenarios],
        }

    @property
    def identity(self) -> dict[str, str]:
        """What a result names its stress set by: name, version and fingerprint."""
        return {"name": self.name, "version": self.version, "fingerprint": self.fingerprint}

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(s.label for s in self.scenarios)

    def scenario_set(
        self,
        underlyings: Sequence[str],
        *,
        betas: Mapping[str, float] | None = None,
        horizon_days: int | None = None,
    ) -> ScenarioSet:
        """The scenarios over ``underlyings`` (a book's risk factors, in its order).

        Parameters
        ----------
        underlyings : sequence of str
            Rows of the result, in this order.
        betas : mapping, optional
            Beta to the market of each underlying (scaling ``"beta"`` only; missing: 1).
        horizon_days : int, optional
            The result's ``horizon_days``; default the longest window of the set. The shocks
            themselves are the scenarios' own, whatever their windows.

        Returns
        -------
        ScenarioSet
            float32[U, S] shocks, one scenario per stress scenario in the set's order,
            group ``CURRENT`` (equally weighted), source ``"stress"``, ``params`` naming
            the set (name, version, fingerprint) and the betas used.

        Raises
        ------
        ValidationError
            An underlying a scenario gives no move (naming both), a beta not finite.
        """
        u_ids = tuple(underlyings)
        n_u, n_s = len(u_ids), len(self.scenarios)
        beta = self._betas(u_ids, betas)
        market = [s.market for s in self.scenarios]
        market_spot = np.array([np.nan if m is None else m.spot for m in market])
        market_vol = np.array([np.nan if m is None else m.vol for m in market])
        # 1 + spot = (1 + market) ** beta, in logs: no beta takes a price through zero
        scale = np.ones(n_u) if beta is None else beta
        spot = np.expm1(scale[:, None] * np.log1p(market_spot)[None, :])
        vol = np.repeat(market_vol[None, :], n_u, axis=0)
        row = {u: i for i, u in enumerate(u_ids)}
        for j, s in enumerate(self.scenarios):
            for u, shock in s.named.items():
                i = row.get(u)
                if i is not None:
                    spot[i, j], vol[i, j] = shock.spot, shock.vol
        gaps = np.argwhere(np.isnan(spot))
        if gaps.size:
            i, j = (int(k) for k in gaps[0])
            raise ValidationError(
                "scenarios",
                f"stress set {self.name!r} version {self.version}: scenario "
                f"{self.labels[j]!r} has no shock for underlying {u_ids[i]!r} and no market "
                f"move ({len(gaps)} gaps in all)",
            )
        betas_used = None
        if beta is not None:
            betas_used = fingerprint({"underlyings": list(u_ids), "betas": beta.tolist()})
        return ScenarioSet(
            underlyings=u_ids,
            spot_shock=spot.astype(np.float32),
            vol_shock=vol.astype(np.float32),
            labels=self.labels,
            group=np.full(n_s, int(ScenarioGroup.CURRENT), dtype=np.int8),
            horizon_days=horizon_days or max(s.horizon_days for s in self.scenarios),
            source="stress",
            params={
                "stress_set": self.name,
                "version": self.version,
                "fingerprint": self.fingerprint,
                "scaling": self.scaling,
                "betas": betas_used,
                "n_scenarios": n_s,
            },
        )

    def gap(self, underlyings: Sequence[str]) -> tuple[int, str, int] | None:
        """The first scenario that moves one of ``underlyings`` by nothing (no market move,
        no shock of its own): its index, that underlying and the number of such gaps in
        the set; None when every scenario covers every underlying."""
        first: tuple[int, str] | None = None
        count = 0
        for k, s in enumerate(self.scenarios):
            if s.market is None:
                missing = [u for u in underlyings if u not in s.named]
                count += len(missing)
                if missing and first is None:
                    first = (k, missing[0])
        return None if first is None else (*first, count)

    def _betas(
        self, u_ids: tuple[str, ...], betas: Mapping[str, float] | None
    ) -> FloatArray | None:
        """Each underlying's beta (None: all 1, as when the scaling is ``"none"``)."""
        if self.scaling == "none" or betas is None:
            return None
        out = np.array([float(betas.get(u, 1.0)) for u in u_ids], dtype=np.float64)
        bad = np.flatnonzero(~np.isfinite(out))
        if bad.size:
            u = u_ids[int(bad[0])]
            raise ValidationError("betas", f"beta of {u!r} must be finite, got {betas[u]!r}")
        return out


def market_betas(
    history: ReturnHistory,
    *,
    market: str,
    indices: Collection[str] = (),
    lookback_days: int = 1250,
) -> dict[str, float]:
    """Beta of each underlying of ``history`` to ``market``, for scaling ``"beta"``.

    The ordinary least-squares slope (with intercept) of the underlying's daily log returns
    on the market's over the last ``lookback_days`` days: ``cov(r_u, r_m) / var(r_m)``, the
    CAPM beta. 1250 days (five years) is the margin look-back of the FHS scenarios. The
    market itself and the ``indices`` get exactly 1: an index takes the index move.

    Raises :class:`ValidationError` if ``market`` has no history, there are fewer than
    :data:`MIN_BETA_DAYS` days, or the market did not move.
    """
    if lookback_days < MIN_BETA_DAYS:
        raise ValidationError("lookback_days", f"must be >= {MIN_BETA_DAYS}, got {lookback_days}")
    m = history.select([market]).log_returns[-lookback_days:, 0]
    r = history.log_returns[-lookback_days:]
    if m.size < MIN_BETA_DAYS:
        raise ValidationError(
            "history", f"{history.source}: {m.size} days, a beta needs {MIN_BETA_DAYS}"
        )
    dm = m - m.mean()
    var = float(dm @ dm)
    if var == 0.0:
        raise ValidationError("history", f"{history.source}: {market!r} never moves")
    beta = (dm @ (r - r.mean(axis=0))) / var
    unit = set(indices) | {market}
    return {
        u: 1.0 if u in unit else float(b) for u, b in zip(history.underlyings, beta, strict=True)
    }


def _check_params(value: Any, where: str, depth: int) -> None:
    """Provenance holds text, numbers, booleans, dates and lists and tables of them, so it
    writes to TOML, fingerprints, and carries into a result's JSON as it is."""
    if depth > MAX_PARAMS_DEPTH:
        raise ValidationError(where, f"nested more than {MAX_PARAMS_DEPTH} deep")
    if isinstance(value, Mapping):
        for k, v in value.items():
            if not isinstance(k, str):
                raise ValidationError(where, f"key {k!r:.80} must be text")
            _check_text(where, k, limit=MAX_LABEL, empty=False)
            _check_params(v, f"{where}.{k}", depth + 1)
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            _check_params(v, f"{where}[{i}]", depth + 1)
    elif isinstance(value, str):
        _check_text(where, value, limit=MAX_TEXT)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValidationError(where, f"must be finite, got {value!r}")
    elif isinstance(value, bool | int):
        if isinstance(value, int) and abs(value) >= 2**63:
            raise ValidationError(where, f"must be a 64-bit integer, got {value!r:.80}")
    elif type(value) is not dt.date:
        raise ValidationError(
            where,
            f"must be text, a number, true/false, a date, a list or a table, got {value!r:.80}",
        )


def _plain(value: Any) -> Any:
    """``value`` with mappings as dicts, tuples as lists and dates as ISO text (canonical)."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


# --- files -------------------------------------------------------------------------------

_TOP_KEYS = ("format", "name", "version", "description", "scaling", "params", "scenario")
_SCENARIO_KEYS = (
    "label",
    "spot_shock",
    "vol_shock",
    "start",
    "end",
    "horizon_days",
    "source",
    "vol_source",
    "note",
    "shocks",
)
_SHOCK_KEYS = ("spot_shock", "vol_shock")
_SCENARIO_HEADER = re.compile(r"[ \t]*\[\[[ \t]*scenario[ \t]*\]\][ \t]*(#.*)?")


def save_stress_set(stress: StressSet, path: Path) -> None:
    """Write ``stress`` to ``path`` in the file form (UTF-8, ``\\n`` line ends)."""
    path.write_text(stress_set_toml(stress), encoding="utf-8", newline="\n")


def stress_set_toml(stress: StressSet) -> str:
    """The file form of ``stress``; :func:`load_stress_set` reads back an equal set."""
    out = [
        f"format = {_toml(FORMAT)}",
        f"name = {_toml(stress.name)}",
        f"version = {_toml(stress.version)}",
        f"description = {_toml(stress.description)}",
        f"scaling = {_toml(stress.scaling)}",
    ]
    if stress.params:
        out += _toml_table(("params",), stress.params)
    for s in stress.scenarios:
        out += ["", "[[scenario]]"]
        doc = s.document()
        shocks = doc.pop("shocks")
        out += [f"{k} = {_toml(v)}" for k, v in doc.items() if v is not None]
        if shocks:
            out += ["[scenario.shocks]"] + [
                f"{_toml_key(u)} = {_toml(v)}" for u, v in shocks.items()
            ]
    return "\n".join(out) + "\n"


def _toml_table(path: tuple[str, ...], table: Mapping[str, Any]) -> list[str]:
    """``[path]`` with its plain values, then each sub-table under its own header."""
    plain = [f"{_toml_key(k)} = {_toml(v)}" for k, v in table.items() if not isinstance(v, Mapping)]
    out = ["", "[" + ".".join(_toml_key(k) for k in path) + "]", *plain] if plain else []
    for k, v in table.items():
        if isinstance(v, Mapping):
            out += _toml_table((*path, k), v)
    return out


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else _toml(key)


def _toml(value: Any) -> str:
    """A TOML value: text as a basic string (JSON's escapes are TOML's; the text is
    printable, so no raw control character reaches the file), floats by their shortest
    round-trip text, dates as local dates, lists and tables inline."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        text = repr(value)
        return text if any(c in text for c in ".en") else text + ".0"
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{_toml_key(k)} = {_toml(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    raise ValidationError("params", f"cannot be written to TOML: {value!r:.80}")


def load_stress_set(path: Path, *, underlyings: Sequence[str] | None = None) -> StressSet:
    """The stress set in ``path`` (the file form of the module docstring).

    Raises :class:`ValidationError` naming the field, the file and the line of the first
    value refused: the file's checks of :mod:`marginflow.io.source` (missing, too large,
    not UTF-8, not TOML), an unknown key, a value of the wrong type or out of bounds, two
    scenarios of one label; with ``underlyings`` (the book it is to run on), a scenario
    that moves one of them by nothing (no market move and no shock of its own), which
    :meth:`StressSet.scenario_set` would refuse later without the file's line.
    """
    text = read_input_text(path, max_bytes=MAX_CONFIG_BYTES)
    doc = parse_toml(text, source=str(path))
    raw = doc.get("scenario")
    where = _Where(str(path), text, len(raw) if isinstance(raw, list) else 0)
    _refuse_unknown(doc, _TOP_KEYS, where, None, None)
    if doc.get("format") != FORMAT:
        raise where.error("format", f"must be {FORMAT!r}, got {doc.get('format')!r:.80}")
    if not isinstance(raw, list) or not raw:
        raise where.error("scenario", "no [[scenario]] tables: the set has no scenarios")
    params = doc.get("params", {})
    if not isinstance(params, dict):
        raise where.error("params", f"must be a table, got {params!r:.80}")
    scenarios = [_scenario(item, k, where) for k, item in enumerate(raw)]
    labels: dict[str, int] = {}
    for k, s in enumerate(scenarios):
        first = labels.setdefault(s.label, k)
        if first != k:
            reason = f"{s.label!r} labels two scenarios (first scenario {first + 1})"
            raise where.error("label", reason, scenario=k, label=s.label)
    try:
        stress = StressSet(
            name=_get(doc, "name", str, where, None),
            version=_get(doc, "version", str, where, None),
            scenarios=tuple(scenarios),
            scaling=_get(doc, "scaling", str, where, None, default="beta"),
            description=_get(doc, "description", str, where, None, default=""),
            params=params,
        )
    except _LocatedError:  # a value of the wrong type, already named with its line
        raise
    except ValidationError as exc:
        key = exc.field.split(".", 1)[0].split("[", 1)[0]
        raise where.error(exc.field, exc.reason, key=key) from None
    if underlyings is not None:
        _refuse_gaps(stress, underlyings, where)
    return stress


def _scenario(item: Any, k: int, where: _Where) -> StressScenario:
    if not isinstance(item, dict):
        raise where.error("scenario", f"must be a table, got {item!r:.80}", scenario=k)
    shown = item.get("label") if isinstance(item.get("label"), str) else None
    _refuse_unknown(item, _SCENARIO_KEYS, where, k, shown)
    label = _get(item, "label", str, where, k)
    has_market = "spot_shock" in item or "vol_shock" in item
    try:
        market = None
        if has_market:
            market = Shock(
                _get(item, "spot_shock", float, where, k, label=label),
                _get(item, "vol_shock", float, where, k, label=label, default=0.0),
            )
        shocks = item.get("shocks", {})
        if not isinstance(shocks, dict):
            raise ValidationError("shocks", f"must be a table, got {shocks!r:.80}")
        named = {u: _named(u, v, where, k, label) for u, v in shocks.items()}
        return StressScenario(
            label=label,
            market=market,
            named=named,
            start=_get(item, "start", dt.date, where, k, label=label, default=None),
            end=_get(item, "end", dt.date, where, k, label=label, default=None),
            horizon_days=_get(item, "horizon_days", int, where, k, label=label, default=1),
            source=_get(item, "source", str, where, k, label=label, default=""),
            vol_source=_get(item, "vol_source", str, where, k, label=label, default=""),
            note=_get(item, "note", str, where, k, label=label, default=""),
        )
    except _LocatedError:
        raise
    except ValidationError as exc:
        raise where.error(exc.field, exc.reason, scenario=k, label=label) from None


def _named(u: str, value: Any, where: _Where, k: int, label: str) -> Shock:
    if not isinstance(value, dict):
        raise where.error(
            "shocks",
            f"{u!r:.80} must be a table {{ spot_shock = ..., vol_shock = ... }}",
            key=u,
            scenario=k,
            label=label,
            named=True,
        )
    _refuse_unknown(value, _SHOCK_KEYS, where, k, label, key=u)
    try:
        return Shock(
            _get(value, "spot_shock", float, where, k, label=label, key=u),
            _get(value, "vol_shock", float, where, k, label=label, key=u, default=0.0),
        )
    except _LocatedError:
        raise
    except ValidationError as exc:
        raise where.error(
            f"shocks.{_shown(u)}.{exc.field}",
            exc.reason,
            key=u,
            scenario=k,
            label=label,
            named=True,
        ) from None


_MISSING: Any = object()
_KIND_TEXT = {str: "text", float: "a number", int: "a whole number", dt.date: "a date (2008-10-15)"}


def _get(
    table: Mapping[str, Any],
    name: str,
    kind: type,
    where: _Where,
    scenario: int | None,
    *,
    label: str | None = None,
    key: str | None = None,
    default: Any = _MISSING,
) -> Any:
    """``table[name]`` if it is of ``kind`` (an int is a float; a bool is neither; a date is
    a date, not a date and time), its default if absent, else a located error."""
    if name not in table:
        if default is _MISSING:
            field_name = name if key is None else f"shocks.{_shown(key)}.{name}"
            raise where.error(
                field_name,
                "is missing",
                key=key or name,
                scenario=scenario,
                label=label,
                named=key is not None,
            )
        return default
    value = table[name]
    if kind is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind is dt.date:
        ok = type(value) is dt.date
    else:
        ok = isinstance(value, kind)
    if not ok:
        reason = f"must be {_KIND_TEXT[kind]}, got {value!r:.80}"
        field_name = name if key is None else f"shocks.{_shown(key)}.{name}"
        raise where.error(
            field_name,
            reason,
            key=key or name,
            scenario=scenario,
            label=label,
            named=key is not None,
        )
    return value


def _refuse_unknown(
    table: Mapping[str, Any],
    known: tuple[str, ...],
    where: _Where,
    scenario: int | None,
    label: str | None,
    *,
    key: str | None = None,
) -> None:
    unknown = [k for k in table if k not in known]
    if unknown:
        reason = f"unknown key (known: {', '.join(known)})"
        name = _shown(unknown[0]) if key is None else f"shocks.{_shown(key)}.{_shown(unknown[0])}"
        raise where.error(
            name,
            reason,
            key=key or unknown[0],
            scenario=scenario,
            label=label,
            named=key is not None,
        )


def _shown(key: str) -> str:
    """A key of the file as a field name: as it is when short and printable, else quoted
    and cut (a key is user text: it may be empty, 100,000 characters or hold an escape)."""
    return key if key.isprintable() and 0 < len(key.strip()) == len(key) <= 80 else f"{key!r:.80}"


def _refuse_gaps(stress: StressSet, underlyings: Sequence[str], where: _Where) -> None:
    gap = stress.gap(underlyings)
    if gap is not None:
        k, u, count = gap
        more = f" ({count} such gaps in the set)" if count > 1 else ""
        reason = f"moves {u!r:.80} of the book by nothing: no market move, no shock of its own"
        label = stress.scenarios[k].label
        raise where.error("shocks", reason + more, scenario=k, label=label)


class _LocatedError(ValidationError):
    """A refusal that already names its file and line."""


@dataclass(frozen=True, slots=True)
class _Where:
    """Where the values of a stress-set file sit, to name the line of one it refuses.

    ``tomllib`` keeps no positions, so the line is found in the text: the ``[[scenario]]``
    headers cut it into one block per scenario (when the file writes its scenarios as
    tables, as :func:`save_stress_set` does; an inline array gets no line), and a key is
    the first line of its block that assigns it."""

    source: str
    text: str
    n_scenarios: int

    def _lines(self) -> list[str]:
        return self.text.split("\n")

    def _blocks(self, lines: list[str]) -> list[int] | None:
        heads = [n for n, line in enumerate(lines, start=1) if _SCENARIO_HEADER.fullmatch(line)]
        return heads if len(heads) == self.n_scenarios else None

    def line(self, key: str, scenario: int | None, *, named: bool = False) -> int | None:
        """The line assigning ``key`` (in scenario ``scenario``'s block, under its
        ``[scenario.shocks]`` if ``named``), else the block's header line."""
        lines = self._lines()
        heads = self._blocks(lines)
        if scenario is None:
            lo, hi = 1, (heads[0] if heads else len(lines) + 1)
        elif heads is None:
            return None
        else:
            lo = heads[scenario]
            hi = heads[scenario + 1] if scenario + 1 < len(heads) else len(lines) + 1
        if named:
            shocks = re.compile(r"[ \t]*\[[ \t]*scenario[ \t]*\.[ \t]*shocks[ \t]*\]")
            lo = next((n for n in range(lo, hi) if shocks.match(lines[n - 1])), lo)
        k, quoted = re.escape(key), re.escape(json.dumps(key, ensure_ascii=False))
        assigns = re.compile(
            rf"[ \t]*(?:{k}|{quoted}|'{k}')[ \t]*="
            rf"|[ \t]*\[[ \t]*(?:scenario[ \t]*\.[ \t]*)?{k}[ \t]*\]"
        )
        for n in range(lo, hi):
            if assigns.match(lines[n - 1]):
                return n
        return lo if scenario is not None else None

    def error(
        self,
        field_name: str,
        reason: str,
        *,
        key: str | None = None,
        scenario: int | None = None,
        label: str | None = None,
        named: bool = False,
    ) -> ValidationError:
        line = self.line(key or field_name, scenario, named=named)
        at = self.source if line is None else f"{self.source}:{line}"
        if scenario is not None:
            at += f": scenario {label!r:.80}" if label else f": scenario {scenario + 1}"
        return _LocatedError(field_name, f"{at}: {reason}")


# --- hypothetical sets from the user scenario file -----------------------------------------


def stress_set_from_scenario_file(
    path: Path,
    *,
    name: str,
    version: str,
    description: str = "",
    horizon_days: int = 1,
    underlyings: Sequence[str] | None = None,
) -> StressSet:
    """A hypothetical set from a user scenario file (:mod:`marginflow.io.scenario_file`).

    Each scenario of the file is a stress scenario: its ``*`` row is the market move,
    applied to every underlying it does not name as it is (scaling ``"none"``, the file's
    meaning under ``marginflow margin --scenarios``); its other rows are named shocks. The
    ``group`` column has no meaning for a stress set and is not kept. Per-sector shocks are
    not offered: the book's underlyings carry no sector.

    The file is read without a book (any underlying name is kept) and taken whole: a row the
    reader rejects refuses the file, with that row's file, line, field and reason, since a
    named, versioned set that silently lost a scenario would cite a set nobody wrote.

    With ``underlyings`` (the book it is to run on), a scenario without a ``*`` row that
    leaves one of them out is refused naming its first line (as ``marginflow margin
    --scenarios`` refuses it), rather than later by :meth:`StressSet.scenario_set`.
    """
    sf = read_scenario_file(path, underlyings=None)
    if sf.failures:
        # the cause, not the rows of its scenario refused with it
        f = min(sf.failures, key=lambda f: (f.reason.startswith("scenario "), f.line))
        more = f" ({len(sf.failures)} rows rejected in all)" if len(sf.failures) > 1 else ""
        raise ValidationError(
            f.field, f"{f.source}:{f.line}: {f.reason}{more}; a stress set is taken whole"
        )
    market: dict[str, Shock] = {}
    named: dict[str, dict[str, Shock]] = {}
    first_line: dict[str, int] = {}
    for r, line in zip(sf.rows, sf.lines, strict=True):
        named.setdefault(r.scenario, {})
        first_line.setdefault(r.scenario, line)
        try:
            if r.underlying == WILDCARD:
                market[r.scenario] = Shock(r.spot_shock, r.vol_shock)
            else:
                _check_text("underlying", r.underlying, limit=MAX_LABEL, empty=False)
                named[r.scenario][r.underlying] = Shock(r.spot_shock, r.vol_shock)
        except ValidationError as exc:
            raise ValidationError(exc.field, f"{path}:{line}: {exc.reason}") from None
    scenarios = []
    for label, shocks in named.items():
        try:
            scenarios.append(
                StressScenario(
                    label=label,
                    market=market.get(label),
                    named=shocks,
                    horizon_days=horizon_days,
                    source="hypothetical",
                )
            )
        except ValidationError as exc:
            field_name = "scenario" if exc.field == "label" else exc.field
            reason = f"{path}:{first_line[label]}: {exc.reason}"
            raise ValidationError(field_name, reason) from None
    stress = StressSet(
        name=name,
        version=version,
        scenarios=tuple(scenarios),
        scaling="none",
        description=description,
    )
    gap = None if underlyings is None else stress.gap(underlyings)
    if gap is not None:
        k, u, count = gap
        label = stress.scenarios[k].label
        more = f" ({count} such gaps in the set)" if count > 1 else ""
        raise ValidationError(
            "underlying",
            f"{path}:{first_line[label]}: scenario {label!r:.80} has no row for {u!r:.80} of "
            f"the book and no {WILDCARD!r} row{more}",
        )
    return stress
