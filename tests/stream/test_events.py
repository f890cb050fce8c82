"""Event schemas: golden wire forms, round trips, domain checks with their reasons, and
hostile input that must come back as a rejection, never an exception."""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from marginflow.core.errors import ValidationError
from marginflow.core.ids import AccountId, InstrumentId
from marginflow.stream import events as ev
from marginflow.stream.codec import (
    MAX_EVENT_BYTES,
    Codec,
    EventRejectedError,
    Rejection,
    dead_letter,
    encode,
)
from marginflow.stream.topics import Topology
from tests.stream.samples import samples

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("MARGINFLOW_UPDATE_GOLDEN") == "1"
ALL = Codec([*ev.INPUT_EVENTS, *ev.RESULT_EVENTS])
TRADES = Codec(Topology().spec("trades").events)


def test_every_event_type_has_a_sample() -> None:
    assert set(samples()) == set(ev.SCHEMA_VERSIONS)


@pytest.mark.parametrize("tag", sorted(ev.SCHEMA_VERSIONS))
def test_wire_form_matches_golden_file(tag: str) -> None:
    event = samples()[tag]
    path = GOLDEN / f"{tag}.v{event.v}.json"
    wire = encode(event)
    doc = {"fields": json.loads(msgspec.json.encode(event)), "msgpack_hex": wire.hex()}
    if UPDATE:
        path.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    golden = json.loads(path.read_text())
    assert golden["msgpack_hex"] == wire.hex(), f"wire form of {tag} changed; see {path}"
    assert golden["fields"] == doc["fields"]
    # old bytes still decode to the same event: a reader of this version accepts them
    assert ALL.decode(bytes.fromhex(golden["msgpack_hex"])) == event


def test_a_margin_written_before_the_market_cover_still_reads() -> None:
    """A compatible addition keeps ``v``: bytes written before ``market_from``,
    ``market_ticks`` and ``market_moves`` existed decode with them None (not recorded)."""
    old = json.loads((GOLDEN / "account_margin.v1.before-market-cover.json").read_text())
    event = ALL.decode(bytes.fromhex(old["msgpack_hex"]))
    now = samples()["account_margin"]
    assert isinstance(event, ev.AccountMargin)
    assert (event.market_from, event.market_ticks, event.market_moves) == (None, None, None)
    assert event == msgspec.structs.replace(
        now, market_from=None, market_ticks=None, market_moves=None
    )


@pytest.mark.parametrize("tag", sorted(ev.SCHEMA_VERSIONS))
def test_round_trip(tag: str) -> None:
    event = samples()[tag]
    assert ALL.decode(encode(event)) == event


def _trade(**changes: Any) -> dict[str, Any]:
    fields: dict[str, Any] = msgspec.to_builtins(samples()["trade"])
    fields.update(changes)
    return fields


@pytest.mark.parametrize(
    ("changes", "field", "reason"),
    [
        ({"quantity": 0}, "quantity", "must not be 0"),
        ({"price": -1.0}, "price", r"must be finite and >= 0, got -1\.0"),
        ({"price": math.nan}, "price", "must be finite"),
        ({"account": ""}, "account", "must be non-empty"),
        ({"account": " A1"}, "account", "surrounding blanks"),
        ({"event_time": 0}, "event_time", "ns since the Unix epoch"),
        ({"quantity": "ten"}, "quantity", "Expected `int`, got `str`"),
        ({"quantity": 2.5}, "quantity", "Expected `int`, got `float`"),
        ({"v": 2}, "v", "schema version 2 of 'trade' is newer than this reader supports"),
        ({"v": 0}, "v", "schema version must be >= 1"),
        ({"type": "price"}, "type", "does not belong on this topic"),
        ({"type": "bogus"}, "type", "does not belong on this topic"),
    ],
)
def test_invalid_trade_is_rejected_with_field_and_reason(
    changes: dict[str, Any], field: str, reason: str
) -> None:
    raw = msgspec.msgpack.encode(_trade(**changes))
    result = TRADES.try_decode(raw)
    assert isinstance(result, Rejection)
    assert result.field == field
    assert re.search(reason, result.reason), result.reason
    with pytest.raises(EventRejectedError, match=field):
        TRADES.decode(raw)


def test_missing_field_is_named() -> None:
    fields = _trade()
    del fields["price"]
    result = TRADES.try_decode(msgspec.msgpack.encode(fields))
    assert result == Rejection("price", "is missing")


def test_construction_runs_the_same_checks() -> None:
    with pytest.raises(ValidationError, match="quantity: must not be 0"):
        ev.Trade(
            trade_id="T",
            account=AccountId("A"),
            instrument=InstrumentId("X"),
            quantity=0,
            price=1.0,
            event_time=1,
        )


@pytest.mark.parametrize(
    ("tag", "changes", "field"),
    [
        ("instrument", {"strike": None}, "strike"),
        ("instrument", {"kind": "swap"}, "kind"),
        ("instrument", {"expiry": "2024-13-01"}, "expiry"),
        ("vol", {"vol": 12.0}, "vol"),
        ("risk_parameter", {"approved_by": "alice"}, "approved_by"),
        ("risk_parameter", {"value": math.inf}, "value"),
        ("crif", {"counterparty": "BANK-A"}, "counterparty"),
        ("crif", {"rows": []}, "rows"),
        ("account", {"account_type": "omnibus"}, "account_type"),
        ("position_snapshot", {"business_date": "29/05/2024"}, "business_date"),
        ("account_positions", {"quantities": [1]}, "quantities"),
    ],
)
def test_domain_checks_of_other_events(tag: str, changes: dict[str, Any], field: str) -> None:
    fields: dict[str, Any] = msgspec.to_builtins(samples()[tag])
    fields.update(changes)
    result = ALL.try_decode(msgspec.msgpack.encode(fields))
    assert isinstance(result, Rejection)
    assert result.field == field


def test_nested_rejection_names_the_path() -> None:
    fields: dict[str, Any] = msgspec.to_builtins(samples()["crif"])
    fields["rows"] = [fields["rows"][0], {**fields["rows"][0], "amount_currency": "US"}]
    result = ALL.try_decode(msgspec.msgpack.encode(fields))
    assert isinstance(result, Rejection)
    assert result.field == "rows[1].amount_currency"


def test_oversized_event_is_rejected_without_decoding() -> None:
    result = TRADES.try_decode(b"\x00" * (MAX_EVENT_BYTES + 1))
    assert isinstance(result, Rejection)
    assert "exceeds the limit" in result.reason


def test_dead_letter_keeps_the_original_bytes_and_reason() -> None:
    raw = b"\xc1garbage"
    rejection = TRADES.try_decode(raw)
    assert isinstance(rejection, Rejection)
    letter = dead_letter(
        topic="mf.trades", partition=3, offset=99, raw=raw, rejection=rejection, now_ns=5
    )
    back = ALL.decode(encode(letter))
    assert isinstance(back, ev.DeadLetter)
    assert back.raw == raw
    assert (back.source_topic, back.source_partition, back.source_offset) == ("mf.trades", 3, 99)
    assert back.reason.startswith("is not valid MessagePack")


# --- hostile input -------------------------------------------------------------------------

_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
    | st.binary(max_size=20)
)
_KEYS = st.text(max_size=12) | st.sampled_from(["type", "v", "rows", "account", "quantity"])
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(_KEYS, inner, max_size=6),
    max_leaves=30,
)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_raise(raw: bytes) -> None:
    result = ALL.try_decode(raw)
    assert isinstance(result, Rejection | ev.Event)


@settings(max_examples=400, deadline=None)
@given(_values)
def test_arbitrary_msgpack_never_raises(value: Any) -> None:
    result = ALL.try_decode(msgspec.msgpack.encode(value))
    assert isinstance(result, Rejection | ev.Event)


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(sorted(_trade())), _scalars)
def test_a_mutated_trade_is_valid_or_rejected_at_the_mutated_field(name: str, value: Any) -> None:
    raw = msgspec.msgpack.encode(_trade(**{name: value}))
    result = TRADES.try_decode(raw)
    if isinstance(result, Rejection):
        assert result.field == name, result
    else:
        expected = float(value) if name == "price" else value  # ints are accepted as floats
        assert getattr(result, name) == expected or name == "type"


@pytest.mark.parametrize("depth", [10, 1_000, 100_000])
@pytest.mark.parametrize("opener", [b"\x91", b"\x81\xa1k"])  # [x] and {"k": x}
def test_deep_nesting_is_rejected(depth: int, opener: bytes) -> None:
    raw = opener * depth + b"\x01"
    result = ALL.try_decode(raw)
    assert isinstance(result, Rejection)


_raws = st.lists(
    st.one_of(
        st.sampled_from([encode(e) for e in samples().values()]),
        st.binary(max_size=80),
        _values.map(msgspec.msgpack.encode),
        # a newer schema version than this reader knows: valid msgpack, refused on "v"
        st.just(encode(samples()["trade"]).replace(b"\xa1v\x01", b"\xa1v\x09")),
    ),
    max_size=12,
)


@settings(max_examples=300, deadline=None)
@given(_raws)
def test_decoding_a_run_equals_decoding_each_record(raws: list[bytes]) -> None:
    # the worker's batch path must accept and refuse exactly what one-by-one decoding does
    one_by_one = [ALL.try_decode(r) for r in raws]
    many, clean = ALL.decode_many(raws)
    assert many == one_by_one
    assert clean == (not any(isinstance(x, Rejection) for x in one_by_one))


@pytest.mark.parametrize(
    ("tag", "name", "value"),
    [
        ("trade", "quantity", 2**62),
        ("trade", "price", 1e308),
        ("position_snapshot", "quantity", -(2**62)),
        ("price", "price", 1e300),
        ("price", "price", 1e-300),
        ("instrument", "strike", 1e308),
        ("instrument", "multiplier", 1e300),
    ],
)
def test_an_implausible_magnitude_is_dead_lettered_at_its_field(
    tag: str, name: str, value: float
) -> None:
    # decoded as valid, a 1e308 would overflow a worker's arithmetic: it must be refused here
    doc = msgspec.to_builtins(samples()[tag])
    doc[name] = value
    result = ALL.try_decode(msgspec.msgpack.encode(doc))
    assert isinstance(result, Rejection), result
    assert result.field == name
    assert "must be within" in result.reason
