"""Stress testing and back-testing over the store's book as it is now
(:func:`marginflow.app.current_book.current_book`): the same ``marginflow.app`` functions
as ``marginflow stress`` and ``marginflow backtest``, their JSON and their HTML reports.

Who sees what. ``stress`` and ``backtest`` are granted to the risk roles and to a member's
users. A clearing-house user sees the whole result. A member's user runs the same
computation (the whole book: a member's uncovered loss and its contribution depend on every
member) but is answered with its own member's rows only: its member, its accounts, their
P&L distributions and back-test series, its contribution and its reverse stress. What
describes other members is left out (``null``): the firm totals, Cover-1 and Cover-2 (their
setting members and fund), the per-scenario firm table and the firm's back-test rows. The
HTML reports are the risk committee's, every member's numbers in them: ``risk.reports``,
the risk roles only.

Every run is audited (``risk.stress``, ``risk.backtest``, ``risk.report``: set or window,
the book it ran on, whether it was cached). A result is cached per (book load, market
offset, positions, what was asked: set name, version and fingerprint, or window, horizon,
models and confidences), so reading it again (a page reload, a report after the page)
does not recompute; only a computation counts against the caller's rate of heavy requests.
"""

from __future__ import annotations

import datetime as dt
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Annotated, Any, Literal, TypeVar

import numpy as np
from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from marginflow.app.backtest import Backtest, backtest_book, backtest_report
from marginflow.app.current_book import CurrentBook, current_book
from marginflow.app.stress import StressResult, run_stress
from marginflow.app.stress_report import stress_report
from marginflow.backtest.coverage import CoverageRow, series, worst_accounts
from marginflow.service.auth import Caller, heavy, require
from marginflow.service.context import ServiceContext
from marginflow.service.roles import Permission
from marginflow.service.scope import Scope
from marginflow.stress.library import builtin_set

router = APIRouter(prefix="/api/v1", tags=["risk"])
Stresser = Annotated[Caller, Depends(require(Permission.STRESS))]
BackTester = Annotated[Caller, Depends(require(Permission.BACKTEST))]
Reporter = Annotated[Caller, Depends(require(Permission.RISK_REPORTS))]

CACHED_RESULTS = 8
"""Results kept per process (the newest; each holds an accounts × scenarios matrix)."""
DISTRIBUTIONS = 3
"""Accounts whose scenario P&L distribution a stress answer carries (the worst in scope)."""
SERIES_ACCOUNTS = 3
"""Accounts whose margin and P&L series a back-test answer carries (the worst in scope)."""

SetName = Literal["historical", "published"]
Version = Annotated[
    str | None,
    Field(
        default=None,
        pattern=r"^\d{1,4}(\.\d{1,4}){0,3}$",
        description="the set's version (default its latest), e.g. 1",
    ),
]
Model = Literal["es", "span", "pm"]
RealisedVols = Literal["model", "held"]
RealisedPnl = Literal["full", "clean"]
Confidence = Annotated[float, Field(ge=0.9, le=0.9999, allow_inf_nan=False)]


# -- requests ------------------------------------------------------------------------------
class StressIn(BaseModel):
    """A stress run over the stored book: a built-in set at a version (default its latest),
    answered with the ``top`` worst accounts (in the caller's scope)."""

    model_config = ConfigDict(extra="forbid")
    set: SetName = "historical"
    version: Version = None
    top: int = Field(default=20, ge=1, le=200)


def _es_only() -> list[Model]:
    return ["es"]


class BacktestIn(BaseModel):
    """A back-test of the stored book's positions (held static; the stream's position
    history too when it covers the window) over the last ``days`` business days of its
    price history: each day's margin against the realised P&L over ``horizon`` business
    days (default the margin period of risk in force)."""

    model_config = ConfigDict(extra="forbid")
    days: int = Field(default=250, ge=10, le=1000)
    horizon: int | None = Field(default=None, ge=1, le=10)
    models: list[Model] = Field(default_factory=_es_only, min_length=1, max_length=3)
    confidences: list[Confidence] = Field(default_factory=list, max_length=4)
    realised_vols: RealisedVols = "model"
    """Implied vols over the horizon in the realised P&L: moved by the scenarios' vol map
    (``model``) or ``held`` (docs/backtest.md)."""
    pnl: RealisedPnl = "full"
    """The realised P&L: ``full`` (options aged over the horizon) or ``clean`` (times to
    expiry held: the move alone)."""


# -- answers -------------------------------------------------------------------------------
class BookOut(BaseModel):
    """The stored book a result was computed on (``current_book``)."""

    book_load: str | None
    valuation_date: str
    market_offset: int | None
    positions_fingerprint: str | None
    accounts: int | None
    members: int | None
    positions: int | None


class RunInfo(BaseModel):
    """Whether the answer came from the cache, when it was computed (UTC) and how long
    the computation took (seconds)."""

    cached: bool
    computed_at: str
    seconds: float
    scope: Literal["firm", "member"]


class StressSetOut(BaseModel):
    name: str
    version: str
    fingerprint: str
    scenarios: int


class FirmOut(BaseModel):
    """The firm's margin and its worst losses (book currency), each with its scenario."""

    margin: float
    gross_loss: float
    gross_loss_scenario: str
    uncovered: float
    uncovered_scenario: str
    uncovered_netted: float
    uncovered_netted_scenario: str


class StressMember(BaseModel):
    """A member's margin, default-fund contribution and worst losses: gross, beyond margin
    account by account, and member-netted; each with the scenario that sets it."""

    member: str
    accounts: int
    margin: float
    contribution: float
    gross_loss: float
    gross_loss_scenario: str
    uncovered: float
    uncovered_scenario: str
    uncovered_netted: float
    uncovered_netted_scenario: str


class StressAccount(BaseModel):
    account: str
    member: str
    margin: float
    gross_loss: float
    uncovered: float
    scenario: str


class ScenarioPnl(BaseModel):
    """One stress scenario's P&L of an account (profit positive); ``beyond_margin``: a
    loss larger than the account's margin (the tail)."""

    label: str
    pnl: float
    beyond_margin: bool


class Distribution(BaseModel):
    account: str
    member: str
    margin: float
    worst_scenario: str
    worst_loss: float
    scenarios: list[ScenarioPnl]


class CoverMember(BaseModel):
    member: str
    uncovered: float


class CoverOut(BaseModel):
    """Cover-k: the fund, the scenario that sets it and the k members whose uncovered
    losses there make it up (largest first)."""

    k: int
    fund: float
    scenario: str
    members: list[CoverMember]


class DefaultFund(BaseModel):
    """The fund sized at Cover-``cover`` and the contributions (a member's user: its own
    only, the fund and total collected ``null``)."""

    cover: int
    fund: float | None
    collected: float | None
    source: str
    contributions: dict[str, float]


class ReverseOut(BaseModel):
    """The smallest market move (signed fraction) that exhausts a member's margin plus
    contribution, per direction; ``move`` null when none within ``bound`` does."""

    member: str
    direction: str
    move: float | None
    exhausted: bool
    gross_loss: float | None
    uncovered: float | None
    bound: float


class ScenarioRow(BaseModel):
    scenario: str
    set: str
    gross_loss: float
    uncovered: float
    cover1: float
    cover2: float


class StressOut(BaseModel):
    """A stress run (module docstring for what a member's user is shown)."""

    book: BookOut
    run: RunInfo
    stress_sets: list[StressSetOut]
    valuation_date: str
    margin_model: dict[str, Any]
    betas: str
    conventions: dict[str, Any]
    members: list[StressMember]
    accounts: list[StressAccount]
    distributions: list[Distribution]
    reverse_stress: list[ReverseOut]
    default_fund: DefaultFund
    firm: FirmOut | None
    cover1: CoverOut | None
    cover2: CoverOut | None
    scenarios: list[ScenarioRow] | None


class TestOut(BaseModel):
    lr: float
    p_value: float
    reject: bool


class CoverageOut(BaseModel):
    """One series' back-test statistics: breaches, coverage, Kupiec, Christoffersen
    independence and conditional coverage (tests at ``test_level``), Basel zone."""

    level: Literal["firm", "member", "account"]
    name: str
    member: str
    mode: str
    model: str
    column: str
    confidence: float
    days: int
    breaches: int
    coverage: float
    expected_rate: float
    kupiec: TestOut
    independence: TestOut
    conditional_coverage: TestOut
    test_level: float
    zone: str
    zone_probability: float
    transitions: dict[str, int] = Field(
        description="breach transitions day to day (n00, n01, n10, n11) of the Christoffersen tests"
    )
    worst_excess: float

    @classmethod
    def of(cls, row: CoverageRow) -> CoverageOut:
        return cls.model_validate(row.to_json())


class ColumnOut(BaseModel):
    key: str
    model: str
    confidence: float
    label: str


class SeriesOut(BaseModel):
    """A series through the window: the loss over the horizon (-P&L) from each day and
    each column's margin of that day (currency); ``breaches[column]``: the days (indices)
    whose loss exceeded that margin."""

    level: Literal["firm", "member", "account"]
    name: str
    member: str
    mode: str
    loss: list[float]
    margins: dict[str, list[float]]
    breaches: dict[str, list[int]]


class WindowOut(BaseModel):
    start: str
    end: str
    days: int
    last_pnl_date: str
    dates: list[str]


class BacktestOut(BaseModel):
    """A back-test (module docstring for what a member's user is shown)."""

    book: BookOut
    run: RunInfo
    window: WindowOut
    horizon_days: int
    realised_vols: str
    realised_pnl: str
    settings: dict[str, Any]
    columns: list[ColumnOut]
    modes: list[str]
    accounts: int
    coverage: list[CoverageOut]
    worst_accounts: list[CoverageOut]
    series: list[SeriesOut]
    notes: list[str]


# -- the cache -----------------------------------------------------------------------------
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Computed:
    """A result with the stored book it was computed on."""

    book: CurrentBook
    value: Any
    computed_at: str
    seconds: float


def _results(ctx: ServiceContext) -> OrderedDict[tuple[Any, ...], Computed]:
    found: OrderedDict[tuple[Any, ...], Computed] | None = ctx.cache.get("risk")
    if found is None:
        found = ctx.cache["risk"] = OrderedDict()
    return found


def _cached(
    caller: Caller,
    request: Request,
    ask: tuple[Any, ...],
    compute: Callable[[CurrentBook], T],
) -> tuple[Computed, bool]:
    """The result of ``compute`` on the stored book now, from the cache when the same
    question was answered on the same book (one recompute at a time per process: the
    engines are shared)."""
    ctx = caller.ctx
    # Charged before the lock, hit or not: assembling the stored book is itself work, and a
    # refused request must not queue behind the lock (as the other recomputing routes do).
    heavy(request, caller)
    with ctx.engine_lock:
        book = current_book(ctx.db, cache=ctx.engines)
        results = _results(ctx)
        key = (book.key, *ask)
        hit = results.get(key)
        if hit is not None:
            results.move_to_end(key)
            return hit, True
        t0 = time.perf_counter()
        value = compute(book)
        done = Computed(
            book,
            value,
            dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            round(time.perf_counter() - t0, 3),
        )
        results[key] = done
        while len(results) > CACHED_RESULTS:
            results.popitem(last=False)
        return done, False


def _book_out(b: CurrentBook, scope: Scope) -> BookOut:
    """The book's description; a member's user gets its date alone: the whole book's
    counts and positions fingerprint would show other members' trading as it happens."""
    doc = b.describe()
    if scope.member is not None:
        doc = {k: (v if k == "valuation_date" else None) for k, v in doc.items()}
    return BookOut.model_validate(doc)


def _run(done: Computed, cached: bool, scope: Scope) -> RunInfo:
    return RunInfo(
        cached=cached,
        computed_at=done.computed_at,
        seconds=done.seconds,
        scope="firm" if scope.member is None else "member",
    )


# -- stress --------------------------------------------------------------------------------
def _stress(
    caller: Caller, request: Request, name: str, version: str | None
) -> tuple[Computed, bool]:
    stress_set = builtin_set(name, version)

    def compute(book: CurrentBook) -> StressResult:
        return run_stress(book.loaded, stress_set, settings=book.settings)

    ask = ("stress", stress_set.name, stress_set.version, stress_set.fingerprint)
    return _cached(caller, request, ask, compute)


def _distribution(r: StressResult, a: int) -> Distribution:
    pnl = r.pnl[a]
    worst = int(np.argmin(pnl))
    margin = float(r.margin[a])
    return Distribution(
        account=r.accounts[a],
        member=r.members[int(r.account_member[a])],
        margin=margin,
        worst_scenario=r.labels[worst],
        worst_loss=float(-pnl[worst]),
        scenarios=[
            ScenarioPnl(label=label, pnl=float(p), beyond_margin=bool(-p > margin))
            for label, p in zip(r.labels, pnl.tolist(), strict=True)
        ],
    )


def stress_answer(r: StressResult, scope: Scope, *, top: int) -> dict[str, Any]:
    """The parts of ``r.to_json()`` the caller's scope may see (module docstring), with the
    worst accounts' distributions."""
    doc = r.to_json()
    sees = scope.sees_member
    house = scope.member is None
    accounts = [x for x in doc["accounts"] if sees(x["member"])][:top]
    index = {a: i for i, a in enumerate(r.accounts)}
    fund = doc["default_fund"]
    return {
        "stress_sets": [
            {
                "name": s["name"],
                "version": s["version"],
                "fingerprint": s["fingerprint"],
                "scenarios": s["scenarios"],
            }
            for s in doc["stress_sets"]
        ],
        "valuation_date": doc["valuation_date"],
        "margin_model": doc["margin_model"],
        "betas": doc["betas"],
        "conventions": doc["conventions"],
        "members": [m for m in doc["members"] if sees(m["member"])],
        "accounts": accounts,
        "distributions": [
            _distribution(r, index[x["account"]]).model_dump() for x in accounts[:DISTRIBUTIONS]
        ],
        "reverse_stress": [x for x in doc["reverse_stress"] if sees(x["member"])],
        "default_fund": {
            "cover": fund["cover"],
            "fund": fund["fund"] if house else None,
            "collected": fund["collected"] if house else None,
            "source": fund["source"],
            "contributions": {m: c for m, c in fund["contributions"].items() if sees(m)},
        },
        "firm": doc["firm"] if house else None,
        "cover1": doc["cover1"] if house else None,
        "cover2": doc["cover2"] if house else None,
        "scenarios": doc["scenarios"] if house else None,
    }


@router.post("/stress", response_model=StressOut)
def stress(form: StressIn, request: Request, caller: Stresser) -> StressOut:
    """Stress the stored book under a built-in set: losses by account and member, gross
    and beyond margin, Cover-1 / Cover-2 with the setting scenario, contributions, reverse
    stress. A member's user is answered with its own member's rows (module docstring)."""
    done, cached = _stress(caller, request, form.set, form.version)
    r: StressResult = done.value
    caller.audit(
        "risk.stress",
        subject=f"{form.set} {r.sets[0].version}",
        detail={"book": list(done.book.key), "cached": cached, "top": form.top},
    )
    return StressOut.model_validate(
        {
            "book": _book_out(done.book, caller.scope),
            "run": _run(done, cached, caller.scope),
            **stress_answer(r, caller.scope, top=form.top),
        }
    )


def _html(text: str, name: str) -> Response:
    return Response(
        text,
        media_type="text/html; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="{name}"',
            "Cache-Control": "no-store",
        },
    )


HTML_REPORT: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/html": {}}, "description": "the HTML report"}
}


@router.get("/stress/report", response_class=Response, responses=HTML_REPORT)
def stress_report_html(
    request: Request,
    caller: Reporter,
    set: Annotated[SetName, Query()] = "historical",
    version: Annotated[str | None, Query(pattern=r"^\d{1,4}(\.\d{1,4}){0,3}$")] = None,
    top: Annotated[int, Query(ge=1, le=200)] = 20,
) -> Response:
    """The stress report a risk committee reads (HTML, charts inline), of the same run as
    ``POST /stress`` (cached: the same set on the same book is not recomputed)."""
    done, cached = _stress(caller, request, set, version)
    r: StressResult = done.value
    caller.audit(
        "risk.report",
        subject=f"stress {set} {r.sets[0].version}",
        detail={"book": list(done.book.key), "cached": cached},
    )
    name = f"stress-{r.sets[0].name}-{r.sets[0].version}-{r.valuation_date.isoformat()}.html"
    return _html(stress_report(r, top=top).html(), name)


# -- back-test -----------------------------------------------------------------------------
def _backtest(caller: Caller, request: Request, form: BacktestIn) -> tuple[Computed, bool]:
    models = tuple(dict.fromkeys(form.models))
    confidences = tuple(dict.fromkeys(form.confidences))

    def compute(book: CurrentBook) -> Backtest:
        settings = book.settings
        if form.horizon is not None:
            settings = replace(settings, mpor=form.horizon)
        bt = backtest_book(
            book.loaded,
            settings=settings,
            models=models,
            confidences=confidences,
            days=form.days,
            mode="auto",
            database=caller.ctx.db,
            realised_vols=form.realised_vols,
            realised_pnl=form.pnl,
            book_name=f"the store's book (load {book.load.id[:12]}, market #{book.market_offset})",
        )
        # the store's address is the operators' (a PostgreSQL URL names host and user)
        url = str(caller.ctx.db.url)
        bt.notes = [n.replace(url, "the store") for n in bt.notes]
        return bt

    ask = ("backtest", form.days, form.horizon, models, confidences, form.realised_vols, form.pnl)
    return _cached(caller, request, ask, compute)


def _series_out(s: Any) -> SeriesOut:
    return SeriesOut(
        level=s.level,
        name=s.name,
        member=s.member,
        mode=s.mode,
        loss=(-s.pnl).tolist(),
        margins={},
        breaches={},
    )


def backtest_answer(bt: Backtest, scope: Scope) -> dict[str, Any]:
    """The parts of ``bt.to_json()`` the caller's scope may see (module docstring), with
    the series a chart draws: the firm's (clearing house) or the member's, and the worst
    accounts'."""
    doc = bt.to_json()
    sees = scope.sees_member
    house = scope.member is None

    def visible(row: dict[str, Any]) -> bool:
        return house if row["level"] == "firm" else bool(sees(row["member"]))

    # the worst of the accounts in scope, not those of the firm's worst that are in scope
    worst = [row.to_json() for row in worst_accounts([r for r in bt.rows if sees(r.member)])]
    coverage = [x for x in doc["coverage"] if visible(x)]
    wanted_accounts = {x["name"] for x in worst[:SERIES_ACCOUNTS]}
    if not wanted_accounts:  # no breach in scope: chart the account furthest beyond margin
        acc = [x for x in coverage if x["level"] == "account"]
        acc.sort(key=lambda x: -x["worst_excess"])
        wanted_accounts = {x["name"] for x in acc[:1]}
    merged: dict[tuple[str, str, str], SeriesOut] = {}
    for s in series(bt.result):
        if s.level == "account" and s.name not in wanted_accounts:
            continue
        if not visible({"level": s.level, "member": s.member}):
            continue
        out = merged.setdefault((s.level, s.name, s.mode), _series_out(s))
        out.margins[s.column.key] = s.margin.tolist()
        out.breaches[s.column.key] = np.flatnonzero(s.breaches).tolist()
    r = bt.result
    return {
        "window": {**doc["window"], "dates": [str(d) for d in r.days]},
        "horizon_days": doc["horizon_days"],
        "realised_vols": doc["realised_vols"],
        "realised_pnl": doc["realised_pnl"],
        "settings": doc["settings"],
        "columns": doc["columns"],
        "modes": doc["modes"],
        "accounts": len({x["name"] for x in coverage if x["level"] == "account"}),
        "coverage": coverage,
        "worst_accounts": worst,
        "series": list(merged.values()),
        # notes count and name what the run left out of the whole book: the house's alone
        "notes": doc["notes"] if house else [],
    }


@router.post("/backtest", response_model=BacktestOut)
def backtest(form: BacktestIn, request: Request, caller: BackTester) -> BacktestOut:
    """Back-test the stored book's margins: breaches, coverage, Kupiec and Christoffersen
    tests and the Basel zone per account, member and firm, per model and confidence. A
    member's user is answered with its own member's rows (module docstring)."""
    done, cached = _backtest(caller, request, form)
    caller.audit(
        "risk.backtest",
        subject=f"{form.days} days",
        detail={
            "book": list(done.book.key),
            "cached": cached,
            "request": form.model_dump(),
        },
    )
    return BacktestOut.model_validate(
        {
            "book": _book_out(done.book, caller.scope),
            "run": _run(done, cached, caller.scope),
            **backtest_answer(done.value, caller.scope),
        }
    )


@router.get("/backtest/report", response_class=Response, responses=HTML_REPORT)
def backtest_report_html(
    request: Request,
    caller: Reporter,
    days: Annotated[int, Query(ge=10, le=1000)] = 250,
    horizon: Annotated[int | None, Query(ge=1, le=10)] = None,
    models: Annotated[list[Model] | None, Query(max_length=3)] = None,
    confidences: Annotated[list[Confidence] | None, Query(max_length=4)] = None,
    realised_vols: RealisedVols = "model",
    pnl: RealisedPnl = "full",
) -> Response:
    """The back-test report a risk committee reads (HTML, charts inline), of the same run
    as ``POST /backtest`` with these parameters (cached)."""
    form = BacktestIn(
        days=days,
        horizon=horizon,
        models=models or ["es"],
        confidences=confidences or [],
        realised_vols=realised_vols,
        pnl=pnl,
    )
    done, cached = _backtest(caller, request, form)
    bt: Backtest = done.value
    caller.audit(
        "risk.report",
        subject=f"backtest {days} days",
        detail={"book": list(done.book.key), "cached": cached, "request": form.model_dump()},
    )
    name = f"backtest-{bt.result.days[0]}-{bt.result.days[-1]}.html"
    return _html(backtest_report(bt).html(), name)
