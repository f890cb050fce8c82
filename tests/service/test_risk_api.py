"""The stress and back-test API over the demo day's stored book: who may call it, what a
member's user is shown (its own member's rows only), bad requests refused in one line, and
answers equal to the app functions' on the same book (``current_book`` then ``run_stress``
or ``backtest_book``, computed here independently of the service)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from marginflow.app.backtest import backtest_book
from marginflow.app.current_book import current_book
from marginflow.app.stress import run_stress
from marginflow.stress.library import builtin_set
from tests.service.conftest import Service

BACKTEST = {"days": 20, "models": ["es", "span"], "confidences": [0.99, 0.975]}


@pytest.fixture(scope="module")
def expected_stress(service: Service) -> dict[str, Any]:
    book = current_book(service.app.state.ctx.db)
    return run_stress(book.loaded, builtin_set("published"), settings=book.settings).to_json()


@pytest.fixture(scope="module")
def expected_backtest(service: Service) -> dict[str, Any]:
    db = service.app.state.ctx.db
    book = current_book(db)
    bt = backtest_book(
        book.loaded,
        settings=book.settings,
        models=("es", "span"),
        confidences=(0.99, 0.975),
        days=20,
        mode="auto",
        database=db,
    )
    return bt.to_json()


def post(service: Service, who: str | None, path: str, body: dict[str, Any]) -> Any:
    return service.client(who).post(f"/api/v1/{path}", json=body)


@pytest.mark.parametrize(
    ("who", "status"),
    [
        (None, 401),
        ("m001.user", 200),
        ("m001.admin", 200),
        ("risk.analyst", 200),
        ("risk.approver", 200),
        ("ops", 403),
        ("auditor", 403),
        ("admin", 403),
    ],
)
def test_who_may_stress_and_back_test(service: Service, who: str | None, status: int) -> None:
    assert post(service, who, "stress", {"set": "published"}).status_code == status
    assert post(service, who, "backtest", BACKTEST).status_code == status


@pytest.mark.parametrize(
    ("who", "status"),
    [(None, 401), ("m001.user", 403), ("risk.analyst", 200), ("risk.approver", 200), ("ops", 403)],
)
def test_the_reports_go_to_the_risk_roles(service: Service, who: str | None, status: int) -> None:
    client = service.client(who)
    for path in ("stress/report?set=published", "backtest/report?days=20&models=es&models=span"):
        r = client.get(f"/api/v1/{path}")
        assert r.status_code == status, (path, r.text[:200])
        if status == 200:
            assert r.headers["content-type"].startswith("text/html")
            assert r.headers["content-disposition"].startswith('attachment; filename="')
            assert r.text.count("<svg") >= 2
            assert "<script" not in r.text


def test_the_clearing_house_sees_what_run_stress_computes(
    service: Service, expected_stress: dict[str, Any]
) -> None:
    d = post(service, "risk.analyst", "stress", {"set": "published", "top": 200}).json()
    want = expected_stress
    assert d["run"]["scope"] == "firm"
    assert d["members"] == want["members"]
    assert d["accounts"] == want["accounts"]
    assert d["firm"] == want["firm"]
    assert d["cover1"] == want["cover1"]
    assert d["cover2"] == want["cover2"]
    assert d["scenarios"] == want["scenarios"]
    assert d["reverse_stress"] == want["reverse_stress"]
    assert d["default_fund"]["contributions"] == want["default_fund"]["contributions"]
    assert [s["fingerprint"] for s in d["stress_sets"]] == [builtin_set("published").fingerprint]
    # the distributions: the worst accounts' P&L, the tail beyond their own margin
    worst = d["distributions"][0]
    assert worst["account"] == want["accounts"][0]["account"]
    assert worst["worst_loss"] == want["accounts"][0]["gross_loss"]
    assert worst["worst_scenario"] == want["accounts"][0]["scenario"]
    assert [s["beyond_margin"] for s in worst["scenarios"]] == [
        -s["pnl"] > worst["margin"] for s in worst["scenarios"]
    ]
    assert max(-s["pnl"] for s in worst["scenarios"]) == worst["worst_loss"]


def test_a_member_sees_its_own_rows_only(service: Service, expected_stress: dict[str, Any]) -> None:
    mine, other = service.members[0], service.members[1]
    r = post(service, "m001.user", "stress", {"set": "published", "top": 200})
    d = r.json()
    assert d["run"]["scope"] == "member"
    assert [m["member"] for m in d["members"]] == [mine]
    assert d["members"][0] == next(m for m in expected_stress["members"] if m["member"] == mine)
    assert d["accounts"] == [a for a in expected_stress["accounts"] if a["member"] == mine]
    assert {x["member"] for x in d["distributions"]} == {mine}
    assert {x["member"] for x in d["reverse_stress"]} == {mine}
    assert d["default_fund"]["contributions"].keys() == {mine}
    assert d["default_fund"]["fund"] is None
    assert d["firm"] is d["cover1"] is d["cover2"] is d["scenarios"] is None
    # the whole book's counts and positions fingerprint would show other members' trading
    assert {k for k, v in d["book"].items() if v is not None} == {"valuation_date"}
    others = {a["account"] for a in expected_stress["accounts"] if a["member"] != mine}
    text = r.text
    assert f'"{other}"' not in text
    assert not [a for a in others if f'"{a}"' in text]


def test_the_back_test_is_backtest_book_s_and_scoped(
    service: Service, expected_backtest: dict[str, Any]
) -> None:
    house = post(service, "risk.analyst", "backtest", BACKTEST).json()
    want = expected_backtest
    assert house["window"]["start"] == want["window"]["start"]
    assert [c["key"] for c in house["columns"]] == [c["key"] for c in want["columns"]]
    assert house["coverage"] == json.loads(json.dumps(want["coverage"]))
    firm = [s for s in house["series"] if s["level"] == "firm"]
    assert firm
    assert set(firm[0]["margins"]) == {c["key"] for c in want["columns"]}
    # breaches are the days whose loss exceeds that margin
    for s in house["series"]:
        for key, margin in s["margins"].items():
            assert s["breaches"][key] == [k for k, x in enumerate(s["loss"]) if x > margin[k]]
    mine = service.members[0]
    member = post(service, "m001.user", "backtest", BACKTEST)
    m = member.json()
    assert {(c["level"], c["member"]) for c in m["coverage"]} <= {
        ("member", mine),
        ("account", mine),
    }
    assert m["coverage"] == [
        c for c in house["coverage"] if c["level"] != "firm" and c["member"] == mine
    ]
    assert all(s["level"] != "firm" and s["member"] == mine for s in m["series"])
    assert "sqlite" not in member.text  # the store's address is not a member's business
    assert m["notes"] == []  # they count and name what the whole book's run left out
    # the member's own worst accounts, ranked among its own: not the firm's top five filtered
    own = [c for c in m["coverage"] if c["level"] == "account" and c["breaches"] > 0]
    assert {w["name"] for w in m["worst_accounts"]} <= {c["name"] for c in own}
    assert len(m["worst_accounts"]) == min(5, len({c["name"] for c in own}))


def test_a_second_read_comes_from_the_cache_and_both_are_audited(service: Service) -> None:
    first = post(service, "risk.approver", "stress", {"set": "published"}).json()
    again = post(service, "risk.approver", "stress", {"set": "published"}).json()
    assert again["run"]["cached"] is True
    assert again["run"]["computed_at"] == first["run"]["computed_at"]
    assert again["members"] == first["members"]
    entries = post_audit(service)
    runs = [e for e in entries if e["action"] == "risk.stress" and e["actor"] == "risk.approver"]
    assert len(runs) >= 2
    assert runs[-1]["detail"]["cached"] is True


def post_audit(service: Service) -> list[dict[str, Any]]:
    r = service.client("auditor").get("/api/v1/audit/entries?action=risk.stress&limit=1000")
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["items"]
    return sorted(items, key=lambda e: e["seq"])


@pytest.mark.parametrize(
    ("path", "body", "field", "reason"),
    [
        ("stress", {"set": "nope"}, "set", "historical"),
        ("stress", {"set": "historical", "version": "x"}, "version", "pattern"),
        ("stress", {"set": "historical", "version": "99"}, None, "has no version '99'"),
        ("stress", {"top": 0}, "top", "greater than or equal to 1"),
        ("stress", {"sets": "historical"}, "sets", "Extra inputs"),
        ("backtest", {"days": 5}, "days", "greater than or equal to 10"),
        ("backtest", {"confidences": [0.99] * 5}, "confidences", "at most 4"),
        ("backtest", {"models": ["var"]}, "models", "'es', 'span' or 'pm'"),
        ("backtest", {"models": []}, "models", "at least 1"),
        ("backtest", {"confidences": [1.5]}, "confidences", "less than or equal to 0.9999"),
        ("backtest", {"horizon": 0}, "horizon", "greater than or equal to 1"),
    ],
)
def test_bad_requests_are_refused_in_one_line(
    service: Service, path: str, body: dict[str, Any], field: str | None, reason: str
) -> None:
    r = post(service, "risk.analyst", path, body)
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    if field is not None:
        assert str(error["field"]).startswith(field), error
    assert reason.lower() in error["reason"].lower(), error
    assert "\n" not in error["reason"]
    assert "Traceback" not in r.text
