"""Use case: risk-parameter changes under four eyes. A risk analyst proposes a change of one
setting of a margin model; it takes effect only when a *different* person approves it, and
then reaches the calculators the way every change does: as a ``RiskParameterChange`` on the
market topic, applied in log order with the market data (so a margin's market offset
versions its parameters) and audited by the sink.

The change published for a proposal is built from the stored proposal alone (its id, the
proposer, the approver and the decision time), so publishing it again after a failure
produces the same event, which the calculators take as a producer's retry.
"""

from __future__ import annotations

import uuid
from dataclasses import replace

from marginflow.core.errors import ConfigurationError, ValidationError
from marginflow.margin.es_model import ExpectedShortfallModel
from marginflow.store.proposals import Proposals
from marginflow.store.rows import Proposal
from marginflow.stream import events as ev
from marginflow.stream.log.base import Producer
from marginflow.stream.publish import publish_parameter_changes
from marginflow.stream.topics import Topology

MODELS = ("es",)
"""The models whose parameters can be changed on the stream (the calculators run ES)."""

MSG_SAME_PERSON = "four eyes: {who} proposed this change and cannot {verb} it"
MSG_DECIDED = "proposal {id} is {status}, not awaiting a decision"


class FourEyesError(ValidationError):
    """The proposer tried to approve or reject their own proposal."""


class DecidedError(ValidationError):
    """The proposal was decided already (or withdrawn)."""


def check_value(model: str, parameter: str, value: float | str) -> float | str:
    """``value`` for ``parameter`` of ``model`` if the model accepts it, else
    :class:`ValidationError` naming the parameter or the value."""
    if model not in MODELS:
        raise ValidationError("model", f"must be one of {', '.join(MODELS)}, got {model!r}")
    try:
        ExpectedShortfallModel.from_params({parameter: str(value)})
    except ConfigurationError as exc:
        field = "parameter" if "unknown parameter" in str(exc) else "value"
        raise ValidationError(field, str(exc)) from None
    except (ValueError, TypeError) as exc:
        raise ValidationError("value", str(exc)) from None
    return value


def propose(
    proposals: Proposals,
    *,
    model: str,
    parameter: str,
    value: float | str,
    reason: str,
    by: str,
    now: int,
    idempotency_key: str | None = None,
) -> Proposal:
    """Record a proposed change (validated against the model); with an idempotency key
    already used, the proposal made under it is returned."""
    check_value(model, parameter, value)
    proposal = Proposal(
        id=f"RP-{uuid.uuid4().hex[:12].upper()}",
        model=model,
        parameter=parameter,
        value=value,
        reason=reason,
        proposed_by=by,
        proposed_time=now,
        status="proposed",
        idempotency_key=idempotency_key,
    )
    return proposals.add(proposal)


def change_of(proposal: Proposal) -> ev.RiskParameterChange:
    """The event an approved proposal publishes (a function of the stored proposal)."""
    if proposal.status != "approved" or not proposal.decided_by or not proposal.decided_time:
        raise ValidationError("proposal", f"proposal {proposal.id} is not approved")
    return ev.RiskParameterChange(
        change_id=proposal.id,
        model=proposal.model,
        parameter=proposal.parameter,
        value=proposal.value,
        requested_by=proposal.proposed_by,
        approved_by=proposal.decided_by,
        effective_time=proposal.decided_time,
        event_time=proposal.decided_time,
    )


def _same(a: str, b: str) -> bool:
    return a.strip().casefold() == b.strip().casefold()


def decide(
    proposals: Proposals,
    proposal_id: str,
    *,
    approve: bool,
    by: str,
    now: int,
    note: str = "",
    producer: Producer | None,
    topology: Topology,
) -> Proposal:
    """Approve (and publish) or reject a proposal. Refuses the proposer
    (:class:`FourEyesError`) and a proposal no longer awaiting a decision
    (:class:`DecidedError`), except that its approver may approve it again to publish it
    once more (after a failed publish). Without a ``producer`` an approval is refused:
    the change could not reach the calculators."""
    proposal = proposals.get(proposal_id)
    if proposal is None:
        raise ValidationError("proposal", f"no proposal {proposal_id!r}")
    verb = "approve" if approve else "reject"
    if _same(proposal.proposed_by, by):
        raise FourEyesError("decided_by", MSG_SAME_PERSON.format(who=by, verb=verb))
    if approve and producer is None:
        raise ConfigurationError("no log to publish the change on: the service runs without --log")
    if proposal.status != "proposed":
        again = approve and proposal.status == "approved" and proposal.decided_by == by
        if not again:
            raise DecidedError(
                "proposal", MSG_DECIDED.format(id=proposal.id, status=proposal.status)
            )
        decided = proposal
    else:
        status = "approved" if approve else "rejected"
        won = proposals.decide(proposal_id, status=status, by=by, now=now, note=note)
        if won is None:  # someone decided it between our read and our update
            latest = proposals.get(proposal_id) or proposal
            raise DecidedError("proposal", MSG_DECIDED.format(id=latest.id, status=latest.status))
        decided = won
    if approve:
        assert producer is not None
        publish_parameter_changes(producer, topology, [change_of(decided)])
    return decided


def withdraw(proposals: Proposals, proposal_id: str, *, by: str, now: int) -> Proposal:
    """The proposer takes back a proposal still awaiting a decision."""
    proposal = proposals.get(proposal_id)
    if proposal is None:
        raise ValidationError("proposal", f"no proposal {proposal_id!r}")
    if not _same(proposal.proposed_by, by):
        raise ValidationError("proposal", "only its proposer can withdraw a proposal")
    done = proposals.decide(proposal_id, status="withdrawn", by=by, now=now)
    if done is None:
        raise DecidedError("proposal", MSG_DECIDED.format(id=proposal.id, status=proposal.status))
    return replace(done)
