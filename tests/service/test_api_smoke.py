"""The API over a streamed day: a member reads its own accounts and margins, the clearing
house reads every member's, and nothing answers without a sign-in."""

from __future__ import annotations

from tests.service.conftest import Service


def test_nothing_answers_without_a_sign_in(service: Service) -> None:
    r = service.client().get("/api/v1/accounts")
    assert r.status_code == 401
    error = r.json()["error"]
    assert error["code"] == "unauthenticated"
    assert error["request_id"] == r.headers["x-request-id"]


def test_a_member_reads_its_own_accounts_only(service: Service) -> None:
    first, second = service.members[:2]
    client = service.client(f"{first.lower()}.user")
    page = client.get("/api/v1/accounts", params={"limit": 1000}).json()
    assert page["total"] == len(page["items"]) > 0
    assert {a["member"] for a in page["items"]} == {first}
    other = service.client(f"{second.lower()}.user")
    theirs = other.get("/api/v1/accounts").json()["items"][0]["account"]
    assert client.get(f"/api/v1/accounts/{theirs}").status_code == 404
    assert client.get("/api/v1/margins", params={"account": theirs}).status_code == 404
    assert client.get(f"/api/v1/members/{second}").status_code == 404
    assert client.get("/api/v1/firm").status_code == 403


def test_the_clearing_house_reads_every_member_and_the_firm(service: Service) -> None:
    client = service.client("ops")
    firm = client.get("/api/v1/firm").json()
    assert {m["member"] for m in firm["members"]} == set(service.members)
    assert abs(firm["margin"] - sum(m["margin"] for m in firm["members"])) < 1e-6 * firm["margin"]
    history = client.get("/api/v1/margins", params={"limit": 5, "newest_first": True}).json()
    assert history["total"] > len(history["items"]) == 5


def test_instruments_are_reference_data_for_everyone(service: Service) -> None:
    client = service.client("m001.user")
    page = client.get("/api/v1/instruments", params={"limit": 5}).json()
    assert page["total"] >= 80
    first = page["items"][0]
    same = client.get("/api/v1/instruments", params={"underlying": first["underlying"]}).json()
    assert {i["underlying"] for i in same["items"]} == {first["underlying"]}


def test_a_house_read_of_a_members_positions_is_audited(service: Service) -> None:
    account = service.client("m001.user").get("/api/v1/accounts").json()["items"][0]["account"]
    audit = service.app.state.ctx.audit
    before = audit.count(action="data.access")
    assert service.client("m001.user").get(f"/api/v1/accounts/{account}/positions").is_success
    assert audit.count(action="data.access") == before  # a member reading its own: not
    assert service.client("ops").get(f"/api/v1/accounts/{account}/positions").is_success
    entry = audit.entries(action="data.access", descending=True, limit=1)[0]
    assert (entry.actor, entry.subject, entry.member) == ("ops", account, "M001")
    assert entry.security


def test_a_retried_proposal_is_one_proposal_and_one_audit_entry(service: Service) -> None:
    client = service.client("risk.analyst")
    body = {"parameter": "confidence", "value": 0.991, "reason": "retry test"}
    headers = {"Idempotency-Key": "retry-test-1"}
    first = client.post("/api/v1/parameters/proposals", json=body, headers=headers)
    again = client.post("/api/v1/parameters/proposals", json=body, headers=headers)
    assert first.status_code == again.status_code == 201
    assert first.json()["id"] == again.json()["id"]
    audit = service.app.state.ctx.audit
    entries = [
        e for e in audit.entries(action="parameters.proposed") if e.subject == first.json()["id"]
    ]
    assert len(entries) == 1


def test_a_margin_says_which_market_its_batch_covered(service: Service) -> None:
    # an auditor can tell which market a margin reflects: the market-topic offsets its
    # micro-batch read (market_from .. market_offset) and the ticks it coalesced into moves
    items = (
        service.client("ops")
        .get("/api/v1/margins", params={"limit": 1000, "newest_first": True})
        .json()["items"]
    )
    covered = [m for m in items if m["market_from"] is not None]
    assert covered, "no streamed margin carries its batch's market range"
    for m in covered:
        assert 0 <= m["market_from"] <= m["market_offset"] + 1
        assert m["market_ticks"] >= 0
        assert 0 <= m["market_moves"] <= m["market_ticks"]
