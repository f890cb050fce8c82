"""Stress testing a book: losses per account, member and firm under named stress sets,
gross and net of margin, Cover-1 / Cover-2 default-fund sizing, reverse stress per member,
and the Cover-2 members over the last days of the book's history.

Everything here is a plain function of the book, the settings and the sets; the CLI
(``marginflow stress``) and the report (:mod:`.stress_report`) only show it.

Conventions (amounts in the book's currency; P&L profit-positive, a loss ``L = -P``)
----------------------------------------------------------------------------------------
* **Scenario P&L.** ``P[a, s] = Σ_j q_aj · M[j, s]``: the stress sets are materialised over
  the book's underlyings (:meth:`marginflow.stress.scenarios.StressSet.scenario_set`, betas
  from the book's history, :func:`book_betas`), every instrument is revalued under every
  scenario by the engine's revaluation (:func:`marginflow.engine.revaluation.revalue`, the
  premium grids shared with the margin run through its :class:`GridCache`), and the
  positions summed as the margin sums them
  (:func:`marginflow.engine.aggregate.account_pnl`). A stress move is instantaneous: times
  to expiry, rates and dividends are today's.
* **Margin posted** ``m_a``: the margin of account ``a`` under ``settings`` (the ES margin
  with its add-ons, :func:`marginflow.app.margin.margin_book`), computed on the same book.
* **Gross loss**: ``L[a, s]``; an account's worst gross loss is ``max_s L[a, s]`` and its
  scenario; a member's is ``max_s Σ_{a∈m} L[a, s]`` (its accounts' P&L add up), the firm's
  ``max_s Σ_a L[a, s]``.
* **Uncovered (net) loss, the default convention ("by account")**:
  ``U[a, s] = max(L[a, s] - m_a, 0)``, the loss beyond the account's own margin, and a
  member's ``U_m[s] = Σ_{a∈m} U[a, s]``: one account's surplus margin does not cover
  another's loss (a client's margin is the client's, and a house account's gain does not
  pay a client account's loss at default). The firm's is ``Σ_m U_m[s]``.
* **Member-netted alternative** (shown beside it): ``max(Σ_{a∈m} L[a, s] - Σ_{a∈m} m_a, 0)``,
  as if every account of the member were one portfolio with one pool of margin. It is
  never larger than the by-account figure.
* **Cover-k** (k = 1, 2): per scenario the sum of the k largest members' uncovered losses
  ``C_k[s] = Σ_{top k m} U_m[s]``; the Cover-k fund is ``max_s C_k[s]``, its **setting
  scenario** the first scenario attaining it, its members the k largest there (members with
  no uncovered loss are not listed).
* **Contributions**: the fund sized at Cover-``cover`` (default 2, the PFMI standard for a
  CCP with a more complex risk profile) is shared pro-rata to each member's uncovered loss
  in its setting scenario, ``c_m = F · U_m[s*] / Σ_n U_n[s*]``, floored at
  ``min_contribution`` (so the fund collected, ``Σ c_m``, is at least ``F``); a default-fund
  file (:mod:`marginflow.stress.default_fund`) replaces them.
* **Reverse stress** (:func:`reverse_stress`): per member and direction, the smallest
  market move ``x`` (a fall, then a rise) under which the member's uncovered loss exceeds
  its contribution, ``U_m(x) > c_m``, i.e. its accounts' losses exceed their margin plus its
  default-fund contribution. An underlying moves by its beta in log returns as the stress
  sets do, ``1 + spot = (1 + x) ** β`` (β = 1 without a history), and every implied vol by
  the one-day VIX proxy of :class:`marginflow.stress.historical.VolProxy` as stored with the
  ``published`` set. Found on a grid of moves ``step`` apart up to ``bound``, then refined
  inside the first bracket that crosses on the lattice of ``tolerance`` (every point in one
  revaluation: what a bisection to the tolerance finds, in one call instead of four): the
  move reported exhausts the resources, one ``tolerance`` smaller does not; a crossing and
  its reversal between two grid points is not seen.
* **History** (:func:`cover_history`): Cover-2 re-run on each of the last N days of the
  book's price history with the spots of that day (today's spots moved back by the
  history's log returns) and the positions held today. Held constant, and said so in every
  output: positions, implied vols and smiles, rates, dividends, times to expiry, the margin
  model's scenario set (today's shocks applied to that day's spots) and the stress sets.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp

from marginflow.app.margin import EsRun, margin_book
from marginflow.core.batch import FloatArray
from marginflow.core.book import Book, UnderlyingKind
from marginflow.core.errors import ConfigurationError, ValidationError
from marginflow.engine.aggregate import account_pnl
from marginflow.engine.revaluation import GridCache, RevaluationSettings, revalue
from marginflow.engine.settings import MarginSettings
from marginflow.engine.state import MarginEngine
from marginflow.io.book import LoadedBook
from marginflow.scenarios.scenario_set import ScenarioGroup, ScenarioSet
from marginflow.stress.historical import MARKET, VolProxy
from marginflow.stress.library import builtin_set
from marginflow.stress.scenarios import Shock, StressScenario, StressSet, market_betas

Progress = Callable[[str], None]
Direction = Literal["down", "up"]
DIRECTIONS: tuple[Direction, Direction] = ("down", "up")

REVERSE_BOUND = 0.5
"""Largest market move the reverse stress tries, each way (50%; the CFTC's 2019 reverse
stress test took index futures down 25%)."""
REVERSE_STEP = 0.01
"""Spacing of the reverse stress's first grid of moves (1%)."""
REVERSE_TOLERANCE = 0.001
"""Resolution of the reverse stress's move (0.1%)."""
REVERSE_CHUNK = 1000
"""Most market moves of the reverse stress revalued in one call."""
MAX_HISTORY_DAYS = 2520
HISTORY_HELD = (
    "positions, implied vols and smiles, rates, dividends and times to expiry are today's; "
    "the margin model's scenario set is today's, applied to that day's spots"
)


# --- results ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Cover:
    """Cover-``k``: ``fund = max_s by_scenario[s]``, set by ``scenario`` (an index), with
    ``members`` (indices) the k largest uncovered losses there, largest first (only those
    with a loss)."""

    k: int
    fund: float
    scenario: int
    members: tuple[int, ...]
    by_scenario: FloatArray


@dataclass(frozen=True, slots=True)
class ReverseMove:
    """One member's reverse stress in one direction: ``move`` the smallest market move found
    (signed: -0.123 is a 12.3% fall) that exhausts ``resources`` (its accounts' margin plus
    its contribution), with the member's gross and uncovered loss there; ``move`` is None if
    no move within ``bound`` does."""

    member: int
    direction: Direction
    move: float | None
    gross_loss: float
    uncovered: float
    bound: float

    @property
    def exhausted(self) -> bool:
        return self.move is not None


@dataclass(frozen=True, slots=True)
class HistoryDay:
    """Cover-1 and Cover-2 on one past day of the history (see the module docstring)."""

    date: dt.date
    cover1: Cover
    cover2: Cover
    margin: float


@dataclass(frozen=True, slots=True)
class StressResult:
    """A book stressed under one or more stress sets (module docstring for the
    conventions). Rows follow the book's accounts and members, columns the scenarios."""

    sets: tuple[StressSet, ...]
    labels: tuple[str, ...]
    scenario_set: tuple[int, ...]  # the index in ``sets`` of each scenario
    valuation_date: dt.date
    accounts: tuple[str, ...]
    members: tuple[str, ...]
    account_member: np.ndarray
    pnl: FloatArray  # accounts × scenarios, float64, currency, profit positive
    margin: FloatArray  # per account
    member_pnl: FloatArray  # members × scenarios
    member_uncovered: FloatArray  # members × scenarios, by-account convention
    member_netted: FloatArray  # members × scenarios, member-netted convention
    cover1: Cover
    cover2: Cover
    cover: int  # the Cover-k the fund is sized at
    contributions: FloatArray  # per member
    contributions_source: str
    min_contribution: float
    reverse: tuple[ReverseMove, ...]
    history: tuple[HistoryDay, ...]
    betas: str  # how the market move reaches single names
    margin_model: dict[str, Any]
    margin_title: str
    timings: dict[str, float] = field(default_factory=dict)

    # -- per account ---------------------------------------------------------------------
    @property
    def account_worst(self) -> tuple[FloatArray, np.ndarray]:
        """Each account's worst gross loss and its scenario (index)."""
        s = np.argmin(self.pnl, axis=1)
        return -self.pnl[np.arange(self.pnl.shape[0]), s], s

    @property
    def account_uncovered(self) -> tuple[FloatArray, np.ndarray]:
        """Each account's worst loss beyond its margin (>= 0) and its scenario."""
        s = np.argmin(self.pnl, axis=1)
        worst = -self.pnl[np.arange(self.pnl.shape[0]), s]
        return np.maximum(worst - self.margin, 0.0), s

    # -- per member and firm -------------------------------------------------------------
    @property
    def member_margin(self) -> FloatArray:
        return member_sum(self.margin, self.account_member, len(self.members))

    def firm(self) -> dict[str, Any]:
        """The firm's worst gross loss, worst uncovered loss (by account) and worst
        member-netted uncovered loss, each with its scenario label."""
        gross = -self.member_pnl.sum(axis=0)
        unc = self.member_uncovered.sum(axis=0)
        net = self.member_netted.sum(axis=0)
        out: dict[str, Any] = {"margin": float(self.margin.sum())}
        for name, v in (("gross_loss", gross), ("uncovered", unc), ("uncovered_netted", net)):
            s = int(np.argmax(v))
            out[name] = float(v[s])
            out[f"{name}_scenario"] = self.labels[s]
        return out

    def members_table(self) -> list[dict[str, Any]]:
        """Per member: margin, contribution, worst gross loss, worst uncovered loss (by
        account and member-netted), each with its scenario label."""
        mm = self.member_margin
        gross = -self.member_pnl
        out = []
        for i, m in enumerate(self.members):
            row: dict[str, Any] = {
                "member": m,
                "accounts": int(np.count_nonzero(self.account_member == i)),
                "margin": float(mm[i]),
                "contribution": float(self.contributions[i]),
            }
            for name, v in (
                ("gross_loss", gross[i]),
                ("uncovered", self.member_uncovered[i]),
                ("uncovered_netted", self.member_netted[i]),
            ):
                s = int(np.argmax(v))
                row[name] = float(v[s])
                row[f"{name}_scenario"] = self.labels[s]
            out.append(row)
        return out

    def scenarios_table(self) -> list[dict[str, Any]]:
        """Per scenario: the set, the firm's gross and uncovered loss, Cover-1 and Cover-2."""
        gross = -self.member_pnl.sum(axis=0)
        unc = self.member_uncovered.sum(axis=0)
        return [
            {
                "scenario": label,
                "set": self.sets[self.scenario_set[s]].name,
                "gross_loss": float(gross[s]),
                "uncovered": float(unc[s]),
                "cover1": float(self.cover1.by_scenario[s]),
                "cover2": float(self.cover2.by_scenario[s]),
            }
            for s, label in enumerate(self.labels)
        ]

    @property
    def fund(self) -> Cover:
        return self.cover2 if self.cover == 2 else self.cover1

    def cover_json(self, c: Cover) -> dict[str, Any]:
        s = c.scenario
        return {
            "k": c.k,
            "fund": c.fund,
            "scenario": self.labels[s],
            "members": [
                {"member": self.members[m], "uncovered": float(self.member_uncovered[m, s])}
                for m in c.members
            ],
        }

    def to_json(self, *, top: int | None = None) -> dict[str, Any]:
        """The whole result as JSON (accounts: the ``top`` worst by gross loss, all by
        default; the P&L matrix itself goes to an export file, not here)."""
        worst, ws = self.account_worst
        unc = np.maximum(worst - self.margin, 0.0)
        order = np.argsort(-worst, kind="stable")
        if top is not None:
            order = order[:top]
        return {
            "stress_sets": [s.identity | {"scenarios": len(s.scenarios)} for s in self.sets],
            "valuation_date": self.valuation_date.isoformat(),
            "margin_model": self.margin_model,
            "betas": self.betas,
            "conventions": {
                "uncovered": "by account: sum over the member's accounts of max(loss - margin, 0)",
                "uncovered_netted": "member-netted: max(sum of losses - sum of margins, 0)",
                "contributions": self.contributions_source,
                "min_contribution": self.min_contribution,
            },
            "firm": self.firm(),
            "members": self.members_table(),
            "accounts": [
                {
                    "account": self.accounts[a],
                    "member": self.members[int(self.account_member[a])],
                    "margin": float(self.margin[a]),
                    "gross_loss": float(worst[a]),
                    "uncovered": float(unc[a]),
                    "scenario": self.labels[int(ws[a])],
                }
                for a in order.tolist()
            ],
            "cover1": self.cover_json(self.cover1),
            "cover2": self.cover_json(self.cover2),
            "default_fund": {
                "cover": self.cover,
                "fund": self.fund.fund,
                "collected": float(self.contributions.sum()),
                "source": self.contributions_source,
                "contributions": {
                    m: float(c) for m, c in zip(self.members, self.contributions, strict=True)
                },
            },
            "reverse_stress": [
                {
                    "member": self.members[r.member],
                    "direction": r.direction,
                    "move": r.move,
                    "exhausted": r.exhausted,
                    "gross_loss": r.gross_loss if r.exhausted else None,
                    "uncovered": r.uncovered if r.exhausted else None,
                    "bound": r.bound,
                }
                for r in self.reverse
            ],
            "history": {
                "held_constant": HISTORY_HELD,
                "days": [
                    {
                        "date": d.date.isoformat(),
                        "margin": d.margin,
                        "cover1": d.cover1.fund,
                        "cover2": d.cover2.fund,
                        "scenario": self.labels[d.cover2.scenario],
                        "cover2_members": [self.members[m] for m in d.cover2.members],
                    }
                    for d in self.history
                ],
            },
            "scenarios": self.scenarios_table(),
            "timings": dict(self.timings),
        }


# --- the pure pieces --------------------------------------------------------------------


def member_sum(values: FloatArray, account_member: np.ndarray, n_members: int) -> FloatArray:
    """``out[m] = Σ_{a: account_member[a] = m} values[a]`` (rows of a 2-D ``values``)."""
    n_a = account_member.shape[0]
    g = sp.csr_matrix(
        (np.ones(n_a), (account_member.astype(np.int64), np.arange(n_a))), shape=(n_members, n_a)
    )
    return np.asarray(g @ values, dtype=np.float64)


def uncovered_by_account(
    pnl: FloatArray, margin: FloatArray, account_member: np.ndarray, n_members: int
) -> FloatArray:
    """Members × scenarios: ``Σ_{a∈m} max(-pnl[a, s] - margin[a], 0)``."""
    return member_sum(np.maximum(-pnl - margin[:, np.newaxis], 0.0), account_member, n_members)


def uncovered_netted(member_pnl: FloatArray, member_margin: FloatArray) -> FloatArray:
    """Members × scenarios: ``max(-Σ_{a∈m} pnl[a, s] - Σ_{a∈m} margin[a], 0)``."""
    return np.maximum(-member_pnl - member_margin[:, np.newaxis], 0.0)


def cover(uncovered: FloatArray, k: int) -> Cover:
    """Cover-``k`` of a members × scenarios table of uncovered losses (module docstring)."""
    if k < 1:
        raise ValidationError("cover", f"must be >= 1, got {k}")
    n_m, n_s = uncovered.shape
    kk = min(k, n_m)
    if kk == 0:
        return Cover(k, 0.0, 0, (), np.zeros(n_s))
    top = np.partition(uncovered, n_m - kk, axis=0)[n_m - kk :] if kk < n_m else uncovered
    by_scenario = top.sum(axis=0)
    s = int(np.argmax(by_scenario))
    order = np.argsort(-uncovered[:, s], kind="stable")[:kk]
    members = tuple(int(m) for m in order if uncovered[m, s] > 0.0)
    return Cover(k, float(by_scenario[s]), s, members, by_scenario)


def contributions(uncovered: FloatArray, c: Cover, *, floor: float = 0.0) -> FloatArray:
    """Each member's share of the fund ``c.fund``: pro-rata to its uncovered loss in the
    setting scenario, floored at ``floor`` (module docstring)."""
    if not (math.isfinite(floor) and floor >= 0.0):
        raise ValidationError("min_contribution", f"must be a number >= 0, got {floor!r}")
    w = uncovered[:, c.scenario]
    total = float(w.sum())
    share = c.fund * w / total if total > 0.0 else np.zeros_like(w)
    return np.maximum(share, floor)


def book_betas(book: Book) -> tuple[dict[str, float] | None, str]:
    """Each underlying's beta to the S&P 500 (:func:`market_betas` over the book's
    history; indices exactly 1), and a line saying how single names move. Without a
    history holding ``SPX`` every underlying takes the market move as it is (beta 1)."""
    h = book.history
    if h is None or MARKET not in h.underlyings:
        return None, f"beta 1 for every underlying (the book has no {MARKET} history)"
    indices = [
        u
        for u, k in zip(book.underlyings.ids, book.underlyings.kind, strict=True)
        if k == UnderlyingKind.INDEX
    ]
    betas = market_betas(h, market=MARKET, indices=indices)
    return betas, (
        f"single names move by their beta to {MARKET} in log returns (OLS over the last "
        f"{min(len(h), 1250)} days of the book's history); indices take the index move"
    )


def check_sets(sets: Sequence[StressSet]) -> None:
    """Refuse no set, or two sets sharing a scenario label (a result names scenarios by
    label): a caller checks before a run what :func:`materialise` would refuse in it."""
    if not sets:
        raise ConfigurationError("no stress set to run")
    labels: dict[str, str] = {}
    for s in sets:
        for label in s.labels:
            if label in labels:
                raise ConfigurationError(
                    f"stress sets {labels[label]!r} and {s.name!r} both have a scenario "
                    f"labelled {label!r:.80}"
                )
            labels[label] = s.name


def materialise(
    sets: Sequence[StressSet], underlyings: Sequence[str], betas: Mapping[str, float] | None
) -> tuple[ScenarioSet, tuple[int, ...]]:
    """The sets' scenarios over ``underlyings``, one after another, and the set of each.
    Two sets sharing a scenario label are refused (a result names scenarios by label)."""
    check_sets(sets)
    parts = [s.scenario_set(tuple(underlyings), betas=betas) for s in sets]
    owner = tuple(k for k, p in enumerate(parts) for _ in p.labels)
    if len(parts) == 1:
        return parts[0], owner
    return (
        ScenarioSet(
            underlyings=parts[0].underlyings,
            spot_shock=np.ascontiguousarray(np.hstack([p.spot_shock for p in parts])),
            vol_shock=np.ascontiguousarray(np.hstack([p.vol_shock for p in parts])),
            labels=tuple(label for p in parts for label in p.labels),
            group=np.full(
                sum(len(p.labels) for p in parts), int(ScenarioGroup.CURRENT), dtype=np.int8
            ),
            horizon_days=max(p.horizon_days for p in parts),
            source="stress",
            params={"stress_sets": [s.identity for s in sets]},
        ),
        owner,
    )


@dataclass
class Revaluer:
    """Revalues the book's instruments under scenario shocks with the margin engine's
    revaluation settings and premium-grid cache, timing grids, kernel and aggregation."""

    book: Book
    settings: RevaluationSettings
    grids: GridCache
    timings: dict[str, float]

    def matrix(self, spot_shock: np.ndarray, vol_shock: np.ndarray) -> np.ndarray:
        tm: dict[str, float] = {}
        m = revalue(
            instruments=self.book.instruments,
            market=self.book.market,
            spot_shock=spot_shock,
            vol_shock=vol_shock,
            settings=self.settings,
            timings=tm,
            cache=self.grids,
        )
        m[self.book.instruments.expired()] = 0.0  # an expired series is worth nothing more
        _add(self.timings, "grids", tm.get("eep_grid", 0.0))
        _add(self.timings, "revaluation", tm.get("kernel", 0.0))
        return m

    def pnl(self, spot_shock: np.ndarray, vol_shock: np.ndarray) -> FloatArray:
        """Accounts × scenarios P&L (float64)."""
        m = self.matrix(spot_shock, vol_shock)
        t0 = time.perf_counter()
        out = account_pnl(self.book.positions.matrix, m)
        _add(self.timings, "aggregation", time.perf_counter() - t0)
        return out


def _add(timings: dict[str, float], key: str, seconds: float) -> None:
    timings[key] = timings.get(key, 0.0) + seconds


def reverse_vol_proxy() -> VolProxy:
    """The one-day VIX proxy stored with the latest built-in ``published`` set."""
    params = builtin_set("published").params
    try:
        doc = params["vol_proxy"]["1"]
    except (KeyError, TypeError):
        raise ConfigurationError("the built-in published set holds no one-day vol proxy") from None
    return VolProxy.from_document(doc)


def reverse_stress(
    revaluer: Revaluer,
    *,
    margin: FloatArray,
    account_member: np.ndarray,
    n_members: int,
    resources: FloatArray,
    betas: Mapping[str, float] | None,
    proxy: VolProxy,
    bound: float = REVERSE_BOUND,
    step: float = REVERSE_STEP,
    tolerance: float = REVERSE_TOLERANCE,
    progress: Progress | None = None,
) -> list[ReverseMove]:
    """Per member, the smallest fall and the smallest rise of the market that make its
    uncovered loss exceed ``resources[m]`` (its contribution; module docstring)."""
    if not (0 < tolerance <= step <= bound < 1):
        raise ValidationError("reverse", "need 0 < tolerance <= step <= bound < 1")
    underlyings = revaluer.book.underlyings.ids

    def member_losses(moves: np.ndarray) -> tuple[FloatArray, FloatArray]:
        """Members × moves: uncovered loss and gross loss under each market move (in
        chunks of :data:`REVERSE_CHUNK` moves, which bound the P&L matrix's memory)."""
        if moves.size > REVERSE_CHUNK:
            parts = [
                member_losses(moves[i : i + REVERSE_CHUNK])
                for i in range(0, moves.size, REVERSE_CHUNK)
            ]
            return np.hstack([p[0] for p in parts]), np.hstack([p[1] for p in parts])
        scenarios = tuple(
            StressScenario(
                label=f"reverse:{k}",
                market=Shock(float(x), proxy.vol_shock(float(np.log1p(x)))),
                source="reverse stress",
            )
            for k, x in enumerate(moves.tolist())
        )
        moved = StressSet("reverse", "1", scenarios, scaling="beta").scenario_set(
            underlyings, betas=betas
        )
        pnl = revaluer.pnl(moved.spot_shock, moved.vol_shock)
        unc = uncovered_by_account(pnl, margin, account_member, n_members)
        return unc, -member_sum(pnl, account_member, n_members)

    n = round(bound / step)
    grid = step * np.arange(1, n + 1)
    moves = np.concatenate([-grid, grid])
    if progress:
        progress(f"reverse stress: {moves.size} market moves up to ±{bound:.0%}")
    unc, gross = member_losses(moves)
    over = unc > resources[:, np.newaxis]
    # per (member, direction): the bracket [lo, hi] of the crossing, and the member's
    # uncovered and gross loss at hi (kept as hi moves: no revaluation at the end)
    lo = np.zeros((n_members, 2))
    hi = np.full((n_members, 2), np.nan)
    at_hi = np.zeros((n_members, 2, 2))  # (uncovered, gross)
    for d in range(2):
        part = over[:, d * n : (d + 1) * n]
        hit = np.flatnonzero(part.any(axis=1))
        first = np.argmax(part, axis=1)[hit]
        hi[hit, d] = grid[first]
        lo[hit, d] = np.where(first > 0, grid[first - 1], 0.0)
        at_hi[hit, d, 0] = unc[hit, d * n + first]
        at_hi[hit, d, 1] = gross[hit, d * n + first]
    sign = np.array([-1.0, 1.0])
    # Refine each bracket on the tolerance's lattice in one revaluation: every point
    # lo + j·tolerance inside it (what a bisection to the tolerance finds, but the smallest
    # such point, and one revaluation instead of ⌈log2(step / tolerance)⌉; a revaluation
    # call has a fixed cost over the whole book, the number of moves matters less).
    inner = round(step / tolerance) - 1
    active = np.argwhere(np.isfinite(hi))
    if inner > 0 and active.size:
        m_, d_ = active[:, 0], active[:, 1]
        points = lo[m_, d_][:, np.newaxis] + tolerance * np.arange(1, inner + 1)
        signed = points * sign[d_][:, np.newaxis]
        uniq, inv = np.unique(np.round(signed, 12), return_inverse=True)
        inv = inv.reshape(points.shape)
        if progress:
            progress(
                f"reverse stress: {len(active)} brackets refined to ±{tolerance:.1%} "
                f"({uniq.size} market moves)"
            )
        u, g = member_losses(uniq)
        rows = m_[:, np.newaxis]
        exhausted = u[rows, inv] > resources[rows]
        found = exhausted.any(axis=1)
        j = np.argmax(exhausted, axis=1)[found]
        mf, df, col = m_[found], d_[found], inv[found, j]
        hi[mf, df] = points[found, j]
        at_hi[mf, df, 0] = u[mf, col]
        at_hi[mf, df, 1] = g[mf, col]
    out: list[ReverseMove] = []
    for m in range(n_members):
        for d, name in enumerate(DIRECTIONS):
            if np.isfinite(hi[m, d]):
                move = round(float(hi[m, d] * sign[d]), 10)  # lattice points, not float noise
                uncovered, loss = float(at_hi[m, d, 0]), float(at_hi[m, d, 1])
                out.append(ReverseMove(m, name, move, loss, uncovered, bound))
            else:
                out.append(ReverseMove(m, name, None, 0.0, 0.0, bound))
    return out


def history_spots(book: Book, days: int) -> tuple[list[dt.date], FloatArray]:
    """The last ``days`` dates of the book's history and each underlying's close on them
    (today's spot moved back by the log returns since), days × underlyings."""
    h = book.history
    if h is None:
        raise ConfigurationError("--history-days needs the book's price history (history.csv)")
    if not 1 <= days <= min(len(h), MAX_HISTORY_DAYS):
        raise ValidationError(
            "history_days",
            f"must be in 1..{min(len(h), MAX_HISTORY_DAYS)} (the history has {len(h)} days), "
            f"got {days}",
        )
    # the returns up to the valuation date, so the last close is today's spot
    hist = h.select(list(book.underlyings.ids)).until(
        np.datetime64(book.market.valuation_date, "D")
    )
    closes = hist.closes(book.market.spot)[1:]  # row t: the close on hist.dates[t]
    dates = [d.astype(dt.date) for d in hist.dates[-days:]]
    return dates, closes[-days:]


def cover_history(
    engine: MarginEngine,
    revaluer: Revaluer,
    scenarios: ScenarioSet,
    *,
    days: int,
    progress: Progress | None = None,
) -> list[HistoryDay]:
    """Cover-1 and Cover-2 on each of the last ``days`` days (module docstring). Moves the
    engine's market to each day's spots in turn (the caller is done with it)."""
    book = revaluer.book
    dates, spots = history_spots(book, days)
    p = book.positions
    out = []
    for k, (date, spot) in enumerate(zip(dates, spots, strict=True)):
        if progress:
            progress(f"history: day {k + 1}/{len(dates)} ({date})")
        engine.apply_moves({u: (float(spot[i]), None) for i, u in enumerate(book.underlyings.ids)})
        day = Revaluer(engine.book, revaluer.settings, revaluer.grids, revaluer.timings)
        pnl = day.pnl(scenarios.spot_shock, scenarios.vol_shock)
        margin = engine.margin.copy()
        unc = uncovered_by_account(pnl, margin, p.account_member, len(p.members))
        out.append(HistoryDay(date, cover(unc, 1), cover(unc, 2), float(margin.sum())))
    return out


# --- the use case -----------------------------------------------------------------------


def run_stress(
    loaded: LoadedBook,
    stress_sets: StressSet | Sequence[StressSet],
    *,
    settings: MarginSettings,
    margin_scenarios_file: Path | None = None,
    default_fund: Mapping[str, float] | None = None,
    default_fund_source: str = "",
    cover_k: int = 2,
    min_contribution: float = 0.0,
    reverse: bool = True,
    history_days: int = 0,
    progress: Progress | None = None,
) -> StressResult:
    """Stress ``loaded``'s book under ``stress_sets`` (module docstring for conventions).

    Parameters
    ----------
    settings, margin_scenarios_file
        The margin posted: ES under ``settings``, on generated scenarios or on the user
        scenario file given (as ``marginflow margin --scenarios``).
    default_fund, default_fund_source
        Each member's contribution (all of them), replacing the computed ones, and where
        they came from (a file name) for the outputs.
    cover_k
        The Cover-k the fund is sized at and shared by (1 or 2).
    min_contribution
        Floor of a computed contribution (currency).
    reverse
        Run the reverse stress.
    history_days
        Cover-2 on each of the last N days of the history (0: not run).
    """
    sets = (stress_sets,) if isinstance(stress_sets, StressSet) else tuple(stress_sets)
    if cover_k not in (1, 2):
        raise ValidationError("cover", f"must be 1 or 2, got {cover_k!r}")
    timings: dict[str, float] = {}
    book = loaded.book
    p = book.positions
    n_m = len(p.members)

    t0 = time.perf_counter()
    if progress:
        progress(f"margin: {len(p.accounts):,} accounts, {p.nnz:,} positions")
    run = margin_book(loaded, settings=settings, scenarios_file=margin_scenarios_file)
    if not isinstance(run, EsRun):  # margin_book gives the ES engine for model es
        raise ConfigurationError("stress testing needs the ES margin engine")
    engine = run.engine
    margin = engine.margin.copy()
    timings["margin"] = time.perf_counter() - t0
    # the margin's own revaluation (its scenarios × every instrument), part of "margin"
    timings["margin_revaluation"] = engine.timings.get("revaluation", 0.0)

    betas, betas_text = book_betas(book)
    scen, owner = materialise(sets, book.underlyings.ids, betas)
    if progress:
        progress(
            f"revaluation: {len(book.instruments):,} instruments × {scen.n_scenarios:,} "
            "stress scenarios"
        )
    revaluer = Revaluer(book, engine.revaluation, engine.grids, timings)
    pnl = revaluer.pnl(scen.spot_shock, scen.vol_shock)

    t0 = time.perf_counter()
    member_pnl = member_sum(pnl, p.account_member, n_m)
    member_margin = member_sum(margin, p.account_member, n_m)
    unc = uncovered_by_account(pnl, margin, p.account_member, n_m)
    netted = uncovered_netted(member_pnl, member_margin)
    _add(timings, "aggregation", time.perf_counter() - t0)

    t0 = time.perf_counter()
    c1, c2 = cover(unc, 1), cover(unc, 2)
    if default_fund is not None:
        missing = [m for m in p.members if m not in default_fund]
        if missing:
            raise ValidationError("member", f"no contribution for member {missing[0]!r}")
        contrib = np.array([float(default_fund[m]) for m in p.members])
        source = f"file {default_fund_source}" if default_fund_source else "given"
    else:
        contrib = contributions(unc, c2 if cover_k == 2 else c1, floor=min_contribution)
        source = (
            f"computed: the Cover-{cover_k} fund pro-rata to each member's uncovered loss in "
            f"its setting scenario, floored at {min_contribution:,.2f}"
        )
    timings["cover"] = time.perf_counter() - t0

    moves: list[ReverseMove] = []
    if reverse:
        t0 = time.perf_counter()
        # its own timings: the reverse stress's revaluations are not the stress run's
        reverse_timings: dict[str, float] = {}
        moves = reverse_stress(
            Revaluer(book, engine.revaluation, engine.grids, reverse_timings),
            margin=margin,
            account_member=p.account_member,
            n_members=n_m,
            resources=contrib,
            betas=betas,
            proxy=reverse_vol_proxy(),
            progress=progress,
        )
        timings["reverse"] = time.perf_counter() - t0
        timings["reverse_revaluation"] = reverse_timings.get("grids", 0.0) + reverse_timings.get(
            "revaluation", 0.0
        )

    days: list[HistoryDay] = []
    if history_days:
        t0 = time.perf_counter()
        side: dict[str, float] = {}
        days = cover_history(
            engine,
            Revaluer(book, engine.revaluation, engine.grids, side),
            scen,
            days=history_days,
            progress=progress,
        )
        timings["history"] = time.perf_counter() - t0

    return StressResult(
        sets=sets,
        labels=scen.labels,
        scenario_set=owner,
        valuation_date=book.market.valuation_date,
        accounts=p.accounts,
        members=p.members,
        account_member=p.account_member,
        pnl=pnl,
        margin=margin,
        member_pnl=member_pnl,
        member_uncovered=unc,
        member_netted=netted,
        cover1=c1,
        cover2=c2,
        cover=cover_k,
        contributions=contrib,
        contributions_source=source,
        min_contribution=min_contribution,
        reverse=tuple(moves),
        history=tuple(days),
        betas=betas_text,
        margin_model=run.model_json(),
        margin_title=run.title(),
        timings=timings,
    )
