"""The live demo pipeline: ``python -m marginflow.sim.live --dir DIR`` streams the demo day
into ``DIR`` over wall time, then keeps the pipeline running.

``marginflow up`` runs it as a child beside the service. The day (:class:`DemoRun`) is cut
into ``--slices`` slices published evenly over ``--seconds`` of wall time while the
pipeline steps without pause, so margins change visibly on the pages; once the day is in,
the pipeline keeps stepping (a risk-parameter change approved on the pages is published on
the log by the service and applied here, and new margins appear).

Resuming: the last slice published is kept in ``DIR/day.json`` after the log has it (the
producer flushed), and a second start over the same folder continues after it, with the
workers restored from their snapshots. A stop by SIGTERM or SIGINT lets the current step
finish and commits the workers' state; a kill between a slice's flush and its record
would publish that slice again on the next start (it is the only window, a few
microseconds wide).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from types import FrameType

from marginflow.cli.output import say
from marginflow.core.errors import ConfigurationError, MarginflowError
from marginflow.core.memory import keep_freed_memory
from marginflow.engine.settings import MarginSettings
from marginflow.sim.demo import DemoRun, prepare_demo
from marginflow.sim.synthetic_book import BookSpec

PROGRESS_FILE = "day.json"
IDLE_SLEEP = 0.05  # seconds between looks at the log once it has nothing new


@dataclass(frozen=True, slots=True)
class DayPlan:
    """The demo day a platform folder streams (its first start fixes it)."""

    trades: int = 20_000
    market_moves: int = 200
    slices: int = 60
    seconds: float = 120.0
    partitions: int = 4
    lookback: int = 1250  # business days of history (the demo's default FHS)
    members: int = 5  # the generated book's size (BookSpec's; its seed is 0)
    accounts: int = 200
    underlyings: int = 20
    series: int = 600
    sod_positions: int = 1_000

    def spec(self) -> BookSpec:
        return BookSpec(
            members=self.members,
            accounts=self.accounts,
            underlyings=self.underlyings,
            series=self.series,
            sod_positions=self.sod_positions,
        )

    def key(self) -> dict[str, float]:
        """What must match for a second start to continue the same day (not the pace)."""
        return {k: v for k, v in asdict(self).items() if k != "seconds"}

    def args(self) -> list[str]:
        """The command-line options that give this plan."""
        return [f"--{k.replace('_', '-')}={v}" for k, v in asdict(self).items()]


def published(directory: Path, plan: DayPlan) -> int:
    """The last slice already published in ``directory`` (-1: none); ConfigurationError if
    the folder streamed a different day."""
    path = directory / PROGRESS_FILE
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        return -1
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"{path}: unreadable ({exc}); start afresh with --fresh") from None
    if doc.get("day") != plan.key():
        raise ConfigurationError(
            f"{directory} streams another day ({doc.get('day')}): use the same options, "
            "or start afresh with --fresh"
        )
    return int(doc["published"])


def _record(directory: Path, plan: DayPlan, k: int) -> None:
    path = directory / PROGRESS_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"day": plan.key(), "published": k, "slices": plan.slices}))
    os.replace(tmp, path)


class _Stop:
    """Set by SIGTERM or SIGINT; the loop ends after its current step."""

    def __init__(self) -> None:
        self.requested = False
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._set)

    def _set(self, sig: int, frame: FrameType | None) -> None:
        self.requested = True


def _say(text: str) -> None:
    say(f"live: {text}", err=True)


def stream(directory: Path, plan: DayPlan, *, stop: _Stop, parent: int | None) -> DemoRun:
    """Stream the rest of the day, then keep stepping until told to stop (or the parent
    ``parent`` is gone). Returns the run, still open."""
    start = published(directory, plan) + 1
    run = prepare_demo(
        directory,
        spec=plan.spec(),
        settings=MarginSettings(lookback=plan.lookback),
        trades_count=plan.trades,
        market_moves=plan.market_moves,
        partitions=plan.partitions,
        slices=plan.slices,
    )
    run.warm_simm()
    day = run.publish_day(start)
    remaining = plan.slices + 1 - start
    interval = plan.seconds / max(1, plan.slices)
    due = time.monotonic()
    _say(f"{run.directory}: slices {start}..{plan.slices} of the day, one every {interval:.2f} s")
    while not stop.requested and (parent is None or os.getppid() == parent):
        now = time.monotonic()
        if remaining and now >= due:
            k = next(day)
            _record(directory, plan, k)
            remaining -= 1
            due += interval
            if not remaining:
                _say(f"the day is in ({run.events:,} trades); the pipeline keeps running")
        if not run.pipeline.step():
            time.sleep(min(IDLE_SLEEP, max(0.0, due - now)) if remaining else IDLE_SLEEP)
    return run


def main(argv: list[str] | None = None) -> int:
    keep_freed_memory()  # the day's margin pipeline runs in this process
    parser = argparse.ArgumentParser(prog="python -m marginflow.sim.live", description=__doc__)
    parser.add_argument("--dir", type=Path, required=True)
    defaults = DayPlan()
    for f in fields(DayPlan):
        kind = float if f.name == "seconds" else int
        flag = f"--{f.name.replace('_', '-')}"
        parser.add_argument(flag, type=kind, default=getattr(defaults, f.name))
    parser.add_argument("--exit-with-parent", action="store_true")
    args = parser.parse_args(argv)
    plan = DayPlan(**{f.name: getattr(args, f.name) for f in fields(DayPlan)})
    stop = _Stop()
    parent = os.getppid() if args.exit_with_parent else None
    try:
        run = stream(args.dir, plan, stop=stop, parent=parent)
    except MarginflowError as exc:
        _say(f"error: {exc}")
        return 2
    run.close()
    _say("stopped (the workers' state is committed)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
