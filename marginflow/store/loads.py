"""Start-of-day loads: the book a platform's calculators started from, kept in the store so
that a margin naming it can be recomputed after the book folder and the log are gone."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from marginflow.core.errors import ValidationError
from marginflow.io.book import (
    LoadedBook,
    instrument_underlyings,
    load_id,
    load_reference,
    reference_files,
    restricted_files,
)
from marginflow.store.database import Database
from marginflow.store.rows import BookLoad


def record_book_load(db: Database, folder: Path, settings: Mapping[str, Any]) -> BookLoad:
    """Keep ``folder``'s reference files (what a calculator reads) and the margin
    ``settings`` (JSON form) as one load; idempotent. Its id is the one the calculators
    started from ``folder`` under ``settings`` put in every margin."""
    files = reference_files(folder)
    load, book = load_id(files, settings)
    with tempfile.TemporaryDirectory(prefix="marginflow-load-") as scratch:
        valuation = load_reference(files, Path(scratch)).book.valuation_date
    record = BookLoad(
        load, book, dict(settings), valuation.isoformat(), str(folder.resolve()), time.time_ns()
    )
    db.write_book_load(record, files)
    return record


def stored_book(
    db: Database, load_id_: str, scratch: Path, underlyings: Iterable[str] | None = None
) -> tuple[BookLoad, LoadedBook]:
    """The load ``load_id_`` and its book, read back from the stored files (written to
    ``scratch``), cut to ``underlyings`` if given (:func:`restricted_files`);
    :class:`ValidationError` when the store does not hold it whole."""
    load = db.book_load(load_id_)
    if load is None:
        raise ValidationError(
            "book_load",
            f"load {load_id_[:12]} is not in the store (was the platform started by cluster up "
            "or demo, which record it?)",
        )
    files = db.book_files(load.book)
    if load_id(files, load.settings) != (load.id, load.book):
        raise ValidationError(
            "book_load", f"the stored files of load {load.id[:12]} do not match its fingerprint"
        )
    if underlyings is not None:
        files = restricted_files(files, underlyings)
    return load, load_reference(files, scratch)


def stored_instruments(db: Database, load: BookLoad) -> dict[str, str]:
    """Each start-of-day instrument's underlying in a stored load (a cheap lookup)."""
    names = ("instruments.csv", "instruments.parquet")
    return instrument_underlyings(db.book_files(load.book, names))
