"""Use case: the clearing book as the store holds it now, as a :class:`LoadedBook` that the
book-wide use cases (stress testing, back-testing) take exactly as they take a book folder.

* **Reference data and history**: the latest start-of-day load (by the time it was loaded),
  its files read back from the store (:class:`marginflow.app.reproduce.StoredInputs`).
* **Market**: the load's market after every market-topic event the store holds (prices,
  vols, listings, accounts opened, date rolls), applied by the calculator's own code, so the
  spots are those the stream margined at its latest offset.
* **Settings**: the load's margin settings with the risk-parameter changes accepted up to
  that offset (the model in force, as the calculators hold it).
* **Positions**: every account's holdings at the position version of its latest stored
  margin; series that expired or are no longer listed are dropped, as the calculator drops
  them.

The book covers the underlyings held (every series on them, as a stored margin's
reproduction does): an underlying nobody holds changes no loss and no margin. With Monte
Carlo scenarios, which are joint over underlyings, margins computed on this book may differ
from the stream's; filtered historical scenarios are generated underlying by underlying, so
they do not.

:attr:`CurrentBook.key` names what the book was built from (load, market offset, a
fingerprint of the positions): a result computed from it can be cached under that key and
is stale exactly when the key changes.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from dataclasses import dataclass, fields, replace

from marginflow.app.reproduce import StoredInputs, held_positions
from marginflow.core.errors import ValidationError
from marginflow.core.fingerprint import fingerprint
from marginflow.engine.settings import MarginSettings
from marginflow.io.book import LoadedBook
from marginflow.margin.es_model import ExpectedShortfallModel
from marginflow.margin.models import parse_params
from marginflow.store import Database
from marginflow.store.rows import BookLoad
from marginflow.stress.historical import MARKET

MSG_NO_LOAD = (
    "the store holds no start-of-day load: start the platform with `marginflow cluster up` "
    "or `marginflow demo`, which record the book they start from"
)
MSG_NO_POSITIONS = "the store holds no positions: no account has a stored margin yet"


@dataclass(frozen=True, slots=True)
class CurrentBook:
    """The stored book now (module docstring): the load, the market offset it is at, the
    settings in force there and the book with every account's current positions."""

    load: BookLoad
    market_offset: int
    settings: MarginSettings
    loaded: LoadedBook
    positions: dict[str, dict[str, int]]
    positions_fingerprint: str

    @property
    def key(self) -> tuple[str, int, str]:
        """(load id, market offset, positions fingerprint): equal keys, equal books."""
        return (self.load.id, self.market_offset, self.positions_fingerprint)

    def describe(self) -> dict[str, object]:
        """What the book was built from, for a response or a report."""
        p = self.loaded.book.positions
        return {
            "book_load": self.load.id,
            "valuation_date": self.loaded.book.valuation_date.isoformat(),
            "market_offset": self.market_offset,
            "positions_fingerprint": self.positions_fingerprint,
            "accounts": len(p.accounts),
            "members": len(p.members),
            "positions": p.nnz,
        }


def latest_load(db: Database) -> BookLoad:
    """The start-of-day load recorded last, or :class:`ValidationError`."""
    loads = db.book_loads()
    if not loads:
        raise ValidationError("book_load", MSG_NO_LOAD)
    return loads[-1]


def settings_in_force(settings: MarginSettings, model: ExpectedShortfallModel) -> MarginSettings:
    """``settings`` with the ES model's parameters as ``model`` holds them (a risk-parameter
    change moves the model the calculators run, not the load's settings)."""
    base = settings.model()
    changed = {
        f.name: getattr(model, f.name)
        for f in fields(model)
        if getattr(model, f.name) != getattr(base, f.name)
    }
    if not changed:
        return settings
    confidence = float(changed.pop("confidence", settings.confidence))
    apc = str(changed.pop("apc", settings.apc))
    params = dict(parse_params(settings.params))
    for name, value in changed.items():
        params[name] = str(value).lower() if isinstance(value, bool) else str(value)
    return replace(
        settings,
        confidence=confidence,
        apc=apc,
        params=tuple(f"{k}={v}" for k, v in sorted(params.items())),
    )


def current_book(
    db: Database, *, cache: MutableMapping[str, StoredInputs] | None = None
) -> CurrentBook:
    """The store's book now (module docstring). ``cache`` keeps the stored inputs per load
    (the service's engine cache: the engines built here serve the other recomputing use
    cases too); the engines are not thread-safe, so the caller serialises calls sharing it.

    Raises :class:`ValidationError` when the store holds no load or no position."""
    load = latest_load(db)
    stored = db.current_positions()
    if not stored:
        raise ValidationError("positions", MSG_NO_POSITIONS)
    inputs = cache.get(load.id) if cache is not None else None
    if inputs is None:
        inputs = StoredInputs(db, load.id)
        if cache is not None:
            cache[load.id] = inputs
    offset = db.last_market_offset()
    inputs.events(offset, offset)  # series listed by then: they name their underlyings
    # The market index stays in the book even when nobody holds it: the stress betas are
    # measured against its history (app.stress.book_betas), as on the whole book.
    underlyings = inputs.underlyings(stored) | (
        frozenset({MARKET}) if MARKET in inputs.underlying_ids else frozenset()
    )
    engine = inputs.engine(offset, None, underlyings)
    held = {a: held_positions(engine, p) for a, p in sorted(stored.items())}
    with inputs.holding(held, offset, more_underlyings=underlyings) as engine:
        book = engine.current_book()
        settings = settings_in_force(inputs.setup.settings, engine.model)
    return CurrentBook(
        load=load,
        market_offset=offset,
        settings=settings,
        loaded=LoadedBook(book),
        positions=held,
        positions_fingerprint=fingerprint({"positions": held}),
    )


__all__ = ["CurrentBook", "current_book", "latest_load", "settings_in_force"]
