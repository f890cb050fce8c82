"""SPAN-style margin: risk arrays, scan risk, spreads, short option minimum, net option value.

The model, per (account, combined commodity) and then per account::

    commodity risk = max(scan risk + intra-commodity spread charge + spot charge
                         - inter-commodity spread credit,
                         short option minimum)
    margin         = max(Σ commodity risk - Σ net option value, 0)      (nov_offset="account")
                   = Σ max(commodity risk - net option value, 0)        (nov_offset="commodity")

Conventions
-----------
* **Risk arrays** follow SPAN: one value per scenario for one *long* contract (long the
  instrument: a bought put is long), in currency, **losses positive, gains negative**,
  with the scenario's cover weight already applied (the extreme scenarios 15 and 16 hold
  ``cover × loss``, as exchange risk-parameter files do). ``risk_array = -pnl``.
* **Scenarios** are parameters, not code (:class:`SpanScenarios`): price move as a
  fraction of the price scan range (PSR, in price points of the underlying), volatility
  move as a multiple of the volatility scan range (VSR, annualised vol points, or a
  fraction of the vol when ``vol_scan_relative``), and a cover weight. CME's Treasury
  example implies an extreme move of 3 × PSR covered at 33%; NSE and McMillan's S&P
  example use 2 × PSR at 35%.
* **Deltas** are per long contract in the commodity's delta units
  (``dV/dS × multiplier / delta_unit``; a future is ``multiplier / delta_unit``).
* **Net option value** (NOV) is the market value of the options held, per long contract
  in currency: long options credit it, short options debit it. Set it to 0 for
  futures-style options.

Components
----------
* *Scan risk*: the largest loss over the scenarios of the summed risk arrays of the
  commodity's positions, floored at 0; the scenario that gives it is the *driving*
  (active) scenario.
* *Intra-commodity (calendar) spread charge*, simplified from SPAN's tiered method:
  each commodity splits its contracts into tiers (for example expiry buckets). Net delta
  per tier is spread in the commodity's priority list of tier pairs (``IntraSpread``:
  one delta unit long in one tier against one short in the other, charged ``charge`` per
  spread); whatever opposite deltas remain across tiers are spread at
  ``intra_default_charge``. Ratios are 1:1 and deltas are the current-price deltas, not
  SPAN's composite (scenario-weighted) deltas.
* *Spot charge*: ``charge × |net delta|`` in each tier listed in ``spot_charges``.
* *Inter-commodity spread credit*, two methods in one priority list:
  ``"delta"`` (classic SPAN): a spread needs the A legs on one side and the B legs on
  the other, in the legs' delta ratios; the number of spreads is the fewest the
  remaining net deltas allow; each leg is credited
  ``rate × spreads × ratio × weighted futures price risk`` and its delta consumed. The
  weighted futures price risk is the commodity's price risk per delta: the scan risk
  split as SPAN does into time risk (the mean of the unchanged-price scenarios), and
  price risk ``(active + paired scenario)/2 - time risk`` where the paired scenario has
  the same price move and the opposite vol move. ``"scanning"`` (CME's scanning-based
  spread): per scenario the legs' losses count in full and their gains at the credit
  rate, ``Σ max(L, 0) + rate × Σ min(L, 0)``; the requirement is the worst scenario and
  the credit is ``Σ scan risk of the legs - requirement``, attributed to the legs in
  proportion to their scan risk. A commodity in a scanning spread may not be a leg of
  any other spread (validated), so no delta is spread twice.
* *Short option minimum*: per short option contract, ``short_option_minimum +
  short_option_minimum_fraction × underlying price × multiplier`` (NSE states it as a
  fraction of notional), summed over all short options or, with
  ``som_basis="max_calls_puts"``, the larger of the short calls' and short puts' sums.

Everything is vectorised over accounts: :func:`span_margin` takes the accounts ×
instruments position matrix and per-instrument arrays (:class:`SpanInstruments`) and
loops only over spread definitions and scenario slots, never over accounts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from marginflow.core.errors import ValidationError
from marginflow.margin.grid import (
    AccountGroups,
    Contributors,
    FloatArray,
    IntArray,
    as_positions,
    group_positions,
    largest_per_account,
    offset_sum,
    top_positions,
)
from marginflow.margin.span_arrays import (
    RiskArrays,
    SpanInstruments,
    futures_risk_arrays,
    option_risk_arrays,
    short_option_charges,
)
from marginflow.margin.span_parameters import (
    MODEL_NAME,
    InterLeg,
    InterSpread,
    IntraSpread,
    SpanCommodity,
    SpanParameters,
    SpanScenarios,
)

__all__ = [
    "InterLeg",
    "InterSpread",
    "IntraSpread",
    "RiskArrays",
    "SpanCommodity",
    "SpanCommodityRisk",
    "SpanInstruments",
    "SpanParameters",
    "SpanResult",
    "SpanScenarios",
    "futures_risk_arrays",
    "option_risk_arrays",
    "scanning_spread_values",
    "short_option_charges",
    "span_margin",
]

# Net deltas smaller than this are flat: no weighted price risk is defined on them.
_DELTA_EPS = 1e-12


@dataclass(frozen=True, slots=True, eq=False)
class SpanCommodityRisk:
    """Per (account, combined commodity) components; arrays of length P, sorted by
    (account, commodity). ``scenario`` is 0-based (SPAN numbers it from 1)."""

    account: IntArray
    commodity: IntArray
    scenario_risk: FloatArray  # [P, S], losses positive
    scan_risk: FloatArray
    scenario: IntArray
    price_risk: FloatArray
    net_delta: FloatArray
    intra_charge: FloatArray
    spot_charge: FloatArray
    inter_credit: FloatArray
    short_option_minimum: FloatArray
    risk: FloatArray
    net_option_value: FloatArray


@dataclass(frozen=True, slots=True, eq=False)
class SpanResult:
    """SPAN margin of A accounts: totals per account, components per commodity, and
    the positions that contribute most (loss at their commodity's driving scenario)."""

    parameters: SpanParameters
    margin: FloatArray
    risk: FloatArray
    net_option_value: FloatArray
    by_commodity: SpanCommodityRisk
    contributors: Contributors

    model: str = MODEL_NAME

    def driving_commodity(self) -> IntArray:
        """Per account, the (account, commodity) row with the largest risk (-1: none)."""
        bc = self.by_commodity
        return largest_per_account(bc.account, bc.risk, self.margin.shape[0])

    def driver(self) -> IntArray:
        """Per account, the 0-based scenario driving its largest commodity (-1: none)."""
        rows = self.driving_commodity()
        return np.where(rows >= 0, self.by_commodity.scenario[np.maximum(rows, 0)], -1)

    def components(self) -> dict[str, FloatArray]:
        """Per-account sums of the components (A-vectors, currency): ``scan_risk``,
        ``intra_spread_charge``, ``spot_charge``, ``inter_spread_credit``,
        ``short_option_minimum``, ``risk`` (Σ commodity risk) and ``net_option_value``."""
        bc = self.by_commodity
        a = self.margin.shape[0]

        def total(x: FloatArray) -> FloatArray:
            return np.bincount(bc.account, weights=x, minlength=a).astype(np.float64)

        return {
            "scan_risk": total(bc.scan_risk),
            "intra_spread_charge": total(bc.intra_charge),
            "spot_charge": total(bc.spot_charge),
            "inter_spread_credit": total(bc.inter_credit),
            "short_option_minimum": total(bc.short_option_minimum),
            "risk": self.risk,
            "net_option_value": self.net_option_value,
        }

    def breakdown(
        self, account: int, *, instrument_names: Sequence[str] | None = None
    ) -> dict[str, Any]:
        """What drives ``account``'s margin, as plain data (JSON-ready).

        Commodities are listed largest risk first; ``scenario`` is 1-based as in SPAN.
        """
        bc = self.by_commodity
        lo, hi = np.searchsorted(bc.account, [account, account + 1])
        rows = sorted(range(lo, hi), key=lambda p: -bc.risk[p])
        names = self.parameters.names
        commodities = []
        for p in rows:
            c = int(bc.commodity[p])
            s = int(bc.scenario[p])
            commodities.append(
                {
                    "commodity": names[c],
                    "scan_risk": float(bc.scan_risk[p]),
                    "scenario": s + 1,
                    "scenario_description": self.parameters.commodities[c].scenarios.describe(s),
                    "intra_spread_charge": float(bc.intra_charge[p]),
                    "spot_charge": float(bc.spot_charge[p]),
                    "inter_spread_credit": float(bc.inter_credit[p]),
                    "short_option_minimum": float(bc.short_option_minimum[p]),
                    "risk": float(bc.risk[p]),
                    "net_option_value": float(bc.net_option_value[p]),
                }
            )
        return {
            "model": self.model,
            "margin": float(self.margin[account]),
            "risk": float(self.risk[account]),
            "net_option_value": float(self.net_option_value[account]),
            "driving": (
                {k: commodities[0][k] for k in ("commodity", "scenario", "scenario_description")}
                if commodities
                else None
            ),
            "commodities": commodities,
            "largest_contributors": self.contributors.rows_of(account, instrument_names),
        }


# ------------------------------------------------------------------------------ the model


def span_margin(
    *,
    positions: Any,
    instruments: SpanInstruments,
    params: SpanParameters,
    top_n: int = 5,
) -> SpanResult:
    """SPAN margin of every account in ``positions``.

    Parameters
    ----------
    positions : scipy.sparse matrix (CSR preferred), or dense 2-D / 1-D array
        Accounts × instruments, signed contract counts (+ long, - short). A 1-D array is
        one account.
    instruments : SpanInstruments
        Per-instrument risk arrays and attributes, columns aligned with ``positions``.
    params : SpanParameters
    top_n : int
        Contributors kept per account.

    Returns
    -------
    SpanResult
        Margins in currency (>= 0) per account, with per-commodity components.
    """
    instruments.validate_for(params)
    pos = as_positions(positions, len(instruments))
    n_cc = len(params.commodities)
    groups = group_positions(pos, instruments.commodity, n_cc)
    cc = groups.pair_group

    scen = groups.aggregate(instruments.risk_array)  # [P, S], losses positive
    scenario = np.argmax(scen, axis=1).astype(np.int64)
    scan = np.maximum(scen[np.arange(scen.shape[0]), scenario], 0.0)
    price_risk = _price_risk(params, cc, scen, scenario, scan)

    tier_delta = _tier_deltas(params, groups, instruments)  # [P, T]
    intra, net_delta = _intra_charge(params, cc, tier_delta.copy())
    spot = _spot_charge(params, cc, tier_delta)
    inter = _inter_credit(params, groups, scen, scan, price_risk, net_delta)
    som = _short_option_minimum(params, groups, instruments)
    nov = groups.aggregate(instruments.option_value)

    risk = np.maximum(scan + intra + spot - inter, som)
    acct_risk = groups.sum_by_account(risk)
    acct_nov = groups.sum_by_account(nov)
    if params.nov_offset == "account":
        margin = np.maximum(acct_risk - acct_nov, 0.0)
    else:
        margin = groups.sum_by_account(np.maximum(risk - nov, 0.0))

    pos_scenario = scenario[groups.position_pair]
    pos_loss = (
        groups.position_quantity * instruments.risk_array[groups.position_instrument, pos_scenario]
    )
    return SpanResult(
        parameters=params,
        margin=margin,
        risk=acct_risk,
        net_option_value=acct_nov,
        by_commodity=SpanCommodityRisk(
            account=groups.pair_account,
            commodity=cc,
            scenario_risk=scen,
            scan_risk=scan,
            scenario=scenario,
            price_risk=price_risk,
            net_delta=net_delta,
            intra_charge=intra,
            spot_charge=spot,
            inter_credit=inter,
            short_option_minimum=som,
            risk=risk,
            net_option_value=nov,
        ),
        contributors=top_positions(groups, np.asarray(pos_loss, dtype=np.float64), top_n),
    )


def scanning_spread_values(leg_risk_arrays: ArrayLike, credit_rate: float) -> FloatArray:
    """Per-scenario value of a scanning-based spread of one portfolio: each leg's
    position risk array (float[L, S], losses positive) counts in full where it loses and
    at ``credit_rate`` where it gains. The requirement is ``max(max(values), 0)``."""
    legs = np.asarray(leg_risk_arrays, dtype=np.float64)
    if legs.ndim != 2:
        raise ValidationError(
            "leg_risk_arrays", f"must be 2-D (legs × scenarios), got {legs.ndim}-D"
        )
    member = np.zeros(legs.shape[0], dtype=np.int64)
    values: FloatArray = offset_sum(legs, member, 1, np.array([float(credit_rate)]))[0]
    return values


def _price_risk(
    params: SpanParameters, cc: IntArray, scen: FloatArray, scenario: IntArray, scan: FloatArray
) -> FloatArray:
    """SPAN's split of scan risk: price risk = (active + paired)/2 - time risk, floored at
    0 and capped at the scan risk; time risk = mean loss of the unchanged-price scenarios."""
    t = params.tables()
    rows = np.arange(scen.shape[0])
    pair_s = t.paired[cc, scenario]
    time_risk = np.einsum("ps,ps->p", scen, t.time_weight[cc])
    price = 0.5 * (scen[rows, scenario] + scen[rows, pair_s]) - time_risk
    return np.asarray(np.clip(price, 0.0, scan), dtype=np.float64)


def _tier_deltas(
    params: SpanParameters, groups: AccountGroups, inst: SpanInstruments
) -> FloatArray:
    t_max = params.tables().spot_charge.shape[1]
    i = groups.position_instrument
    flat = groups.position_pair * t_max + inst.tier[i]
    w = groups.position_quantity * inst.delta[i]
    out = np.bincount(flat, weights=w, minlength=groups.n_pairs * t_max)
    return out.reshape(groups.n_pairs, t_max).astype(np.float64)


def _intra_charge(
    params: SpanParameters, cc: IntArray, d: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """Intra-commodity spread charge per pair; ``d`` (tier deltas) is consumed in place.
    Returns (charge, net delta)."""
    t = params.tables()
    charge = np.zeros(d.shape[0])
    rows = np.arange(d.shape[0])
    for j in range(t.intra_a.shape[1]):
        # Slot j of every commodity's priority list, processed for all pairs at once.
        a, b = t.intra_a[cc, j], t.intra_b[cc, j]
        da, db = d[rows, a], d[rows, b]
        opposite = t.intra_used[cc, j] & (np.sign(da) * np.sign(db) < 0)
        n = np.where(opposite, np.minimum(np.abs(da), np.abs(db)), 0.0)
        d[rows, a] = da - np.sign(da) * n
        d[rows, b] = db - np.sign(db) * n
        charge += t.intra_charge[cc, j] * n
    longs = np.maximum(d, 0.0).sum(axis=1)
    shorts = np.maximum(-d, 0.0).sum(axis=1)
    charge += t.intra_default[cc] * np.minimum(longs, shorts)
    return charge, d.sum(axis=1)


def _spot_charge(params: SpanParameters, cc: IntArray, d: FloatArray) -> FloatArray:
    rate = params.tables().spot_charge[cc]
    return np.asarray((rate * np.abs(d)).sum(axis=1), dtype=np.float64)


def _inter_credit(
    params: SpanParameters,
    groups: AccountGroups,
    scen: FloatArray,
    scan: FloatArray,
    price_risk: FloatArray,
    net_delta: FloatArray,
) -> FloatArray:
    credit = np.zeros(groups.n_pairs)
    remaining = net_delta.copy()
    absd = np.abs(net_delta)
    wfpr = np.divide(price_risk, absd, out=np.zeros_like(price_risk), where=absd > _DELTA_EPS)
    # The pairs of each commodity: order[bounds[c]:bounds[c + 1]].
    order = np.argsort(groups.pair_group, kind="stable")
    bounds = np.searchsorted(groups.pair_group[order], np.arange(len(params.commodities) + 1))

    def pairs_of(c: int) -> IntArray:
        return order[bounds[c] : bounds[c + 1]]

    for spread in params.inter_spreads:
        legs = [params.index(leg.commodity) for leg in spread.legs]
        if spread.method == "scanning":
            pairs = np.sort(np.concatenate([pairs_of(c) for c in legs]))
            _scanning_credit(groups, scen, scan, pairs, spread.credit_rate, credit, remaining)
            continue
        first = pairs_of(legs[0])
        if first.size == 0:
            continue
        accounts = groups.pair_account[first]
        idx = np.stack([groups.find_pairs(accounts, c) for c in legs])  # [L, n]
        idx = idx[:, (idx >= 0).all(axis=0)]
        if idx.shape[1] == 0:
            continue
        ratio = np.array([leg.ratio for leg in spread.legs])[:, None]
        side = np.array([1.0 if leg.side == "A" else -1.0 for leg in spread.legs])[:, None]
        d = remaining[idx]
        orient = np.sign(d) * side
        ok = (orient == orient[0]).all(axis=0) & (orient[0] != 0)
        n = np.where(ok, (np.abs(d) / ratio).min(axis=0), 0.0)
        used = n * ratio
        remaining[idx] = d - np.sign(d) * used
        credit[idx] += spread.credit_rate * used * wfpr[idx]
    return credit


def _scanning_credit(
    groups: AccountGroups,
    scen: FloatArray,
    scan: FloatArray,
    pairs: IntArray,
    rate: float,
    credit: FloatArray,
    remaining: FloatArray,
) -> None:
    """Credit of one scanning-based spread to ``pairs`` (the pairs of its legs)."""
    if pairs.size == 0:
        return
    accounts, member = np.unique(groups.pair_account[pairs], return_inverse=True)
    member = member.ravel().astype(np.int64)
    values = offset_sum(scen[pairs], member, accounts.shape[0], np.full(accounts.shape[0], rate))
    requirement = np.maximum(values.max(axis=1), 0.0)
    leg_scan = np.bincount(member, weights=scan[pairs], minlength=accounts.shape[0])
    total = leg_scan - requirement  # >= 0: each scenario's value is at most Σ leg scan risks
    share = np.divide(
        scan[pairs], leg_scan[member], out=np.zeros(pairs.size), where=leg_scan[member] > 0
    )
    credit[pairs] += total[member] * share
    remaining[pairs] = 0.0


def _short_option_minimum(
    params: SpanParameters, groups: AccountGroups, inst: SpanInstruments
) -> FloatArray:
    i = groups.position_instrument
    short = np.maximum(-groups.position_quantity, 0.0) * inst.is_option[i]
    w = short * inst.short_option_charge[i]
    basis_max = params.tables().som_max_calls_puts[groups.pair_group]
    total = groups.sum_positions(w)
    calls = groups.sum_positions(w * inst.is_call[i])
    puts = total - calls
    return np.where(basis_max, np.maximum(calls, puts), total)
