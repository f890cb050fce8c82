"""``marginflow demo``: the whole platform in one process, no servers.

1. Prices the bundled sample options (European BSM, American ALO) with Greeks.
2. Streams a generated book and trading day through the embedded pipeline (durable log,
   position keeper, risk calculator, aggregator, SQLite sink) and shows member margins.
3. Shows the ISDA SIMM the same pipeline's SIMM worker computed for three generated CRIF
   submissions (one per firm, against the next), both ways, and the risk-parameter changes
   the sink audited.
"""

from __future__ import annotations

import time
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import typer

from marginflow.cli.options import refuse_ignored
from marginflow.cli.output import fail, note, print_json, report_failures, say, status, table
from marginflow.core.errors import MSG_NOT_A_FOLDER


def register(app: typer.Typer) -> None:
    app.command("demo")(demo_command)


def demo_command(
    ctx: typer.Context,
    directory: Annotated[
        Path, typer.Option("--dir", help="where the demo keeps its log, state and database")
    ] = Path("var/demo"),
    book: Annotated[
        Path | None,
        typer.Option("--book", help="your book folder (default: a generated one)"),
    ] = None,
    trades: Annotated[
        str, typer.Option(help="trades in the generated day, or a trades file to replay")
    ] = "20000",
    market: Annotated[
        Path | None, typer.Option(help="market file to replay (time,underlying,spot,...)")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON document")] = False,
) -> None:
    """Run the embedded demo: pricing, streaming clearing-house margin, and SIMM."""
    count, trades_file = _trades_option(trades)
    if trades_file is None and market is not None:  # a replayed day: no trades generated
        refuse_ignored(ctx, ["trades"], because="--market (give a trades file, or none)")
    with status("pricing the sample options ..."):
        pricing = _pricing_rows()
    what = f"{count:,} generated trades" if trades_file is None else f"trades of {trades_file}"
    with status(f"streaming {what} through the embedded pipeline ..."):
        stream = _stream_margins(directory, book, count, trades_file, market)
    simm = stream.pop("simm")
    if as_json:
        print_json({"pricing": pricing, "clearing": stream, "simm": simm})
        return
    table(
        "1. Options priced (BSM for European, Andersen-Lake-Offengenden for American)",
        ("kind", "style", "spot", "strike", "T (y)", "price", "delta", "vega/1%", "note"),
        [tuple(r.values()) for r in pricing],
    )
    table(
        f"2. Clearing-house margin after {stream['events']:,} events "
        f"({stream['events_per_second']:,.0f}/s through the embedded log, {stream['model']})",
        ("member", "accounts", "margin (USD)"),
        [(m["member"], m["accounts"], m["margin"]) for m in stream["members"]]
        + [("firm", stream["accounts"], stream["firm"])],
    )
    say(f"book: {stream['book']}")
    say(f"results stored in {stream['database']}; rejected events: {stream['rejects']}")
    by_portfolio: dict[tuple[str, str, str], dict[str, Any]] = {}
    for r in simm:
        row = by_portfolio.setdefault((r["party"], r["counterparty"], r["portfolio"]), {})
        row[r["side"]] = r["im"]
    version = simm[0]["version"] if simm else "-"
    table(
        f"3. ISDA SIMM {version} (10-day) of the CRIF submissions, from the stream's SIMM "
        "worker: collect = IM the party collects, post = IM it posts",
        ("party", "counterparty", "portfolio", "collect (USD)", "post (USD)"),
        [
            (*key, sides.get("collect", 0.0), sides.get("post", 0.0))
            for key, sides in by_portfolio.items()
        ],
    )
    say(f"risk-parameter changes audited (maker-checker) and applied: {stream['audited']}")


def _pricing_rows() -> list[dict[str, Any]]:
    from marginflow.cli.price_cmd import load_option_file
    from marginflow.pricing.api import greeks

    sample = resources.files("marginflow.io").joinpath("samples/options.csv")
    with resources.as_file(sample) as path:
        options = load_option_file(path)
    g = greeks(options.batch)
    return [
        {
            "kind": r["kind"],
            "style": r["style"],
            "spot": float(r["spot"]),
            "strike": float(r["strike"]),
            "expiry_years": float(r["expiry_years"]),
            "price": float(g.price[i]),
            "delta": float(g.delta[i]),
            "vega_per_vol_point": float(g.vega[i]) / 100.0,
            "note": r.get("note", ""),
        }
        for i, r in enumerate(options.rows.raw)
    ]


def _trades_option(text: str) -> tuple[int, Path | None]:
    if text.isdigit() and int(text) > 0:
        return int(text), None
    path = Path(text)
    if not path.is_file():
        fail(f"--trades must be a number of trades > 0 or a trades file, got {text!r}")
    return 0, path


def _stream_margins(
    directory: Path,
    book: Path | None,
    trades: int,
    trades_file: Path | None,
    market_file: Path | None,
) -> dict[str, Any]:
    from marginflow.core.errors import MarginflowError
    from marginflow.sim.demo import clear_run, run_demo

    run_dir = directory / "stream"
    t0 = time.perf_counter()
    try:
        if directory.exists() and not directory.is_dir():
            fail(MSG_NOT_A_FOLDER.format(option="--dir", path=directory))
        leftover = clear_run(run_dir)  # a fresh day each run
        if leftover is not None:
            note(f"could not delete the earlier run, renamed {leftover}: delete it")
        result = run_demo(
            run_dir,
            book_dir=book,
            trades_count=trades,
            trades_file=trades_file,
            market_file=market_file,
        )
    except MarginflowError as exc:
        fail(str(exc))
    if result.rejected_rows:
        report_failures(result.rejected_rows)
    elapsed = time.perf_counter() - t0
    return {
        "events": result.events,
        "market_events": result.market_events,
        "seconds": elapsed,
        "events_per_second": result.events / max(result.seconds, 1e-9),
        "accounts": result.accounts,
        "members": [
            {"member": member, "margin": margin, "accounts": accounts}
            for member, margin, accounts in result.members
        ],
        "firm": result.firm,
        "rejects": result.rejects,
        "database": result.db_url,
        "book": str(result.book_dir),
        "rejected_rows": len(result.rejected_rows),
        "audited": result.audited,
        "model": result.model,
        "simm": [
            {
                "party": r.party,
                "counterparty": r.counterparty,
                "portfolio": r.portfolio,
                "business_date": r.business_date,
                "version": r.simm_version,
                "side": side,
                "regulation": regulation,
                "im": im,
                "source_offset": r.source_offset,
            }
            for r in result.simm
            for side, regulation, im in (
                ("collect", r.collect_regulation, r.collect_im),
                ("post", r.post_regulation, r.post_im),
            )
        ],
    }
