from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from marginflow.core.accounts import Account, account_owners
from marginflow.core.batch import OptionBatch
from marginflow.core.errors import ValidationError
from marginflow.core.ids import AccountId, InstrumentId, MemberId, UnderlyingId
from marginflow.core.instruments import ListedOption, OptionKind


def test_option_is_validated_on_construction() -> None:
    with pytest.raises(ValidationError, match="strike: must be a finite number > 0"):
        ListedOption(
            InstrumentId("X"), UnderlyingId("U"), OptionKind.CALL, -1.0, dt.date(2027, 1, 15)
        )


def test_expiry_is_act365_and_never_negative() -> None:
    opt = ListedOption(
        InstrumentId("X"), UnderlyingId("U"), OptionKind.PUT, 100.0, dt.date(2027, 1, 1)
    )
    assert opt.expiry_years(dt.date(2026, 1, 1)) == pytest.approx(1.0)
    assert opt.expiry_years(dt.date(2027, 6, 1)) == 0.0


def test_an_account_belongs_to_one_member() -> None:
    a = AccountId("A1")
    owners = account_owners([Account(a, MemberId("M1")), Account(AccountId("A2"), MemberId("M1"))])
    assert owners[a] == "M1"
    with pytest.raises(ValidationError, match="account A1 belongs to M1, cannot also belong to M2"):
        account_owners([Account(a, MemberId("M1")), Account(a, MemberId("M2"))])


def test_batch_broadcasts_and_names_the_bad_field_and_index() -> None:
    b = OptionBatch.of(
        is_call=[True, False], spot=100.0, strike=[90.0, 110.0], expiry_years=1.0, vol=0.2
    )
    assert len(b) == 2
    assert b.rate.shape == (2,)
    with pytest.raises(ValidationError, match=r"vol: must be finite and >= 0; index 1 is -0\.1"):
        OptionBatch.of(is_call=True, spot=100.0, strike=100.0, expiry_years=1.0, vol=[0.2, -0.1])
    with pytest.raises(ValidationError, match="spot: must be finite and > 0; index 0 is nan"):
        OptionBatch.of(is_call=True, spot=np.nan, strike=100.0, expiry_years=1.0, vol=0.2)


def test_take_and_replace_return_new_batches() -> None:
    b = OptionBatch.of(
        is_call=True, spot=[90.0, 100.0, 110.0], strike=100.0, expiry_years=1.0, vol=0.2
    )
    sub = b.take(np.array([2, 0]))
    assert list(sub.spot) == [110.0, 90.0]
    bumped = b.replace(vol=0.3)
    assert list(bumped.vol) == [0.3] * 3
    assert list(b.vol) == [0.2] * 3
