"""Typed identifiers. They are plain strings at run time; the types keep an account
from being passed where a member is expected."""

from __future__ import annotations

from typing import NewType

MemberId = NewType("MemberId", str)
AccountId = NewType("AccountId", str)
UnderlyingId = NewType("UnderlyingId", str)
InstrumentId = NewType("InstrumentId", str)
