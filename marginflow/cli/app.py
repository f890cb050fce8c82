"""The ``marginflow`` command: a Typer app with one module per command group.

Each command module defines ``register(app)``; this file lists them in one place.

Exit statuses: 0 done; 1 a check failed (``reproduce``, ``audit verify``); 2 bad input or
an environment fault (a bad option, a rejected row, a file or database that cannot be read
or written: ``error: <path>: <reason>``); 3 a lag alert; 70 a bug of ours (``error: internal
error (...)``). Never a traceback, unless asked for with ``--debug`` or ``MARGINFLOW_DEBUG=1``.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Annotated, NoReturn

import typer

from marginflow.cli.output import EXIT_BAD_INPUT, EXIT_INTERNAL, error_line
from marginflow.core.errors import MSG_DATABASE_ERROR, MSG_INTERNAL_ERROR, MSG_OS_ERROR
from marginflow.core.memory import keep_freed_memory

app = typer.Typer(
    name="marginflow",
    help="Near-real-time initial margin: clearing-house risk and ISDA SIMM.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


_debug = os.environ.get("MARGINFLOW_DEBUG", "") not in ("", "0")


@app.callback()
def _options(
    debug: Annotated[
        bool, typer.Option("--debug", help="show the traceback of an unexpected error")
    ] = False,
) -> None:
    global _debug
    _debug = _debug or debug


def _register_commands() -> None:
    from marginflow.cli import (
        audit_cmd,
        backtest_cmd,
        demo_cmd,
        keys_cmd,
        log_cmd,
        margin_cmd,
        platform_cmd,
        price_cmd,
        publish_cmd,
        serve_cmd,
        simm_cmd,
        stream_cmd,
        stress_cmd,
        trace_cmd,
        users_cmd,
    )

    for module in (
        platform_cmd,
        serve_cmd,
        demo_cmd,
        price_cmd,
        margin_cmd,
        stress_cmd,
        backtest_cmd,
        simm_cmd,
        stream_cmd,
        publish_cmd,
        trace_cmd,
        users_cmd,
        audit_cmd,
        keys_cmd,
        log_cmd,
    ):
        module.register(app)


# typer's usage errors (a bad option value, a missing argument) and its abort, without
# reaching into its vendored click: the classes are found by name on a public one's bases
_USAGE_ERROR: type[Exception] = next(
    c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException"
)


def main() -> None:
    """Entry point of the console script: whatever escapes a command is one line on
    standard error (the exit statuses in the module docstring)."""
    keep_freed_memory()
    try:
        _register_commands()
        status = app(standalone_mode=False)  # errors come back here, to be put in one line
    except _USAGE_ERROR as exc:
        text = usage_error_text(exc)
        if not text:  # no arguments at all: the help was the answer
            raise SystemExit(getattr(exc, "exit_code", EXIT_BAD_INPUT)) from None
        _exit(text, getattr(exc, "exit_code", EXIT_BAD_INPUT))
    except BrokenPipeError:  # a reader such as `head` stopped early: nothing more to say
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115  # the interpreter flushes it at exit
        raise SystemExit(1) from None
    except OSError as exc:  # a disk full, a read-only file, a folder for a file, ...
        if _debug:
            raise
        _exit(os_error_text(exc), EXIT_BAD_INPUT)
    except Exception as exc:  # a bug: one line, the traceback on request
        if _debug:
            raise
        database = database_error_text(exc)
        if database is not None:  # the store cannot be reached, read or written
            _exit(database, EXIT_BAD_INPUT)
        if type(exc).__name__ == "Abort":  # end of input at a prompt
            _exit("aborted", 1)
        first = (str(exc).strip().splitlines() or [""])[0]
        what = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
        _exit(MSG_INTERNAL_ERROR.format(what=what), EXIT_INTERNAL)
    raise SystemExit(status if isinstance(status, int) else 0)


def database_error_text(exc: Exception) -> str | None:
    """``the database <url>: <reason>`` if ``exc`` is the database's operational fault (a
    read-only file, a full disk, no write rights, no server), else None."""
    sa = sys.modules.get("sqlalchemy")
    if sa is None or not isinstance(exc, sa.exc.DBAPIError):
        return None
    denied = getattr(getattr(exc, "orig", None), "sqlstate", None) == "42501"  # no privilege
    if not denied and not isinstance(exc, sa.exc.OperationalError | sa.exc.InterfaceError):
        return None
    from marginflow.store.database import database_named

    reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
    url = database_named(exc) or "(unnamed)"
    return MSG_DATABASE_ERROR.format(url=url, reason=reason)


def usage_error_text(exc: Exception) -> str:
    """A usage error in one line, with where to read the command's options."""
    format_message = getattr(exc, "format_message", None)
    message = " ".join(str(format_message() if callable(format_message) else exc).split())
    ctx = getattr(exc, "ctx", None)
    where = f" (see {ctx.command_path} --help)" if ctx is not None else ""
    return message + where if message else ""


def os_error_text(exc: OSError) -> str:
    """``path: reason`` for an operating-system error (``reason`` alone without a path)."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    path = exc.filename if exc.filename is not None else exc.filename2
    return reason if path is None else MSG_OS_ERROR.format(path=os.fsdecode(path), reason=reason)


def _exit(message: str, status: int) -> NoReturn:
    with contextlib.suppress(OSError):  # stderr itself is gone: the status still says it
        error_line(message)
    with contextlib.suppress(OSError):  # a full or broken stdout must not fail again at exit
        sys.stdout.flush()
    sys.stdout = open(os.devnull, "w")  # noqa: SIM115  # the interpreter flushes it at exit
    raise SystemExit(status)
