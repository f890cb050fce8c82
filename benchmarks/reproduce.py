"""``marginflow reproduce`` on the large benchmark book: issue 9's goal is one account's
stored margin recomputed from the store alone in under 1 s.

``python -m benchmarks.reproduce`` (``--quick``: a tenth of the book; ``--accounts N``).

The book of ``benchmarks/margin.py`` (10,000 accounts, 2,000 underlyings, 100,000 series,
1,000,000 positions) is written as a book folder and recorded in a SQLite store as a
start-of-day load; the whole-book engine (what a risk calculator builds) margins a sample
of accounts, whose margins and start-of-day positions are stored as the sink stores them.
Then each is reproduced the way ``marginflow reproduce`` does it, timed per account: cold
(``app.reproduce.reproduce``: the load read back from the store cut to the account's
underlyings, their scenarios generated, the engine of those underlyings built, compared)
and warm (the whole load already read, as ``reproduce_sample`` shares it). The peer
is the whole-book engine build a recompute without the restriction would need. Every
reproduced margin must equal the stored one to the bit (exit 1 otherwise).
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import print_table
from benchmarks.sod_load import FULL, QUICK, say
from marginflow.app.reproduce import StoredInputs, reproduce, reproduce_margin
from marginflow.engine.settings import MarginSettings, fingerprint, identity
from marginflow.io.book import write_book
from marginflow.store import Database, PositionChange, StoredMargin
from marginflow.store.loads import record_book_load
from marginflow.stream.risk_calculator import MarginSetup

BOUND_S = 1.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tenth of the large book")
    parser.add_argument("--accounts", type=int, default=20, help="accounts reproduced")
    args = parser.parse_args(argv)
    spec = QUICK if args.quick else FULL
    settings = MarginSettings()
    with tempfile.TemporaryDirectory(prefix="mf-bench-reproduce-") as tmp:
        root = Path(tmp)
        say(f"book: {spec.accounts:,} accounts, {spec.series:,} series, "
            f"{spec.sod_positions:,} positions")  # fmt: skip
        book = spec.book()
        write_book(root / "book", book, fmt="parquet")
        db = Database(f"sqlite:///{root / 'store.db'}")
        load = record_book_load(db, root / "book", settings.to_json())
        setup, _ = MarginSetup.from_folder(root / "book", settings)
        say("whole-book engine (what a calculator builds) ...")
        t0 = time.perf_counter()
        whole = setup.engine()
        t_whole = time.perf_counter() - t0
        say(f"  {t_whole:.1f} s")
        matrix = book.positions.matrix.tocsr()
        held = [
            a
            for a in range(len(book.positions.accounts))
            if matrix.indptr[a + 1] > matrix.indptr[a]
        ]
        sample = random.Random(7).sample(held, min(args.accounts, len(held)))
        changes, margins = [], []
        label = fingerprint(identity(whole))
        for a in sample:
            cols = matrix.indices[matrix.indptr[a] : matrix.indptr[a + 1]]
            qty = matrix.data[matrix.indptr[a] : matrix.indptr[a + 1]]
            account = book.positions.accounts[a]
            ids = tuple(book.instruments.ids[j] for j in cols)
            changes.append(PositionChange(account, 0, 0, 0, ids, tuple(int(q) for q in qty)))
            whole.apply_trades({account: dict(zip(ids, qty.astype(float).tolist(), strict=True))})
            margins.append(
                StoredMargin(
                    account, book.positions.members[book.positions.account_member[a]],
                    float(whole.margin[a]), "es", 0, 0, -1, 0, 0,
                    es=float(whole.es_base[a]), var=float(whole.var[a]), apc=float(whole.apc[a]),
                    concentration=float(whole.concentration[a]),
                    driver=whole.scenarios.labels[int(whole.worst[a])], settings=label,
                    book_load=load.id, business_date=book.valuation_date.isoformat(),
                )
            )  # fmt: skip
        db.write(margins=margins, positions=changes)
        del whole
        say(f"reproducing {len(margins)} accounts ...")
        cold, warm, wrong = [], [], []
        inputs = None
        for k, m in enumerate(margins):
            t0 = time.perf_counter()
            got = reproduce(db, m.account, version=m.position_version)  # as the CLI does
            cold.append(time.perf_counter() - t0)
            if k == 0:
                inputs = StoredInputs(db, m.book_load)
            t0 = time.perf_counter()
            assert inputs is not None
            again = reproduce_margin(db, m, inputs)
            warm.append(time.perf_counter() - t0)
            if not (got.ok and again.ok):
                wrong.append((m.account, got.differences))
        db.close()
    rows = [
        ["reproduce one account, cold (as the CLI does it)", f"{np.median(cold):.3f}",
         f"{max(cold):.3f}", f"{BOUND_S / np.median(cold):.1f}x under the 1 s goal"],
        ["reproduce one account, warm (whole load already read)", f"{np.median(warm):.3f}",
         f"{max(warm):.3f}", f"{BOUND_S / np.median(warm):.1f}x under the 1 s goal"],
        ["whole-book engine build (a recompute without restriction)", f"{t_whole:.3f}", "",
         f"{t_whole / np.median(cold):.0f}x the cold reproduce"],
    ]  # fmt: skip
    print_table(
        f"reproduce on {spec.accounts:,} accounts / {spec.series:,} series "
        f"({len(margins)} accounts, bit-equal: {len(margins) - len(wrong)}/{len(margins)})",
        ["what", "median s", "max s", "ratio"],
        rows,
    )
    for account, why in wrong:
        print(f"DIFFERS {account}: {why}", file=sys.stderr)
    return 1 if wrong else 0


if __name__ == "__main__":
    raise SystemExit(main())
