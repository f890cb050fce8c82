"""``marginflow generate-book``, ``marginflow margin`` and ``marginflow what-if``.

Input formats: :mod:`marginflow.io.book` (book folder) and :mod:`marginflow.io.scenario_file`
(user scenarios). Rejected rows are named on standard error (``file:line: field: reason``),
kept in ``--rejects``, the rest is margined, and the exit status is then 2.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from marginflow.cli.output import fail, print_json, report_failures, table
from marginflow.core.book import Book
from marginflow.core.errors import ConfigurationError, MarginflowError, RowFailure
from marginflow.engine.grid_margins import grid_account_margins, grid_margin_book, grid_what_if
from marginflow.engine.state import MarginEngine, WhatIf
from marginflow.engine.synthetic_book import generate_book
from marginflow.io.book import LoadedBook, load_book, write_book
from marginflow.io.scenario_file import read_scenario_file
from marginflow.margin.base import AccountMargin, member_totals
from marginflow.margin.es_model import ExpectedShortfallModel
from marginflow.margin.models import check_model, parse_params
from marginflow.margin.portfolio_margin import PortfolioMarginResult
from marginflow.margin.span import SpanResult
from marginflow.scenarios.build import ScenarioSpec, build_scenarios
from marginflow.scenarios.fhs import DEFAULT_STRESS, StressPeriod
from marginflow.scenarios.scenario_set import ScenarioSet

BookDir = Annotated[Path, typer.Argument(help="book folder (see generate-book)")]


def register(app: typer.Typer) -> None:
    app.command("generate-book")(generate_book_command)
    app.command("margin")(margin_command)
    app.command("what-if")(what_if_command)


def generate_book_command(
    out: Annotated[Path, typer.Argument(help="folder to write the book into")],
    members: Annotated[int, typer.Option(help="clearing members")] = 5,
    accounts: Annotated[int, typer.Option(help="accounts (>= members)")] = 50,
    underlyings: Annotated[int, typer.Option(help="underlyings (>= 2: SPX, NDX, ...)")] = 20,
    series: Annotated[int, typer.Option(help="option series")] = 400,
    positions: Annotated[int, typer.Option(help="positions (account, instrument)")] = 2_000,
    seed: Annotated[int, typer.Option(help="random seed (same seed, same book)")] = 0,
    fmt: Annotated[str, typer.Option("--format", help="csv or parquet")] = "csv",
) -> None:
    """Generate a synthetic book: members, accounts, underlyings with 20 years of price
    history (SPX and NDX real, the rest from a factor model on them), option series,
    positions and market data, written as files you can open."""
    if fmt not in ("csv", "parquet"):
        fail(f"--format must be csv or parquet, got {fmt!r}")
    try:
        sb = generate_book(
            members=members,
            accounts=accounts,
            underlyings=underlyings,
            series=series,
            positions=positions,
            seed=seed,
        )
        written = write_book(
            out,
            sb.book,
            fmt="csv" if fmt == "csv" else "parquet",
        )
    except MarginflowError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"{out}: {exc.strerror or exc}")
    b = sb.book
    counts = {
        "market": len(b.underlyings),
        "underlyings": len(b.underlyings),
        "members": len(b.positions.members),
        "accounts": len(b.positions.accounts),
        "instruments": len(b.instruments),
        "positions": b.positions.nnz,
        "history": len(sb.universe.history) + 1,
    }
    table(
        f"book written to {out} (valuation date {b.market.valuation_date}, seed {seed})",
        ("file", "rows"),
        [(p.name, counts[p.stem]) for p in written],
    )


@dataclass(frozen=True, slots=True)
class _Run:
    """A loaded book margined by one model: the ES engine, or a grid model's results."""

    loaded: LoadedBook
    model: str
    engine: MarginEngine | None = None
    grid: SpanResult | PortfolioMarginResult | None = None

    def accounts(self, top: int) -> list[AccountMargin]:
        if self.engine is not None:
            return [self.engine.account_margin(a, top=top) for a in self.book.positions.accounts]
        assert self.grid is not None
        return grid_account_margins(self.grid, self.book)

    @property
    def book(self) -> Book:
        return self.engine.book if self.engine is not None else self.loaded.book

    def title(self) -> str:
        if self.engine is None:
            return f"model {self.model} (grid; parameters in docs/margin.md)"
        mi = self.engine.model_info.params
        sc = mi["scenarios"]
        return (
            f"model es, ES {mi['confidence']:.1%} over {sc['n_scenarios']} {sc['source']} "
            f"scenarios, {mi['horizon_days']}-day, apc {mi['apc']}"
        )

    def model_json(self) -> dict[str, Any]:
        if self.engine is not None:
            return self.engine.model_info.to_json()
        assert self.grid is not None
        return {"name": self.model, "params": self.grid.parameters.to_mapping()}


def _scenario_options(
    source: str,
    scenarios_file: Path | None,
    mpor: int,
    lookback: int,
    decay: float,
    stress: str,
    overlapping: bool,
    mc_scenarios: int,
    seed: int,
    apc: str,
) -> tuple[ScenarioSpec, Path | None]:
    if source not in ("fhs", "mc"):
        fail(f"--source must be fhs or mc, got {source!r}")
    period: StressPeriod | None
    if stress == "none":
        period = None
    elif stress == "default":
        period = DEFAULT_STRESS
    else:
        start, sep, end = stress.partition(":")
        if not sep:
            fail(f"--stress must be START:END (ISO dates), 'default' or 'none', got {stress!r}")
        try:
            period = StressPeriod.of(start, end)
        except (ValueError, MarginflowError) as exc:
            fail(f"--stress: {exc}")
    spec = ScenarioSpec(
        source="fhs" if source == "fhs" else "mc",
        horizon_days=mpor,
        lookback_days=lookback,
        decay=decay,
        overlapping=overlapping,
        stress=period if source == "fhs" else None,
        floor_lookback_days=2520 if apc == "floor-10y" else None,
        mc_scenarios=mc_scenarios,
        seed=seed,
    )
    return spec, scenarios_file


def _build(
    book_dir: Path,
    *,
    positions: Path | None,
    market: Path | None,
    history: Path | None,
    spec: ScenarioSpec,
    scenarios_file: Path | None,
    model_name: str,
    params: Sequence[str],
    user_params: Sequence[str],
    rejects: Path | None,
    whole_book: bool = True,
) -> _Run:
    try:
        check_model(model_name)
        if model_name != "es" and user_params:
            raise ConfigurationError(
                f"--param is for model es; {model_name} takes its parameters as documented "
                "in docs/margin.md"
            )
        model = ExpectedShortfallModel.from_params(parse_params(params))
        loaded = load_book(
            book_dir, positions_file=positions, market_file=market, history_file=history
        )
        failures = list(loaded.failures)
        if model_name == "es":
            scen = _scenarios(loaded, spec, scenarios_file, failures)
            run = _Run(loaded, model_name, engine=MarginEngine(loaded.book, scen, model))
        elif whole_book:
            run = _Run(loaded, model_name, grid=grid_margin_book(model_name, loaded.book))
        else:
            run = _Run(loaded, model_name)
    except MarginflowError as exc:
        fail(str(exc))
    loaded.failures[:] = failures
    if rejects is not None:
        _write_rejects(rejects, failures)
    return run


def _scenarios(
    loaded: LoadedBook, spec: ScenarioSpec, path: Path | None, failures: list[RowFailure]
) -> ScenarioSet:
    ids = loaded.book.underlyings.ids
    if path is not None:
        sf = read_scenario_file(path)
        failures.extend(sf.failures)
        return sf.scenario_set(underlyings=ids, horizon_days=spec.horizon_days)
    if loaded.book.history is None:
        raise ConfigurationError(
            "no price history in the book folder (history.csv): give --history FILE, "
            "or --scenarios FILE with your own shocks"
        )
    return build_scenarios(loaded.book.history, spec, underlyings=ids)


def _write_rejects(path: Path, failures: Sequence[RowFailure]) -> None:
    with open(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["source", "line", "field", "reason", "raw"])
        for f in failures:
            writer.writerow([f.source, f.line, f.field, f.reason, f.raw])


def _finish(run: _Run) -> None:
    if run.loaded.failures:
        report_failures(run.loaded.failures)
        raise typer.Exit(2)


ModelOpt = Annotated[
    str, typer.Option("--model", help="margin model: es (expected shortfall), span, pm")
]
ParamOpt = Annotated[
    list[str] | None,
    typer.Option("--param", help="model parameter key=value (repeatable), e.g. confidence=0.995"),
]
SourceOpt = Annotated[str, typer.Option(help="scenario source without --scenarios: fhs or mc")]
ScenOpt = Annotated[
    Path | None, typer.Option("--scenarios", help="CSV of shocks per scenario and underlying")
]
MporOpt = Annotated[int, typer.Option("--mpor", help="margin period of risk, business days")]
LookbackOpt = Annotated[int, typer.Option(help="look-back, business days")]
DecayOpt = Annotated[float, typer.Option(help="EWMA decay of the volatility filter")]
StressOpt = Annotated[
    str, typer.Option(help="stressed period START:END, 'default' (2008-09-01:2009-03-31) or 'none'")
]
OverlapOpt = Annotated[bool, typer.Option(help="overlapping n-day windows")]
McOpt = Annotated[int, typer.Option(help="Monte Carlo scenario count")]
SeedOpt = Annotated[int, typer.Option(help="Monte Carlo seed")]
ApcOpt = Annotated[
    str, typer.Option(help="anti-procyclicality: none, buffer, stressed-weight, floor-10y")
]
ConfOpt = Annotated[float, typer.Option(help="ES confidence level")]
FileOpt = Annotated[Path | None, typer.Option(help="replaces the book folder's file")]
RejectsOpt = Annotated[Path | None, typer.Option(help="write rejected rows and reasons here")]
JsonOpt = Annotated[bool, typer.Option("--json", help="one JSON document instead of tables")]


def margin_command(
    book: BookDir,
    positions: FileOpt = None,
    market: FileOpt = None,
    history: FileOpt = None,
    scenarios: ScenOpt = None,
    model: ModelOpt = "es",
    param: ParamOpt = None,
    confidence: ConfOpt = 0.99,
    apc: ApcOpt = "none",
    source: SourceOpt = "fhs",
    mpor: MporOpt = 2,
    lookback: LookbackOpt = 1250,
    decay: DecayOpt = 0.97,
    stress: StressOpt = "default",
    overlapping: OverlapOpt = True,
    mc_scenarios: McOpt = 10_000,
    seed: SeedOpt = 0,
    top: Annotated[int, typer.Option(help="contributing positions per account")] = 3,
    limit: Annotated[int, typer.Option(help="accounts shown in the table (0 = all)")] = 50,
    as_json: JsonOpt = False,
    rejects: RejectsOpt = None,
) -> None:
    """Margin every account of a book and sum per member.

    Scenarios: --scenarios FILE, or generated from the book's price history (filtered
    historical by default, --source mc for Monte Carlo). P&L is profit-positive; the
    margin is the expected shortfall of the loss (>= 0) plus add-ons.
    """
    spec, scen_file = _scenario_options(
        source, scenarios, mpor, lookback, decay, stress, overlapping, mc_scenarios, seed, apc
    )
    params = [f"confidence={confidence}", f"apc={apc}", *(param or [])]
    run = _build(
        book,
        positions=positions,
        market=market,
        history=history,
        spec=spec,
        scenarios_file=scen_file,
        model_name=model,
        params=params,
        user_params=param or [],
        rejects=rejects,
    )
    p = run.book.positions
    results = run.accounts(top)
    margins = np.array([r.margin for r in results])
    member_margin = member_totals(margins, p.account_member, len(p.members))
    n_accounts = np.bincount(p.account_member, minlength=len(p.members))
    if as_json:
        print_json(
            {
                "valuation_date": str(run.book.market.valuation_date),
                "model": run.model_json(),
                "accounts": [r.to_json() for r in results],
                "members": [
                    {"member": m, "margin": float(member_margin[i]), "accounts": int(n_accounts[i])}
                    for i, m in enumerate(p.members)
                ],
                "total": float(member_margin.sum()),
                "rejected_rows": len(run.loaded.failures),
            }
        )
    else:
        _print_tables(run, results, member_margin, n_accounts, limit)
    _finish(run)


def _print_tables(
    run: _Run,
    results: list[AccountMargin],
    member_margin: np.ndarray,
    n_accounts: np.ndarray,
    limit: int,
) -> None:
    order = sorted(range(len(results)), key=lambda i: -results[i].margin)
    shown = order if limit <= 0 else order[:limit]
    es = run.engine is not None
    rows = []
    for i in shown:
        r = results[i]
        c = r.breakdown.components
        first = r.breakdown.top_positions[0] if r.breakdown.top_positions else None
        middle = (round(c["es"]), round(c["apc"] + c["concentration"])) if es else ()
        rows.append(
            (
                r.account,
                r.member,
                round(r.margin),
                *middle,
                r.breakdown.driving_scenario or "",
                first.instrument if first else "",
            )
        )
    which = f"top {len(shown)} of {len(results)}" if len(shown) < len(results) else "all"
    middle_names = ("ES", "add-ons") if es else ()
    table(
        f"account margins ({which}): {run.title()}",
        ("account", "member", "margin", *middle_names, "driving scenario", "top contributor"),
        rows,
    )
    p = run.book.positions
    table(
        "member margins (sum of their accounts)",
        ("member", "accounts", "margin"),
        [(m, int(n_accounts[i]), round(float(member_margin[i]))) for i, m in enumerate(p.members)],
    )


def what_if_command(
    book: BookDir,
    account: Annotated[str, typer.Option(help="account to test the trades on")],
    trade: Annotated[
        list[str], typer.Option(help="INSTRUMENT=QUANTITY (repeatable), e.g. 'SPX 190315P2400=-10'")
    ],
    positions: FileOpt = None,
    market: FileOpt = None,
    history: FileOpt = None,
    scenarios: ScenOpt = None,
    model: ModelOpt = "es",
    param: ParamOpt = None,
    confidence: ConfOpt = 0.99,
    apc: ApcOpt = "none",
    source: SourceOpt = "fhs",
    mpor: MporOpt = 2,
    lookback: LookbackOpt = 1250,
    decay: DecayOpt = 0.97,
    stress: StressOpt = "default",
    overlapping: OverlapOpt = True,
    mc_scenarios: McOpt = 10_000,
    seed: SeedOpt = 0,
    as_json: JsonOpt = False,
    rejects: RejectsOpt = None,
) -> None:
    """Margin impact of hypothetical trades on one account; nothing is changed."""
    trades = [_parse_trade(t) for t in trade]
    spec, scen_file = _scenario_options(
        source, scenarios, mpor, lookback, decay, stress, overlapping, mc_scenarios, seed, apc
    )
    params = [f"confidence={confidence}", f"apc={apc}", *(param or [])]
    run = _build(
        book,
        positions=positions,
        market=market,
        history=history,
        spec=spec,
        scenarios_file=scen_file,
        model_name=model,
        params=params,
        user_params=param or [],
        rejects=rejects,
        whole_book=False,
    )
    try:
        if run.engine is not None:
            w = run.engine.what_if(account, trades)
        else:
            before, after = grid_what_if(model, run.book, account, trades)
            w = WhatIf(account, before.member, before.margin, after.margin, after.breakdown)
    except MarginflowError as exc:
        fail(str(exc))
    if as_json:
        print_json(
            {
                "account": w.account,
                "member": w.member,
                "trades": [{"instrument": i, "quantity": q} for i, q in trades],
                "margin_before": w.before,
                "margin_after": w.after,
                "change": w.change,
                "breakdown_after": w.breakdown_after.to_json(),
            }
        )
    else:
        table(
            f"what-if on {w.account} (member {w.member}); the book is unchanged",
            ("", "margin"),
            [("before", round(w.before)), ("after", round(w.after)), ("change", round(w.change))],
        )
        b = w.breakdown_after
        table(
            f"after: driving scenario {b.driving_scenario}, top contributors",
            ("instrument", "quantity", "contribution" if run.engine else "loss at driver"),
            [(c.instrument, c.quantity, round(c.amount)) for c in b.top_positions],
        )
    _finish(run)


def _parse_trade(text: str) -> tuple[str, float]:
    name, sep, qty = text.rpartition("=")
    if not sep or not name:
        fail(f"--trade must be INSTRUMENT=QUANTITY, got {text!r}")
    try:
        q = float(qty)
    except ValueError:
        fail(f"--trade {text!r}: quantity is not a number: {qty!r}")
    if not np.isfinite(q) or q == 0:
        fail(f"--trade {text!r}: quantity must be a finite non-zero number")
    return name.strip(), q
