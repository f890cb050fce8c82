"""The micro-batch worker: a consumer-group member that drains a batch from the log,
applies it to its state, recomputes what changed, publishes the results and commits.

A worker is a :class:`Processor` (the logic: state, apply, recompute, snapshot) run by a
:class:`MicroBatchWorker` (the loop and the commit protocol). Scale by running more
workers in the same group: the log deals the input partitions among them; each partition's
state moves with it through the snapshot store.

The commit protocol
-------------------
One step of :meth:`MicroBatchWorker.step`, in this order:

1. **Drain** a batch: consume until ``max_batch`` records or ``max_wait`` seconds after the
   first one, whichever comes first. A rebalance inside the drain (callbacks run inside
   ``consume``) drops what was drained of the revoked partitions: a partition handed back
   is read again from its snapshot's offset.
2. **Validate**: decode each record; an invalid one becomes a dead letter (reason and
   original bytes), queued for step 5. Records below the state's offset for their
   partition (already reflected in a restored snapshot) are skipped.
3. **Apply** the valid events to the state, per partition in offset order.
4. **Recompute** what the batch changed; every result carries the input offsets (its
   version) it was computed from.
5. **Publish** results and dead letters and send them on (readers see them as soon as
   the log has them; the loop does not wait). Downstream upserts them idempotently, keyed
   by what they were computed from, so publishing the same result again is harmless.
6. **Snapshot** (when ``snapshot_interval`` has passed, on revocation and at close): first
   **flush** the producer, so every result published so far is durable in the log; then
   the state of each owned partition with the offset it reflects, encoded here, between
   batches, and saved atomically by a background writer so the loop does not wait on
   fsync (on revocation and at close the worker waits for it).
7. **Commit** exactly the offsets of snapshots the writer reports durable (at a later
   step, or at once on revocation and close).

A crash anywhere replays, and never loses or doubles a result:

* before the flush of 6 completes: results since the last snapshot are durable, or some
  are, or none; the restarted worker restores the last snapshot, which predates them all,
  and recomputes the same results from the same inputs (those already in the log arrive
  twice with the same versions, and the upsert absorbs them);
* between 6 and 7: the snapshot is ahead of the committed offset; the worker resumes from
  the **snapshot's** offset, never the committed one, so nothing is applied twice (committed
  offsets only report progress to the lag monitor);
* after 7: nothing to replay.

A partition with no snapshot starts from offset 0 with empty state. Correctness rests on
neither transactions nor log compaction; it rests on deterministic processing, results
keyed by their input offsets, and the order above.

The broker going away
---------------------
Nothing above is skipped or reordered while the log is unreachable
(:class:`~marginflow.stream.log.base.LogUnavailableError`); the worker waits in place,
retrying with :class:`~marginflow.stream.log.health.Backoff` (exponential, capped, with
jitter) and reporting one line when the broker goes and one when it is back:

* 1: an unreachable broker only makes ``consume`` return nothing; what was drained is kept;
* 5: records queue in the producer (never failed for a timeout, see
  :mod:`marginflow.stream.log.kafka`);
* 6: the flush is retried until every record is durable; no snapshot is written before,
  so a batch is never half-committed. A delivery the broker *refused* is a
  :class:`~marginflow.stream.log.base.LogError`: the worker stops without a snapshot and its
  restart redoes the batch from the last snapshot, as after a crash;
* 7: a commit that fails is kept and retried with the next one (committed offsets only
  report progress); a member that lost its partitions while the broker was away is revoked
  (6 and 7 on them) and assigned again from its snapshots, as in any rebalance;
* asked to stop while the broker is away, the worker waits ``stop_grace`` seconds for it,
  then stops without a snapshot (the restart replays from the last one).

A worker that alone lost the broker may learn only after it is back that its partitions
went to another member meanwhile. Until then it must not save snapshots for them: a worker
claims each partition it is assigned in the snapshot store (step 1's rebalance), and 6 saves
under that claim, so a former owner's save is refused (see
:mod:`marginflow.stream.snapshots`); the worker then drops the partition at once, without
committing for it (7).
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, TypeVar, cast

from marginflow.core.errors import ConfigurationError
from marginflow.stream import events as ev
from marginflow.stream.codec import Codec, Rejection, dead_letter, encode
from marginflow.stream.log.base import (
    TP,
    Consumer,
    Log,
    LogCorruptError,
    LogError,
    LogUnavailableError,
    Producer,
    Record,
)
from marginflow.stream.log.health import Backoff, BackoffPolicy, BrokerHealth, health_of, say
from marginflow.stream.snapshots import Snapshot, SnapshotStore, SnapshotWriter
from marginflow.stream.topics import DEAD_LETTERS, Topology, partition_for

BROADCAST_KEY: TP = ("_broadcast", 0)
"""Where a worker's snapshot store keeps its broadcast state (topic, partition)."""

_T = TypeVar("_T")

Guarantee = Literal["at-least-once delivery, exactly-once results"]


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    """How a worker batches, snapshots and waits; validated on construction.

    ``max_batch`` and ``max_wait`` (seconds) trigger a micro-batch, whichever first;
    ``snapshot_interval`` (seconds) bounds the replay after a crash; ``poll_timeout`` is
    how long an idle step waits for the first record. ``partitions`` assigns these input
    partitions statically instead of joining the group's rebalancing (each process is told
    its share, as a stream processor assigns its sources; offsets are still committed
    under the group so the lag monitor sees them).
    """

    group: str
    max_batch: int = 10_000
    max_wait: float = 0.02
    snapshot_interval: float = 1.0
    poll_timeout: float = 0.05
    partitions: tuple[int, ...] | None = None
    guarantee: Guarantee = "at-least-once delivery, exactly-once results"
    backoff: BackoffPolicy = field(default_factory=BackoffPolicy)
    stop_grace: float = 5.0

    def __post_init__(self) -> None:
        if not self.group:
            raise ConfigurationError("worker group must not be empty")
        if self.max_batch < 1:
            raise ConfigurationError(f"max_batch must be >= 1, got {self.max_batch}")
        for name in ("max_wait", "snapshot_interval", "poll_timeout", "stop_grace"):
            if getattr(self, name) < 0:
                raise ConfigurationError(f"{name} must be >= 0, got {getattr(self, name)}")


@dataclass(frozen=True, slots=True)
class Output:
    """A result to publish on ``topic`` (a full topic name), keyed by ``event.key()``."""

    topic: str
    event: ev.Event


class Processor(ABC):
    """The logic of one kind of worker. The worker calls, per step: :meth:`apply` for each
    partition's events in offset order, then :meth:`recompute` once."""

    #: topics whose partitions are shared among the group (full names)
    inputs: tuple[str, ...] = ()
    #: topics every member reads whole (full names); their state is worker-wide
    broadcasts: tuple[str, ...] = ()

    @abstractmethod
    def codec(self, topic: str) -> Codec[ev.Event]:
        """The decoder of ``topic``'s events."""

    @abstractmethod
    def restore(self, tp: TP, data: bytes | None) -> None:
        """Take ownership of input partition ``tp`` with the state in ``data`` (None: empty)."""

    @abstractmethod
    def release(self, tp: TP) -> None:
        """Forget the state of ``tp`` (another worker owns it now)."""

    @abstractmethod
    def apply(
        self, tp: TP, events: Sequence[tuple[int, ev.Event]]
    ) -> Sequence[tuple[int, Rejection]]:
        """Apply ``(offset, event)`` pairs of one partition, in offset order; return the
        events refused (well-formed but unusable, e.g. naming an unknown instrument) with
        their offsets and reasons: they go to the dead letters like undecodable ones. The
        decision must depend only on the log, so a replay refuses the same events."""

    @abstractmethod
    def recompute(self) -> list[Output]:
        """Results for everything changed since the last call, each carrying its version."""

    @abstractmethod
    def snapshot(self, tp: TP) -> bytes:
        """The state of ``tp`` as bytes, for :meth:`restore`."""

    def snapshot_broadcast(self) -> bytes:
        """Worker-wide state built from the broadcast topics (empty if there are none)."""
        return b""

    def restore_broadcast(self, data: bytes | None) -> None:  # noqa: B027 (optional hook)
        """Restore what :meth:`snapshot_broadcast` saved (nothing by default)."""

    def timings(self) -> dict[str, float]:
        """Seconds spent so far per stage of this processor's own work (empty: it keeps
        none); a worker's summary reports them beside the commit protocol's phases."""
        return {}


@dataclass
class WorkerStats:
    """Counters a lag monitor and a benchmark read."""

    batches: int = 0
    records: int = 0
    dead_letters: int = 0
    outputs: int = 0
    snapshots: int = 0
    last_batch_seconds: float = 0.0
    max_batch_seconds: float = 0.0
    # seconds spent per step phase (drain includes waiting for the first record), summed
    # over batches that had records: where a batch's time goes
    busy_seconds: dict[str, float] = field(default_factory=dict)
    # per batch, the age (ms) of its first record when drained: the wait between the log
    # and this worker, for the last 10,000 batches
    arrival_ms: deque[float] = field(default_factory=lambda: deque(maxlen=10_000))
    first_record_ns: int = 0  # wall time of the first batch with records
    last_record_ns: int = 0  # wall time the last batch with records was published
    applied: dict[TP, int] = field(default_factory=dict)  # next offset per input partition
    last_event_time: dict[TP, int] = field(default_factory=dict)


class MicroBatchWorker:
    """Runs a :class:`Processor` against a log with the commit protocol of this module."""

    def __init__(
        self,
        processor: Processor,
        *,
        log: Log,
        store: SnapshotStore,
        settings: WorkerSettings,
        topology: Topology,
        clock: Callable[[], float] = time.monotonic,
        on_phase: Callable[[str], None] | None = None,
    ) -> None:
        self.processor = processor
        self._phase = on_phase or _no_phase
        self.log = log
        self.store = store
        self.settings = settings
        self.topology = topology
        self.stats = WorkerStats()
        self._clock = clock
        self._dlq = topology.name(DEAD_LETTERS)
        self._producer: Producer = log.producer()
        self._consumer: Consumer = log.consumer(settings.group)
        self._reader: Consumer | None = None
        self._owned: dict[TP, int] = {}  # input partition -> next offset to apply
        self._epochs: dict[TP, int] = {}  # input partition -> epoch of this worker's claim
        self._dirty: set[TP] = set()  # partitions applied to since their last snapshot
        self._revoked: set[TP] = set()  # partitions revoked during the current drain
        self._broadcast_offsets: dict[TP, int] = {}
        self._broadcast_dirty = False
        self._last_snapshot = clock()
        self._writer = SnapshotWriter(store, on_saved=lambda: self._phase("snapshotted"))
        self._started = False
        self._stopping = False
        self._stop_at = 0.0
        self._gave_up = False  # stopped while the log was unreachable: no snapshot at close
        self._partitions: dict[str, int] = {}
        self._uncommitted: dict[TP, int] = {}  # durable snapshots whose commit failed
        self._commit_refused = False  # said once per run of refusals
        self.health: BrokerHealth | None = health_of(log)
        self._backoff = Backoff(settings.backoff)
        self._probe_at = 0.0

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> None:
        if self._started:
            return
        self._started = True
        if self.processor.broadcasts:
            self._start_broadcasts()
        inputs = list(self.processor.inputs)
        if self.settings.partitions is None:
            self._consumer.subscribe(inputs, on_assign=self._on_assign, on_revoke=self._on_revoke)
            return
        tps = [(t, p) for t in inputs for p in self.settings.partitions if p < self._nparts(t)]
        self._consumer.assign(self._on_assign(tps))

    def _broadcast_key(self) -> TP:
        return BROADCAST_KEY

    def _start_broadcasts(self) -> None:
        saved = self.store.load(self.settings.group, self._broadcast_key())
        starts: dict[TP, int] = {
            (t, p): 0 for t in self.processor.broadcasts for p in range(self._nparts(t))
        }
        if saved is not None:
            offsets, state = _split_broadcast(saved.data)
            starts.update({tp: off for tp, off in offsets.items() if tp in starts})
            self.processor.restore_broadcast(state)
        else:
            self.processor.restore_broadcast(None)
        self._broadcast_offsets = dict(starts)
        # a group of its own, outside any rebalance, only so progress shows in the lag monitor
        self._reader = self.log.consumer(broadcast_group(self.settings.group))
        self._reader.assign(starts)

    def _on_assign(self, tps: list[TP]) -> dict[TP, int]:
        starts = {}
        for tp in tps:
            # claimed first: a former owner's save from now on is refused, so the snapshot
            # loaded next is the last one any owner will have saved before this one
            self._epochs[tp] = self.store.claim(self.settings.group, tp)
            snap = self.store.load(self.settings.group, tp)
            self.processor.restore(tp, None if snap is None else snap.data)
            start = 0 if snap is None else snap.offset
            self._owned[tp] = starts[tp] = start
            self.stats.applied[tp] = start
        self._phase("assigned")
        return starts

    def _on_revoke(self, tps: list[TP]) -> None:
        self._revoked.update(tps)
        mine = [tp for tp in tps if tp in self._owned]
        if not self._gave_up:  # else stopping with the broker away: no snapshot (see close)
            self._snapshot_and_commit(mine)
        for tp in mine:
            self._release(tp)

    def _release(self, tp: TP) -> None:
        self.processor.release(tp)
        del self._owned[tp]
        self._dirty.discard(tp)
        self._epochs.pop(tp, None)

    def close(self) -> None:
        """Snapshot and commit what is owned, leave the group and release the clients.

        With the broker gone (it did not come back within ``stop_grace``), nothing is
        snapshotted: results not yet durable would be lost behind a snapshot; the next start
        replays from the last snapshot instead."""
        self.stop()
        try:
            if self._started and not self._gave_up:
                self._snapshot_and_commit(list(self._owned))
                self._save_broadcast()
                self._commit_saved(self._writer.wait())
        except LogUnavailableError:
            self._gave_up = True
        if self._gave_up:
            say(
                f"{self.settings.group}: stopped without a snapshot (broker unreachable); "
                "the next start replays from the last one"
            )
            self._owned.clear()  # leaving the group must not snapshot either
        self._consumer.close()  # leaving the group may call _on_revoke: the writer is still up
        if self._reader is not None:
            self._reader.close()
        try:
            self._producer.close()
        except LogError:
            if not self._gave_up:
                raise
        self._writer.close()

    def stop(self) -> None:
        """Ask :meth:`run` to return after the current step."""
        if not self._stopping:
            self._stopping = True
            self._stop_at = time.monotonic()

    @property
    def stopping(self) -> bool:
        """True once :meth:`stop` was called."""
        return self._stopping

    # -- the loop -----------------------------------------------------------------------
    def run(self, *, idle_exit: float | None = None, max_steps: int | None = None) -> None:
        """Step until :meth:`stop`, ``max_steps`` steps, or ``idle_exit`` seconds without a
        record while owning partitions (None: forever). Idleness counts only once the
        group has assigned this worker something, so a slow join is not mistaken for it."""
        self.start()
        idle_since = self._clock()
        steps = 0
        while not self._stopping and (max_steps is None or steps < max_steps):
            steps += 1
            self._probe()
            if self.step() or not self._owned:
                idle_since = self._clock()
            elif idle_exit is not None and self._clock() - idle_since >= idle_exit:
                break

    def step(self) -> int:
        """One turn of the commit protocol; returns the number of records consumed."""
        self.start()
        t0 = self._clock()
        broadcast = self._drain_broadcasts()
        records = self._drain()  # 1
        if not records and not broadcast:
            self._maybe_snapshot(t0)
            return 0
        self._phase("drained")
        if records:  # how old the batch's oldest record was when drained (log append time)
            self.stats.arrival_ms.append(time.time_ns() / 1e6 - records[0].timestamp_ms)
        clock, busy = self._clock, self.stats.busy_seconds
        t1 = clock()
        letters = self._apply_broadcasts(broadcast)
        letters += self._apply(records)  # 2, 3
        self._phase("applied")
        t2 = clock()
        outputs = self.processor.recompute()  # 4
        self._phase("recomputed")
        t3 = clock()
        self._publish(outputs, letters)  # 5
        self._phase("published")
        t4 = clock()
        self._maybe_snapshot(t0)  # 6, 7
        t5 = clock()
        for phase, seconds in (
            ("drain", t1 - t0),
            ("apply", t2 - t1),
            ("recompute", t3 - t2),
            ("publish", t4 - t3),
            ("snapshot", t5 - t4),
        ):
            busy[phase] = busy.get(phase, 0.0) + seconds
        stats = self.stats
        stats.batches += 1
        stats.records += len(records) + len(broadcast)
        stats.last_batch_seconds = t5 - t0
        stats.max_batch_seconds = max(stats.max_batch_seconds, t5 - t0)
        stats.last_record_ns = time.time_ns()
        if not stats.first_record_ns:
            stats.first_record_ns = stats.last_record_ns - int(stats.last_batch_seconds * 1e9)
        return len(records) + len(broadcast)

    def _drain(self) -> list[Record]:
        s = self.settings
        batch = self._consumer.consume(s.max_batch, s.poll_timeout)
        self._revoked.clear()  # a rebalance inside that call came before all it returned
        if not batch:
            return batch
        deadline = self._clock() + s.max_wait
        while len(batch) < s.max_batch:
            left = deadline - self._clock()
            if left <= 0:
                break
            more = self._consumer.consume(s.max_batch - len(batch), left)
            if self._revoked:
                # a rebalance ran inside that call: what was drained before it belongs to an
                # assignment that has ended. A partition handed straight back was restored
                # from its snapshot and is read again from there, so its records drained
                # before would come twice (and be applied twice): drop them.
                gone, self._revoked = self._revoked, set()
                batch = [r for r in batch if (r.topic, r.partition) not in gone]
            if not more:
                break
            batch.extend(more)
        return batch

    def _drain_broadcasts(self) -> list[Record]:
        if self._reader is None:
            return []
        return self._reader.consume(self.settings.max_batch, 0.0)

    def _decode(
        self, runs: Mapping[TP, list[Record]]
    ) -> tuple[dict[TP, list[tuple[int, ev.Event]]], list[ev.DeadLetter]]:
        """Step 2 for each partition's run of records: (offset, event) pairs, and a dead
        letter for each record that does not decode."""
        by_tp: dict[TP, list[tuple[int, ev.Event]]] = {}
        letters: list[ev.DeadLetter] = []
        codecs: dict[str, Codec[ev.Event]] = {}
        for tp, run in runs.items():
            codec = codecs.get(tp[0])
            if codec is None:
                codec = codecs[tp[0]] = self.processor.codec(tp[0])
            decoded, clean = codec.decode_many([r.value for r in run])
            if clean:
                by_tp[tp] = list(
                    zip([r.offset for r in run], cast(list[ev.Event], decoded), strict=True)
                )
                continue
            events: list[tuple[int, ev.Event]] = []
            for r, event in zip(run, decoded, strict=True):
                if isinstance(event, Rejection):
                    letters.append(
                        dead_letter(
                            topic=r.topic,
                            partition=r.partition,
                            offset=r.offset,
                            raw=r.value,
                            rejection=event,
                            now_ns=time.time_ns(),
                        )
                    )
                else:
                    events.append((r.offset, event))
            by_tp[tp] = events  # possibly empty: the offsets still advance
        return by_tp, letters

    @staticmethod
    def _runs(records: Sequence[Record]) -> dict[TP, list[Record]]:
        """``records`` by partition, each run in the order read (offset order)."""
        runs: dict[TP, list[Record]] = {}
        for r in records:
            tp = (r.topic, r.partition)
            run = runs.get(tp)
            if run is None:
                run = runs[tp] = []
            run.append(r)
        return runs

    def _apply(self, records: list[Record]) -> list[ev.DeadLetter]:
        runs: dict[TP, list[Record]] = {}
        for tp, run in self._runs(records).items():
            start = self._owned.get(tp)
            if start is None:
                continue  # not ours any more
            if run[0].offset < start:  # partly in the restored snapshot already
                run = [r for r in run if r.offset >= start]
                if not run:
                    continue
            runs[tp] = run
        by_tp, letters = self._decode(runs)
        for tp, events in by_tp.items():
            if events:
                refused = self.processor.apply(tp, events)
                letters += self._refused(tp, refused, runs[tp])
                self.stats.last_event_time[tp] = _event_time(events[-1][1])
        for tp, run in runs.items():
            off = run[-1].offset
            self._owned[tp] = off + 1
            self.stats.applied[tp] = off + 1
            self._dirty.add(tp)
        return letters

    def _apply_broadcasts(self, records: list[Record]) -> list[ev.DeadLetter]:
        if not records:
            return []
        runs = self._runs(records)
        by_tp, letters = self._decode(runs)
        for tp, events in by_tp.items():
            if events:
                refused = self.processor.apply(tp, events)
                letters += self._refused(tp, refused, runs[tp])
        for r in records:
            self._broadcast_offsets[(r.topic, r.partition)] = r.offset + 1
        self._broadcast_dirty = True
        return letters

    @staticmethod
    def _refused(
        tp: TP, refused: Sequence[tuple[int, Rejection]], records: Sequence[Record]
    ) -> list[ev.DeadLetter]:
        if not refused:
            return []
        raw = {r.offset: r.value for r in records if (r.topic, r.partition) == tp}
        now = time.time_ns()
        return [
            dead_letter(
                topic=tp[0], partition=tp[1], offset=off, raw=raw[off], rejection=why, now_ns=now
            )
            for off, why in refused
        ]

    def _publish(self, outputs: list[Output], letters: list[ev.DeadLetter]) -> None:
        produce = self._producer.produce
        for out in outputs:
            key = out.event.key()
            part = partition_for(key, self._nparts(out.topic)) if key is not None else 0
            produce(out.topic, encode(out.event), partition=part, key=key.encode() if key else None)
        for letter in letters:
            produce(self._dlq, encode(letter), partition=0)
        self._phase("produced")
        self._producer.send()
        self.stats.outputs += len(outputs)
        self.stats.dead_letters += len(letters)

    def _nparts(self, topic: str) -> int:
        n = self._partitions.get(topic)
        if n is None:
            n = self._partitions[topic] = self._retry(lambda: self.log.partitions(topic))
        return n

    # -- the broker going away ----------------------------------------------------------
    def _retry(self, call: Callable[[], _T]) -> _T:
        """``call()``, retried with backoff while the log is unreachable. Once stopping, it
        gives up ``stop_grace`` seconds after :meth:`stop` (raising the last error)."""
        while True:
            try:
                result = call()
            except LogUnavailableError:
                if self._stopping and time.monotonic() - self._stop_at >= self.settings.stop_grace:
                    self._gave_up = True
                    raise
                time.sleep(self._backoff.next())
                continue
            self._backoff.reset()
            return result

    def _flush(self) -> None:
        """Step 6's flush: wait until every record published is durable, however long the
        broker is away. Each try returns as soon as the broker has taken everything; one
        that takes longer than the backoff's cap says the broker is slow or gone."""
        while True:
            try:
                self._producer.flush(self.settings.backoff.maximum)
                return
            except LogUnavailableError:
                if self._stopping and time.monotonic() - self._stop_at >= self.settings.stop_grace:
                    self._gave_up = True
                    raise

    def _probe(self) -> None:
        """While the broker is away, ask it now and then whether it is back (an idle worker
        would otherwise learn it only from the next record)."""
        if self.health is None or self.health.reachable or time.monotonic() < self._probe_at:
            return
        ping = getattr(self.log, "ping", None)
        try:
            if ping is not None:
                ping(self.settings.backoff.maximum)
        except LogUnavailableError:
            pass
        self._probe_at = time.monotonic() + self._backoff.next()

    def _maybe_snapshot(self, now: float) -> None:
        if now - self._last_snapshot >= self.settings.snapshot_interval:
            self._flush()
            self._submit_snapshots(sorted(self._dirty))
            self._save_broadcast()
            self._last_snapshot = self._clock()
        self._commit_saved(self._writer.completed())

    def _snapshot_and_commit(self, tps: Sequence[TP]) -> None:
        """Snapshot ``tps`` and commit behind them before returning (a revocation, a close:
        the next owner must find the state)."""
        self._flush()
        self._submit_snapshots(tps)
        self._commit_saved(self._writer.wait())
        self._last_snapshot = self._clock()

    def _submit_snapshots(self, tps: Sequence[TP]) -> None:
        # 6: the state is encoded here, between batches, so it is the state at ``offset``;
        # the writer thread only does the I/O (see SnapshotWriter)
        for tp in tps:
            if tp not in self._owned or tp not in self._dirty:
                continue
            snapshot = Snapshot(self._owned[tp], self.processor.snapshot(tp))
            self._writer.submit(self.settings.group, tp, snapshot, epoch=self._epochs.get(tp))
            self._dirty.discard(tp)

    def _commit_saved(self, saved: list[tuple[TP, int, object]]) -> None:
        """7: commit the offsets of the snapshots now durable (the latest per partition)."""
        self._drop_fenced()
        # Committed offsets only report progress (a restart resumes from the snapshots), so
        # a commit the broker did not take is kept and sent again with the next one.
        offsets = {tp: o for tp, o in self._uncommitted.items() if tp in self._owned}
        self._uncommitted = {}
        for tp, offset, tag in saved:
            if isinstance(tag, dict):  # the broadcast snapshot: its topics' offsets
                if tag and self._reader is not None:  # progress report only
                    self._try_commit(self._reader, tag)
            else:
                self.stats.snapshots += 1
                if tp in self._owned:  # not one fenced off since (see _drop_fenced)
                    offsets[tp] = offset
        if offsets and not self._try_commit(self._consumer, offsets):
            self._uncommitted = offsets
        elif offsets:
            self._phase("committed")

    def _drop_fenced(self) -> None:
        """A save refused because another member claimed the partition (see
        :mod:`marginflow.stream.snapshots`): this worker lost it, perhaps while the broker
        was away, and has not been told yet. It stops applying, snapshotting and committing
        for it at once; the group's next rebalance tells it the rest."""
        for fenced in self._writer.fenced():
            if fenced.tp in self._owned:
                say(str(fenced))
                self._release(fenced.tp)

    def _try_commit(self, consumer: Consumer, offsets: Mapping[TP, int]) -> bool:
        try:
            consumer.commit(offsets)
        except LogUnavailableError:
            return False  # the broker is away: its health says so, once
        except LogCorruptError:
            raise  # a damaged offsets file is not a passing state: stop and say where
        except LogError as exc:
            # refused while the group re-forms after an outage (not a member any more)
            if not self._commit_refused:
                say(f"{self.settings.group}: commit not taken, kept for the next one: {exc}")
            self._commit_refused = True
            return False
        self._commit_refused = False
        return True

    def _save_broadcast(self) -> None:
        if self._reader is None or not self._broadcast_dirty:
            return
        self._broadcast_dirty = False
        data = _join_broadcast(self._broadcast_offsets, self.processor.snapshot_broadcast())
        self._writer.submit(
            self.settings.group,
            self._broadcast_key(),
            Snapshot(0, data),
            tag=dict(self._broadcast_offsets),
        )

    def owned(self) -> Mapping[TP, int]:
        """Input partitions owned now, with the next offset to apply."""
        return dict(self._owned)


PHASES = (
    "assigned",
    "drained",
    "applied",
    "recomputed",
    "produced",
    "published",
    "snapshotted",
    "committed",
)
"""Points of the commit protocol at which ``on_phase`` is called (for fault injection)."""


def broadcast_group(group: str) -> str:
    """The group under which a worker of ``group`` reports its broadcast-topic progress."""
    return f"{group}.broadcast"


def _no_phase(phase: str) -> None:
    pass


def _event_time(event: ev.Event) -> int:
    return int(getattr(event, "event_time", 0))


def _join_broadcast(offsets: Mapping[TP, int], state: bytes) -> bytes:
    import msgspec

    return msgspec.msgpack.encode([[[t, p, o] for (t, p), o in sorted(offsets.items())], state])


def broadcast_offsets(data: bytes) -> dict[TP, int]:
    """The broadcast partitions' offsets in a worker's broadcast snapshot (the one saved
    under :data:`BROADCAST_KEY`): the next record of each to apply."""
    return _split_broadcast(data)[0]


def _split_broadcast(data: bytes) -> tuple[dict[TP, int], bytes]:
    import msgspec

    offsets, state = msgspec.msgpack.decode(data)
    return {(str(t), int(p)): int(o) for t, p, o in offsets}, bytes(state)
