"""``marginflow audit verify`` and ``show`` through the console script, on SQLite and
PostgreSQL, against an attacker who holds the database with DDL rights but not the audit
key: they drop the append-only triggers, then change a field, remove an entry, swap two
entries, cut the newest entries off or re-seal with a plain SHA-256. Each is found and the
entry named; an intact trail passes and moves the anchor."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa

from marginflow.service.secrets_store import load_or_create
from marginflow.store import Database
from marginflow.store.audit_log import AuditLog
from tests.postgres import postgres_or_skip

EXE = shutil.which("marginflow")
ENTRIES = 8


def run(*args: str) -> subprocess.CompletedProcess[str]:
    assert EXE, "the marginflow console script is not installed (pip install -e .)"
    return subprocess.run([EXE, *args], capture_output=True, text=True, timeout=600, check=False)


@dataclass
class Trail:
    db: Database
    url: str
    prefix: str
    platform: Path
    log: AuditLog

    @property
    def table(self) -> str:
        return self.log.table.name

    def cli(self, command: str, *extra: str) -> subprocess.CompletedProcess[str]:
        where = ["--dir", str(self.platform), "--db", self.url, "--db-prefix", self.prefix]
        return run("audit", command, *where, *extra)

    def verify(self, *extra: str) -> tuple[int, dict[str, object]]:
        res = self.cli("verify", "--json", *extra)
        assert res.returncode in (0, 1), res.stderr
        return res.returncode, json.loads(res.stdout)

    def sql(self, *statements: str) -> None:
        with self.db.transaction() as conn:
            for statement in statements:
                conn.execute(sa.text(statement.format(t=self.table)))

    def drop_triggers(self) -> None:
        """What an attacker with DDL rights does first."""
        if self.db.dialect == "sqlite":
            self.sql("DROP TRIGGER {t}_no_update", "DROP TRIGGER {t}_no_delete")
        else:
            self.sql("DROP TRIGGER {t}_append_only ON {t}")


@pytest.fixture(params=["sqlite", "postgresql"])
def trail(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Trail]:
    platform = tmp_path / "platform"
    url = f"sqlite:///{platform / 'margins.db'}" if request.param == "sqlite" else None
    platform.mkdir()
    url = url or postgres_or_skip()
    prefix = f"t{uuid.uuid4().hex[:8]}_"
    secrets, _ = load_or_create(platform / "service")
    db = Database(url, prefix=prefix)
    log = AuditLog(db, secrets.audit_key)
    for i in range(ENTRIES):
        log.append(
            time=1_700_000_000_000_000_000 + i * 1_000_000_000,
            actor=f"user{i}",
            action="parameters.approved" if i % 2 else "auth.login",
            subject=f"RP-{i}",
            member="M001" if i % 3 == 0 else None,
            security=True,
            detail={"i": i, "note": "<script>[bold]x"},
        )
    try:
        yield Trail(db, url, prefix, platform, log)
    finally:
        db.drop()
        db.close()


def _problems(doc: dict[str, object]) -> dict[int, str]:
    problems = doc["problems"]
    assert isinstance(problems, list)
    out: dict[int, str] = {}
    for p in problems:
        out[p["seq"]] = out.get(p["seq"], "") + p["reason"] + "; "
    return out


def test_an_intact_trail_passes_and_moves_the_anchor(trail: Trail) -> None:
    anchor = trail.platform / "audit-anchor.json"
    code, doc = trail.verify("--anchor", str(anchor))
    assert code == 0
    assert doc["ok"] is True
    assert doc["entries"] == ENTRIES
    kept = json.loads(anchor.read_text())
    assert kept["seq"] == ENTRIES
    assert kept["hash"] == trail.log.entries()[-1].hash
    trail.log.append(time=1, actor="late", action="auth.login")
    code, doc = trail.verify("--anchor", str(anchor))
    assert code == 0
    assert doc["anchor"] == {"seq": ENTRIES, "hash": kept["hash"]}
    assert json.loads(anchor.read_text())["seq"] == ENTRIES + 1
    human = trail.cli("verify")
    assert human.returncode == 0
    assert f"intact: {ENTRIES + 1} entries" in human.stdout


def test_a_changed_field_is_named(trail: Trail) -> None:
    trail.drop_triggers()
    trail.sql("UPDATE {t} SET outcome = 'ok', actor = 'mallory' WHERE seq = 4")
    code, doc = trail.verify()
    assert code == 1
    assert doc["ok"] is False
    assert list(_problems(doc)) == [4]
    assert "altered" in _problems(doc)[4]


def test_a_removed_entry_is_named(trail: Trail) -> None:
    trail.drop_triggers()
    trail.sql("DELETE FROM {t} WHERE seq = 5")
    code, doc = trail.verify()
    assert code == 1
    assert list(_problems(doc)) == [6]
    assert "5 before it were removed" in _problems(doc)[6]


def test_two_swapped_entries_are_named(trail: Trail) -> None:
    trail.drop_triggers()
    trail.sql(
        "UPDATE {t} SET seq = -3 WHERE seq = 3",
        "UPDATE {t} SET seq = 3 WHERE seq = 4",
        "UPDATE {t} SET seq = 4 WHERE seq = -3",
    )
    code, doc = trail.verify()
    assert code == 1
    found = _problems(doc)
    assert set(found) == {3, 4, 5}  # 5 is intact but no longer follows what holds seq 4
    assert "altered" in found[3]
    assert "altered" in found[4]
    assert "does not follow entry 4" in found[5]


def test_the_newest_entries_cut_off_are_named_against_the_anchor(trail: Trail) -> None:
    anchor = trail.platform / "anchor.json"
    assert trail.verify("--anchor", str(anchor))[0] == 0
    trail.drop_triggers()
    trail.sql(f"DELETE FROM {{t}} WHERE seq > {ENTRIES - 2}")
    code, doc = trail.verify("--anchor", str(anchor))
    assert code == 1
    assert list(_problems(doc)) == [ENTRIES]
    assert f"the log ends at entry {ENTRIES - 2}" in _problems(doc)[ENTRIES]
    assert json.loads(anchor.read_text())["seq"] == ENTRIES, "a failed check moved the anchor"
    human = trail.cli("verify", "--anchor", str(anchor))
    assert human.returncode == 1
    assert "BROKEN" in human.stdout
    assert f"the log ends at entry {ENTRIES - 2}" in human.stdout


def test_a_chain_resealed_without_the_key_is_named(trail: Trail) -> None:
    """The attacker changes entry 4 and recomputes every seal from there on with SHA-256,
    as a plain hash chain would let them."""
    trail.drop_triggers()
    trail.sql("UPDATE {t} SET actor = 'mallory' WHERE seq = 4")
    prev = trail.log.entries()[2].hash
    for e in trail.log.entries(after_seq=3):
        fields = [
            e.seq,
            e.time,
            e.actor,
            e.action,
            e.outcome,
            e.subject,
            e.member,
            e.security,
            e.request_id,
            e.client,
            e.detail,
            prev,
        ]
        forged = hashlib.sha256(json.dumps(fields, separators=(",", ":")).encode()).hexdigest()
        trail.sql(f"UPDATE {{t}} SET prev_hash = '{prev}', hash = '{forged}' WHERE seq = {e.seq}")
        prev = forged
    code, doc = trail.verify()
    assert code == 1
    found = _problems(doc)
    assert set(found) == set(range(4, ENTRIES + 1))
    assert all("altered" in why for why in found.values())


def test_bad_input_exits_2_and_creates_nothing(trail: Trail, tmp_path: Path) -> None:
    bad = tmp_path / "bad-anchor.json"
    bad.write_text("{not json")
    res = trail.cli("verify", "--anchor", str(bad))
    assert res.returncode == 2
    assert "--anchor" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    empty = tmp_path / "empty"
    res = run("audit", "verify", "--dir", str(empty), "--db", trail.url, "--db-prefix", "x_")
    assert res.returncode == 2
    assert "audit.key: does not exist" in res.stderr
    assert not empty.exists(), "the verifier made a service directory"


def test_show_lists_the_newest_entries_literally(trail: Trail) -> None:
    res = trail.cli("show", "--limit", "3", "--json")
    assert res.returncode == 0, res.stderr
    rows = json.loads(res.stdout)
    assert [r["seq"] for r in rows] == [ENTRIES, ENTRIES - 1, ENTRIES - 2]
    assert rows[0]["detail"]["note"] == "<script>[bold]x"
    trail.log.append(time=2, actor="[red]eve[/red]", action="auth.login", subject="<b>x</b>")
    res = trail.cli("show", "--limit", "1")
    assert res.returncode == 0
    assert "[red]eve[/red]" in res.stdout
    assert "<b>x</b>" in res.stdout
