"""``marginflow stress``: a thin shell over :mod:`marginflow.app.stress`.

Loads the book as ``marginflow margin`` does (rejected rows named on standard error, kept
in ``--rejects``, exit status 2), resolves the stress sets (built-in by name, a TOML set, a
user scenario CSV as a hypothetical set), runs the stress, and prints tables or one JSON
document; ``--export`` writes the accounts × scenarios P&L (CSV or Parquet), ``--report``
an HTML report. Every output names each set by name, version and fingerprint. Progress
lines go to standard error.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from marginflow.cli.margin_cmd import (
    ApcOpt,
    ConfOpt,
    FileOpt,
    JsonOpt,
    LookbackOpt,
    MporOpt,
    RejectsOpt,
    RevalOpt,
    _settings,
)
from marginflow.cli.options import given, refuse_ignored
from marginflow.cli.output import (
    fail,
    output_file,
    print_json,
    report_failures,
    say,
    table,
    write_csv_rows,
    write_rejects,
)
from marginflow.core.errors import MarginflowError
from marginflow.core.limits import CONTRIBUTION_MAX

if TYPE_CHECKING:
    from marginflow.app.stress import StressResult
    from marginflow.stress.scenarios import StressSet

BUILTIN_HINT = "historical, published, a stress-set .toml file or a scenario .csv file"
EXPORT_SUFFIXES = (".csv", ".parquet")


def register(app: typer.Typer) -> None:
    app.command("stress")(stress_command)


def stress_command(
    ctx: typer.Context,
    book: Annotated[Path, typer.Option("--book", help="book folder (see generate-book)")],
    stress_set: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help=f"stress set (repeatable): {BUILTIN_HINT}; default historical and published",
        ),
    ] = None,
    version: Annotated[
        str | None,
        typer.Option(help="version of a built-in set (default its latest), or of a CSV set"),
    ] = None,
    positions: FileOpt = None,
    market: FileOpt = None,
    history: FileOpt = None,
    margin_scenarios: Annotated[
        Path | None,
        typer.Option(help="margin on these user scenarios (CSV) instead of generated ones"),
    ] = None,
    confidence: ConfOpt = 0.99,
    apc: ApcOpt = "none",
    mpor: MporOpt = 2,
    lookback: LookbackOpt = 1250,
    revaluation: RevalOpt = "grid",
    default_fund: Annotated[
        Path | None,
        typer.Option(help="CSV member,contribution: the contributions held, replacing computed"),
    ] = None,
    cover: Annotated[
        int, typer.Option(help="size the fund at Cover-1 or Cover-2", min=1, max=2)
    ] = 2,
    min_contribution: Annotated[
        float,
        typer.Option(
            help="floor of a computed contribution (currency)", min=0, max=CONTRIBUTION_MAX
        ),
    ] = 0.0,
    reverse: Annotated[bool, typer.Option(help="run the reverse stress per member")] = True,
    history_days: Annotated[
        int, typer.Option(help="Cover-2 on each of the last N days of the history", min=0)
    ] = 0,
    top: Annotated[int, typer.Option(help="accounts and scenarios shown", min=1)] = 10,
    export: Annotated[
        Path | None, typer.Option(help="write the accounts × scenarios P&L: .csv or .parquet")
    ] = None,
    report: Annotated[Path | None, typer.Option(help="write an HTML report here")] = None,
    as_json: JsonOpt = False,
    rejects: RejectsOpt = None,
) -> None:
    """Stress a book: losses per account, member and firm under historical, published or
    your own scenarios, gross and beyond the margin posted; Cover-1 and Cover-2 default-fund
    sizing with each member's contribution; the smallest market move that exhausts each
    member's margin and contribution (reverse stress).

    P&L is profit-positive; a loss is -P&L. Conventions and formulas: docs/stress.md.
    """
    if margin_scenarios is not None:
        refuse_ignored(ctx, ["lookback"], because="--margin-scenarios")
    if default_fund is not None:
        refuse_ignored(ctx, ["cover", "min_contribution"], because="--default-fund")
    if as_json:
        refuse_ignored(ctx, ["top"], because="--json")
    for path, option in ((rejects, "--rejects"), (report, "--report"), (export, "--export")):
        output_file(path, option)
    if export is not None and export.suffix.lower() not in EXPORT_SUFFIXES:
        fail(f"--export {export}: name a .csv or .parquet file")
    names = list(stress_set or ["historical", "published"])
    if version is not None and (len(names) != 1 or not given(ctx, "stress_set")):
        fail("--version applies to one --set: give the set it is a version of")
    settings = _settings(
        confidence=confidence, apc=apc, source="fhs", mpor=mpor, lookback=lookback,
        decay=0.97, stress="default", overlapping=True, mc_scenarios=10_000, seed=0,
        param=None, revaluation=revaluation,
    )  # fmt: skip
    from marginflow.app.stress import check_sets, run_stress
    from marginflow.io.book import load_book
    from marginflow.stress.default_fund import read_default_fund

    started = time.perf_counter()

    def progress(message: str) -> None:
        say(f"[{time.perf_counter() - started:6.1f} s] {message}", err=True)

    loaded = None
    try:
        loaded = load_book(book, positions_file=positions, market_file=market, history_file=history)
        # the book first: a set file's scenario that leaves one of its underlyings unmoved is
        # then refused naming the file and line, before the run starts
        sets = [_stress_set(n, version, loaded.book.underlyings.ids) for n in names]
        check_sets(sets)
        fund = (
            read_default_fund(default_fund, loaded.book.positions.members)
            if default_fund is not None
            else None
        )
        result = run_stress(
            loaded,
            sets,
            settings=settings,
            margin_scenarios_file=margin_scenarios,
            default_fund=fund,
            default_fund_source=str(default_fund) if default_fund else "",
            cover_k=cover,
            min_contribution=min_contribution,
            reverse=reverse,
            history_days=history_days,
            progress=progress,
        )
        if report is not None:
            from marginflow.app.stress_report import stress_report

            progress(f"report: {report}")
            report.write_text(stress_report(result).html(), encoding="utf-8")
    except MarginflowError as exc:
        # the book's rejected rows are kept even when a set, a fund file or the run refuses
        if rejects is not None and loaded is not None:
            write_rejects(rejects, loaded.failures)
        fail(str(exc))
    if rejects is not None:
        write_rejects(rejects, loaded.failures)
    if export is not None:
        progress(f"export: {export}")
        _export(result, export)
    if as_json:
        doc = result.to_json()
        doc["rejected_rows"] = len(loaded.failures)
        print_json(doc)
    else:
        _print_tables(result, top)
    if loaded.failures:
        report_failures(loaded.failures)
        raise typer.Exit(2)


_NAME_CHARS = re.compile(r"[^a-z0-9_-]+")


def _stress_set(name: str, version: str | None, underlyings: Sequence[str]) -> StressSet:
    """A built-in set by name, a TOML stress set, or a scenario CSV (a hypothetical set
    named after the file, version ``--version`` or 1); a file's set must move every one of
    the book's ``underlyings`` in every scenario."""
    from marginflow.core.errors import ConfigurationError
    from marginflow.stress.library import builtin_set, builtin_versions
    from marginflow.stress.scenarios import load_stress_set, stress_set_from_scenario_file

    path = Path(name)
    suffix = path.suffix.lower()
    if suffix == ".toml":
        s = load_stress_set(path, underlyings=underlyings)
        if version is not None and version != s.version:
            raise ConfigurationError(f"--set {name}: the file holds version {s.version!r}")
        return s
    if suffix == ".csv":
        stem = _NAME_CHARS.sub("-", path.stem.lower()).strip("-_")[:64] or "hypothetical"
        return stress_set_from_scenario_file(
            path,
            name=stem,
            version=version or "1",
            description=f"hypothetical shocks of {path.name}",
            underlyings=underlyings,
        )
    if name not in builtin_versions():
        raise ConfigurationError(f"--set {name!r}: not a built-in set ({BUILTIN_HINT})")
    return builtin_set(name, version)


def set_line(result: StressResult) -> str:
    """Each set by name, version, fingerprint and scenario count."""
    return "; ".join(
        f"{s.name} version {s.version} (fingerprint {s.fingerprint}, {len(s.scenarios)} scenarios)"
        for s in result.sets
    )


def _export(result: StressResult, path: Path) -> None:
    """The P&L matrix, one row per account: ``account, member, <one column per scenario>``
    (currency, profit positive, float64)."""
    header = ["account", "member", *result.labels]
    members = [result.members[int(m)] for m in result.account_member]
    try:
        if path.suffix.lower() == ".parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            columns = [pa.array(list(result.accounts)), pa.array(members)]
            columns += [pa.array(result.pnl[:, s]) for s in range(result.pnl.shape[1])]
            meta = {"stress_sets": set_line(result)}
            pq.write_table(
                pa.Table.from_arrays(columns, names=header).replace_schema_metadata(meta), path
            )
        else:
            with open(path, "w", encoding="utf-8", newline="") as fh:
                rows = (
                    [a, m, *row]
                    for a, m, row in zip(result.accounts, members, result.pnl.tolist(), strict=True)
                )
                write_csv_rows(fh, header, rows)
    except OSError as exc:
        fail(f"--export {path}: {exc.strerror or exc}")


def _money(x: float) -> int:
    return round(x)


def _print_tables(r: StressResult, top: int) -> None:
    say(f"stress sets: {set_line(r)}")
    say(f"margin posted: {r.margin_title}; betas: {r.betas}")
    firm = r.firm()
    table(
        f"firm ({len(r.accounts):,} accounts, {len(r.members):,} members, "
        f"{len(r.labels):,} scenarios)",
        ("measure", "amount", "scenario"),
        [
            ("margin posted", _money(firm["margin"]), ""),
            ("worst loss (gross)", _money(firm["gross_loss"]), firm["gross_loss_scenario"]),
            (
                "worst loss beyond margin, by account",
                _money(firm["uncovered"]),
                firm["uncovered_scenario"],
            ),
            (
                "worst loss beyond margin, member-netted",
                _money(firm["uncovered_netted"]),
                firm["uncovered_netted_scenario"],
            ),
        ],
    )
    table(
        "members: worst loss gross and beyond margin (by account: accounts do not offset; "
        "netted: one pool per member)",
        (
            "member",
            "accounts",
            "margin",
            "contribution",
            "worst loss",
            "scenario",
            "beyond margin",
            "scenario ",
            "netted",
        ),
        [
            (
                m["member"],
                m["accounts"],
                _money(m["margin"]),
                _money(m["contribution"]),
                _money(m["gross_loss"]),
                m["gross_loss_scenario"],
                _money(m["uncovered"]),
                m["uncovered_scenario"],
                _money(m["uncovered_netted"]),
            )
            for m in r.members_table()
        ],
    )
    rows = []
    for c in (r.cover1, r.cover2):
        names = ", ".join(
            f"{r.members[m]} {_money(float(r.member_uncovered[m, c.scenario])):,}"
            for m in c.members
        )
        rows.append((f"Cover-{c.k}", _money(c.fund), r.labels[c.scenario], names or "(none)"))
    table(
        f"default fund: Cover-1 and Cover-2 (fund sized at Cover-{r.cover}; contributions "
        f"{r.contributions_source})",
        ("cover", "fund", "setting scenario", "members (uncovered loss there)"),
        rows,
    )
    if r.reverse:
        by_member: dict[int, dict[str, str]] = {}
        for mv in r.reverse:
            text = f"{mv.move:+.2%}" if mv.move is not None else f"not within ±{mv.bound:.0%}"
            by_member.setdefault(mv.member, {})[mv.direction] = text
        mm = r.member_margin
        table(
            "reverse stress: smallest market move (beta-scaled, vol by the VIX proxy) "
            "whose loss beyond margin exceeds the member's contribution (±0.1%)",
            ("member", "margin", "contribution", "fall", "rise"),
            [
                (
                    r.members[m],
                    _money(float(mm[m])),
                    _money(float(r.contributions[m])),
                    d.get("down", ""),
                    d.get("up", ""),
                )
                for m, d in sorted(by_member.items())
            ],
        )
    scen = sorted(r.scenarios_table(), key=lambda s: -s["uncovered"])[:top]
    table(
        f"worst scenarios (top {len(scen)} by firm loss beyond margin)",
        ("scenario", "set", "gross loss", "beyond margin", "Cover-1", "Cover-2"),
        [
            (
                s["scenario"],
                s["set"],
                _money(s["gross_loss"]),
                _money(s["uncovered"]),
                _money(s["cover1"]),
                _money(s["cover2"]),
            )
            for s in scen
        ],
    )
    accounts = r.to_json(top=top)["accounts"]
    table(
        f"accounts (top {len(accounts)} by worst gross loss)",
        ("account", "member", "margin", "worst loss", "beyond margin", "scenario"),
        [
            (
                a["account"],
                a["member"],
                _money(a["margin"]),
                _money(a["gross_loss"]),
                _money(a["uncovered"]),
                a["scenario"],
            )
            for a in accounts
        ],
    )
    if r.history:
        from marginflow.app.stress import HISTORY_HELD

        table(
            f"Cover-2 members by day (held constant: {HISTORY_HELD})",
            ("date", "margin", "Cover-1", "Cover-2", "setting scenario", "Cover-2 members"),
            [
                (
                    d.date.isoformat(),
                    _money(d.margin),
                    _money(d.cover1.fund),
                    _money(d.cover2.fund),
                    r.labels[d.cover2.scenario],
                    ", ".join(r.members[m] for m in d.cover2.members) or "(none)",
                )
                for d in r.history
            ],
        )
