"""The stream at market-data rates: every underlying of a 2,000-underlying book moving once a
second (a price tick each, a tenth of them with a vol tick too) beside 10,000 trades/s,
through the whole margin pipeline (position keeper, risk calculator, aggregator, sink; one
process each) on the broker and on the embedded log.

``python -m benchmarks.market_rate`` (``--minutes 10``, the issue's goal; ``--quick``: a
200-underlying book for one minute; ``--log broker|embedded|both``).

Book: the margin benchmark's large book (10,000 accounts, 2,000 underlyings, 100,000
series, 1,000,000 positions) scaled to a fifth but for its 2,000 underlyings, which all
move: 2,000 accounts, 20,000 series, 200,000 start-of-day positions; the stream's standard
scenario set (500-day FHS with the default stress period, 644 scenarios). Start-of-day
positions are published and margined before the clock starts.

Reported, from what the pipeline itself publishes:

* per batch of the calculator, what it covered (``market_from`` .. ``market_offset``,
  ticks read, underlying moves applied, accounts re-margined): the coalescing;
* market -> margin: the age of the oldest tick of a batch when its first margin is read
  back (every tick of the batch is at most that old), and trade -> margin latency (the
  first margin at a version covering the trade, minus the trade's stamp), p50 / p99, against
  the 1 s goal;
* consumer lag over time (records not yet committed: calculator on positions and market,
  keeper on trades, sink on margins), and whether it grows: the least-squares trend of the
  market -> margin age over the run;
* where a calculator batch's time goes (its own timings: revaluation of moved underlyings,
  split into premium grids and kernel; the refresh of accounts; building the margin events;
  and the worker's phases: drain, apply, publish, snapshot).

The machine has 2 cores shared with other engineers' jobs, and the load generator and the
four workers share them too: figures are indicative.
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import print_table
from benchmarks.workers import Bench, Proc, summary, wait_output, workers
from marginflow.engine.settings import MarginSettings
from marginflow.sim.synthetic_book import BookSpec
from marginflow.stream import events as ev
from marginflow.stream.broker import start_broker
from marginflow.stream.codec import Codec
from marginflow.stream.log.base import TP, Log
from marginflow.stream.log.embedded import EmbeddedLog
from marginflow.stream.log.kafka import KafkaLog
from marginflow.stream.topics import MARGINS, MARKET, POSITIONS, TRADES, Topology
from marginflow.stream.worker import broadcast_group

BOOK = BookSpec(members=20, accounts=2_000, underlyings=2_000, series=20_000, sod_positions=200_000)
QUICK_BOOK = BookSpec(members=5, accounts=400, underlyings=200, series=2_000, sod_positions=20_000)
SETTINGS = MarginSettings(lookback=500)
"""The stream benchmark's scenario set (benchmarks/stream.py): 500-day FHS, 644 scenarios."""
GOAL_SECONDS = 1.0
"""Issue 12: every affected margin published within 1 s (p99)."""


@dataclass
class Batch:
    """One calculator batch as its margins tell it."""

    market_from: int
    market_offset: int
    ticks: int
    moves: int
    accounts: int = 0
    first_receipt_ns: int = 0


@dataclass(eq=False)
class Probe(threading.Thread):
    """Reads the margins topic as it is published: per batch (its market range) what it
    covered, and per account (position version, receipt time) for trade latencies."""

    log: Log
    topology: Topology
    batches: dict[tuple[int, int], Batch] = field(default_factory=dict)
    versions: dict[str, list[tuple[int, int]]] = field(default_factory=dict)
    count: int = 0
    since_ns: int = 0  # margins read before this are the start of day's: not counted

    def __post_init__(self) -> None:
        super().__init__(daemon=True)
        topic = self.topology.name(MARGINS)
        self.reader = self.log.consumer()
        self.reader.assign({(topic, p): 0 for p in range(self.topology.partitions)})
        self.stop_flag = threading.Event()
        self.codec: Codec[ev.Event] = Codec([ev.AccountMargin])

    def run(self) -> None:
        while not self.stop_flag.is_set():
            records = self.reader.consume(5_000, 0.05)
            now = time.time_ns()
            for r in records:
                e = self.codec.try_decode(r.value)
                if not isinstance(e, ev.AccountMargin):
                    continue
                self.count += 1
                if now < self.since_ns:
                    continue
                self.versions.setdefault(e.account, []).append((e.position_version, now))
                key = (e.market_from if e.market_from is not None else -1, e.market_offset)
                b = self.batches.get(key)
                if b is None:
                    b = self.batches[key] = Batch(
                        key[0], key[1], e.market_ticks or 0, e.market_moves or 0
                    )
                    b.first_receipt_ns = now
                b.accounts += 1


@dataclass(eq=False)
class LagSampler(threading.Thread):
    """Every ``every`` seconds: records not yet committed by each stage, per input topic."""

    log: Log
    topology: Topology
    every: float = 5.0
    samples: list[tuple[float, dict[str, int]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__(daemon=True)
        self.stop_flag = threading.Event()
        t, p = self.topology, self.topology.prefix
        self.watch = {
            "keeper / trades": (p + "position-keeper", t.name(TRADES)),
            "calculator / positions": (p + "risk-calculator", t.name(POSITIONS)),
            "calculator / market": (broadcast_group(p + "risk-calculator"), t.name(MARKET)),
            "sink / margins": (p + "sink", t.name(MARGINS)),
        }

    def run(self) -> None:
        t0 = time.monotonic()
        while not self.stop_flag.wait(self.every):
            row: dict[str, int] = {}
            for name, (group, topic) in self.watch.items():
                tps: list[TP] = [(topic, q) for q in range(self.log.partitions(topic))]
                ends = self.log.end_offsets(tps)
                done = self.log.committed(group, tps)
                row[name] = sum(ends[tp] - (done[tp] or 0) for tp in tps)
            self.samples.append((time.monotonic() - t0, row))


def tick_times(log: Log, topology: Topology) -> np.ndarray:
    """Event time (ns) of every market-topic record, by offset."""
    topic = topology.name(MARKET)
    end = log.end_offsets([(topic, 0)])[(topic, 0)]
    out = np.zeros(end, dtype=np.int64)
    reader = log.consumer()
    reader.assign({(topic, 0): 0})
    codec: Codec[ev.Event] = Codec(topology.spec(MARKET).events)
    seen, idle = 0, 0
    while seen < end and idle < 50:
        records = reader.consume(10_000, 0.1)
        idle = 0 if records else idle + 1
        for r in records:
            e = codec.try_decode(r.value)
            out[r.offset] = int(getattr(e, "event_time", 0))
            seen = r.offset + 1
    reader.close()
    return out


def trade_latencies(
    log: Log, topology: Topology, versions: dict[str, list[tuple[int, int]]]
) -> np.ndarray:
    """Per trade (ms): the first margin of its account read back at a version covering it,
    minus the trade's stamp. Streams the trades topic (millions of records)."""
    firsts: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for account, rows in versions.items():
        rows.sort()
        v = np.array([x for x, _ in rows])
        r = np.minimum.accumulate(np.array([y for _, y in rows])[::-1])[::-1]
        firsts[account] = (v, r)
    topic = topology.name(TRADES)
    n = log.partitions(topic)
    ends = log.end_offsets([(topic, p) for p in range(n)])
    reader = log.consumer()
    reader.assign({(topic, p): 0 for p in range(n)})
    codec: Codec[ev.Event] = Codec(topology.spec(TRADES).events)
    out: list[float] = []
    seen = dict.fromkeys(range(n), 0)
    idle = 0
    while any(seen[p] < ends[(topic, p)] for p in range(n)) and idle < 50:
        records = reader.consume(10_000, 0.1)
        idle = 0 if records else idle + 1
        for r in records:
            seen[r.partition] = r.offset + 1
            e = codec.try_decode(r.value)
            if not isinstance(e, ev.Trade) or e.account not in firsts:
                continue
            v, receipts = firsts[e.account]
            i = int(np.searchsorted(v, r.offset))
            if i < v.size:
                out.append((receipts[i] - e.event_time) / 1e6)
    reader.close()
    return np.asarray(out)


def _loadgen(url: str, topology: Topology, bench: Bench, *args: str) -> None:
    cmd = [
        sys.executable, "-m", "marginflow.sim.loadgen_main", "--log", url,
        "--prefix", topology.prefix, "--partitions", str(topology.partitions),
        "--crif-portfolios", "0", *bench.book_folder, *args,
    ]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True)


def _settled(probe: Probe, quiet: float, timeout: float) -> None:
    """Wait until no margin has come for ``quiet`` seconds (after at least one)."""
    deadline = time.monotonic() + timeout
    last, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.5)
        if probe.count != last:
            last, since = probe.count, time.monotonic()
        elif probe.count and time.monotonic() - since >= quiet:
            return


def run(
    log: Log, url: str, bench: Bench, root: Path, *, minutes: float, rate: float,
    per_second: float, vol_share: float,
) -> dict[str, Any]:  # fmt: skip
    """One run on ``log``: start of day, then ``minutes`` of trades and sweeping ticks."""
    topology = Topology(partitions=4, prefix=f"mr{time.time_ns() % 10**9}.")
    log.create_topics(topology.all())
    n_und = len(bench.book.underlyings)
    every = rate / (n_und * per_second)
    if every != int(every) or every < 1:
        raise SystemExit(
            f"--rate / (underlyings x per-second) must be a whole number >= 1, got {every}"
        )
    probe = Probe(log, topology)
    probe.start()
    big = ("--max-batch", "1000000")  # a batch takes all there is: coalescing bounds its work
    # static partitions: a calculator batch takes seconds on this shared machine, and a group
    # that rebalances meanwhile (a missed heartbeat) would replay from the last snapshot
    static = ("--assign", ",".join(map(str, range(topology.partitions))))
    with contextlib.ExitStack() as stack:
        t_build = time.perf_counter()
        procs: list[Proc] = stack.enter_context(
            workers(url, topology, bench, root, {"position-keeper": 1, "risk-calculator": 1},
                    *big, *static, "--max-wait", "0")
        )  # fmt: skip
        procs += stack.enter_context(
            workers(
                url,
                topology,
                bench,
                root,
                {"aggregator": 1, "sink": 1},
                *static,
                "--max-wait",
                "0.05",
            )
        )
        wait_output(procs, b"assigned", timeout=1_800)
        build = time.perf_counter() - t_build
        _loadgen(url, topology, bench, "--trades", "0")  # start of day
        _settled(probe, quiet=5.0, timeout=1_800)
        sampler = LagSampler(log, topology, every=5.0 if minutes >= 2 else 2.0)
        sampler.start()
        probe.since_ns = start_ns = time.time_ns()
        trades = int(rate * minutes * 60)
        _loadgen(
            url, topology, bench, "--no-sod", "--trades", str(trades), "--rate", str(rate),
            "--chunk", str(max(int(rate / 100), 1)), "--market-every", str(int(every)),
            "--sweep", "--vol-share", str(vol_share),
        )  # fmt: skip
        published = time.time_ns()
        _settled(probe, quiet=5.0, timeout=600)
        sampler.stop_flag.set()
        sampler.join()
    probe.stop_flag.set()
    probe.join()
    calc = next(summary(path) for role, _, path in procs if role == "risk-calculator")
    ticks = tick_times(log, topology)
    lat = trade_latencies(log, topology, probe.versions)
    return {
        "build_s": build,
        "start_ns": start_ns,
        "published_ns": published,
        "batches": sorted(probe.batches.values(), key=lambda b: b.market_offset),
        "ticks": ticks,
        "trade_ms": lat,
        "lag": sampler.samples,
        "calc": calc,
        "trades": trades,
    }


def _pct(a: np.ndarray, q: float) -> float:
    return float(np.percentile(a, q)) if a.size else float("nan")


def report(name: str, r: dict[str, Any], minutes: float) -> dict[str, Any]:
    """Print one run's tables; return its headline figures."""
    batches: list[Batch] = [b for b in r["batches"] if b.market_from >= 0]
    ticks: np.ndarray = r["ticks"]
    # the oldest tick of each batch, at its first margin read back
    ages = np.array(
        [
            (b.first_receipt_ns - ticks[b.market_from]) / 1e9
            for b in batches
            if b.ticks and b.market_from < ticks.size
        ]
    )
    at = np.array([(b.first_receipt_ns - r["start_ns"]) / 1e9 for b in batches if b.ticks])[
        : ages.size
    ]
    ticks_in = np.array([b.ticks for b in batches if b.ticks])
    moves = np.array([b.moves for b in batches if b.ticks])
    accounts = np.array([b.accounts for b in batches if b.ticks])
    trend = float(np.polyfit(at, ages, 1)[0]) * 60 if ages.size > 2 else float("nan")
    run_min = (r["published_ns"] - r["start_ns"]) / 60e9
    growth = trend * run_min
    bounded = bool(ages.size > 2 and growth < GOAL_SECONDS)
    lat: np.ndarray = r["trade_ms"]
    sent = r["trades"] / max((r["published_ns"] - r["start_ns"]) / 1e9, 1e-9)
    print(
        f"{name}: the load generator sent {r['trades']:,} trades at {sent:,.0f}/s on average "
        f"(asked: {r['trades'] / (minutes * 60):,.0f}/s; it shares the 2 cores with the "
        "pipeline), with the ticks in step",
        flush=True,
    )
    print_table(
        f"{name}: per calculator batch (market ticks coalesced), {len(ticks_in)} batches "
        f"with ticks in {run_min:.1f} min",
        ["measure", "p50", "p99", "max", "mean"],
        [
            ["ticks read", _pct(ticks_in, 50), _pct(ticks_in, 99), float(ticks_in.max(initial=0)),
             float(ticks_in.mean()) if ticks_in.size else 0.0],
            ["underlying moves applied", _pct(moves, 50), _pct(moves, 99),
             float(moves.max(initial=0)), float(moves.mean()) if moves.size else 0.0],
            ["accounts re-margined", _pct(accounts, 50), _pct(accounts, 99),
             float(accounts.max(initial=0)), float(accounts.mean()) if accounts.size else 0.0],
        ],
    )  # fmt: skip
    print_table(
        f"{name}: latency (goal p99 <= {GOAL_SECONDS:g} s), lag trend",
        ["measure", "p50", "p99", "max", "goal"],
        [
            ["oldest tick of a batch -> its margins, s", _pct(ages, 50), _pct(ages, 99),
             float(ages.max(initial=0)), GOAL_SECONDS],
            ["trade -> margin, ms", _pct(lat, 50), _pct(lat, 99), float(lat.max(initial=0)),
             GOAL_SECONDS * 1e3],
            ["tick age trend, s per minute (growth over the run)", trend, growth, 0.0,
             "bounded" if bounded else "GROWING"],
        ],
    )  # fmt: skip
    lag = r["lag"]
    if lag:
        step = max(len(lag) // 12, 1)
        names = list(lag[0][1])
        print_table(
            f"{name}: consumer lag over time (records not committed)",
            ["t s", *names],
            [[round(t), *(row[k] for k in names)] for t, row in lag[::step]],
        )
    calc = r["calc"]
    timings: dict[str, float] = calc.get("timings", {})
    busy: dict[str, float] = calc.get("busy_seconds", {})
    n = max(int(calc.get("batches", 1)), 1)
    total_moves = max(int(moves.sum()), 1)
    rows = [[f"calculator: {k}", v, v / n * 1e3] for k, v in timings.items()]
    rows += [[f"worker phase: {k}", v, v / n * 1e3] for k, v in busy.items()]
    reval = timings.get("revaluation: premium grids", 0.0) + timings.get("revaluation: kernel", 0.0)
    rows.append(["revaluation per underlying move, ms", reval, reval / total_moves * 1e3])
    rows.append(["records drained per batch (positions + market)", 0.0,
                 float(calc.get("records", 0)) / n])  # fmt: skip
    rows.append(["age of a batch's first record when drained, ms p50/p90/p99", 0.0,
                 str(calc.get("arrival_ms_p50_p90_p99", []))])  # fmt: skip
    print_table(
        f"{name}: where the calculator's time went ({n} batches in all, start of day "
        f"included; engine built in {r['build_s']:.0f} s)",
        ["stage", "seconds", "ms per batch"],
        rows,
    )
    return {
        "batches": int(ticks_in.size),
        "ticks_p50": _pct(ticks_in, 50),
        "moves_p50": _pct(moves, 50),
        "age_p50": _pct(ages, 50),
        "age_p99": _pct(ages, 99),
        "trade_p50_ms": _pct(lat, 50),
        "trade_p99_ms": _pct(lat, 99),
        "growth_s": growth,
        "bounded": bounded,
        "minutes": minutes,
        "trades_per_s": sent,
    }


def _warm() -> None:
    """Compile (and cache on disk) the kernels a calculator runs, on a small book, so no
    timed process pays for compilation."""
    from marginflow.stream.risk_calculator import MarginSetup

    book = QUICK_BOOK.book()
    engine = MarginSetup(book, SETTINGS).engine()
    engine.apply_trades({book.positions.accounts[0]: {book.instruments.ids[0]: 1.0}})
    engine.apply_market(book.underlyings.ids[0], spot=float(book.market.spot[0]) * 1.01)


def in_process(spec: BookSpec) -> None:
    """One engine in this process (the stream's settings, start-of-day positions held)
    moving every underlying of the book once per sweep, each sweep one batch as a coalescing
    calculator applies it: spot +1%, spot back, then the ATM vol +2% (spot-only sweeps
    reuse the premium grids; a vol move reprices them). Wall time and the engine's own
    split (premium grids, kernel) per sweep."""
    from marginflow.engine.settings import build_engine

    book = spec.book()
    t0 = time.perf_counter()
    engine = build_engine(book, SETTINGS)
    build = time.perf_counter() - t0
    build_grids = engine.timings.get("eep_grid", 0.0)
    ids = book.underlyings.ids
    spot, atm = book.market.spot.copy(), book.market.atm_vol.copy()
    sweeps: list[tuple[str, dict[str, tuple[float | None, ...]]]] = [
        ("spot +1%", {u: (float(spot[k]) * 1.01,) for k, u in enumerate(ids)}),
        ("spot back", {u: (float(spot[k]),) for k, u in enumerate(ids)}),
        ("ATM vol +2%", {u: (None, float(atm[k]) * 1.02) for k, u in enumerate(ids)}),
    ]
    rows: list[list[Any]] = [["engine build (full re-margin)", build, build_grids, "", ""]]
    for name, moves in sweeps:
        before = dict(engine.timings)
        t0 = time.perf_counter()
        touched = engine.apply_batch(moves=moves)
        wall = time.perf_counter() - t0
        grids = engine.timings.get("eep_grid", 0.0) - before.get("eep_grid", 0.0)
        kernel = engine.timings.get("kernel", 0.0) - before.get("kernel", 0.0)
        rows.append([f"every underlying once: {name}", wall, grids, kernel, touched.size])
    print(
        f"book: {len(book.underlyings):,} underlyings, {len(book.instruments):,} instruments "
        f"({int(book.instruments.is_american.sum()):,} American), "
        f"{len(book.positions.accounts):,} accounts, {engine.matrix.shape[1]:,} scenarios"
    )
    print_table(
        "In-process: the engine moving every underlying once, one batch per sweep",
        ["sweep", "wall s", "premium grids s", "kernel s", "accounts re-margined"],
        rows,
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.market_rate", description=__doc__)
    ap.add_argument("--quick", action="store_true", help="200 underlyings, 1 minute")
    ap.add_argument("--minutes", type=float, default=None, help="default 10 (--quick: 1)")
    ap.add_argument("--log", choices=("broker", "embedded", "both"), default="both")
    ap.add_argument("--rate", type=float, default=10_000.0, help="trades per second")
    ap.add_argument("--per-second", type=float, default=1.0, help="moves per underlying per s")
    ap.add_argument("--vol-share", type=float, default=0.1, help="moves with a vol tick too")
    ap.add_argument(
        "--in-process",
        action="store_true",
        help="no pipeline: time the engine moving every underlying once (spot, then vol)",
    )
    for key in ("accounts", "underlyings", "series", "positions"):
        ap.add_argument(f"--{key}", type=int, default=None)
    args = ap.parse_args(argv)
    spec = QUICK_BOOK if args.quick else BOOK
    sizes = {"accounts": "accounts", "underlyings": "underlyings", "series": "series",
             "positions": "sod_positions"}  # fmt: skip
    from dataclasses import replace

    for key, attr in sizes.items():
        if getattr(args, key) is not None:
            spec = replace(spec, **{attr: getattr(args, key)})
    minutes = args.minutes if args.minutes is not None else (1.0 if args.quick else 10.0)
    _warm()
    if args.in_process:
        in_process(spec)
        return 0
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        bench = Bench.write(spec, SETTINGS, root / "book")
        book = bench.book
        print(
            f"book: {len(book.positions.accounts):,} accounts, {len(book.underlyings):,} "
            f"underlyings, {len(book.instruments):,} instruments "
            f"({int(book.instruments.is_american.sum()):,} American), {book.positions.nnz:,} "
            f"positions, {SETTINGS.describe()}; written in {time.perf_counter() - t0:.0f} s; "
            f"{args.rate:,.0f} trades/s, every underlying {args.per_second:g}/s "
            f"({len(book.underlyings) * args.per_second:,.0f} price ticks/s, "
            f"{args.vol_share:.0%} with a vol tick), {minutes:g} min",
            flush=True,
        )
        common = {"minutes": minutes, "rate": args.rate, "per_second": args.per_second,
                  "vol_share": args.vol_share}  # fmt: skip
        if args.log in ("broker", "both"):
            broker = start_broker()
            try:
                klog = KafkaLog(broker.bootstrap)
                url = f"kafka://{broker.bootstrap}"
                r = run(klog, url, bench, root / "k", **common)
                results["broker"] = report("broker", r, minutes)
                klog.close()
            finally:
                broker.stop()
        if args.log in ("embedded", "both"):
            elog = EmbeddedLog(root / "e" / "log")
            r = run(elog, f"embedded://{root / 'e' / 'log'}", bench, root / "e", **common)
            results["embedded"] = report("embedded log", r, minutes)
    rows = [
        [name, x["minutes"], x["trades_per_s"], x["batches"], x["ticks_p50"], x["moves_p50"],
         x["age_p50"], x["age_p99"], x["trade_p50_ms"], x["trade_p99_ms"], x["growth_s"],
         "yes" if x["bounded"] else "no"]
        for name, x in results.items()
    ]  # fmt: skip
    print_table(
        "Summary: every underlying moving each second beside the trades",
        ["log", "min", "trades/s sent", "batches", "ticks/batch p50", "moves/batch p50",
         "tick age p50 s", "tick age p99 s", "trade p50 ms", "trade p99 ms", "age growth s",
         "lag bounded"],
        rows,
    )  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
