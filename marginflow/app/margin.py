"""Use cases of clearing-house margin: margin a book under a model, and what-if.

The CLI (``marginflow margin`` / ``what-if``) and the REST API call these; they hold no
margin logic of their own. A :class:`MarginRun` is a book margined by one model: the
expected-shortfall engine (:class:`EsRun`) or a scenario-grid model, SPAN-style or portfolio
margin (:class:`GridRun`); both answer the same questions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from marginflow.core.book import Book
from marginflow.core.errors import ConfigurationError
from marginflow.engine.grid_margins import grid_account_margins, grid_margin_book, grid_what_if
from marginflow.engine.settings import MarginSettings, build_engine
from marginflow.engine.state import MarginEngine, WhatIf
from marginflow.io.book import LoadedBook
from marginflow.io.scenario_file import read_scenario_file
from marginflow.margin.base import AccountMargin, member_totals
from marginflow.margin.models import check_model
from marginflow.margin.portfolio_margin import PortfolioMarginResult
from marginflow.margin.span import SpanResult
from marginflow.scenarios.scenario_set import ScenarioSet

MSG_GRID_OPTION = (
    "{option} is a setting of model es; {model} takes its parameters as documented in "
    "docs/margin.md"
)


class MarginRun(Protocol):
    """A book margined by one model."""

    @property
    def model(self) -> str: ...

    @property
    def book(self) -> Book: ...

    def accounts(self, top: int) -> list[AccountMargin]:
        """Every account's margin with its breakdown (``top`` contributing positions)."""
        ...

    def what_if(self, account: str, trades: Sequence[tuple[str, float]]) -> WhatIf:
        """``account``'s margin if ``trades`` (instrument, quantity) were added."""
        ...

    def title(self) -> str:
        """The model and its main settings, in a line."""
        ...

    def model_json(self) -> dict[str, Any]:
        """The model's name and every parameter that shaped the numbers."""
        ...


@dataclass(frozen=True, slots=True)
class EsRun:
    """A book margined by the expected-shortfall engine."""

    engine: MarginEngine
    model: str = "es"

    @property
    def book(self) -> Book:
        return self.engine.book

    def accounts(self, top: int) -> list[AccountMargin]:
        return [self.engine.account_margin(a, top=top) for a in self.book.positions.accounts]

    def what_if(self, account: str, trades: Sequence[tuple[str, float]]) -> WhatIf:
        return self.engine.what_if(account, trades)

    def title(self) -> str:
        mi = self.engine.model_info.params
        sc = mi["scenarios"]
        return (
            f"model es, ES {mi['confidence']:.1%} over {sc['n_scenarios']} {sc['source']} "
            f"scenarios, {mi['horizon_days']}-day, apc {mi['apc']}"
        )

    def model_json(self) -> dict[str, Any]:
        return self.engine.model_info.to_json()


@dataclass(frozen=True, slots=True)
class GridRun:
    """A book margined by a scenario-grid model (``span`` or ``pm``); the whole book is
    computed on first use (a what-if alone revalues only the account's instruments)."""

    book: Book
    model: str
    _result: list[SpanResult | PortfolioMarginResult] = field(default_factory=list)

    def result(self) -> SpanResult | PortfolioMarginResult:
        if not self._result:
            self._result.append(grid_margin_book(self.model, self.book))
        return self._result[0]

    def accounts(self, top: int) -> list[AccountMargin]:
        return grid_account_margins(self.result(), self.book)

    def what_if(self, account: str, trades: Sequence[tuple[str, float]]) -> WhatIf:
        before, after = grid_what_if(self.model, self.book, account, trades)
        return WhatIf(account, before.member, before.margin, after.margin, after.breakdown)

    def title(self) -> str:
        return f"model {self.model} (grid; parameters in docs/margin.md)"

    def model_json(self) -> dict[str, Any]:
        return {"name": self.model, "params": self.result().parameters.to_mapping()}


@dataclass(frozen=True, slots=True)
class BookMargins:
    """Every account's margin, each member's (the sum of its accounts') and the firm's."""

    accounts: list[AccountMargin]
    members: list[tuple[str, float, int]]  # member, margin, accounts

    @property
    def total(self) -> float:
        return float(sum(m for _, m, _ in self.members))


def margin_book(
    loaded: LoadedBook,
    *,
    model: str = "es",
    settings: MarginSettings | None = None,
    scenarios_file: Path | None = None,
) -> MarginRun:
    """Margin ``loaded``'s book by ``model`` (``es``, ``span`` or ``pm``). For ``es`` the
    scenarios come from ``scenarios_file`` (user shocks; rows it rejects are added to
    ``loaded.failures``) or are generated from the book's history under ``settings``.
    Settings that ``model`` does not use are refused, naming them."""
    check_model(model)
    settings = settings or MarginSettings()
    if model != "es":
        _refuse_es_settings(model, settings, scenarios_file)
        return GridRun(loaded.book, model)
    if scenarios_file is not None:
        if settings.source != "fhs":
            raise ConfigurationError(
                "--scenarios replaces generated scenarios; --source does not apply with it"
            )
        scen: ScenarioSet | None = user_scenarios(loaded, scenarios_file, settings)
    else:
        scen = None
    return EsRun(build_engine(loaded.book, settings, scenarios=scen))


def user_scenarios(loaded: LoadedBook, path: Path, settings: MarginSettings) -> ScenarioSet:
    """The user's shocks in ``path`` over the book's underlyings (failures kept in
    ``loaded.failures``)."""
    sf = read_scenario_file(path, underlyings=loaded.book.underlyings.ids)
    loaded.failures.extend(sf.failures)
    return sf.scenario_set(underlyings=loaded.book.underlyings.ids, horizon_days=settings.mpor)


def _refuse_es_settings(model: str, settings: MarginSettings, scenarios: Path | None) -> None:
    default = MarginSettings()
    for name in ("confidence", "apc", "params"):
        if getattr(settings, name) != getattr(default, name):
            option = "--param" if name == "params" else f"--{name}"
            raise ConfigurationError(MSG_GRID_OPTION.format(option=option, model=model))
    if scenarios is not None:
        raise ConfigurationError(MSG_GRID_OPTION.format(option="--scenarios", model=model))


def book_margins(run: MarginRun, *, top: int = 3) -> BookMargins:
    """Every account's margin with its breakdown, and the member totals."""
    results = run.accounts(top)
    p = run.book.positions
    margins = np.array([r.margin for r in results], dtype=np.float64)
    by_member = member_totals(margins, p.account_member, len(p.members))
    counts = np.bincount(p.account_member, minlength=len(p.members))
    members = [(m, float(by_member[i]), int(counts[i])) for i, m in enumerate(p.members)]
    return BookMargins(results, members)
