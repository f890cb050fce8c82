"""The CLI run in the test process, as a user would type it.

Typer's own test runner rebuilds the whole click command tree from every command function's
signature on each call (about 0.1 s, most of a small command's run: minutes over the
hostile corpus). Here the tree is built once and each call gets the same isolation (its own
standard streams, input and environment) and the same :class:`~typer.testing.Result`.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from functools import cache
from os import PathLike

import click
import typer.main
from typer.testing import CliRunner, Result

from marginflow.cli.app import _register_commands, app


@cache
def _command() -> click.Command:
    _register_commands()
    return typer.main.get_command(app)


def invoke(
    args: Sequence[str | PathLike[str]],
    *,
    input: str | bytes | None = None,
    env: Mapping[str, str | None] | None = None,
    catch_exceptions: bool = True,
) -> Result:
    """``marginflow ARGS`` in this process. Its exit status is ``exit_code``; an exception
    other than the exit is caught into ``exception`` (status 1) unless ``catch_exceptions``
    is False, when it propagates (a test then fails on a stack trace a user would see)."""
    runner = CliRunner()
    exception: BaseException | None = None
    code = 0
    with runner.isolation(input=input, env=env) as (out, err, mixed):
        try:
            _command().main(args=[str(a) for a in args], prog_name="marginflow")
        except SystemExit as stop:
            status = stop.code
            if status is None:
                code = 0
            elif isinstance(status, int):
                code = status
            else:  # sys.exit("message"): printed, status 1, as the interpreter does
                sys.stdout.write(f"{status}\n")
                code = 1
            exception = stop if code else None
        except Exception as exc:
            if not catch_exceptions:
                raise
            exception, code = exc, 1
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
        stdout, stderr, output = out.getvalue(), err.getvalue(), mixed.getvalue()
    return Result(runner, stdout, stderr, output, None, code, exception)
