"""Attribution of a margin's change to its causes, one cause at a time (a waterfall).

A margin is a function of three inputs: the positions, the market (prices, vols, reference
data: everything on the market topic but parameter changes) and the risk parameters. From
the inputs at the start to those at the end, the causes are swapped in one at a time, in a
given order; each step's effect is the margin after the swap minus the margin before it.
The steps add up to the whole change exactly, but the split depends on the order when the
causes interact (a trade margined at the new prices is not the trade at the old), so the
attribution is shown in one order and in the reverse order, as risk managers expect.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CAUSES = ("trades", "market", "parameters")
"""The causes, in the default order: what the member did, what the market did, what the
clearing house did."""


@dataclass(frozen=True, slots=True)
class Step:
    """One cause's effect: the margin before and after swapping it in (currency units)."""

    cause: str
    before: float
    after: float

    @property
    def change(self) -> float:
        return self.after - self.before


@dataclass(frozen=True, slots=True)
class Waterfall:
    """The change of one margin from ``start`` to ``end``, split by cause in ``order``."""

    start: float
    end: float
    order: tuple[str, ...]
    steps: tuple[Step, ...]

    @property
    def change(self) -> float:
        return self.end - self.start

    def to_json(self) -> dict[str, Any]:
        return {
            "order": list(self.order),
            "start": self.start,
            "end": self.end,
            "change": self.change,
            "steps": [
                {"cause": s.cause, "before": s.before, "after": s.after, "change": s.change}
                for s in self.steps
            ],
        }


def waterfall(
    evaluate: Callable[[Mapping[str, Any]], float],
    start: Mapping[str, Any],
    end: Mapping[str, Any],
    order: Sequence[str] = CAUSES,
) -> Waterfall:
    """Swap the inputs of ``start`` (a mapping cause -> input) for those of ``end`` one
    cause at a time in ``order``; ``evaluate(inputs)`` is the margin of a set of inputs.
    The last step's ``after`` is the margin at ``end``, so the steps add up to the change.
    """
    if sorted(order) != sorted(start) or sorted(start) != sorted(end):
        raise ValueError(f"order {list(order)} must name every cause of {sorted(start)}")
    state = dict(start)
    first = evaluate(state)
    before, steps = first, []
    for cause in order:
        state[cause] = end[cause]
        after = evaluate(state)
        steps.append(Step(cause, before, after))
        before = after
    return Waterfall(first, before, tuple(order), tuple(steps))


def chart(falls: Sequence[Waterfall], path: Path, *, title: str) -> Path:
    """Draw the waterfalls side by side (one per order) as PNG or SVG, by ``path``'s
    suffix: a bar from the start margin, one floating bar per cause (green down, red up),
    and the end margin."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(falls), figsize=(5.5 * len(falls), 4.2), squeeze=False)
    for ax, fall in zip(axes[0], falls, strict=True):
        labels = ["start", *[s.cause for s in fall.steps], "end"]
        bottoms = [0.0, *[min(s.before, s.after) for s in fall.steps], 0.0]
        heights = [fall.start, *[abs(s.change) for s in fall.steps], fall.end]
        colours = ["#4c72b0"]
        colours += ["#c44e52" if s.change > 0 else "#55a868" for s in fall.steps]
        colours += ["#4c72b0"]
        ax.bar(labels, heights, bottom=bottoms, color=colours)
        for k, s in enumerate(fall.steps, start=1):
            ax.annotate(
                f"{s.change:+,.0f}",
                (k, max(s.before, s.after)),
                ha="center",
                va="bottom",
                fontsize=8,
            )
        ax.set_title(" → ".join(fall.order), fontsize=9)
        ax.set_ylabel("margin")
        ax.yaxis.set_major_formatter(matplotlib.ticker.StrMethodFormatter("{x:,.0f}"))
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
