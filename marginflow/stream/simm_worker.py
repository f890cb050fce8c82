"""The SIMM worker: CRIF submissions in, versioned SIMM results out.

Input: the ``crif`` topic (partitioned by portfolio). For each
:class:`~marginflow.stream.events.CrifSubmission` it validates the rows against the SIMM
calibration (buckets, tenors, qualifiers, amounts: the checks of ``marginflow simm``) and
computes the initial margin both ways with :func:`marginflow.simm.report.simm_report`, the
calculator behind the ``marginflow simm`` command, then publishes a
:class:`~marginflow.stream.events.SimmResult` on ``simm-results`` carrying the offset of the
submission it came from (its version).

A submission is margined whole or not at all: IM computed on the valid rows of a CRIF with
bad rows would silently leave out risk, so one bad row refuses the submission to the dead
letters, naming the first bad field as ``rows[i].<field>`` and the reason (and how many more
rows failed). A submission naming an unknown SIMM version, or whose margin cannot be computed
(an amount in a currency with no FX rate to the calculation currency, say) is refused the same
way. Nothing here raises out of :meth:`SimmWorker.apply`: the worker keeps going.

The worker keeps no state: a result is a function of one submission and the settings, so a
replay recomputes the same numbers with the same version, and the sink's upsert absorbs
them. Supersession (a later submission for the same party, portfolio and business date) is
decided by the sink on the version. The calibration is a worker setting: results carry its
name, and a change of calibration applies from the next submission on (a replay through a
worker with another calibration republishes old versions, which the sink ignores; to
recompute history under a new calibration, run it under a new prefix or group).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from marginflow.core.errors import ConfigurationError, MarginflowError, ValidationError
from marginflow.simm.calculator import check_currency
from marginflow.simm.calibration import Calibration, available_versions, load_calibration
from marginflow.simm.crif import CrifLoad, build_crif
from marginflow.simm.report import simm_report
from marginflow.simm.results import Node, SideResult, SimmReport
from marginflow.stream import events as ev
from marginflow.stream.codec import Codec, Rejection
from marginflow.stream.log.base import TP
from marginflow.stream.topics import CRIF, SIMM_RESULTS, Topology
from marginflow.stream.worker import Output, Processor

# CRIF column (as :func:`marginflow.simm.crif.build_crif` names it) -> CrifRow field, so a
# refusal names the field of the event the submitter sent.
CRIF_FIELDS: dict[str, str] = {
    "TradeID": "trade_id",
    "ProductClass": "product_class",
    "RiskType": "risk_type",
    "Qualifier": "qualifier",
    "Bucket": "bucket",
    "Label1": "label1",
    "Label2": "label2",
    "Amount": "amount",
    "AmountCurrency": "amount_currency",
    "AmountUSD": "amount_usd",
    "CollectRegulation": "collect_regulation",
    "PostRegulation": "post_regulation",
    "EndDate": "end_date",
    "IMModel": "im_model",
}

MSG_MORE_ROWS = "{reason} ({more} more row(s) rejected; the submission is margined whole or not)"
MSG_UNEXPECTED = "could not be margined ({kind}: {detail})"


def newest_version() -> str:
    """The newest SIMM calibration shipped (the worker's default)."""
    return available_versions()[-1]


@dataclass(frozen=True, slots=True)
class SimmSettings:
    """How the SIMM worker margins: calibration ``version`` (an ISDA name, default the
    newest shipped), margin period of risk ``mpor_days`` (10 or 1) and the calculation
    ``currency`` of the results. Validated on construction (:class:`ConfigurationError`)."""

    version: str = field(default_factory=newest_version)
    mpor_days: int = 10
    currency: str = "USD"

    def __post_init__(self) -> None:
        load_calibration(self.version, self.mpor_days)  # names the versions when unknown
        try:
            check_currency(self.currency)
        except ValidationError as exc:
            raise ConfigurationError(f"SIMM currency: {exc.reason}") from None

    def calibration(self, requested: str = "") -> Calibration:
        """The calibration of ``requested`` (a submission's ``simm_version``), else ours."""
        return load_calibration(requested or self.version, self.mpor_days)


class SimmWorker(Processor):
    """CRIF submissions -> SIMM results. Group name by convention ``<prefix>simm``."""

    def __init__(
        self,
        topology: Topology,
        settings: SimmSettings | None = None,
        *,
        clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self.settings = settings or SimmSettings()
        self.inputs = (topology.name(CRIF),)
        self._out = topology.name(SIMM_RESULTS)
        self._codec: Codec[ev.Event] = Codec(topology.spec(CRIF).events)
        self._clock_ns = clock_ns
        self._pending: list[tuple[TP, ev.SimmResult]] = []

    def codec(self, topic: str) -> Codec[ev.Event]:
        return self._codec

    def restore(self, tp: TP, data: bytes | None) -> None:
        """Nothing to restore: each result depends on its submission alone."""

    def release(self, tp: TP) -> None:
        self._pending = [(t, r) for t, r in self._pending if t != tp]

    def apply(
        self, tp: TP, events: Sequence[tuple[int, ev.Event]]
    ) -> Sequence[tuple[int, Rejection]]:
        refused: list[tuple[int, Rejection]] = []
        for offset, event in events:
            assert isinstance(event, ev.CrifSubmission)
            result = margin_submission(
                event,
                self.settings,
                partition=tp[1],
                offset=offset,
                computed_time=self._clock_ns(),
            )
            if isinstance(result, Rejection):
                refused.append((offset, result))
            else:
                self._pending.append((tp, result))
        return refused

    def recompute(self) -> list[Output]:
        out = [Output(self._out, result) for _, result in self._pending]
        self._pending = []
        return out

    def snapshot(self, tp: TP) -> bytes:
        return b""


def margin_submission(
    submission: ev.CrifSubmission,
    settings: SimmSettings,
    *,
    partition: int,
    offset: int,
    computed_time: int,
) -> ev.SimmResult | Rejection:
    """The SIMM result of one submission, or why it cannot be margined (field, reason).

    Deterministic in (submission, settings) except ``computed_time``; Schedule rows run
    their maturities from the submission's business date."""
    try:
        calibration = settings.calibration(submission.simm_version)
    except ConfigurationError as exc:
        return Rejection("simm_version", str(exc))
    try:
        load = crif_load(submission, calibration)
        if load.failures:
            return _row_rejection(load)
        report = simm_report(
            load,
            calibration=calibration,
            currency=settings.currency,
            as_of=dt.date.fromisoformat(submission.business_date),
        )
        return _result(submission, report, partition, offset, computed_time, len(load.crif))
    except ValidationError as exc:
        return Rejection(exc.field, exc.reason)
    except MarginflowError as exc:
        return Rejection("$", str(exc))
    except MemoryError:
        raise  # the machine's problem, not the submission's: let the worker restart
    except Exception as exc:  # a poison submission must not stop the stream
        return Rejection("$", MSG_UNEXPECTED.format(kind=type(exc).__name__, detail=exc))


def crif_load(submission: ev.CrifSubmission, calibration: Calibration) -> CrifLoad:
    """The submission's rows validated against ``calibration`` as a CRIF of one portfolio.
    Row ``i`` of the submission is line ``i`` of the load (failures name it)."""
    rows = submission.rows
    text: dict[str, Callable[[ev.CrifRow], str]] = {
        "TradeID": lambda r: r.trade_id,
        "ProductClass": lambda r: r.product_class,
        "RiskType": lambda r: r.risk_type,
        "Qualifier": lambda r: r.qualifier,
        "Bucket": lambda r: r.bucket,
        "Label1": lambda r: r.label1,
        "Label2": lambda r: r.label2,
        "AmountCurrency": lambda r: r.amount_currency,
        "CollectRegulation": lambda r: r.collect_regulation,
        "PostRegulation": lambda r: r.post_regulation,
        "EndDate": lambda r: r.end_date,
        "IMModel": lambda r: r.im_model,
    }
    columns: dict[str, pa.Array] = {
        name: pa.array([get(r) for r in rows], type=pa.string()) for name, get in text.items()
    }
    columns["PortfolioID"] = pa.array([submission.portfolio] * len(rows), type=pa.string())
    # amounts stay float64 end to end: the same numbers as a CRIF file read with
    # `marginflow simm`, with no text round trip
    columns["Amount"] = pa.array([r.amount for r in rows], type=pa.float64())
    columns["AmountUSD"] = pa.array([r.amount_usd for r in rows], type=pa.float64())
    return build_crif(
        columns,
        calibration=calibration,
        source=f"crif:{submission.submission_id}",
        lines=np.arange(len(rows), dtype=np.int64),
    )


def _row_rejection(load: CrifLoad) -> Rejection:
    first = load.failures[0]  # sorted by line: the first bad row
    name = f"rows[{first.line}].{CRIF_FIELDS.get(first.field, first.field)}"
    more = load.rejected_lines - 1
    reason = MSG_MORE_ROWS.format(reason=first.reason, more=more) if more else first.reason
    return Rejection(name, reason)


def _result(
    submission: ev.CrifSubmission,
    report: SimmReport,
    partition: int,
    offset: int,
    computed_time: int,
    rows: int,
) -> ev.SimmResult:
    collect = report.get(submission.portfolio, "call")
    post = report.get(submission.portfolio, "post")
    return ev.SimmResult(
        submission_id=submission.submission_id,
        party=submission.party,
        counterparty=submission.counterparty,
        portfolio=submission.portfolio,
        business_date=submission.business_date,
        simm_version=report.version,
        mpor_days=report.mpor_days,
        currency=report.currency,
        collect_im=float(collect.im),
        post_im=float(post.im),
        collect_regulation=collect.regulation or "",
        post_regulation=post.regulation or "",
        breakdown=(*breakdown_lines("collect", collect), *breakdown_lines("post", post)),
        rows=rows,
        source_partition=partition,
        source_offset=offset,
        event_time=submission.event_time,
        computed_time=computed_time,
    )


def breakdown_lines(side: str, result: SideResult) -> list[ev.SimmLine]:
    """The tree of ``result`` down to margin types, as :class:`~ev.SimmLine` rows (model,
    then each product class, its risk classes, their margin types; depth first)."""
    out: list[ev.SimmLine] = []

    def walk(node: Node, path: tuple[str, ...]) -> None:
        names = (*path, node.name)
        model, pc, rc, mt = (*names, "", "", "")[:4]
        out.append(
            ev.SimmLine(
                side=side,
                model=model,
                product_class=pc,
                risk_class=rc,
                margin_type=mt,
                margin=float(node.margin),
            )
        )
        if len(names) < 4:
            for child in node.children:
                walk(child, names)

    for model in result.breakdown.children:  # under "Total": SIMM, Schedule
        walk(model, ())
    return out
