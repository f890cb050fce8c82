"""Calibration files: every shipped version loads at both horizons and is internally sound;
names and aliases resolve; FX helpers convert as documented."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from marginflow.core.errors import ConfigurationError, ValidationError
from marginflow.io.crif import crif_from_rows
from marginflow.io.fx_rates import read_fx_rates
from marginflow.simm.calibration import (
    FORMAT,
    PARAMS_DIR,
    Calibration,
    available_versions,
    from_document,
    load_calibration,
)
from marginflow.simm.calibration_import import curvature_weights, dumps
from marginflow.simm.fx import FxRates, implied_from_crif

VERSIONS = ["2.2", "2.3", "2.4", "2.5", "2.5A", "2.6", "2.7", "2.7+2412", "2.8+2506", "2.8+2512"]


def test_every_version_is_shipped_in_order() -> None:
    assert available_versions() == VERSIONS


@pytest.mark.parametrize(
    "alias", [("2.5.6", "2.6"), ("2.3.8", "2.4"), ("2.6.5", "2.7"), ("2.5a", "2.5A")]
)
def test_aliases(alias: tuple[str, str]) -> None:
    assert load_calibration(alias[0]).version == alias[1]


def test_unknown_version_and_horizon_are_named() -> None:
    with pytest.raises(
        ConfigurationError, match=r"unknown SIMM version '3.0'; available: 2.2, 2.3"
    ):
        load_calibration("3.0")
    with pytest.raises(ConfigurationError, match="mpor_days must be 10 or 1, got 5"):
        load_calibration("2.6", 5)


def _symmetric_correlation(m: np.ndarray, *, diagonal: float | None = 1.0) -> None:
    assert np.allclose(m, m.T)
    assert np.all(np.abs(m) <= 1.0)
    if diagonal is not None:
        assert np.allclose(np.diag(m), diagonal)


@pytest.mark.parametrize("mpor", [10, 1])
@pytest.mark.parametrize("version", VERSIONS)
def test_calibration_is_sound(version: str, mpor: int) -> None:
    cal: Calibration = load_calibration(version, mpor)
    ir = cal.interest_rate
    assert ir.delta_rw.shape == (3, 12)
    assert np.all(ir.delta_rw > 0)
    _symmetric_correlation(ir.tenor_corr)
    _symmetric_correlation(cal.risk_class_corr)
    for p in (cal.credit_q, cal.credit_non_q, cal.equity, cal.commodity):
        assert np.all(p.delta_rw > 0)
        assert np.all(p.vega_rw > 0)
        _symmetric_correlation(p.inter, diagonal=0.0)
        assert np.all((p.intra_same >= -1) & (p.intra_same <= 1))
        assert np.all((p.intra_diff >= -1) & (p.intra_diff <= 1))
        thresholds = np.concatenate([p.delta_threshold, p.vega_threshold])
        assert np.all(thresholds > 0)
        # Concentration applies at 10 days only (technical paper I.4).
        assert np.all(np.isfinite(thresholds)) == (mpor == 10)
    for m in (cal.fx.corr_regular_calc, cal.fx.corr_high_calc, cal.fx.delta_rw):
        assert np.allclose(m, m.T)
    assert cal.equity.residual == len(cal.equity.buckets) - 1
    assert cal.commodity.residual == -1
    assert np.allclose(cal.curvature_weight, curvature_weights(mpor))


def test_curvature_weights_follow_the_scaling_function() -> None:
    # SF(t) = 0.5 min(1, 14 / days(t)) at 10 days; 0.5 min(1, 1.4 / days(t)) at 1 day.
    ten, one = curvature_weights(10), curvature_weights(1)
    assert ten[0] == 0.5
    assert ten[4] == pytest.approx(0.5 * 14 / 365, rel=1e-15)
    assert one[0] == 0.05
    assert one[11] == pytest.approx(0.5 * 1.4 / (30 * 365), rel=1e-15)


def test_files_round_trip_through_the_writer(tmp_path: Path) -> None:
    for path in sorted(PARAMS_DIR.glob("*.json")):
        doc = json.loads(path.read_text())
        assert doc["format"] == FORMAT
        copy = tmp_path / path.name
        copy.write_text(dumps(doc) + "\n")
        assert json.loads(copy.read_text()) == doc
        # The shipped file is exactly what the writer produces (reviewable diffs).
        assert copy.read_text() == path.read_text()


def test_a_new_version_is_a_new_document() -> None:
    doc = json.loads((PARAMS_DIR / "v2.6.json").read_text())
    doc["version"] = "9.9"
    doc["mpor"]["10"]["equity"]["delta"]["1"] = 99.0
    cal = from_document(doc, 10)
    assert cal.version == "9.9"
    assert cal.equity.delta_rw[0] == 99.0
    with pytest.raises(ConfigurationError, match="has no 3-day calibration"):
        from_document(doc, 3)


def test_fx_rates_from_file_and_from_the_crif(tmp_path: Path) -> None:
    path = tmp_path / "fx.csv"
    path.write_text("Currency,USDPerUnit\nEUR,1.08\n# comment\njpy,0.0067\n")
    rates = read_fx_rates(path)
    assert rates.rate("EUR", "JPY") == pytest.approx(1.08 / 0.0067, rel=1e-15)
    assert rates.usd_per("USD") == 1.0
    with pytest.raises(ValidationError, match="no FX rate for GBP"):
        rates.usd_per("GBP")
    with pytest.raises(ValidationError, match="must be a positive number"):
        FxRates.of({"EUR": -1.0})
    # An absurd rate would shrink every amount to ~0 (or overflow it) without a word.
    for absurd in (1e300, 1e-300):
        with pytest.raises(ValidationError, match="fx_rate: FX rate for EUR must be between"):
            FxRates.of({"EUR": absurd})
    assert FxRates.of({"XAU": 4000.0, "VND": 3.9e-5}).usd_per("XAU") == 4000.0
    cal = load_calibration("2.6")
    rows = [
        {
            "RiskType": "Risk_FX",
            "ProductClass": "RatesFX",
            "Qualifier": "EUR",
            "Amount": a,
            "AmountCurrency": "EUR",
            "AmountUSD": a * 1.1,
        }
        for a in (100.0, 200.0, 300.0)
    ]
    implied = implied_from_crif(crif_from_rows(rows, calibration=cal).crif)
    assert implied.usd_per("EUR") == pytest.approx(1.1, rel=1e-12)
