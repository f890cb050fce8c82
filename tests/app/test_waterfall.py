"""Waterfall attribution: the steps add up to the change in any order, each step is the
effect of its cause alone given the ones before it, and the chart is drawn."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from marginflow.app.waterfall import CAUSES, chart, waterfall


def margin(inputs: Mapping[str, Any]) -> float:
    # trades and market interact (a position margined at a price), parameters scale it
    return float(inputs["trades"] * inputs["market"] * inputs["parameters"])


values = st.floats(min_value=0.1, max_value=1e6, allow_nan=False)


@given(values, values, values, values, values, values, st.permutations(CAUSES))
def test_steps_add_up_to_the_change_in_any_order(
    q0: float, q1: float, p0: float, p1: float, k0: float, k1: float, order: list[str]
) -> None:
    start = {"trades": q0, "market": p0, "parameters": k0}
    end = {"trades": q1, "market": p1, "parameters": k1}
    fall = waterfall(margin, start, end, order)
    assert fall.start == margin(start)
    assert fall.end == margin(end)
    # the steps telescope exactly in real numbers; in floats each difference rounds at the
    # scale of the margins it subtracts, which may dwarf the net change
    scale = max(abs(v) for s in fall.steps for v in (s.before, s.after))
    total = sum(s.change for s in fall.steps)
    assert total == pytest.approx(fall.change, abs=8 * len(CAUSES) * 2.3e-16 * scale)
    assert [s.cause for s in fall.steps] == list(order)


def test_the_order_matters_when_causes_interact_and_both_are_shown(tmp_path: Path) -> None:
    start = {"trades": 10.0, "market": 100.0, "parameters": 1.0}
    end = {"trades": 20.0, "market": 110.0, "parameters": 1.5}
    forward = waterfall(margin, start, end, CAUSES)
    reverse = waterfall(margin, start, end, CAUSES[::-1])
    assert [s.change for s in forward.steps] == [1000.0, 200.0, 1100.0]
    assert [s.change for s in reverse.steps] == [500.0, 150.0, 1650.0]
    assert forward.change == reverse.change == 2300.0
    for suffix in ("png", "svg"):
        path = chart([forward, reverse], tmp_path / f"w.{suffix}", title="A0001 <b>[/x]")
        assert path.stat().st_size > 1000
    assert "&lt;b&gt;" in (tmp_path / "w.svg").read_text()  # the title is text, not markup


def test_every_cause_must_be_named() -> None:
    with pytest.raises(ValueError, match="must name every cause"):
        waterfall(
            margin,
            {"trades": 1, "market": 1, "parameters": 1},
            {"trades": 1, "market": 1, "parameters": 1},
            ["trades"],
        )
