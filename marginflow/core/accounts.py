"""Clearing members and their accounts. A member owns accounts; an account belongs to
exactly one member."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from marginflow.core.errors import ValidationError
from marginflow.core.ids import AccountId, MemberId


class AccountType(StrEnum):
    HOUSE = "house"
    CLIENT = "client"


@dataclass(frozen=True, slots=True)
class Member:
    id: MemberId
    name: str = ""


@dataclass(frozen=True, slots=True)
class Account:
    id: AccountId
    member: MemberId
    type: AccountType = AccountType.HOUSE


def account_owners(accounts: Iterable[Account]) -> Mapping[AccountId, MemberId]:
    """Map each account to its member, rejecting an account listed under two members."""
    owners: dict[AccountId, MemberId] = {}
    for acc in accounts:
        prior = owners.setdefault(acc.id, acc.member)
        if prior != acc.member:
            raise ValidationError(
                "member", f"account {acc.id} belongs to {prior}, cannot also belong to {acc.member}"
            )
    return owners
