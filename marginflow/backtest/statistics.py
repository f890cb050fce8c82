"""Back-testing statistics: breaches of margin, and the tests of their count and clustering.

Notation (as in ``margin-worked-examples.md`` §4): a series of n days, x of them breaches
(exceptions), p = 1 − confidence the breach rate the margin model promises.

- **Breach**: a day whose loss exceeds its margin, ``-pnl > margin`` (:func:`exceptions`).
- **Kupiec (1995) proportion of failures**: is x/n consistent with p? A likelihood ratio,
  χ² with 1 degree of freedom (:func:`kupiec_pof`).
- **Christoffersen (1998) independence**: does a breach today make one tomorrow more likely?
  A likelihood ratio over the day-to-day transitions, χ²(1) (:func:`christoffersen_independence`);
  **conditional coverage** is the sum of the two, χ²(2) (:func:`conditional_coverage`).
- **Basel traffic light** (BCBS, "Supervisory framework for the use of backtesting", 1996):
  the zone of x under the binomial distribution B(n, p) (:func:`traffic_light`).
- :func:`summarise` computes all of them for one breach series.

Every logarithm follows the convention 0·ln 0 = 0, so the cases with no breaches, with only
breaches, or without a day after a breach are defined (each function says what it gives).
The statistics are computed as sums of ``count · ln(observed / expected)``, so a sample
that matches its null exactly gives exactly 0, and rounding below 0 is clamped to 0 (a
likelihood ratio against the maximum-likelihood fit is ≥ 0).

scipy.stats supplies the χ² and binomial distributions; it is imported inside the functions
because importing it costs ~0.8 s at CLI start.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal
from numbers import Integral
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike

from marginflow.core.batch import BoolArray, FloatArray
from marginflow.core.errors import (
    MSG_NEGATIVE,
    MSG_NOT_FINITE,
    MSG_NOT_NUMBER,
    MSG_OUT_OF_BOUNDS,
    ValidationError,
)

Zone = Literal["green", "yellow", "red"]
ZONES: tuple[Zone, ...] = ("green", "yellow", "red")

# BCBS 1996: the yellow zone starts where F(x | n, p) reaches 95%, the red zone at 99.99%.
YELLOW_FROM = 0.95
RED_FROM = 0.9999

MSG_SHAPES = "has shape {shape}, which does not broadcast with pnl's {pnl_shape}"
MSG_NOT_BOOL = "must be a 1-D boolean array (True = breach), got dtype {dtype}, shape {shape}"
MSG_NOT_COUNT = "must be a whole number >= {low}, got {value!r}"
MSG_MORE_THAN_N = "must be <= n = {n}, got {value!r}"


@dataclass(frozen=True, slots=True)
class LikelihoodRatio:
    """A likelihood-ratio test: the statistic, its χ² degrees of freedom and p-value.

    ``p_value`` is P(χ²_dof ≥ statistic), the chance of a statistic at least this large if
    the null hypothesis (the model's coverage, or independent breaches) holds.
    """

    statistic: float
    dof: int
    p_value: float

    def critical_value(self, test_level: float = 0.95) -> float:
        """The χ²_dof quantile at ``test_level``: 3.8415 for 1 dof at 95%, 6.6349 at 99%,
        5.9915 for 2 dof at 95%."""
        from scipy.stats import chi2  # here: scipy.stats costs ~0.8 s at CLI start

        return float(chi2.ppf(_rate("test_level", test_level), self.dof))

    def rejects(self, test_level: float = 0.95) -> bool:
        """True when the statistic lies above :meth:`critical_value` (the null is rejected
        at ``test_level``; equal to the critical value is still accepted)."""
        return self.statistic > self.critical_value(test_level)


@dataclass(frozen=True, slots=True)
class Transitions:
    """Day-to-day transitions of a breach series: ``nij`` counts the days in state j that
    follow a day in state i (0 = no breach, 1 = breach). They sum to n − 1."""

    n00: int
    n01: int
    n10: int
    n11: int

    @property
    def total(self) -> int:
        """The number of transitions, n − 1 for a series of n days."""
        return self.n00 + self.n01 + self.n10 + self.n11


@dataclass(frozen=True, slots=True)
class TrafficLight:
    """The Basel zone of a breach count, and F = P(X ≤ x) for X ~ B(n, p) that sets it."""

    zone: Zone
    probability: float


@dataclass(frozen=True, slots=True)
class BacktestStatistics:
    """The back-test of one breach series at one confidence level: one row of a coverage
    table.

    ``coverage`` is the observed 1 − x/n, to compare with ``confidence``;
    ``expected_rate`` is p = 1 − confidence. ``lr_*``/``p_*`` are the Kupiec (pof),
    Christoffersen independence (ind) and conditional coverage (cc) statistics and
    p-values; ``reject_*`` says whether each rejects the model at ``test_level``.
    ``zone`` and ``zone_probability`` are the Basel traffic light and its F(x | n, p).
    ``n00``…``n11`` are the transitions the independence test counted.
    """

    n: int
    breaches: int
    coverage: float
    confidence: float
    expected_rate: float
    test_level: float
    lr_pof: float
    p_pof: float
    reject_pof: bool
    lr_ind: float
    p_ind: float
    reject_ind: bool
    lr_cc: float
    p_cc: float
    reject_cc: bool
    zone: Zone
    zone_probability: float
    n00: int
    n01: int
    n10: int
    n11: int


def exceptions(pnl: ArrayLike, margin: ArrayLike) -> BoolArray:
    """The breach series: True where the loss exceeds the margin, ``-pnl > margin``.

    Parameters
    ----------
    pnl : float array
        Realised P&L over the margin period of risk, in currency; a loss is negative.
    margin : float array, broadcastable to ``pnl``
        The margin held against that P&L, a positive amount in the same currency (0 for an
        account with no margin: any loss is then a breach).

    A loss equal to the margin is covered, not a breach. NaN and ±inf in either input, a
    negative margin or shapes that do not broadcast raise
    :class:`~marginflow.core.errors.ValidationError` naming the first offending element.
    """
    p = _finite_array("pnl", pnl)
    m = _finite_array("margin", margin)
    if (m < 0.0).any():
        at = _first(m < 0.0)
        raise ValidationError(_where("margin", at), MSG_NEGATIVE.format(value=float(m[at])))
    try:
        np.broadcast_shapes(p.shape, m.shape)
    except ValueError:
        raise ValidationError(
            "margin", MSG_SHAPES.format(shape=m.shape, pnl_shape=p.shape)
        ) from None
    out: BoolArray = -p > m
    return out


def transition_counts(breaches: ArrayLike) -> Transitions:
    """Count the day-to-day transitions (n00, n01, n10, n11) of a 1-D boolean breach series,
    as Christoffersen (1998) defines them: the pairs (day t − 1, day t) for t = 1 … n − 1."""
    b = _breach_series(breaches)
    before, after = b[:-1], b[1:]
    n11 = int(np.count_nonzero(before & after))
    n10 = int(np.count_nonzero(before & ~after))
    n01 = int(np.count_nonzero(~before & after))
    return Transitions(n00=max(b.size - 1, 0) - n11 - n10 - n01, n01=n01, n10=n10, n11=n11)


def kupiec_pof(n: int, x: int, p: float) -> LikelihoodRatio:
    """Kupiec (1995) proportion-of-failures test of x breaches in n days against rate p.

    ``LR_pof = −2 ln[(1 − p)^(n−x) p^x / ((1 − x/n)^(n−x) (x/n)^x)]``, asymptotically χ²(1)
    (the critical value is 3.8415 at 95%, 6.6349 at 99%). Source: Kupiec, "Techniques for
    verifying the accuracy of risk measurement models", J. Derivatives 3 (1995); the form
    of ``margin-worked-examples.md`` §4.

    With 0·ln 0 = 0 the edge cases are exact: x = 0 gives ``−2 n ln(1 − p)`` and x = n gives
    ``−2 n ln p``. x/n = p exactly gives 0.
    """
    n = _count("n", n, low=1)
    x = _count("x", x, low=0)
    if x > n:
        raise ValidationError("x", MSG_MORE_THAN_N.format(n=n, value=x))
    p = _rate("p", p)
    observed = x / n
    # 2 Σ count · ln(observed / expected), each log a difference so that equal rates give 0
    lr = 0.0
    if x < n:
        lr += (n - x) * (math.log1p(-observed) - math.log1p(-p))
    if x > 0:
        lr += x * (math.log(observed) - math.log(p))
    return _chi2_test(2.0 * lr, dof=1)


def christoffersen_independence(transitions: Transitions) -> LikelihoodRatio:
    """Christoffersen (1998) test that a breach does not make the next day's more likely.

    With π01 = n01/(n00 + n01), π11 = n11/(n10 + n11), π = (n01 + n11)/(n00 + n01 + n10 + n11):

    ``LR_ind = −2 ln[(1 − π)^(n00+n10) π^(n01+n11)
    / ((1 − π01)^n00 π01^n01 (1 − π11)^n10 π11^n11)]``, asymptotically χ²(1).

    Source: Christoffersen, "Evaluating interval forecasts", Int. Economic Review 39
    (1998); the form of ``margin-worked-examples.md`` §4. It equals the G statistic
    (likelihood-ratio χ²) of independence of the 2×2 table [[n00, n01], [n10, n11]].

    Edge cases, by 0·ln 0 = 0 (a state never left contributes no factor):

    - no breaches, or only breaches, or no transitions at all (n ≤ 1): LR_ind = 0;
    - no day after a breach (n10 + n11 = 0, a single breach on the last day): π = π01,
      so LR_ind = 0;
    - breaches never followed by a breach (n11 = 0) or always (n10 = 0): the formula
      as written, with the empty factor equal to 1.
    """
    t = transitions
    for name in ("n00", "n01", "n10", "n11"):
        _count(name, getattr(t, name), low=0)
    total = t.total
    rows = (t.n00 + t.n01, t.n10 + t.n11)
    cols = (t.n00 + t.n10, t.n01 + t.n11)
    # 2 Σ nij ln(nij·N / (row_i·col_j)): the integer products are exact, one rounding each
    lr = 0.0
    for (i, j), nij in {(0, 0): t.n00, (0, 1): t.n01, (1, 0): t.n10, (1, 1): t.n11}.items():
        if nij > 0:
            lr += nij * math.log((nij * total) / (rows[i] * cols[j]))
    return _chi2_test(2.0 * lr, dof=1)


def conditional_coverage(pof: LikelihoodRatio, independence: LikelihoodRatio) -> LikelihoodRatio:
    """Christoffersen (1998) conditional coverage: ``LR_cc = LR_pof + LR_ind``, χ²(2)
    (critical value 5.9915 at 95%).

    The two parts are computed as the reference does: LR_pof over all n days and LR_ind
    over the n − 1 transitions (Christoffersen's own LR_cc conditions on the first day
    and differs from this sum by that day's term).
    """
    return _chi2_test(pof.statistic + independence.statistic, dof=2)


def traffic_light(x: int, n: int, p: float) -> TrafficLight:
    """The Basel traffic-light zone of x breaches in n days at breach rate p.

    F = P(X ≤ x), X ~ B(n, p): **green** if F < 0.95, **yellow** if 0.95 ≤ F < 0.9999,
    **red** otherwise (BCBS, "Supervisory framework for the use of 'backtesting' in
    conjunction with the internal models approach to market risk capital requirements",
    January 1996). For n = 250, p = 1%: green 0–4, yellow 5–9, red ≥ 10.

    No breach is always green. Read literally, the rule puts a clean record in yellow
    whenever F(0) = (1 − p)^n reaches 95% (n ≤ 5 at 99%): the window is too short for any
    count to be evidence, and none cannot be evidence against the model. ``probability``
    is F as computed, whatever the zone.
    """
    from scipy.stats import binom  # here: scipy.stats costs ~0.8 s at CLI start

    n = _count("n", n, low=1)
    x = _count("x", x, low=0)
    if x > n:
        raise ValidationError("x", MSG_MORE_THAN_N.format(n=n, value=x))
    f = float(binom.cdf(x, n, _rate("p", p)))
    return TrafficLight(zone="green" if x == 0 else _zone(f), probability=f)


def traffic_light_bounds(n: int, p: float) -> tuple[int, int]:
    """The zone boundaries for n days at breach rate p: (the largest green count, the
    largest yellow count), by the thresholds of :func:`traffic_light`.

    x ≤ green is green, green < x ≤ yellow is yellow, x > yellow is red; (4, 9) for
    n = 250, p = 1%. Green is at least 0 (no breach is green); yellow equals green when no
    count is yellow. x = n ≥ 1 is always red (F(n) = 1).
    """
    from scipy.stats import binom  # here: scipy.stats costs ~0.8 s at CLI start

    n = _count("n", n, low=1)
    f = binom.cdf(np.arange(n + 1), n, _rate("p", p))
    # F is non-decreasing in x, so each zone is the count of values below its threshold
    green = max(int(np.count_nonzero(f < YELLOW_FROM)) - 1, 0)
    yellow = max(int(np.count_nonzero(f < RED_FROM)) - 1, 0)
    return green, yellow


def summarise(
    breaches: ArrayLike, confidence: float, test_level: float = 0.95
) -> BacktestStatistics:
    """Every statistic of this module for one breach series (True = breach, in day order).

    ``confidence`` is the margin's confidence level (0.99 means p = 1%); p is computed in
    decimal from the confidence as written, so 0.99 gives exactly the float 0.01 rather
    than 1 − 0.99 = 0.010000000000000009. ``test_level`` is the level of the three
    likelihood-ratio tests (0.95: reject above 3.8415 for 1 dof, 5.9915 for 2).
    """
    b = _breach_series(breaches)
    if b.size == 0:
        raise ValidationError("breaches", "must hold at least one day")
    confidence = _rate("confidence", confidence)
    test_level = _rate("test_level", test_level)
    p = float(1 - Decimal(repr(confidence)))
    n, x = int(b.size), int(np.count_nonzero(b))
    t = transition_counts(b)
    pof = kupiec_pof(n, x, p)
    ind = christoffersen_independence(t)
    cc = conditional_coverage(pof, ind)
    light = traffic_light(x, n, p)
    return BacktestStatistics(
        n=n,
        breaches=x,
        coverage=1.0 - x / n,
        confidence=confidence,
        expected_rate=p,
        test_level=test_level,
        lr_pof=pof.statistic,
        p_pof=pof.p_value,
        reject_pof=pof.rejects(test_level),
        lr_ind=ind.statistic,
        p_ind=ind.p_value,
        reject_ind=ind.rejects(test_level),
        lr_cc=cc.statistic,
        p_cc=cc.p_value,
        reject_cc=cc.rejects(test_level),
        zone=light.zone,
        zone_probability=light.probability,
        n00=t.n00,
        n01=t.n01,
        n10=t.n10,
        n11=t.n11,
    )


def _chi2_test(statistic: float, *, dof: int) -> LikelihoodRatio:
    from scipy.stats import chi2  # here: scipy.stats costs ~0.8 s at CLI start

    # ≥ 0 in exact arithmetic (a ratio against the maximum-likelihood fit): rounding only
    s = max(0.0, statistic)
    return LikelihoodRatio(statistic=s, dof=dof, p_value=float(chi2.sf(s, dof)))


def _zone(f: float) -> Zone:
    if f < YELLOW_FROM:
        return "green"
    return "yellow" if f < RED_FROM else "red"


def _finite_array(name: str, values: ArrayLike) -> FloatArray:
    try:
        a = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValidationError(name, MSG_NOT_NUMBER.format(value=values)) from None
    bad = ~np.isfinite(a)
    if bad.any():
        at = _first(bad)
        raise ValidationError(_where(name, at), MSG_NOT_FINITE.format(value=float(a[at])))
    return a


def _first(mask: BoolArray) -> tuple[int, ...]:
    return tuple(int(i) for i in np.argwhere(mask)[0])


def _where(name: str, at: tuple[int, ...]) -> str:
    return f"{name}[{', '.join(map(str, at))}]" if at else name


def _breach_series(breaches: ArrayLike) -> BoolArray:
    b = np.asarray(breaches)
    if b.dtype != np.bool_ or b.ndim != 1:
        raise ValidationError("breaches", MSG_NOT_BOOL.format(dtype=b.dtype, shape=b.shape))
    return b


def _count(name: str, value: object, *, low: int) -> int:
    # bool is an Integral too, but True as a day count is a caller's mistake
    if isinstance(value, Integral) and not isinstance(value, bool) and int(value) >= low:
        return int(value)
    raise ValidationError(name, MSG_NOT_COUNT.format(low=low, value=value))


def _rate(name: str, value: float) -> float:
    v = float(value)
    if not 0.0 < v < 1.0:
        raise ValidationError(
            name, MSG_OUT_OF_BOUNDS.format(interval="(0, 1)", what="a probability", value=value)
        )
    return v
