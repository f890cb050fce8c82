"""``marginflow generate-book``, ``marginflow margin`` and ``marginflow what-if``: thin shells
over :mod:`marginflow.app.margin`.

Input formats: :mod:`marginflow.io.book` (book folder) and :mod:`marginflow.io.scenario_file`
(user scenarios). Rejected rows are named on standard error (``file:line: field: reason``),
kept in ``--rejects``, the rest is margined, and the exit status is then 2.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import numpy as np
import typer

from marginflow.cli.options import given, refuse_ignored, refuse_twice
from marginflow.cli.output import (
    fail,
    output_file,
    print_json,
    report_failures,
    table,
    write_rejects,
)
from marginflow.core.errors import MSG_OPTION_IGNORED, MarginflowError

BookDir = Annotated[Path, typer.Argument(help="book folder (see generate-book)")]


if TYPE_CHECKING:  # the engine and its dependencies load when a command runs, not at CLI start
    from marginflow.app.margin import BookMargins, MarginRun
    from marginflow.engine.settings import MarginSettings
    from marginflow.io.book import LoadedBook


def register(app: typer.Typer) -> None:
    app.command("generate-book")(generate_book_command)
    app.command("margin")(margin_command)
    app.command("what-if")(what_if_command)


def generate_book_command(
    out: Annotated[Path, typer.Argument(help="folder to write the book into")],
    members: Annotated[int, typer.Option(help="clearing members", min=1, max=10_000)] = 5,
    accounts: Annotated[int, typer.Option(help="accounts (>= members)", min=1, max=1_000_000)] = 50,
    underlyings: Annotated[
        int, typer.Option(help="underlyings (>= 2: SPX, NDX, ...)", min=2, max=10_000)
    ] = 20,
    series: Annotated[int, typer.Option(help="option series", min=1, max=1_000_000)] = 400,
    positions: Annotated[
        int, typer.Option(help="positions (account, instrument)", min=1, max=10_000_000)
    ] = 2_000,
    seed: Annotated[
        int, typer.Option(help="random seed (same seed, same book)", min=0, max=2**32 - 1)
    ] = 0,
    fmt: Annotated[str, typer.Option("--format", help="csv or parquet")] = "csv",
) -> None:
    """Generate a synthetic book: members, accounts, underlyings with 20 years of price
    history (SPX and NDX real, the rest from a factor model on them), option series,
    positions and market data, written as files you can open."""
    from marginflow.io.book import write_book
    from marginflow.sim.synthetic_book import generate_book

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


ES_OPTIONS = ("confidence", "apc", "param", "scenarios", "source", "mpor", "lookback", "decay",
              "stress", "overlapping", "mc_scenarios", "seed", "revaluation")  # fmt: skip
GENERATED_ONLY = ("source", "lookback", "decay", "stress", "overlapping", "mc_scenarios", "seed")
APC_PARAMS = {"apc_buffer": "buffer", "stressed_weight": "stressed-weight"}


def refuse_ignored_settings(
    ctx: typer.Context,
    *,
    model: str,
    scenarios: Path | None,
    source: str,
    apc: str,
    param: Sequence[str] | None,
) -> None:
    """Refuse the options that ``model`` and the scenario source would ignore, and a setting
    given both as its own option and as ``--param`` (:mod:`marginflow.cli.options`)."""
    if model != "es":
        refuse_ignored(ctx, ES_OPTIONS, because=f"--model {model}")
        return
    if scenarios is not None:
        refuse_ignored(ctx, GENERATED_ONLY, because="--scenarios")
    elif source == "fhs":
        refuse_ignored(ctx, ("mc_scenarios", "seed"), because="--source fhs")
    else:
        refuse_ignored(ctx, ("stress", "overlapping"), because=f"--source {source}")
    keys = {item.partition("=")[0].strip(): item for item in param or ()}
    for key, item in keys.items():
        if key in ("confidence", "apc") and given(ctx, key):
            refuse_twice(f"--{key}", f"--param {item}", key)
        if key in APC_PARAMS and apc != APC_PARAMS[key]:
            fail(MSG_OPTION_IGNORED.format(option=f"--param {item}", other=f"--apc {apc}"))


def _settings(
    *,
    confidence: float,
    apc: str,
    source: str,
    mpor: int,
    lookback: int,
    decay: float,
    stress: str,
    overlapping: bool,
    mc_scenarios: int,
    seed: int,
    param: Sequence[str] | None,
    revaluation: str = "grid",
) -> MarginSettings:
    from marginflow.engine.settings import MarginSettings

    try:
        return MarginSettings(
            confidence=confidence,
            apc=apc,
            source=source,  # type: ignore[arg-type]  # validated by MarginSettings
            mpor=mpor,
            lookback=lookback,
            decay=decay,
            stress=stress,
            overlapping=overlapping,
            mc_scenarios=mc_scenarios,
            seed=seed,
            params=tuple(param or ()),
            revaluation=revaluation,
        )
    except MarginflowError as exc:
        fail(_option_words(str(exc)))


_SETTING = re.compile(r"^(source|mpor|lookback|decay|stress|mc_scenarios|revaluation)\b")


def _option_words(text: str) -> str:
    """A settings error in the CLI's words (``--mpor`` for the setting ``mpor``)."""
    return _SETTING.sub(lambda m: "--" + m.group(1).replace("_", "-"), text)


def _build(
    book_dir: Path,
    *,
    positions: Path | None,
    market: Path | None,
    history: Path | None,
    settings: MarginSettings,
    scenarios_file: Path | None,
    model_name: str,
    rejects: Path | None,
) -> tuple[LoadedBook, MarginRun]:
    from marginflow.app.margin import margin_book
    from marginflow.io.book import load_book

    try:
        loaded = load_book(
            book_dir, positions_file=positions, market_file=market, history_file=history
        )
        run = margin_book(
            loaded, model=model_name, settings=settings, scenarios_file=scenarios_file
        )
    except MarginflowError as exc:
        fail(str(exc))
    if rejects is not None:
        write_rejects(rejects, loaded.failures)
    return loaded, run


def _finish(loaded: LoadedBook) -> None:
    if loaded.failures:
        report_failures(loaded.failures)
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
MporOpt = Annotated[
    int, typer.Option("--mpor", help="margin period of risk, business days", min=1, max=250)
]
LookbackOpt = Annotated[int, typer.Option(help="look-back, business days", min=20, max=100_000)]
DecayOpt = Annotated[
    float,
    typer.Option(help="EWMA decay of the volatility filter", min=0, max=1),
]
StressOpt = Annotated[
    str, typer.Option(help="stressed period START:END, 'default' (2008-09-01:2009-03-31) or 'none'")
]
OverlapOpt = Annotated[bool, typer.Option(help="overlapping n-day windows")]
McOpt = Annotated[int, typer.Option(help="Monte Carlo scenario count", min=1, max=1_000_000)]
SeedOpt = Annotated[int, typer.Option(help="Monte Carlo seed", min=0, max=2**63 - 1)]
RevalOpt = Annotated[
    str,
    typer.Option(
        help="American options: grid (premium grids, within 1e-3 per 100 of exact; large "
        "books) or exact (the American pricer per scenario; small books, what-if)"
    ),
]
ApcOpt = Annotated[
    str, typer.Option(help="anti-procyclicality: none, buffer, stressed-weight, floor-10y")
]
ConfOpt = Annotated[float, typer.Option(help="ES confidence level", min=0.5, max=1)]
FileOpt = Annotated[Path | None, typer.Option(help="replaces the book folder's file")]
RejectsOpt = Annotated[Path | None, typer.Option(help="write rejected rows and reasons here")]
JsonOpt = Annotated[bool, typer.Option("--json", help="one JSON document instead of tables")]


def margin_command(
    ctx: typer.Context,
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
    revaluation: RevalOpt = "grid",
    top: Annotated[
        int, typer.Option(help="contributing positions per account", min=0, max=1000)
    ] = 3,
    limit: Annotated[int, typer.Option(help="accounts shown in the table (0 = all)", min=0)] = 50,
    as_json: JsonOpt = False,
    rejects: RejectsOpt = None,
) -> None:
    """Margin every account of a book and sum per member.

    Scenarios: --scenarios FILE, or generated from the book's price history (filtered
    historical by default, --source mc for Monte Carlo). P&L is profit-positive; the
    margin is the expected shortfall of the loss (>= 0) plus add-ons.
    """
    refuse_ignored_settings(
        ctx, model=model, scenarios=scenarios, source=source, apc=apc, param=param
    )
    if as_json:
        refuse_ignored(ctx, ["limit"], because="--json")
    output_file(rejects, "--rejects")
    settings = _settings(
        confidence=confidence, apc=apc, source=source, mpor=mpor, lookback=lookback,
        decay=decay, stress=stress, overlapping=overlapping, mc_scenarios=mc_scenarios,
        seed=seed, param=param, revaluation=revaluation,
    )  # fmt: skip
    loaded, run = _build(
        book,
        positions=positions,
        market=market,
        history=history,
        settings=settings,
        scenarios_file=scenarios,
        model_name=model,
        rejects=rejects,
    )
    from marginflow.app.margin import book_margins

    try:
        result = book_margins(run, top=top)
    except MarginflowError as exc:
        fail(str(exc))
    if as_json:
        print_json(
            {
                "valuation_date": str(run.book.market.valuation_date),
                "model": run.model_json(),
                "accounts": [r.to_json() for r in result.accounts],
                "members": [
                    {"member": m, "margin": margin, "accounts": n}
                    for m, margin, n in result.members
                ],
                "total": result.total,
                "rejected_rows": len(loaded.failures),
            }
        )
    else:
        _print_tables(run, result, limit)
    _finish(loaded)


def _print_tables(run: MarginRun, result: BookMargins, limit: int) -> None:
    results = result.accounts
    order = sorted(range(len(results)), key=lambda i: -results[i].margin)
    shown = order if limit <= 0 else order[:limit]
    es = run.model == "es"
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
    table(
        "member margins (sum of their accounts)",
        ("member", "accounts", "margin"),
        [(m, n, round(margin)) for m, margin, n in result.members],
    )


def what_if_command(
    ctx: typer.Context,
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
    revaluation: RevalOpt = "grid",
    as_json: JsonOpt = False,
    rejects: RejectsOpt = None,
) -> None:
    """Margin impact of hypothetical trades on one account; nothing is changed."""
    refuse_ignored_settings(
        ctx, model=model, scenarios=scenarios, source=source, apc=apc, param=param
    )
    output_file(rejects, "--rejects")
    trades = [_parse_trade(t) for t in trade]
    settings = _settings(
        confidence=confidence, apc=apc, source=source, mpor=mpor, lookback=lookback,
        decay=decay, stress=stress, overlapping=overlapping, mc_scenarios=mc_scenarios,
        seed=seed, param=param, revaluation=revaluation,
    )  # fmt: skip
    loaded, run = _build(
        book,
        positions=positions,
        market=market,
        history=history,
        settings=settings,
        scenarios_file=scenarios,
        model_name=model,
        rejects=rejects,
    )
    try:
        w = run.what_if(account, trades)
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
            ("instrument", "quantity", "contribution" if run.model == "es" else "loss at driver"),
            [(c.instrument, c.quantity, round(c.amount)) for c in b.top_positions],
        )
    _finish(loaded)


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
