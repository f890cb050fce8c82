from __future__ import annotations

import numpy as np
import pytest

from marginflow.core.batch import OptionBatch
from marginflow.core.errors import ValidationError


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
