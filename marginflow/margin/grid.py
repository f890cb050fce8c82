"""Shared machinery of the scenario-grid margin models (SPAN, portfolio margin).

Positions arrive as one sparse matrix, accounts × instruments (scipy.sparse, CSR
preferred), holding signed contract counts: positive long, negative short. Grid models
work per *(account, group)* pair, where a group is SPAN's combined commodity or portfolio
margin's class (one underlying). :func:`group_positions` turns the stored positions into
those pairs once, with a pairs × instruments aggregation matrix; after that every
per-pair quantity is one sparse × dense product (:meth:`AccountGroups.aggregate`) or one
``bincount`` (:meth:`AccountGroups.sum_positions`), never a Python loop over accounts.

Sign conventions are the caller's: :func:`offset_sum` and :func:`top_positions` take
*loss-positive* values (SPAN's risk-array convention); portfolio margin negates its P&L
(profit-positive) before calling them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import scipy.sparse as sp
from numpy.typing import ArrayLike, NDArray

from marginflow.core.batch import OptionBatch
from marginflow.core.errors import ValidationError
from marginflow.pricing.black_scholes import european_price

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


@dataclass(frozen=True, slots=True, eq=False)
class AccountGroups:
    """Stored positions grouped into (account, group) pairs.

    Attributes
    ----------
    n_accounts, n_groups : int
        Shape of the account and group index spaces.
    pair_key : int64[P]
        ``account * n_groups + group``, ascending: the order pairs are stored in.
    pair_account, pair_group : int64[P]
        The pairs, sorted by (account, group); only pairs with a stored position exist.
    position_account, position_instrument, position_pair : int64[M]
        For each stored (non-zero) position: its account, instrument and pair.
    position_quantity : float64[M]
        Its signed contract count.
    aggregator : csr_matrix[P, N]
        Row p holds the quantities of pair p's positions: ``aggregator @ v`` sums a
        per-instrument, per-contract quantity ``v`` over each pair's positions.
    """

    n_accounts: int
    n_groups: int
    pair_key: IntArray
    pair_account: IntArray
    pair_group: IntArray
    position_account: IntArray
    position_instrument: IntArray
    position_pair: IntArray
    position_quantity: FloatArray
    aggregator: sp.csr_matrix

    @property
    def n_pairs(self) -> int:
        return int(self.pair_account.shape[0])

    def aggregate(self, per_instrument: NDArray[Any]) -> FloatArray:
        """Sum ``quantity × per_instrument[i]`` over each pair's positions.

        ``per_instrument`` is float[N] or float[N, K] per one long contract; the result is
        float64[P] or float64[P, K].
        """
        out = self.aggregator @ per_instrument
        return np.asarray(out, dtype=np.float64)

    def sum_positions(self, per_position: ArrayLike) -> FloatArray:
        """Sum a value given per stored position (float[M]) over each pair (float64[P])."""
        w = np.asarray(per_position, dtype=np.float64)
        return np.bincount(self.position_pair, weights=w, minlength=self.n_pairs).astype(np.float64)

    def sum_by_account(self, per_pair: ArrayLike) -> FloatArray:
        """Sum a per-pair value (float[P]) over each account's pairs (float64[A])."""
        w = np.asarray(per_pair, dtype=np.float64)
        return np.bincount(self.pair_account, weights=w, minlength=self.n_accounts).astype(
            np.float64
        )

    def find_pairs(self, account: ArrayLike, group: ArrayLike) -> IntArray:
        """Pair index of each (account, group), or -1 where the account holds nothing there."""
        key = np.asarray(account, dtype=np.int64) * self.n_groups + np.asarray(
            group, dtype=np.int64
        )
        keys = self.pair_key
        idx = np.searchsorted(keys, key)
        idx_c = np.minimum(idx, max(keys.shape[0] - 1, 0))
        found = (idx < keys.shape[0]) & (keys[idx_c] == key) if keys.shape[0] else idx < 0
        return np.where(found, idx_c, -1).astype(np.int64)


def price_options(batch: OptionBatch) -> FloatArray:
    """Price per unit of underlying, European or American per ``batch.is_american``: the
    one pricing call of the grid models' full revaluation."""
    if not batch.is_american.any():
        return european_price(batch)
    # Imported here: the American pricer is only needed when American options are present.
    from marginflow.pricing.api import price

    return price(batch)


def per_instrument(name: str, value: ArrayLike, dtype: Any, n: int) -> NDArray[Any]:
    """``value`` (a scalar or an N-vector) as a contiguous N-vector of ``dtype``; a
    :class:`ValidationError` naming ``name`` when its shape is neither."""
    arr = np.asarray(value)
    if arr.ndim > 1 or (arr.ndim == 1 and arr.shape[0] != n):
        raise ValidationError(name, f"has shape {arr.shape}, expected ({n},)")
    return np.ascontiguousarray(np.broadcast_to(arr.astype(dtype), (n,)))


def as_positions(positions: Any, n_instruments: int) -> sp.csr_matrix:
    """Positions as a canonical CSR matrix accounts × instruments (float64).

    Accepts any scipy.sparse matrix or array, or a dense 2-D array, or a dense 1-D array
    (one account). Duplicates are summed and explicit zeros dropped.
    """
    if sp.issparse(positions):
        mat = sp.csr_matrix(positions, dtype=np.float64, copy=True)
    else:
        dense = np.asarray(positions, dtype=np.float64)
        if dense.ndim == 1:
            dense = dense[None, :]
        if dense.ndim != 2:
            raise ValidationError("positions", f"must be 1-D or 2-D, got {dense.ndim}-D")
        mat = sp.csr_matrix(dense)
    if mat.shape[1] != n_instruments:
        raise ValidationError(
            "positions",
            f"has {mat.shape[1]} instrument columns, expected {n_instruments}",
        )
    mat.sum_duplicates()
    if not np.isfinite(mat.data).all():
        raise ValidationError("positions", "quantities must be finite")
    mat.eliminate_zeros()
    return mat


def group_positions(
    positions: sp.csr_matrix, instrument_group: IntArray, n_groups: int
) -> AccountGroups:
    """Group the stored positions of ``positions`` (canonical CSR, see :func:`as_positions`)
    by (account, ``instrument_group[instrument]``)."""
    n_accounts, n_instruments = positions.shape
    counts = np.diff(positions.indptr)
    account = np.repeat(np.arange(n_accounts, dtype=np.int64), counts)
    instrument = positions.indices.astype(np.int64)
    quantity = positions.data.astype(np.float64)
    key = account * n_groups + instrument_group[instrument]
    unique_key, pair = np.unique(key, return_inverse=True)
    pair = pair.astype(np.int64).ravel()
    aggregator = sp.csr_matrix(
        (quantity, (pair, instrument)), shape=(unique_key.shape[0], n_instruments)
    )
    return AccountGroups(
        n_accounts=int(n_accounts),
        n_groups=int(n_groups),
        pair_key=unique_key.astype(np.int64),
        pair_account=(unique_key // n_groups).astype(np.int64),
        pair_group=(unique_key % n_groups).astype(np.int64),
        position_account=account,
        position_instrument=instrument,
        position_pair=pair,
        position_quantity=quantity,
        aggregator=aggregator,
    )


def offset_sum(
    losses: FloatArray, member_of: IntArray, n_sets: int, credit_rate: FloatArray
) -> FloatArray:
    """Combine per-scenario losses of several pairs with partial credit for gains.

    For each set q and scenario s: ``Σ max(L, 0) + rate_q × Σ min(L, 0)`` over the pairs
    whose ``member_of`` is q (pairs with ``member_of == -1`` belong to no set). Losses
    are positive (SPAN convention), so a gain in one leg offsets a loss in another at the
    same scenario only to the fraction ``credit_rate``: CME's scanning-based spread, and
    portfolio margin's offsets between classes of one product group.

    ``losses`` is float[P, S]; returns float64[n_sets, S].
    """
    keep = member_of >= 0
    rows = member_of[keep]
    cols = np.flatnonzero(keep)
    selector = sp.csr_matrix(
        (np.ones(rows.shape[0]), (rows, cols)), shape=(n_sets, losses.shape[0])
    )
    gross_loss = np.asarray(selector @ np.maximum(losses, 0.0))
    gross_gain = np.asarray(selector @ np.minimum(losses, 0.0))
    return np.asarray(gross_loss + credit_rate[:, None] * gross_gain, dtype=np.float64)


def largest_per_account(pair_account: IntArray, value: FloatArray, n_accounts: int) -> IntArray:
    """Index of the pair with the largest ``value`` in each account, -1 where an account
    has no pair (int64[A])."""
    order = np.lexsort((-value, pair_account))
    acc = pair_account[order]
    first = np.flatnonzero(np.r_[True, acc[1:] != acc[:-1]]) if acc.size else acc
    out = np.full(n_accounts, -1, dtype=np.int64)
    out[acc[first]] = order[first]
    return out


@dataclass(frozen=True, slots=True, eq=False)
class Contributors:
    """The positions contributing most to each account's margin, largest first.

    Rows are sorted by account, then by ``loss`` descending; at most ``top_n`` rows per
    account. ``loss`` is in currency, positive for a loss, at the scenario (or valuation
    point) that drives the position's group.
    """

    account: IntArray
    instrument: IntArray
    quantity: FloatArray
    loss: FloatArray

    def of_account(self, account: int) -> IntArray:
        """Row indices of ``account``'s contributors."""
        lo, hi = np.searchsorted(self.account, [account, account + 1])
        return np.arange(lo, hi, dtype=np.int64)

    def rows_of(
        self, account: int, instrument_names: Sequence[str] | None = None
    ) -> list[dict[str, Any]]:
        """``account``'s contributors as plain data (JSON-ready), largest loss first:
        instrument (its name, or its index), quantity and loss (currency, loss positive)."""
        out = []
        for r in self.of_account(account):
            i = int(self.instrument[r])
            out.append(
                {
                    "instrument": instrument_names[i] if instrument_names is not None else i,
                    "quantity": float(self.quantity[r]),
                    "loss": float(self.loss[r]),
                }
            )
        return out


def top_positions(groups: AccountGroups, loss: FloatArray, top_n: int) -> Contributors:
    """The ``top_n`` positions with the largest ``loss`` (float[M], per stored position)
    in each account."""
    if top_n < 0:
        raise ValidationError("top_n", f"must be >= 0, got {top_n}")
    order = np.lexsort((-loss, groups.position_account))
    acc = groups.position_account[order]
    first = np.searchsorted(acc, acc, side="left")
    rank = np.arange(acc.shape[0]) - first
    take = order[rank < top_n]
    return Contributors(
        account=groups.position_account[take],
        instrument=groups.position_instrument[take],
        quantity=groups.position_quantity[take],
        loss=np.asarray(loss, dtype=np.float64)[take],
    )


# ------------------------------------------- reading parameters from plain data (TOML/JSON)
#
# The grid models' ``from_mapping`` readers share these: every bad value is a
# ValidationError naming its field (``where.key``), never a bare ValueError, a silently
# truncated number or a truthy string.


def _field(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def read_list(data: Mapping[str, Any], key: str, where: str, *, required: bool) -> list[Any]:
    """``data[key]`` as a list (``[]`` when absent and not ``required``)."""
    if key not in data:
        if required:
            raise ValidationError(_field(where, key), "is missing")
        return []
    value = data[key]
    if not isinstance(value, list | tuple):
        raise ValidationError(_field(where, key), f"must be a list, got {type(value).__name__}")
    return list(value)


def read_number(
    data: Mapping[str, Any], key: str, where: str, default: float | None = None
) -> float:
    """``data[key]`` as a float (``default`` when absent; required when no default)."""
    if key not in data:
        if default is None:
            raise ValidationError(_field(where, key), "is missing")
        return default
    return _number(data[key], _field(where, key))


def _number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValidationError(name, f"is not a number: {value!r}")
    return float(value)


def read_numbers(data: Mapping[str, Any], key: str, where: str) -> tuple[float, ...]:
    """``data[key]``, a required list of numbers."""
    values = read_list(data, key, where, required=True)
    return tuple(_number(x, f"{_field(where, key)}[{k}]") for k, x in enumerate(values))


def read_int(data: Mapping[str, Any], key: str, where: str, default: int | None = None) -> int:
    """``data[key]`` as a whole number: 1.5 is an error, not 1 (inf is caught too)."""
    value = read_number(data, key, where, None if default is None else float(default))
    if not value.is_integer():
        raise ValidationError(_field(where, key), f"is not a whole number: {value!r}")
    return int(value)


def read_bool(data: Mapping[str, Any], key: str, where: str, default: bool) -> bool:
    """``data[key]`` as a boolean; the string ``"false"`` (truthy) is an error."""
    value = data.get(key, default)
    if not isinstance(value, bool):
        raise ValidationError(_field(where, key), f"must be true or false, got {value!r}")
    return value


L = TypeVar("L", bound=str)


def read_choice(data: Mapping[str, Any], key: str, where: str, allowed: tuple[L, ...]) -> L:
    """``data[key]`` as one of ``allowed`` (default: the first)."""
    value = data.get(key, allowed[0])
    for choice in allowed:
        if value == choice:
            return choice
    options = " or ".join(repr(a) for a in allowed)
    raise ValidationError(_field(where, key), f"must be {options}, got {value!r}")


def as_table(value: Any, where: str) -> Mapping[str, Any]:
    """``value`` if it is a table (a mapping), else a ValidationError naming ``where``."""
    if not isinstance(value, Mapping):
        raise ValidationError(where, "must be a table")
    return value
