"""Recomputing endpoints: an account's breakdown and scenario P&L agree with the stored
margin and with the app functions the CLI uses; what-if on listed and inline series;
reproduce bit for bit; explain's steps add up."""

from __future__ import annotations

import datetime as dt

import pytest

from marginflow.app.reproduce import reproduce
from marginflow.store import Database
from tests.service.conftest import Service


@pytest.fixture(scope="module")
def account(service: Service) -> dict[str, object]:
    client = service.client("m001.user")
    items = client.get("/api/v1/accounts", params={"limit": 1000}).json()["items"]
    return max(items, key=lambda a: a["margin"])  # an account with risk


def test_the_detail_recomputes_the_stored_margin_with_its_tail(
    service: Service, account: dict[str, object]
) -> None:
    client = service.client("m001.user")
    got = client.get(f"/api/v1/accounts/{account['account']}/detail").json()
    assert got["margin"]["margin"] == account["margin"]
    shares = [s["tail_share"] for s in got["scenarios"]]
    assert sum(shares) == pytest.approx(1.0, abs=1e-12)
    tail = [s for s in got["scenarios"] if s["tail_share"] > 0]
    es = -sum(s["tail_share"] * s["pnl"] for s in tail)
    # ES is the tail-weighted loss, to float summation order
    assert es == pytest.approx(got["breakdown"]["components"]["es"], rel=1e-12)
    worst_outside = max(-s["pnl"] for s in got["scenarios"] if s["tail_share"] == 0)
    assert min(-s["pnl"] for s in tail) >= worst_outside - 1e-9
    # the contributions are Euler shares of the ES: they add up to it
    total = sum(c["amount"] for c in got["breakdown"]["contributions"])
    assert total == pytest.approx(got["breakdown"]["components"]["es"], rel=1e-9)


def test_what_if_on_a_listed_series_and_on_one_defined_inline(
    service: Service, account: dict[str, object]
) -> None:
    client = service.client("m001.user")
    name = account["account"]
    held = client.get(f"/api/v1/accounts/{name}/positions").json()["positions"]
    first = held[0]
    undo = client.post(
        f"/api/v1/accounts/{name}/what-if",
        json={
            "trades": [{"instrument": p["instrument"], "quantity": -p["quantity"]} for p in held]
        },
    ).json()
    assert undo["before"] == account["margin"]
    assert undo["after"] == 0.0
    # a put not yet listed, on the first holding's underlying, defined inline
    detail = client.get(f"/api/v1/accounts/{name}/detail").json()
    assert detail["positions"]
    underlying = first["instrument"].split(" ")[0]  # OCC-style ids: "NDX 190121P6325"
    listing = {
        "id": "WHATIF-PUT-1",
        "underlying": underlying,
        "kind": "put",
        "strike": 1.0,
        "expiry": "2030-12-20",
        "style": "european",
        "multiplier": 100,
    }
    body = {"trades": [{"instrument": "WHATIF-PUT-1", "quantity": -50}], "listings": [listing]}
    got = client.post(f"/api/v1/accounts/{name}/what-if", json=body)
    assert got.status_code == 200, got.text
    assert got.json()["before"] == account["margin"]
    unknown = client.post(
        f"/api/v1/accounts/{name}/what-if",
        json={"trades": [{"instrument": "NOPE-1", "quantity": 1}]},
    )
    assert unknown.status_code == 422
    assert unknown.json()["error"]["field"] == "trades.instrument"


def test_reproduce_over_the_api_is_the_cli_function(
    service: Service, account: dict[str, object]
) -> None:
    got = service.client("m001.user").get(f"/api/v1/accounts/{account['account']}/reproduce")
    assert got.status_code == 200, got.text
    body = got.json()
    assert body["ok"] is True
    assert body["differences"] == []
    db = Database(f"sqlite:///{service.directory / 'margins.db'}", upgrade=False)
    try:
        direct = reproduce(db, str(account["account"])).to_json()
    finally:
        db.close()
    assert body["recomputed"] == direct["recomputed"]


def test_explain_a_member_day_adds_up(service: Service) -> None:
    client = service.client("m001.user")
    member = service.members[0]
    history = client.get("/api/v1/margins", params={"member": member, "limit": 1}).json()
    assert "items" in history, history
    first = dt.datetime.fromisoformat(history["items"][0]["time"])
    got = client.get(f"/api/v1/explain/{member}", params={"from": first.isoformat()})
    assert got.status_code == 200, got.text
    body = got.json()
    assert body["kind"] == "member"
    assert body["differences"] == []
    other = service.members[1]
    assert (
        client.get(f"/api/v1/explain/{other}", params={"from": first.isoformat()}).status_code
        == 404
    )
