"""Tables out: a CSV download has its header and neutralised formula cells, a Parquet one
reads back with pyarrow, and every download is audited with an encrypted copy kept."""

from __future__ import annotations

import csv
import io
import json

import pyarrow.parquet as pq

from marginflow.service.crypto import decrypt
from marginflow.service.sealed import context_of
from marginflow.sim.synthetic_crif import CrifSpec, generate
from marginflow.store.rows import Blob
from tests.service.conftest import Service

FORMULAS = ("=1+1", "+SUM(A1)", "-2+3", "@cmd")  # (a CRIF value loses its tabs)


def last_export(service: Service, actor: str) -> tuple[dict[str, object], Blob]:
    ctx = service.app.state.ctx
    entry = [e for e in ctx.audit.entries(action="data.export") if e.actor == actor][-1]
    detail = json.loads(entry.detail)
    blob = ctx.blobs.get(detail["blob"])
    assert blob is not None
    return detail, blob


def upload_with_formulas(service: Service) -> None:
    """An upload whose portfolios are named like spreadsheet formulas."""
    rows = generate(CrifSpec(rows=60, portfolios=1, seed=12))
    for k, row in enumerate(rows):
        row["PortfolioID"] = FORMULAS[k % len(FORMULAS)]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    r = service.client("bank-a.user").post(
        "/api/v1/simm/uploads", files={"file": ("formulas.csv", out.getvalue().encode())}
    )
    assert r.status_code == 201, r.text
    assert {p["portfolio"] for p in r.json()["portfolios"]} == set(FORMULAS)


def test_csv_has_a_header_neutralised_formulas_and_is_audited_with_a_sealed_copy(
    service: Service,
) -> None:
    upload_with_formulas(service)
    client = service.client("bank-a.user")
    cells: list[str] = []
    for formula in FORMULAS:
        r = client.get(f"/api/v1/simm/portfolios/{formula}/history", params={"format": "csv"})
        assert r.status_code == 200, (formula, r.text)
        assert r.headers["content-type"].startswith("text/csv")
        assert r.headers["content-disposition"].startswith("attachment; filename=")
        table = list(csv.reader(io.StringIO(r.text, newline="")))
        assert table[0][:3] == ["source", "portfolio", "party"]
        cells += [row[1] for row in table[1:]]
        detail, blob = last_export(service, "bank-a.user")
        assert detail["format"] == "csv"
        assert detail["rows"] == len(table) - 1
        assert blob.kind == "export"
        assert blob.member == "BANK-A"
        assert formula.encode() not in blob.content
        keys = service.app.state.ctx.secrets.data_keys
        assert decrypt(keys, blob.content, context=context_of("export", blob.id)) == r.content
    assert cells
    assert all(cell.startswith("'") for cell in cells)
    assert {cell[1:] for cell in cells} == set(FORMULAS)


def test_parquet_reads_back(service: Service) -> None:
    client = service.client("ops")
    r = client.get("/api/v1/simm/portfolios", params={"format": "csv"})
    assert r.status_code == 403  # operations reads, but exports nothing
    r = service.client("auditor").get("/api/v1/simm/portfolios", params={"format": "parquet"})
    assert r.status_code == 200
    table = pq.read_table(io.BytesIO(r.content))
    page = service.client("auditor").get("/api/v1/simm/portfolios", params={"limit": 1000}).json()
    assert table.num_rows == page["total"] > 0
    assert "tree" not in table.column_names
    assert table.column("collect_im").to_pylist() == [p["collect_im"] for p in page["items"]]
    detail, _ = last_export(service, "auditor")
    assert detail["format"] == "parquet"


def test_the_upload_list_downloads(service: Service) -> None:
    upload_with_formulas(service)
    r = service.client("bank-a.user").get("/api/v1/simm/uploads", params={"format": "csv"})
    assert r.status_code == 200
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert rows
    assert {row["party"] for row in rows} == {"BANK-A"}
    assert "formulas.csv" in {row["name"] for row in rows}
