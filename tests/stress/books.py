"""Small books for the stress command's tests, with hostile names in them."""

from __future__ import annotations

from pathlib import Path

from marginflow.io.book import write_book
from marginflow.sim.synthetic_book import generate_book

HOSTILE_ACCOUNT = "<script>alert(1)</script>"
HOSTILE_MEMBER = "[/x] $x^2$ =cmd|"


def stress_book(folder: Path, *, hostile: bool = True, seed: int = 5) -> Path:
    """A generated book (3 members, 9 accounts, 5 underlyings with history) written as
    CSV; with ``hostile``, the largest account and one member renamed to markup-like text,
    plus a two-scenario margin file ``margin.csv``."""
    sb = generate_book(members=3, accounts=9, underlyings=5, series=50, positions=120, seed=seed)
    write_book(folder, sb.book)
    if hostile:
        b = sb.book.positions
        nnz = b.matrix.getnnz(axis=1)
        account = b.accounts[int(nnz.argmax())]
        member = b.members[1]
        for name in ("accounts.csv", "positions.csv", "members.csv"):
            path = folder / name
            lines = path.read_text().splitlines(keepends=True)
            out = [lines[0]]
            for line in lines[1:]:
                cells = line.rstrip("\n").split(",")
                cells = [
                    HOSTILE_ACCOUNT if c == account else HOSTILE_MEMBER if c == member else c
                    for c in cells
                ]
                out.append(",".join(cells) + "\n")
            path.write_text("".join(out))
    (folder / "margin.csv").write_text(
        "scenario,underlying,spot_shock,vol_shock\ndown,*,-0.08,0.3\nup,*,0.08,-0.1\n"
    )
    return folder
