"""Encoding and validating decoding of events (MessagePack through msgspec).

:class:`Codec` decodes the events one topic may carry. Decoding is validation: the bytes
must be MessagePack, the map must match one event's schema (types, required fields), its
schema version must be one this reader knows, and the domain checks of the event must pass.
Anything else becomes a :class:`Rejection` naming the field and the reason; a worker turns
it into a :class:`~marginflow.stream.events.DeadLetter` carrying the original bytes, so a
bad event is kept for inspection and never dropped, and never stops the stream.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import reduce
from typing import Any, Generic, TypeVar, cast

import msgspec

from marginflow.core.errors import ValidationError
from marginflow.stream import events as ev

E = TypeVar("E", bound=ev.Event)

MAX_EVENT_BYTES = 16 * 1024 * 1024
"""Largest event accepted (a CRIF submission of ~100k rows fits)."""

MSG_TOO_LARGE = "event of {size} bytes exceeds the limit of {limit} bytes"
MSG_NOT_MSGPACK = "is not valid MessagePack: {detail}"
MSG_NEWER_VERSION = "schema version {v} of {tag!r} is newer than this reader supports ({known})"
MSG_BAD_VERSION = "schema version must be >= 1, got {v}"
MSG_WRONG_TOPIC = "event type {tag!r} does not belong on this topic (expected one of {allowed})"

_PATH = re.compile(r"^(?P<msg>.*) - at `\$(?P<path>[^`]*)`$", re.DOTALL)
_MISSING = re.compile(r"^Object missing required field `(?P<field>[^`]+)`")
_BAD_TAG = re.compile(r"^Invalid value '(?P<tag>[^']*)'$")

_encoder = msgspec.msgpack.Encoder()
_KNOWN: dict[type, int] = {}  # newest schema version per event class, cached


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why an event was refused: the field (a path such as ``rows[3].amount`` for nested
    values, ``$`` for the whole event) and a reason a person can act on."""

    field: str
    reason: str

    def __str__(self) -> str:
        return f"{self.field}: {self.reason}"


class EventRejectedError(ValidationError):
    """Raised by :meth:`Codec.decode` for an event that fails decoding or validation."""


def encode(event: ev.Event) -> bytes:
    """The wire form of ``event``: a MessagePack map with ``type`` and ``v`` first."""
    return _encoder.encode(event)


class Codec(Generic[E]):
    """Decoder for the events of one topic (a tagged union of event types)."""

    def __init__(self, events: Sequence[type[E]]) -> None:
        if not events:
            raise ValueError("a codec needs at least one event type")
        self.events = tuple(events)
        union: Any = reduce(lambda a, b: a | b, cast(tuple[Any, ...], self.events))
        self._decoder: msgspec.msgpack.Decoder[Any] = msgspec.msgpack.Decoder(union)
        self._tags = tuple(str(e.__struct_config__.tag) for e in self.events)
        self._known: dict[type, int] = {
            e: ev.SCHEMA_VERSIONS[str(e.__struct_config__.tag)] for e in self.events
        }

    def decode(self, raw: bytes | memoryview) -> E:
        """Decode and validate one event, or raise :class:`EventRejectedError`."""
        result = self.try_decode(raw)
        if isinstance(result, Rejection):
            raise EventRejectedError(result.field, result.reason)
        return result

    def try_decode(self, raw: bytes | memoryview) -> E | Rejection:
        """Decode and validate one event; a :class:`Rejection` instead of raising."""
        if len(raw) > MAX_EVENT_BYTES:
            return Rejection("$", MSG_TOO_LARGE.format(size=len(raw), limit=MAX_EVENT_BYTES))
        try:
            event: E = self._decoder.decode(raw)
        except msgspec.ValidationError as exc:
            return self._explain(exc)
        except msgspec.DecodeError as exc:
            return Rejection("$", MSG_NOT_MSGPACK.format(detail=exc))
        except (RecursionError, MemoryError):  # hostile nesting or sizes
            return Rejection("$", MSG_NOT_MSGPACK.format(detail="nesting or size out of bounds"))
        return self._check_version(event)

    def decode_many(self, raws: Sequence[bytes | memoryview]) -> tuple[list[E | Rejection], bool]:
        """:meth:`try_decode` of each of ``raws``, in order, and whether all were accepted.

        The same outcomes as one call per record (each record is still decoded on its own:
        concatenating untrusted records could let two malformed halves pass as one event),
        with the per-record Python work left out of the common case of a clean batch.
        """
        if max(map(len, raws), default=0) <= MAX_EVENT_BYTES:
            decode, known = self._decoder.decode, self._known
            try:
                events: list[E] = [decode(raw) for raw in raws]
            except (msgspec.ValidationError, msgspec.DecodeError, RecursionError, MemoryError):
                pass  # find which, and why, one record at a time
            else:
                if all(1 <= e.v <= known[type(e)] for e in events):
                    return cast(list[E | Rejection], events), True
        out = [self.try_decode(raw) for raw in raws]
        return out, not any(isinstance(x, Rejection) for x in out)

    def _check_version(self, event: E) -> E | Rejection:
        known = _KNOWN.get(type(event))
        if known is None:
            known = _KNOWN[type(event)] = ev.SCHEMA_VERSIONS[str(event.__struct_config__.tag)]
        if 1 <= event.v <= known:
            return event
        tag = str(event.__struct_config__.tag)
        if event.v > known:
            return Rejection("v", MSG_NEWER_VERSION.format(v=event.v, tag=tag, known=known))
        if event.v < 1:
            return Rejection("v", MSG_BAD_VERSION.format(v=event.v))
        return event

    def _explain(self, exc: msgspec.ValidationError) -> Rejection:
        message, path = str(exc), ""
        match = _PATH.match(message)
        if match:
            message, path = match["msg"], match["path"].lstrip(".")
        cause = exc.__cause__
        if isinstance(cause, ValidationError):  # a domain check in __post_init__
            return Rejection(_join(path, cause.field), cause.reason)
        missing = _MISSING.match(message)
        if missing:
            return Rejection(_join(path, missing["field"]), "is missing")
        bad_tag = _BAD_TAG.match(message)
        if bad_tag and path == "type":
            allowed = ", ".join(self._tags)
            return Rejection("type", MSG_WRONG_TOPIC.format(tag=bad_tag["tag"], allowed=allowed))
        return Rejection(path or "$", message)


def _join(path: str, field: str) -> str:
    return f"{path}.{field}" if path else field


def dead_letter(
    *,
    topic: str,
    partition: int,
    offset: int,
    raw: bytes | memoryview,
    rejection: Rejection,
    now_ns: int,
) -> ev.DeadLetter:
    """The dead-letter event for a rejected input: where it came from, why, and its bytes."""
    return ev.DeadLetter(
        source_topic=topic,
        source_partition=partition,
        source_offset=offset,
        field=rejection.field,
        reason=rejection.reason,
        raw=bytes(raw),
        event_time=now_ns,
    )
