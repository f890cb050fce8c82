"""The micro-batch worker and the position keeper, in process on the embedded log:
results against a batch recompute, dead letters, snapshots, restarts and rebalancing."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from marginflow.core.errors import ConfigurationError
from marginflow.core.ids import AccountId, InstrumentId
from marginflow.sim.loadgen import TradeFlow, trades
from marginflow.stream import events as ev
from marginflow.stream.codec import Codec, encode
from marginflow.stream.log.base import LogCorruptError
from marginflow.stream.log.embedded import EmbeddedLog
from marginflow.stream.position_keeper import PositionKeeper
from marginflow.stream.publish import publish_trades
from marginflow.stream.reconcile import check_positions, read_events
from marginflow.stream.snapshots import FileSnapshotStore, Snapshot, SnapshotError
from marginflow.stream.topics import DEAD_LETTERS, TRADES, Topology, partition_for
from marginflow.stream.worker import MicroBatchWorker, WorkerSettings

FLOW = TradeFlow(accounts=200, instruments=300, per_account=5)


@pytest.fixture
def setup(tmp_path: Path) -> tuple[EmbeddedLog, Topology, FileSnapshotStore]:
    log = EmbeddedLog(tmp_path / "log", rebalance_interval=0.02)
    topology = Topology(partitions=4)
    log.create_topics(topology.all())
    return log, topology, FileSnapshotStore(tmp_path / "state")


def _keeper(
    log: EmbeddedLog, topology: Topology, store: FileSnapshotStore, **settings: object
) -> MicroBatchWorker:
    conf = {"group": "keeper", "max_batch": 500, "snapshot_interval": 0.0, **settings}
    return MicroBatchWorker(
        PositionKeeper(topology),
        log=log,
        store=store,
        settings=WorkerSettings(**conf),  # type: ignore[arg-type]
        topology=topology,
    )


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"group": ""}, "group must not be empty"),
        ({"group": "g", "max_batch": 0}, "max_batch must be >= 1"),
        ({"group": "g", "max_wait": -1.0}, "max_wait must be >= 0"),
    ],
)
def test_settings_are_validated(settings: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        WorkerSettings(**settings)  # type: ignore[arg-type]


def test_positions_equal_a_batch_recompute(
    setup: tuple[EmbeddedLog, Topology, FileSnapshotStore],
) -> None:
    log, topology, store = setup
    publish_trades(log.producer(), topology, trades(FLOW, 20_000))
    worker = _keeper(log, topology, store)
    worker.run(idle_exit=0.2)
    worker.close()
    report = check_positions(log, topology)
    assert report.ok, report.mismatches[:5] + report.lost[:5]
    assert report.keys == FLOW.accounts
    assert report.replayed == 0  # no crash, no replay


def test_start_of_day_positions_set_and_trades_add(
    setup: tuple[EmbeddedLog, Topology, FileSnapshotStore],
) -> None:
    log, topology, store = setup
    flow = TradeFlow(accounts=3, instruments=2, per_account=2)
    sod = [
        ev.PositionSnapshot(
            account=flow.account(a),
            instrument=flow.instrument(i),
            quantity=100,
            business_date="2024-05-29",
            event_time=1,
        )
        for a in range(3)
        for i in range(2)
    ]
    publish_trades(log.producer(), topology, [*sod, *trades(flow, 300)])
    worker = _keeper(log, topology, store)
    worker.run(idle_exit=0.2)
    report = check_positions(log, topology)
    assert report.ok, report.mismatches[:5]
    tp = (topology.name(TRADES), partition_for(flow.account(0), 4))
    held = worker.processor.positions(tp)  # type: ignore[attr-defined]
    expected: dict[str, int] = {flow.instrument(i): 100 for i in range(2)}
    for t in trades(flow, 300):
        if t.account == flow.account(0):
            expected[t.instrument] = expected.get(t.instrument, 0) + t.quantity
    assert held[flow.account(0)] == {k: v for k, v in expected.items() if v}
    worker.close()


def test_invalid_trades_go_to_dead_letters_with_reason_and_bytes(
    setup: tuple[EmbeddedLog, Topology, FileSnapshotStore],
) -> None:
    log, topology, store = setup
    good = list(trades(FLOW, 100))
    bad_zero = msgspec.msgpack.encode({**msgspec.to_builtins(good[0]), "quantity": 0})
    bad_bytes = b"\xc1 not msgpack"
    publish_trades(log.producer(), topology, good[:50])
    producer = log.producer()
    producer.produce(topology.name(TRADES), bad_zero, partition=1)
    producer.produce(topology.name(TRADES), bad_bytes, partition=2)
    producer.flush()
    publish_trades(log.producer(), topology, good[50:])
    worker = _keeper(log, topology, store)
    worker.run(idle_exit=0.2)
    worker.close()
    assert worker.stats.dead_letters == 2
    letters = read_events(log, topology.name(DEAD_LETTERS), Codec([ev.DeadLetter]))[0]
    by_raw = {e.raw: e for _, e in letters if isinstance(e, ev.DeadLetter)}
    assert by_raw[bad_zero].field == "quantity"
    assert by_raw[bad_zero].reason == "must not be 0"
    assert by_raw[bad_zero].source_partition == 1
    assert by_raw[bad_bytes].reason.startswith("is not valid MessagePack")
    assert check_positions(log, topology).ok  # the good trades are all there


def test_restart_resumes_from_the_snapshot(
    setup: tuple[EmbeddedLog, Topology, FileSnapshotStore],
) -> None:
    log, topology, store = setup
    publish_trades(log.producer(), topology, trades(FLOW, 10_000))
    first = _keeper(log, topology, store)
    first.run(max_steps=6)
    first.close()  # snapshots and commits what it applied
    done = first.stats.records
    assert 0 < done < 10_000
    second = _keeper(log, topology, store)
    second.run(idle_exit=0.2)
    second.close()
    assert second.stats.records == 10_000 - done  # nothing applied twice
    report = check_positions(log, topology)
    assert report.ok, report.mismatches[:5] + report.lost[:5]


def test_abandoned_worker_replays_from_its_last_snapshot(
    setup: tuple[EmbeddedLog, Topology, FileSnapshotStore],
) -> None:
    log, topology, store = setup
    publish_trades(log.producer(), topology, trades(FLOW, 10_000))
    crashed = _keeper(log, topology, store, snapshot_interval=3600.0)
    crashed.run(max_steps=4)  # published results, never snapshotted: then "dies"
    # a killed process runs no callbacks; the kernel only drops its locks
    crashed._consumer._on_revoke = None  # type: ignore[attr-defined]
    crashed._consumer.close()
    assert crashed.stats.outputs > 0
    survivor = _keeper(log, topology, store)
    survivor.run(idle_exit=0.2)
    survivor.close()
    assert survivor.stats.records == 10_000  # replayed everything: no snapshot was saved
    report = check_positions(log, topology)
    assert report.ok, report.mismatches[:5] + report.lost[:5]
    assert report.replayed > 0  # the same results published twice, with the same versions


def test_two_workers_share_the_partitions(
    setup: tuple[EmbeddedLog, Topology, FileSnapshotStore],
) -> None:
    log, topology, store = setup
    publish_trades(log.producer(), topology, trades(FLOW, 20_000))
    a, b = _keeper(log, topology, store), _keeper(log, topology, store)
    for _ in range(400):
        a.step()
        b.step()
        if a.stats.records + b.stats.records >= 20_000:
            break
    assert a.owned()
    assert b.owned()
    assert set(a.owned()).isdisjoint(b.owned())
    a.close()  # b takes a's partitions over from a's snapshots
    b.run(idle_exit=0.3)
    assert len(b.owned()) == 4
    b.close()
    report = check_positions(log, topology)
    assert report.ok, report.mismatches[:5] + report.lost[:5]


def test_a_former_owner_saves_and_commits_nothing_once_the_partition_moved(
    setup: tuple[EmbeddedLog, Topology, FileSnapshotStore], capsys: pytest.CaptureFixture[str]
) -> None:
    """A zombie: a worker that lost its partitions without having been told (it was away
    from the broker while they went to another member) stops saving and committing for them
    as soon as it tries: its state is behind the new owner's and must not replace it."""
    log, topology, store = setup
    every = tuple(range(topology.partitions))
    publish_trades(log.producer(), topology, trades(FLOW, 4_000))
    zombie = _keeper(log, topology, store, partitions=every, snapshot_interval=3600.0)
    zombie.run(idle_exit=0.2)  # applied, not yet snapshotted
    publish_trades(log.producer(), topology, trades(FLOW, 4_000, first=4_000))
    owner = _keeper(log, topology, store, partitions=every)  # the partitions moved on
    owner.run(idle_exit=0.2)
    owner.close()
    tps = [(topology.name(TRADES), p) for p in every]
    saved = {tp: store.load("keeper", tp) for tp in tps}
    committed = log.committed("keeper", tps)
    zombie.close()  # the zombie's close snapshots and commits what it owns: refused
    assert {tp: store.load("keeper", tp) for tp in tps} == saved
    assert log.committed("keeper", tps) == committed
    assert zombie.owned() == {}
    err = capsys.readouterr().err
    assert err.count("belongs to another member now") == topology.partitions, err
    report = check_positions(log, topology)
    assert report.ok, report.mismatches[:5] + report.lost[:5]


def test_snapshot_store_round_trip_and_damage(tmp_path: Path) -> None:
    store = FileSnapshotStore(tmp_path)
    tp = ("mf.trades", 3)
    assert store.load("g", tp) is None
    store.save("g", tp, Snapshot(42, b"state"))
    assert store.load("g", tp) == Snapshot(42, b"state")
    path = tmp_path / "g" / "mf.trades-3.snap"
    path.write_bytes(path.read_bytes()[:-1] + b"X")
    with pytest.raises(SnapshotError, match="damaged"):
        store.load("g", tp)


def test_reconciliation_catches_a_wrong_and_a_missing_result(
    setup: tuple[EmbeddedLog, Topology, FileSnapshotStore],
) -> None:
    log, topology, store = setup
    flow = TradeFlow(accounts=20, instruments=10, per_account=2)
    publish_trades(log.producer(), topology, trades(flow, 500))
    worker = _keeper(log, topology, store)
    worker.run(idle_exit=0.2)
    worker.close()
    assert check_positions(log, topology).ok
    # a result claiming the version of the last trade of ACC000000, with a wrong quantity
    last = [t for t in trades(flow, 500) if t.account == flow.account(0)][-1]
    part = partition_for(last.account, 4)
    offsets = read_events(log, topology.name(TRADES), Codec(topology.spec(TRADES).events))[part]
    version = max(o for o, e in offsets if isinstance(e, ev.Trade) and e.account == last.account)
    wrong = ev.AccountPositions(
        account=last.account,
        instruments=(last.instrument,),
        quantities=(10**6,),
        source_partition=part,
        source_offset=version,
        event_time=last.event_time,
    )
    producer = log.producer()
    producer.produce(topology.name("positions"), encode(wrong), partition=part)
    producer.flush()
    report = check_positions(log, topology)
    assert any("published 1000000" in m for m in report.mismatches)
    # and one more trade that no worker processes: its account's result is lost
    publish_trades(log.producer(), topology, trades(flow, 1, first=500))
    assert len(check_positions(log, topology).lost) == 1


def test_late_events_policy(setup: tuple[EmbeddedLog, Topology, FileSnapshotStore]) -> None:
    log, topology, store = setup
    acc, ins = AccountId("ACC1"), InstrumentId("X")

    def trade(n: int, t: int) -> ev.Trade:
        return ev.Trade(
            trade_id=f"T{n}", account=acc, instrument=ins, quantity=10, price=1.0, event_time=t
        )

    sec = 1_000_000_000
    late_sod = ev.PositionSnapshot(
        account=acc, instrument=ins, quantity=500, business_date="2024-05-29", event_time=5 * sec
    )
    # trade at 100 s, a trade 60 s late (beyond the 5 s allowed), then a stale start of day
    publish_trades(log.producer(), topology, [trade(1, 100 * sec), trade(2, 40 * sec), late_sod])
    keeper = PositionKeeper(topology)
    worker = MicroBatchWorker(
        keeper, log=log, store=store, settings=WorkerSettings(group="keeper"), topology=topology
    )
    worker.run(idle_exit=0.2)
    tp = (topology.name(TRADES), partition_for(acc, 4))
    assert keeper.positions(tp)[acc] == {ins: 20}  # both trades count; the late SOD did not
    worker.close()
    assert keeper.late_trades == 1
    assert worker.stats.dead_letters == 1
    letters = read_events(log, topology.name(DEAD_LETTERS), Codec([ev.DeadLetter]))[0]
    (letter,) = [e for _, e in letters if isinstance(e, ev.DeadLetter)]
    assert letter.field == "event_time"
    assert "start-of-day position is late" in letter.reason
    assert check_positions(log, topology).ok  # the reconciliation applies the same policy


def test_partition_lost_and_regained_within_one_drain_is_applied_once(tmp_path: Path) -> None:
    """A rebalance inside a batch's drain revokes a partition after some of its records were
    drained, then hands it back (restored from its snapshot, read again from its offset):
    the records drained before the revocation come again, and must not be applied twice."""
    log = EmbeddedLog(tmp_path / "log", rebalance_interval=0.3)
    topology = Topology(partitions=4)
    log.create_topics(topology.all())
    store = FileSnapshotStore(tmp_path / "state")
    publish_trades(log.producer(), topology, trades(FLOW, 2_000))
    other = log.consumer("keeper")
    joined: list[str] = []

    def join(phase: str) -> None:  # a second member joins once the first owns everything
        if phase == "assigned" and not joined:
            joined.append(phase)
            other.subscribe([topology.name(TRADES)])

    class Keeper(PositionKeeper):
        def release(self, tp: tuple[str, int]) -> None:
            super().release(tp)
            other.close()  # ...and leaves again: the revoked partitions come straight back

    worker = MicroBatchWorker(
        Keeper(topology),
        log=log,
        store=store,
        settings=WorkerSettings(group="keeper", max_batch=100_000, max_wait=2.0),
        topology=topology,
        on_phase=join,
    )
    worker.step()  # drains all, loses two partitions, regains them: one batch
    assert len(worker.owned()) == 4
    worker.run(idle_exit=0.2)
    worker.close()
    report = check_positions(log, topology)
    assert report.ok, report.mismatches[:5] + report.lost[:5]


def test_partition_lost_and_regained_before_a_drain_returns_keeps_its_records(
    tmp_path: Path,
) -> None:
    """A rebalance inside the first read of a drain revokes a partition and hands it back
    before anything is returned: what that read returns comes after the rebalance and is
    all to be applied (dropping it would lose it: the partition reads on past it)."""
    log = EmbeddedLog(tmp_path / "log", rebalance_interval=0.3)
    topology = Topology(partitions=4)
    log.create_topics(topology.all())
    store = FileSnapshotStore(tmp_path / "state")
    other = log.consumer("keeper")
    assigned: list[str] = []

    def on_phase(phase: str) -> None:
        if phase != "assigned":
            return
        assigned.append(phase)
        if len(assigned) == 1:  # a second member joins once the first owns everything
            other.subscribe([topology.name(TRADES)])
        elif len(assigned) == 2:  # the revoked partitions are back: input arrives
            publish_trades(log.producer(), topology, trades(FLOW, 2_000))

    class Keeper(PositionKeeper):
        def release(self, tp: tuple[str, int]) -> None:
            super().release(tp)
            other.close()  # ...and leaves again

    worker = MicroBatchWorker(
        Keeper(topology),
        log=log,
        store=store,
        settings=WorkerSettings(group="keeper", max_batch=100_000, poll_timeout=2.0),
        topology=topology,
        on_phase=on_phase,
    )
    worker.step()  # the first read assigns, revokes, re-assigns, then returns the input
    assert len(assigned) == 2
    worker.run(idle_exit=0.2)
    worker.close()
    report = check_positions(log, topology)
    assert report.ok, report.mismatches[:5] + report.lost[:5]


def test_a_damaged_offsets_file_stops_the_worker_and_names_it(
    setup: tuple[EmbeddedLog, Topology, FileSnapshotStore],
) -> None:
    # a commit that fails because the offsets file is damaged is not "try again next time"
    log, topology, store = setup
    publish_trades(log.producer(), topology, trades(FLOW, 4_000))
    worker = _keeper(log, topology, store, max_batch=100)
    offsets = log.group_dir("keeper") / f"{topology.name(TRADES)}.offsets"
    for _ in range(1_000):  # until a batch is committed (a loaded machine may poll empty first)
        worker.step()
        if offsets.exists():
            break
    data = bytearray(offsets.read_bytes())
    data[len(data) // 2] ^= 0x01
    offsets.write_bytes(bytes(data))
    with pytest.raises(LogCorruptError, match=r"trades\.offsets"):
        worker.run(idle_exit=0.2)
