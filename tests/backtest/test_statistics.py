"""Back-testing statistics against the published vectors of ``margin-worked-examples.md`` §4
(MathWorks, BCBS 1996), small cases computed by hand from the formulas, and properties
checked against scipy's independent G-tests."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy.stats import chi2_contingency, power_divergence

from marginflow.backtest.statistics import (
    ZONES,
    LikelihoodRatio,
    Transitions,
    christoffersen_independence,
    conditional_coverage,
    exceptions,
    kupiec_pof,
    summarise,
    traffic_light,
    traffic_light_bounds,
    transition_counts,
)
from marginflow.core.errors import ValidationError


def rounds_to(value: float, published: str) -> bool:
    """``value`` rounded to the digits ``published`` shows equals it."""
    return round(value, len(published.split(".")[1])) == float(published)


def truncates_to(value: float, published: str) -> bool:
    """``value`` cut (not rounded) to the digits ``published`` shows equals it."""
    step = 10.0 ** -len(published.split(".")[1])
    return 0.0 <= value - float(published) < step


def series(n: int, runs: list[tuple[int, int]]) -> np.ndarray:
    """n days without breaches but for the runs (first day, length)."""
    b = np.zeros(n, dtype=bool)
    for start, length in runs:
        b[start : start + length] = True
    return b


# --- published vectors: MathWorks (Risk Management Toolbox, varbacktest), BCBS 1996 ---------


def test_kupiec_mathworks_vector() -> None:
    lr = kupiec_pof(1043, 57, 0.05)
    assert rounds_to(lr.statistic, "0.46147")
    assert rounds_to(lr.p_value, "0.49694")
    assert lr.dof == 1
    assert not lr.rejects(0.95)


def test_traffic_light_mathworks_vector() -> None:
    light = traffic_light(57, 1043, 0.05)
    assert rounds_to(light.probability, "0.77913")
    assert light.zone == "green"


def test_independence_and_conditional_coverage_mathworks_vector() -> None:
    ind = christoffersen_independence(Transitions(n00=932, n01=53, n10=53, n11=4))
    assert rounds_to(ind.statistic, "0.25866")
    assert rounds_to(ind.p_value, "0.61104")
    cc = conditional_coverage(kupiec_pof(1043, 57, 0.05), ind)
    assert cc.dof == 2
    assert rounds_to(cc.statistic, "0.72013")
    assert rounds_to(cc.p_value, "0.69763")
    assert not ind.rejects(0.95)
    assert not cc.rejects(0.95)


def test_summarise_reproduces_the_mathworks_vectors_from_a_series() -> None:
    # 49 single-day breaches and 4 two-day runs: 57 breaches, 53 entries and 53 exits
    # (the last day is not a breach), 4 breach-after-breach days, 932 quiet pairs.
    runs = [(10 + 19 * k, 2 if k < 4 else 1) for k in range(53)]
    s = summarise(series(1043, runs), confidence=0.95)
    assert (s.n, s.breaches) == (1043, 57)
    assert (s.n00, s.n01, s.n10, s.n11) == (932, 53, 53, 4)
    assert s.expected_rate == 0.05
    assert s.coverage == pytest.approx(1 - 57 / 1043, abs=1e-15)
    for value, published in [
        (s.lr_pof, "0.46147"),
        (s.p_pof, "0.49694"),
        (s.lr_ind, "0.25866"),
        (s.p_ind, "0.61104"),
        (s.lr_cc, "0.72013"),
        (s.p_cc, "0.69763"),
        (s.zone_probability, "0.77913"),
    ]:
        assert rounds_to(value, published), (value, published)
    assert (s.reject_pof, s.reject_ind, s.reject_cc) == (False, False, False)
    assert s.zone == "green"


@pytest.mark.parametrize(
    ("p", "published", "rejected"), [(0.05, "10.8123", True), (0.01, "0.0949", False)]
)
def test_kupiec_three_breaches_in_250_days(p: float, published: str, rejected: bool) -> None:
    lr = kupiec_pof(250, 3, p)
    assert rounds_to(lr.statistic, published)
    assert lr.rejects(0.95) is rejected


def test_chi_square_critical_values() -> None:
    one = LikelihoodRatio(statistic=0.0, dof=1, p_value=1.0)
    two = LikelihoodRatio(statistic=0.0, dof=2, p_value=1.0)
    assert rounds_to(one.critical_value(0.95), "3.8415")
    assert rounds_to(one.critical_value(0.99), "6.6349")
    assert rounds_to(two.critical_value(0.95), "5.9915")
    # at the critical value the model is still accepted; just above it, rejected
    c = one.critical_value(0.95)
    assert not LikelihoodRatio(c, 1, 0.05).rejects(0.95)
    assert LikelihoodRatio(math.nextafter(c, 4.0), 1, 0.05).rejects(0.95)


def test_basel_traffic_light_250_days_at_99_percent() -> None:
    assert traffic_light_bounds(250, 0.01) == (4, 9)
    zones = [traffic_light(x, 250, 0.01).zone for x in range(13)]
    assert zones == ["green"] * 5 + ["yellow"] * 5 + ["red"] * 3
    f = {x: traffic_light(x, 250, 0.01).probability for x in (4, 5, 9, 10)}
    assert rounds_to(f[4], "0.8922")
    assert rounds_to(f[5], "0.9588")
    # The reference cuts these two rather than rounding them (0.999750 and 0.999946;
    # BCBS 1996 prints 99.97% and 99.99%): checked to its digits the way it wrote them.
    assert truncates_to(f[9], "0.99974")
    assert truncates_to(f[10], "0.99994")


# --- small cases computed by hand from the formulas ----------------------------------------


def test_hand_computed_ten_days() -> None:
    # breaches on days 3, 4, 5 (1-based) of 10, at 90% confidence (p = 1/10)
    b = series(10, [(3, 3)])
    # pairs: 00 00 01 11 11 10 00 00 00
    assert transition_counts(b) == Transitions(n00=5, n01=1, n10=1, n11=2)

    # LR_pof = 2 ln[(7/10)^7 (3/10)^3 / ((9/10)^7 (1/10)^3)] = 2 ln[7^7 · 3^3 / 9^7]
    lr_pof = 2 * math.log(Fraction(7**7 * 3**3, 9**7))
    # π01 = 1/6, π11 = 2/3, π = 3/9:
    # LR_ind = 2 ln[(5/6)^5 (1/6)^1 (1/3)^1 (2/3)^2 / ((2/3)^6 (1/3)^3)]
    unrestricted = Fraction(5, 6) ** 5 * Fraction(1, 6) * Fraction(1, 3) * Fraction(2, 3) ** 2
    restricted = Fraction(2, 3) ** 6 * Fraction(1, 3) ** 3
    lr_ind = 2 * math.log(unrestricted / restricted)
    # F(3 | 10, 0.1) = Σ_{k ≤ 3} C(10, k) 0.1^k 0.9^(10−k), exact in decimals
    f = sum(
        Fraction(math.comb(10, k)) * Fraction(1, 10) ** k * Fraction(9, 10) ** (10 - k)
        for k in range(4)
    )
    assert f == Fraction("0.9872048016")

    s = summarise(b, confidence=0.90)
    assert s.expected_rate == 0.1
    assert s.lr_pof == pytest.approx(lr_pof, rel=1e-14)
    assert s.lr_ind == pytest.approx(lr_ind, rel=1e-14)
    assert s.lr_cc == pytest.approx(lr_pof + lr_ind, rel=1e-14)
    # χ²(1) tail: erfc(√(s/2)); χ²(2) tail: e^(−s/2)
    assert s.p_pof == pytest.approx(math.erfc(math.sqrt(lr_pof / 2)), rel=1e-12)
    assert s.p_ind == pytest.approx(math.erfc(math.sqrt(lr_ind / 2)), rel=1e-12)
    assert s.p_cc == pytest.approx(math.exp(-(lr_pof + lr_ind) / 2), rel=1e-12)
    assert s.zone_probability == pytest.approx(float(f), rel=1e-14)
    assert s.zone == "yellow"
    assert s.coverage == 0.7


def test_kupiec_edge_cases_are_exact() -> None:
    # x = 0: the likelihood of no breach in n days is (1 − p)^n
    assert kupiec_pof(250, 0, 0.01).statistic == pytest.approx(-2 * 250 * math.log(0.99), rel=1e-14)
    # x = n: p^n
    assert kupiec_pof(20, 20, 0.05).statistic == pytest.approx(-2 * 20 * math.log(0.05), rel=1e-14)
    assert kupiec_pof(1, 1, 0.5).statistic == pytest.approx(2 * math.log(2), rel=1e-15)
    # x/n = p exactly
    assert kupiec_pof(100, 5, 0.05).statistic == 0.0
    assert kupiec_pof(100, 5, 0.05).p_value == 1.0


@pytest.mark.parametrize(
    ("b", "counts"),
    [
        ([False] * 8, Transitions(7, 0, 0, 0)),  # no breaches
        ([True] * 8, Transitions(0, 0, 0, 7)),  # only breaches
        ([False] * 7 + [True], Transitions(6, 1, 0, 0)),  # no day after the breach
        ([True] + [False] * 7, Transitions(6, 0, 1, 0)),  # a breach on the first day only
        ([True], Transitions(0, 0, 0, 0)),  # one day: no transitions
        ([False], Transitions(0, 0, 0, 0)),
    ],
)
def test_independence_edge_cases_give_zero(b: list[bool], counts: Transitions) -> None:
    assert transition_counts(b) == counts
    lr = christoffersen_independence(counts)
    assert lr.statistic == 0.0
    assert lr.p_value == 1.0


def test_independence_breaches_never_and_always_followed() -> None:
    # n11 = 0: two isolated breaches in 9 days. π01 = 2/6, π11 = 0, π = 2/8:
    # LR_ind = 2 ln[(4/6)^4 (2/6)^2 (2/2)^2 / ((6/8)^6 (2/8)^2)]
    isolated = series(9, [(2, 1), (6, 1)])
    t = transition_counts(isolated)
    assert t == Transitions(n00=4, n01=2, n10=2, n11=0)
    expected = 2 * math.log(
        Fraction(4, 6) ** 4 * Fraction(2, 6) ** 2 / (Fraction(6, 8) ** 6 * Fraction(2, 8) ** 2)
    )
    assert christoffersen_independence(t).statistic == pytest.approx(expected, rel=1e-14)
    # n10 = 0: the breaches start and never stop. π01 = 1/5, π11 = 1, π = 4/8:
    # LR_ind = 2 ln[(4/5)^4 (1/5)^1 1^3 / ((4/8)^4 (4/8)^4)]
    t = transition_counts(series(9, [(5, 4)]))
    assert t == Transitions(n00=4, n01=1, n10=0, n11=3)
    expected = 2 * math.log(Fraction(4, 5) ** 4 * Fraction(1, 5) / Fraction(1, 2) ** 8)
    assert christoffersen_independence(t).statistic == pytest.approx(expected, rel=1e-14)


def test_summarise_accepts_a_good_model_and_rejects_clustered_breaches() -> None:
    spread = series(250, [(20 + 50 * k, 1) for k in range(3)])  # 3 breaches, apart
    s = summarise(spread, confidence=0.99)
    assert s.zone == "green"
    assert (s.reject_pof, s.reject_ind, s.reject_cc) == (False, False, False)
    clustered = series(250, [(100, 3)])  # the same count on three days running
    c = summarise(clustered, confidence=0.99)
    assert c.lr_pof == s.lr_pof
    assert (c.reject_pof, c.reject_ind, c.reject_cc) == (False, True, True)
    # 7 breaches apart: LR_pof ≈ 5.50, rejected at 95% (3.8415), accepted at 99% (6.6349)
    seven = series(250, [(30 * k, 1) for k in range(7)])
    assert summarise(seven, 0.99, test_level=0.95).reject_pof
    assert not summarise(seven, 0.99, test_level=0.99).reject_pof


# --- breaches -------------------------------------------------------------------------------


def test_exceptions_loss_beyond_margin() -> None:
    pnl = np.array([-5.0, -10.0, -10.000001, 3.0, 0.0])
    got = exceptions(pnl, 10.0)
    assert got.dtype == np.bool_
    assert got.tolist() == [False, False, True, False, False]  # a loss equal to margin is covered
    assert exceptions([-0.5, 0.5], 0.0).tolist() == [True, False]  # no margin: any loss breaches


def test_exceptions_broadcast_days_by_accounts() -> None:
    pnl = np.array([[-1.0, -5.0], [-3.0, 2.0], [-2.5, -4.0]])  # 3 days × 2 accounts
    margin = np.array([[2.0, 4.5], [2.0, 4.5], [2.0, 3.0]])
    assert exceptions(pnl, margin).tolist() == [[False, True], [True, False], [True, True]]
    assert exceptions(pnl, np.array([2.0, 4.5])).tolist() == [
        [False, True],
        [True, False],
        [True, False],
    ]


@pytest.mark.parametrize(
    ("pnl", "margin", "field", "reason"),
    [
        ([1.0, np.nan], [1.0, 1.0], "pnl[1]", "must be finite, got nan"),
        ([1.0, 2.0], [1.0, np.inf], "margin[1]", "must be finite, got inf"),
        ([[1.0], [-np.inf]], 1.0, "pnl[1, 0]", "must be finite, got -inf"),
        (np.nan, 1.0, "pnl", "must be finite, got nan"),
        ([1.0, 2.0], [1.0, -0.5], "margin[1]", "must be >= 0, got -0.5"),
        ([1.0, 2.0, 3.0], [1.0, 2.0], "margin", "has shape (2,), which does not broadcast"),
        (["a"], [1.0], "pnl", "is not a number"),
    ],
)
def test_exceptions_refuse_bad_input(pnl: object, margin: object, field: str, reason: str) -> None:
    with pytest.raises(ValidationError) as err:
        exceptions(pnl, margin)  # type: ignore[arg-type]
    assert err.value.field == field
    assert err.value.reason.startswith(reason)


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda: kupiec_pof(10, 11, 0.01), "x"),
        (lambda: kupiec_pof(0, 0, 0.01), "n"),
        (lambda: kupiec_pof(10, -1, 0.01), "x"),
        (lambda: kupiec_pof(10, 2.0, 0.01), "x"),  # type: ignore[arg-type]
        (lambda: kupiec_pof(True, 1, 0.01), "n"),
        (lambda: kupiec_pof(10, 1, 0.0), "p"),
        (lambda: kupiec_pof(10, 1, 1.0), "p"),
        (lambda: kupiec_pof(10, 1, math.nan), "p"),
        (lambda: traffic_light(11, 10, 0.01), "x"),
        (lambda: traffic_light_bounds(10, 1.5), "p"),
        (lambda: christoffersen_independence(Transitions(1, -1, 0, 0)), "n01"),
        (lambda: summarise([], 0.99), "breaches"),
        (lambda: summarise([0, 1, 0], 0.99), "breaches"),
        (lambda: summarise([[True]], 0.99), "breaches"),
        (lambda: summarise([True], 1.0), "confidence"),
        (lambda: summarise([True], 0.99, test_level=0.0), "test_level"),
    ],
)
def test_statistics_refuse_bad_input(call: object, field: str) -> None:
    with pytest.raises(ValidationError) as err:
        call()  # type: ignore[operator]
    assert err.value.field == field


def test_traffic_light_bounds_when_a_zone_is_empty() -> None:
    # one day at 1%: F(0) = 0.99 would make a clean record yellow: no breach is green;
    # F(1) = 1, red
    assert traffic_light_bounds(1, 0.01) == (0, 0)
    assert traffic_light(0, 1, 0.01).zone == "green"
    assert traffic_light(0, 1, 0.01).probability == pytest.approx(0.99, rel=1e-15)
    assert traffic_light(1, 1, 0.01).zone == "red"
    # five days at 1%: F(0) = 0.951, green all the same; one breach is yellow
    assert traffic_light(0, 5, 0.01).zone == "green"
    assert traffic_light(1, 5, 0.01).zone == "yellow"
    # one day at 50%: F(0) = 0.5 green, F(1) = 1 red, nothing yellow
    assert traffic_light_bounds(1, 0.5) == (0, 0)


# --- properties -----------------------------------------------------------------------------

counts = st.integers(min_value=1, max_value=5000).flatmap(
    lambda n: st.tuples(st.just(n), st.integers(min_value=0, max_value=n))
)
rates = st.floats(min_value=1e-4, max_value=0.9999)
breach_series = st.lists(st.booleans(), min_size=1, max_size=400).map(
    lambda b: np.array(b, dtype=bool)
)


@settings(max_examples=200, deadline=None)
@given(nx=counts, p=rates)
def test_kupiec_is_the_g_test_of_the_breach_count(nx: tuple[int, int], p: float) -> None:
    n, x = nx
    lr = kupiec_pof(n, x, p)
    g = power_divergence([n - x, x], f_exp=[n * (1 - p), n * p], lambda_="log-likelihood")
    assert lr.statistic >= 0.0
    assert lr.statistic == pytest.approx(g.statistic, rel=1e-9, abs=1e-9)
    assert lr.p_value == pytest.approx(math.erfc(math.sqrt(lr.statistic / 2)), rel=1e-9, abs=1e-300)
    # relabelling breach and no breach (x → n − x, p → 1 − p) changes nothing
    assert kupiec_pof(n, n - x, 1 - p).statistic == pytest.approx(lr.statistic, rel=1e-9, abs=1e-9)


@settings(max_examples=200, deadline=None)
@given(nx=counts)
def test_kupiec_is_zero_at_the_observed_rate(nx: tuple[int, int]) -> None:
    n, x = nx
    assume(0 < x < n)
    lr = kupiec_pof(n, x, x / n)
    assert lr.statistic == 0.0
    assert lr.p_value == 1.0
    # one ulp away the exact statistic is ~1e-30, and rounding alone would often make it
    # negative (e.g. n = 3, x = 1): clamped, never below 0
    for toward in (0.0, 1.0):
        near = kupiec_pof(n, x, math.nextafter(x / n, toward)).statistic
        assert 0.0 <= near < 1e-9


@settings(max_examples=200, deadline=None)
@given(b=breach_series)
def test_transition_counts_add_up(b: np.ndarray) -> None:
    t = transition_counts(b)
    x = int(b.sum())
    assert t.total == t.n00 + t.n01 + t.n10 + t.n11 == b.size - 1
    assert min(t.n00, t.n01, t.n10, t.n11) >= 0
    assert t.n01 + t.n11 == x - int(b[0])  # days in breach after the first
    assert t.n10 + t.n11 == x - int(b[-1])  # breaches with a next day
    assert abs(t.n01 - t.n10) <= 1  # every run of breaches is entered and left once


@settings(max_examples=200, deadline=None)
@given(b=breach_series)
def test_independence_is_the_g_test_of_the_transition_table(b: np.ndarray) -> None:
    t = transition_counts(b)
    lr = christoffersen_independence(t)
    assert lr.statistic >= 0.0
    assert 0.0 <= lr.p_value <= 1.0
    table = np.array([[t.n00, t.n01], [t.n10, t.n11]])
    if (table.sum(axis=0) > 0).all() and (table.sum(axis=1) > 0).all():
        g = chi2_contingency(table, correction=False, lambda_="log-likelihood")
        assert lr.statistic == pytest.approx(g.statistic, rel=1e-9, abs=1e-9)
    else:  # a state never entered or never left: nothing to test
        assert lr.statistic == 0.0


@settings(max_examples=200, deadline=None)
@given(b=breach_series)
def test_independence_ignores_time_direction_and_labels(b: np.ndarray) -> None:
    # Reversing time swaps n01 and n10 (the table's transpose); swapping breach and no
    # breach swaps n00 with n11 and n01 with n10. The G statistic is symmetric in both.
    lr = christoffersen_independence(transition_counts(b)).statistic
    reversed_ = christoffersen_independence(transition_counts(b[::-1])).statistic
    complement = christoffersen_independence(transition_counts(~b)).statistic
    assert reversed_ == pytest.approx(lr, rel=1e-12, abs=1e-12)
    assert complement == pytest.approx(lr, rel=1e-12, abs=1e-12)


@settings(max_examples=100, deadline=None)
@given(b=breach_series, confidence=st.sampled_from([0.9, 0.95, 0.975, 0.99, 0.995, 0.999]))
def test_summarise_is_consistent(b: np.ndarray, confidence: float) -> None:
    s = summarise(b, confidence)
    assert s.breaches == int(b.sum())
    assert s.coverage == 1 - s.breaches / s.n
    assert s.lr_cc == s.lr_pof + s.lr_ind
    assert s.p_cc == pytest.approx(math.exp(-s.lr_cc / 2), rel=1e-9, abs=1e-300)
    assert min(s.lr_pof, s.lr_ind, s.lr_cc) >= 0.0
    assert all(0.0 <= q <= 1.0 for q in (s.p_pof, s.p_ind, s.p_cc, s.zone_probability))
    assert s.reject_cc == (s.lr_cc > 5.991464547107979)  # χ²(2) at 95%


@settings(max_examples=60, deadline=None)
@given(n=st.integers(min_value=1, max_value=400), p=rates)
def test_zone_is_monotone_in_the_count_and_matches_the_bounds(n: int, p: float) -> None:
    green, yellow = traffic_light_bounds(n, p)
    assert -1 <= green <= yellow < n
    rank = [ZONES.index(traffic_light(x, n, p).zone) for x in range(n + 1)]
    assert rank == sorted(rank)
    assert rank == [0] * (green + 1) + [1] * (yellow - green) + [2] * (n - yellow)
