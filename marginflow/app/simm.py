"""Use case: ISDA SIMM (and Schedule IM) of a CRIF, per portfolio and side, with its
breakdown. The CRIF comes as a file (CSV or Parquet) or as rows (mappings of CRIF column to
value, as an API receives them); rows that fail validation are returned, named, beside the
result of the valid ones."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from marginflow.core.errors import RowFailure
from marginflow.io.crif import crif_from_rows, read_crif
from marginflow.io.fx_rates import read_fx_rates
from marginflow.simm.calibration import load_calibration
from marginflow.simm.report import Model, simm_report
from marginflow.simm.results import SimmReport


@dataclass(frozen=True, slots=True)
class SimmRun:
    """A SIMM report and the CRIF rows it could not use."""

    report: SimmReport
    failures: tuple[RowFailure, ...]
    valid_rows: int
    rejected_lines: int


def simm_of_crif(
    crif: Path | Sequence[Mapping[str, Any]],
    *,
    version: str,
    mpor: int = 10,
    currency: str = "USD",
    fx_rates: Path | None = None,
    regulations: bool = True,
    detail: bool = False,
    as_of: dt.date | None = None,
    models: Mapping[str, Model] | None = None,
    contributions: bool = False,
) -> SimmRun:
    """SIMM ``version`` (an ISDA name, e.g. ``2.6``) at ``mpor`` days (10 or 1) in
    ``currency``; FX from ``fx_rates`` (CSV ``Currency,USDPerUnit``) or implied by the CRIF's
    Amount/AmountUSD; ``regulations`` honours CollectRegulation/PostRegulation (the strongest
    regime per side wins); ``models`` chooses SIMM, Schedule or mixed per portfolio;
    ``contributions`` adds each trade's Euler share. Raises
    :class:`~marginflow.core.errors.MarginflowError` for what no row can fix (an unknown
    version, an unreadable file)."""
    calibration = load_calibration(version, mpor)
    if isinstance(crif, Path):
        load = read_crif(crif, calibration=calibration)
    else:
        load = crif_from_rows(crif, calibration=calibration)
    rates = read_fx_rates(fx_rates) if fx_rates else None
    report = simm_report(
        load,
        calibration=calibration,
        currency=currency,
        fx=rates,
        enforce_regulations=regulations,
        detail=detail,
        as_of=as_of,
        models=dict(models or {}),
        contributions=contributions,
    )
    return SimmRun(report, tuple(load.failures), len(load.crif), load.rejected_lines)
