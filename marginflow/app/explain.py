"""Explain the change of a stored margin between two times: split it into the member's
trades, the market's moves (prices, vols and reference data) and the clearing house's
risk-parameter changes, in that order and in the reverse order (:mod:`marginflow.app.waterfall`),
each state recomputed from the store alone (:class:`marginflow.app.reproduce.StoredInputs`).

The margins at the two ends are the ones in force at those times: an account's latest stored
margin at or before each time; a member's is the sum over its accounts. The steps add up to
the change between the recomputed ends, which equal the stored margins to the bit (checked,
and named when they do not).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from marginflow.app.reproduce import StoredInputs
from marginflow.app.waterfall import CAUSES, Waterfall, waterfall
from marginflow.core.errors import ValidationError
from marginflow.store import Database, StoredMargin


@dataclass
class Explanation:
    """The change of one account's or member's margin from ``start`` to ``end`` (ns),
    split by cause in the default order and in the reverse order."""

    subject: str
    kind: str  # "account" or "member"
    start: int
    end: int
    forward: Waterfall
    reverse: Waterfall
    accounts: list[str]
    stored_start: float
    stored_end: float
    differences: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "subject": self.subject,
            "kind": self.kind,
            "from": self.start,
            "to": self.end,
            "accounts": self.accounts,
            "stored": {"start": self.stored_start, "end": self.stored_end},
            "differences": self.differences,
            "forward": self.forward.to_json(),
            "reverse": self.reverse.to_json(),
        }


@dataclass(frozen=True)
class _End:
    """What a margin at one end was computed from."""

    positions: dict[str, dict[str, int]]
    market: int
    margin: float


def _end(db: Database, margins: list[StoredMargin], accounts: list[str]) -> _End:
    by_account = {m.account: m for m in margins}
    positions = {
        a: db.positions(a, by_account[a].position_version) if a in by_account else {}
        for a in accounts
    }
    market = max((m.market_offset for m in margins), default=-1)
    return _End(positions, market, sum(m.margin for m in margins))


def explain(db: Database, subject: str, start: int, end: int) -> Explanation:
    """Attribute the change of ``subject``'s margin (an account, else a member) from the one
    in force at ``start`` to the one in force at ``end`` (UTC ns)."""
    if end < start:
        raise ValidationError("to", "must not be before --from")
    if db.margin(subject) is not None:
        kind = "account"
        first = [m] if (m := db.margin(subject, at=start)) else []
        last = [m] if (m := db.margin(subject, at=end)) else []
    elif db.margin_history(member=subject):
        kind = "member"
        first = db.member_margin_at(subject, start)[1]
        last = db.member_margin_at(subject, end)[1]
    else:
        raise ValidationError("subject", f"no margin of an account or member {subject!r} is stored")
    if not last:
        raise ValidationError("to", f"no margin of {subject!r} is stored at or before that time")
    loads = {m.book_load for m in first + last}
    if len(loads) != 1 or "" in loads:
        raise ValidationError(
            "from",
            "the margins at the two times come from different start-of-day loads (or none): "
            "explain compares margins of one load",
        )
    # the margin at the start reflects the market of its latest input (a member's accounts
    # may each have last been margined at another offset; the state at the start is the
    # market as it was then, so every account is revalued at the latest of them)
    accounts = sorted({m.account for m in first + last})
    a, b = _end(db, first, accounts), _end(db, last, accounts)
    inputs = StoredInputs(db, loads.pop())

    def evaluate(state: Mapping[str, Any]) -> float:
        got = inputs.margin(state["trades"], state["market"], state["parameters"])
        return sum(r.margin for r in got.values())

    s = {"trades": a.positions, "market": a.market, "parameters": a.market}
    e = {"trades": b.positions, "market": b.market, "parameters": b.market}
    forward = waterfall(evaluate, s, e, CAUSES)
    reverse = waterfall(evaluate, s, e, CAUSES[::-1])
    out = Explanation(subject, kind, start, end, forward, reverse, accounts, a.margin, b.margin)
    ends = (("start", a.margin, forward.start), ("end", b.margin, forward.end))
    for name, stored, got in ends:
        # an account's margin is recomputed to the bit; a member's is a sum over accounts
        # whose stored margins may be added in another order: rounding only
        exact = kind == "account"
        if (exact and stored != got) or abs(stored - got) > 1e-9 * max(abs(stored), 1.0):
            out.differences.append(f"{name}: stored {stored!r}, recomputed {got!r}")
    return out
