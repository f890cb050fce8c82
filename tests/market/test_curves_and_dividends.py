from __future__ import annotations

import math

import numpy as np
import pytest

from marginflow.core.errors import ValidationError
from marginflow.market.curves import ZeroCurve
from marginflow.market.dividends import DividendSchedule


def test_flat_curve_discounts_exactly() -> None:
    curve = ZeroCurve.flat(-0.01)
    assert curve.discount([0.0, 0.5, 3.0]) == pytest.approx(np.exp([0.0, 0.005, 0.03]))
    assert curve.zero_rate([0.0, 2.0]) == pytest.approx([-0.01, -0.01])


def test_pillars_are_reproduced_and_forwards_are_piecewise_flat() -> None:
    curve = ZeroCurve.of([0.5, 1.0, 2.0], [0.02, 0.03, 0.035])
    assert curve.zero_rate([0.5, 1.0, 2.0]) == pytest.approx([0.02, 0.03, 0.035])
    # Between 1y and 2y the forward is (0.035*2 - 0.03*1) / 1 = 0.04, flat.
    d = curve.discount([1.2, 1.7])
    assert -math.log(d[1] / d[0]) / 0.5 == pytest.approx(0.04)
    # Beyond the last pillar the last forward continues.
    d = curve.discount([2.0, 3.0])
    assert -math.log(d[1] / d[0]) == pytest.approx(0.04)


def test_curve_rejects_bad_pillars() -> None:
    with pytest.raises(ValidationError, match="times: must be > 0 and strictly increasing"):
        ZeroCurve.of([1.0, 0.5], [0.01, 0.02])


def test_escrowed_dividend_yield_reproduces_the_forward() -> None:
    curve = ZeroCurve.flat(0.04)
    divs = DividendSchedule.of([0.25, 0.75], [1.0, 1.5])
    pv = divs.present_value([0.5, 1.0, 0.1], curve)
    assert pv == pytest.approx(
        [1.0 * math.exp(-0.01), 1.0 * math.exp(-0.01) + 1.5 * math.exp(-0.03), 0.0]
    )
    q = divs.equivalent_yield(100.0, [1.0], curve)
    assert 100.0 * math.exp(-q[0]) == pytest.approx(100.0 - pv[1])


def test_dividends_worth_more_than_spot_are_rejected() -> None:
    divs = DividendSchedule.of([0.1], [150.0])
    with pytest.raises(ValidationError, match="amounts"):
        divs.equivalent_yield(100.0, [1.0], ZeroCurve.flat(0.0))
