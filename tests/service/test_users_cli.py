"""``marginflow users`` on the service's store: a user added from the shell signs in to the
API with the password printed once; reset, disable and enable take effect at once; every
change is in the audit trail."""

from __future__ import annotations

import subprocess
import sys

from tests.service.conftest import Service

EXE = [sys.executable, "-m", "marginflow", "users"]


def _run(service: Service, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*EXE, *args, "--dir", str(service.directory)],
        capture_output=True,
        text=True,
        check=False,
    )


def _token(service: Service, username: str, password: str) -> int:
    r = service.client().post(
        "/api/v1/auth/token", json={"username": username, "password": password}
    )
    return r.status_code


def test_a_user_added_from_the_shell_signs_in_until_disabled(service: Service) -> None:
    added = _run(service, "add", "cli.trader", "--roles", "member-user", "--member", "M001")
    assert added.returncode == 0, added.stderr
    username, password = added.stdout.strip().split("\t")
    assert username == "cli.trader"
    assert _token(service, username, password) == 200
    reset = _run(service, "reset-password", "cli.trader")
    new = reset.stdout.strip().split("\t")[1]
    assert _token(service, username, password) == 401
    assert _token(service, username, new) == 200
    assert _run(service, "disable", "cli.trader").returncode == 0
    service.app.state.users._rows.clear()  # the two-second cache of user rows
    assert _token(service, username, new) == 401
    listed = _run(service, "list", "--json")
    assert '"state": "disabled"' in listed.stdout
    actions = [e.action for e in service.app.state.ctx.audit.entries() if e.subject == "cli.trader"]
    assert actions[:3] == ["user.created", "user.reset-password", "user.disable"]


def test_bad_input_is_one_line(service: Service) -> None:
    for args in (
        ("add", "Bad Name", "--roles", "member-user"),
        ("add", "someone", "--roles", "wizard"),
        ("add", "someone", "--roles", "risk-analyst", "--member", "M001"),
        ("add", "someone", "--roles", "member-user"),
        ("reset-password", "nobody"),
    ):
        r = _run(service, *args)
        assert r.returncode == 2, args
        assert r.stderr.count("\n") == 1, r.stderr
        assert "Traceback" not in r.stderr
