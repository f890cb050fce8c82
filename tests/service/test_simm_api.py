"""SIMM over the API: an uploaded CRIF is margined by the CLI's own function (the same
numbers to the bit, the same ``file:line: field: reason`` for rejected rows), kept
encrypted at rest (refused uploads too), readable only in its member's scope; the stream's
results and a portfolio's history."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest

from marginflow.app.simm import simm_of_crif
from marginflow.core.errors import DecryptionError
from marginflow.service.crypto import decrypt
from marginflow.service.sealed import context_of
from marginflow.sim.synthetic_crif import CrifSpec, generate, write_crif_csv
from marginflow.simm.calibration import available_versions
from marginflow.store.rows import Blob
from tests.reference import reference_path
from tests.service.conftest import Service

UPLOADS = "/api/v1/simm/uploads"


def post_crif(service: Service, username: str, name: str, data: bytes, **form: Any) -> Any:
    client = service.client(username)
    return client.post(
        UPLOADS,
        files={"file": (name, data, "text/csv")},
        data={k: str(v) for k, v in form.items()},
    )


def member_user(service: Service, k: int = 0) -> tuple[str, str]:
    """The ``k``-th member of the demo and its user."""
    member = service.members[k]
    return member, f"{member.lower()}.user"


def blob(service: Service, blob_id: str) -> Blob:
    found = service.app.state.ctx.blobs.get(blob_id)
    assert found is not None, blob_id
    return found


def crif_bytes(rows: list[dict[str, Any]], tmp_path: Path, name: str = "crif.csv") -> bytes:
    return write_crif_csv(rows, tmp_path / name).read_bytes()


def test_an_upload_is_margined_as_the_cli_margins_the_file(service: Service) -> None:
    path = reference_path("simm-unit-tests/v2.5/crif_10d.csv")
    r = post_crif(service, "bank-a.user", "crif_10d.csv", path.read_bytes(), version="2.5")
    assert r.status_code == 201, r.text
    got = r.json()
    cli = simm_of_crif(path, version="2.5")
    assert (got["version"], got["mpor"], got["currency"]) == ("2.5", 10, "USD")
    assert got["rows"] == cli.valid_rows
    assert got["rejected_lines"] == cli.rejected_lines == 0
    expected = {(x.portfolio, x.side): x for x in cli.report.results}
    assert len(got["portfolios"]) == len(expected) // 2 == 481
    for p in got["portfolios"]:
        call, post = expected[(p["portfolio"], "call")], expected[(p["portfolio"], "post")]
        assert p["collect_im"] == call.im
        assert p["post_im"] == post.im
        assert p["party"] == "BANK-A"
        tree = p["tree"]
        assert tree["name"] == p["portfolio"]
        assert tree["amount"] is None
        collect, posted = tree["children"]
        assert (collect["name"], collect["amount"]) == ("collect", call.im)
        assert (posted["name"], posted["amount"]) == ("post", post.im)
        assert [c["name"] for c in collect["children"]] == [c.name for c in call.breakdown.children]
    c1 = next(p for p in got["portfolios"] if p["portfolio"] == "C1")
    assert c1["collect_im"] == pytest.approx(460_000_000, abs=0.5)  # ISDA case C1
    simm = c1["tree"]["children"][0]["children"][0]
    assert simm["name"] == "SIMM"
    assert simm["children"][0]["level"] == "product_class"
    # kept encrypted, the result in the blob's detail, audited
    kept = blob(service, got["id"])
    assert kept.kind == "crif-upload"
    assert kept.member == "BANK-A"
    assert kept.owner == "bank-a.user"
    assert kept.size == len(path.read_bytes())
    assert (
        json.loads(kept.detail)["portfolios"][0]["portfolio"] == got["portfolios"][0]["portfolio"]
    )
    entries = service.app.state.ctx.audit.entries(action="simm.upload")
    assert any(e.subject == got["id"] and e.outcome == "ok" for e in entries)


def test_the_newest_version_is_the_default_and_one_day_is_offered(
    service: Service, tmp_path: Path
) -> None:
    data = crif_bytes(generate(CrifSpec(rows=60, portfolios=2, seed=3)), tmp_path)
    r = post_crif(service, "bank-a.user", "two.csv", data, mpor=1, currency="EUR")
    assert r.status_code == 201, r.text
    got = r.json()
    assert got["version"] == available_versions()[-1]
    assert got["mpor"] == 1
    cli = simm_of_crif(tmp_path / "crif.csv", version=got["version"], mpor=1, currency="EUR")
    assert [p["collect_im"] for p in got["portfolios"]] == [
        x.im for x in cli.report.results if x.side == "call"
    ]
    assert {p["currency"] for p in got["portfolios"]} == {"EUR"}


def test_rejected_rows_are_named_as_the_cli_names_them(service: Service, tmp_path: Path) -> None:
    rows = generate(CrifSpec(rows=50, portfolios=1, seed=1))
    rows[3]["Bucket"] = "99"
    rows[3]["RiskType"] = "Risk_Equity"
    rows[7]["Amount"] = "12,5"
    rows[7]["AmountUSD"] = ""
    data = crif_bytes(rows, tmp_path, "book-7.csv")
    r = post_crif(service, "bank-a.user", "book-7.csv", data, version="2.6")
    assert r.status_code == 201, r.text
    got = r.json()
    cli = simm_of_crif(tmp_path / "book-7.csv", version="2.6")
    expected = [str(f).replace(str(tmp_path / "book-7.csv"), "book-7.csv") for f in cli.failures]
    assert [x["message"] for x in got["rejected"]] == expected
    assert expected[0].startswith("book-7.csv:5: Bucket: bucket '99' is outside the buckets")
    assert got["rejected"][1]["line"] == 9
    assert got["rejected"][1]["field"] == "Amount"
    assert got["rejected_lines"] == 2
    assert got["rows"] == 48
    assert got["portfolios"][0]["collect_im"] == cli.report.results[0].im


def _refused(service: Service, r: Any, *, field: str | None, starts: str) -> Blob:
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert (error["code"], error["field"]) == ("invalid", field)
    assert error["reason"].startswith(starts), error["reason"]
    kept = blob(service, r.headers["x-upload-id"])
    assert kept.kind == "crif-rejected"
    assert json.loads(kept.detail)["error"]["reason"] == error["reason"]
    return kept


def test_a_crif_with_no_valid_row_is_refused_with_the_first_row_named_and_kept(
    service: Service, tmp_path: Path
) -> None:
    rows = generate(CrifSpec(rows=4, portfolios=1, seed=2))
    for row in rows:
        row["RiskType"] = "Risk_Nonsense"
    data = crif_bytes(rows, tmp_path, "bad.csv")
    r = post_crif(service, "bank-a.user", "bad.csv", data, version="2.6")
    cli = simm_of_crif(tmp_path / "bad.csv", version="2.6")
    first = str(cli.failures[0]).replace(str(tmp_path / "bad.csv"), "bad.csv")
    assert first.startswith("bad.csv:2: RiskType: unknown risk type 'Risk_Nonsense'")
    kept = _refused(service, r, field="RiskType", starts=first)
    assert "4 line(s) rejected" in r.json()["error"]["reason"]
    keys = service.app.state.ctx.secrets.data_keys
    # encrypted at rest: the plaintext is not in the row, the right context opens it, a
    # wrong one (another blob's id, or another kind) does not
    assert b"Risk_Nonsense" not in kept.content
    assert data[:40] not in kept.content
    assert decrypt(keys, kept.content, context=context_of(kept.kind, kept.id)) == data
    for wrong in (context_of("crif-upload", kept.id), context_of(kept.kind, "CRIF-other")):
        with pytest.raises(DecryptionError, match="authentication failed"):
            decrypt(keys, kept.content, context=wrong)
    entries = service.app.state.ctx.audit.entries(action="simm.upload")
    assert any(e.subject == kept.id and e.outcome == "rejected" for e in entries)


@pytest.mark.parametrize(
    ("data", "field", "starts"),
    [
        (b"", "file", "empty.csv: the file is empty"),
        (b"hello,world\n1,2\n", "RiskType", "empty.csv: RiskType: column is missing"),
        ("RiskType,Qualifier\n".encode("utf-16"), "RiskType", "empty.csv: RiskType"),
        (bytes(range(256)) * 8, "RiskType", "empty.csv: RiskType: column is missing"),
    ],
    ids=["empty", "not-a-crif", "utf-16", "binary"],
)
def test_what_is_no_crif_is_refused_and_kept(
    service: Service, data: bytes, field: str, starts: str
) -> None:
    member, user = member_user(service)
    r = post_crif(service, user, "empty.csv", data)
    kept = _refused(service, r, field=field, starts=starts)
    assert kept.member == member
    assert kept.size == len(data)


def test_bad_settings_are_refused_and_the_upload_kept(service: Service) -> None:
    data = b"RiskType\n"
    r = post_crif(service, "bank-a.user", "x.csv", data, version="9.9")
    _refused(service, r, field="version", starts="unknown SIMM version '9.9'")
    r = post_crif(service, "bank-a.user", "x.csv", data, mpor=5)
    _refused(service, r, field="mpor", starts="must be 10 or 1")
    r = post_crif(service, "bank-a.user", "x.csv", data, currency="usd")
    _refused(service, r, field="currency", starts="is not an ISO currency code")


def test_an_oversized_upload_is_refused_before_it_is_read(service: Service) -> None:
    limit = service.app.state.ctx.config.max_upload
    r = post_crif(service, "bank-a.user", "big.csv", b"x" * (limit + 1))
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "too_large"


def test_a_member_uploads_for_itself_and_reads_only_its_own(
    service: Service, tmp_path: Path
) -> None:
    data = crif_bytes(generate(CrifSpec(rows=30, portfolios=1, seed=4)), tmp_path)
    member, user = member_user(service)
    second, second_user = member_user(service, 1)
    r = post_crif(service, user, "mine.csv", data, party="BANK-A")
    assert r.status_code == 403
    assert r.json()["error"]["field"] == "party"
    assert blob(service, r.headers["x-upload-id"]).member == member  # kept, as its own
    r = post_crif(service, "bank-a.user", "theirs.csv", data)
    assert r.status_code == 201
    upload_id = r.json()["id"]
    other = service.client(user)
    for path in (f"{UPLOADS}/{upload_id}", f"{UPLOADS}/{upload_id}/crif"):
        assert other.get(path).status_code == 404
    listed = other.get(UPLOADS, params={"limit": 1000}).json()["items"]
    assert upload_id not in {u["id"] for u in listed}
    assert {u["party"] for u in listed} <= {member}
    house = service.client("ops")
    assert house.get(f"{UPLOADS}/{upload_id}").json()["party"] == "BANK-A"
    assert upload_id in {
        u["id"] for u in house.get(UPLOADS, params={"limit": 1000}).json()["items"]
    }
    # a clearing-house user uploads for any party, or for none (then only the house sees it)
    r = post_crif(service, "risk.analyst", "house.csv", data)
    assert r.status_code == 201
    assert r.json()["party"] is None
    assert service.client("bank-a.user").get(f"{UPLOADS}/{r.json()['id']}").status_code == 404
    r = post_crif(service, "risk.analyst", "for-second.csv", data, party=second)
    assert service.client(second_user).get(f"{UPLOADS}/{r.json()['id']}").status_code == 200
    # an operator reads but does not upload
    assert post_crif(service, "ops", "x.csv", data).status_code == 403


def test_the_crif_is_downloaded_as_uploaded_and_the_access_audited(
    service: Service, tmp_path: Path
) -> None:
    data = crif_bytes(generate(CrifSpec(rows=20, portfolios=1, seed=5)), tmp_path)
    name = "<script>alert(1)</script> =cmd|' /C calc'!A0.csv"
    r = post_crif(service, "bank-a.user", name, data)
    assert r.status_code == 201, r.text
    got = r.json()
    assert "<" not in got["name"]
    assert "=" not in got["name"]
    assert "|" not in got["name"]
    client = service.client("bank-a.user")
    down = client.get(f"{UPLOADS}/{got['id']}/crif")
    assert down.status_code == 200
    assert down.content == data
    assert down.headers["content-disposition"] == f'attachment; filename="{got["name"]}"'
    entries = service.app.state.ctx.audit.entries(action="simm.upload.download")
    assert any(e.subject == got["id"] and e.actor == "bank-a.user" for e in entries)
    assert client.get(f"{UPLOADS}/{got['id']}").json() == got


def test_the_streams_results_are_read_in_scope(service: Service) -> None:
    mine = service.client("bank-a.user").get("/api/v1/simm/portfolios").json()
    assert mine["total"] == len(mine["items"]) > 0
    assert {p["party"] for p in mine["items"]} == {"BANK-A"}
    every = service.client("ops").get("/api/v1/simm/portfolios").json()
    assert {p["party"] for p in every["items"]} > {"BANK-A"}
    member, user = member_user(service)
    theirs = service.client(user).get("/api/v1/simm/portfolios").json()["items"]
    assert {p["party"] for p in theirs} <= {member}  # its own uploads at most, never BANK-A's
    first = mine["items"][0]
    tree = first["tree"]
    assert [c["name"] for c in tree["children"]] == ["collect", "post"]
    assert tree["children"][0]["amount"] == first["collect_im"]
    simm = tree["children"][0]["children"][0]
    assert simm["level"] == "model"
    assert simm["children"][0]["level"] == "product_class"


def test_a_portfolios_history_holds_the_stream_and_the_uploads(
    service: Service, tmp_path: Path
) -> None:
    stream = service.client("bank-a.user").get("/api/v1/simm/portfolios").json()["items"][0]
    portfolio = stream["portfolio"]
    url = f"/api/v1/simm/portfolios/{portfolio}/history"
    before = service.client("bank-a.user").get(url).json()
    assert before["total"] >= 1
    assert "stream" in {h["source"] for h in before["items"]}  # uploads may precede this test
    rows = generate(CrifSpec(rows=40, portfolios=1, seed=6))
    for row in rows:
        row["PortfolioID"] = portfolio
    r = post_crif(service, "bank-a.user", "again.csv", crif_bytes(rows, tmp_path))
    assert r.status_code == 201
    after = service.client("bank-a.user").get(url).json()
    assert after["total"] == before["total"] + 1
    last = after["items"][-1]
    assert (last["source"], last["upload_id"]) == ("upload", r.json()["id"])
    assert last["collect_im"] == r.json()["portfolios"][0]["collect_im"]
    # another member sees neither the stream's nor the upload
    _, user = member_user(service)
    assert service.client(user).get(url).status_code == 404
    assert service.client(user).get("/api/v1/simm/portfolios/no-such/history").status_code == 404


def test_history_downloads_as_csv_with_formulas_neutralised(
    service: Service, tmp_path: Path
) -> None:
    portfolio = '=HYPERLINK("http://x")'
    rows = generate(CrifSpec(rows=20, portfolios=1, seed=8))
    for row in rows:
        row["PortfolioID"] = portfolio
    r = post_crif(service, "bank-a.user", "evil.csv", crif_bytes(rows, tmp_path))
    assert r.status_code == 201, r.text
    client = service.client("bank-a.user")
    down = client.get(f"/api/v1/simm/portfolios/{portfolio}/history", params={"format": "csv"})
    assert down.status_code == 200
    table = list(csv.reader(io.StringIO(down.text)))
    assert table[0][:2] == ["source", "portfolio"]
    assert table[1][1] == "'" + portfolio
