from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from marginflow.core.errors import ValidationError
from marginflow.market.vol_surface import VolSurface

SURFACE = VolSurface.of(
    expiries=[0.25, 1.0, 2.0],
    log_moneyness=[-0.3, 0.0, 0.3],
    vols=[[0.35, 0.25, 0.28], [0.30, 0.23, 0.25], [0.28, 0.22, 0.24]],
)


def test_pillars_are_reproduced() -> None:
    t, k = np.meshgrid(SURFACE.expiries, SURFACE.log_moneyness, indexing="ij")
    assert SURFACE.vol(t, k) == pytest.approx(SURFACE.vols)


def test_time_interpolation_is_linear_in_total_variance() -> None:
    w0, w1 = 0.25**2 * 0.25, 0.23**2 * 1.0
    expected = np.sqrt((w0 + (w1 - w0) * (0.5 - 0.25) / 0.75) / 0.5)
    assert SURFACE.vol(0.5, 0.0) == pytest.approx(expected)


def test_flat_vol_beyond_wings_and_expiries() -> None:
    assert SURFACE.vol(1.0, 5.0) == pytest.approx(0.25)
    assert SURFACE.vol(0.01, -5.0) == pytest.approx(0.35)
    assert SURFACE.vol(10.0, 0.0) == pytest.approx(0.22)


def test_clean_surface_has_no_arbitrage_and_bad_one_is_reported() -> None:
    assert SURFACE.arbitrage().ok
    bad = VolSurface.of([0.5, 1.0], [0.0], [[0.40], [0.20]])  # w falls 0.08 -> 0.04
    report = bad.arbitrage()
    assert report.calendar == [(0.0, 0.5, 1.0)]
    spiky = VolSurface.of([1.0], [-0.1, 0.0, 0.1], [[0.2, 0.8, 0.2]])
    assert spiky.arbitrage().butterfly


@settings(max_examples=200, deadline=None)
@given(k=st.floats(-1.0, 1.0), t1=st.floats(0.01, 3.0), dt=st.floats(0.0, 3.0))
def test_interpolation_adds_no_calendar_arbitrage(k: float, t1: float, dt: float) -> None:
    # The input is calendar-arbitrage free, so total variance must not fall in T anywhere.
    w = SURFACE.total_variance(np.array([t1, t1 + dt]), np.array([k, k]))
    assert w[1] >= w[0] - 1e-15


def test_shape_mismatch_names_the_field() -> None:
    with pytest.raises(ValidationError, match=r"vols: shape \(1, 2\) does not match \(1, 1\)"):
        VolSurface.of([1.0], [0.0], [[0.2, 0.3]])
