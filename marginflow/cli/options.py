"""The one rule for options that would do nothing: an option the user gave that the
command ignores in that combination, or that says the same thing as another option, is
refused (exit status 2, one line naming both), never dropped without a word.

"Gave" means on the command line or through the environment, whatever its value: an option
left at its default says nothing, so ``--confidence 0.99 --model span`` is refused although
0.99 is the default. Messages: :data:`marginflow.core.errors.MSG_OPTION_IGNORED` and
:data:`~marginflow.core.errors.MSG_OPTION_TWICE`.
"""

from __future__ import annotations

from collections.abc import Iterable

import typer

from marginflow.cli.output import fail
from marginflow.core.errors import MSG_OPTION_IGNORED, MSG_OPTION_TWICE

_GIVEN = ("COMMANDLINE", "ENVIRONMENT")  # click's ParameterSource names (not DEFAULT*, PROMPT)


def given(ctx: typer.Context, name: str) -> bool:
    """Whether the user gave the parameter ``name`` (its Python name) to this command."""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name in _GIVEN


def flag(ctx: typer.Context, name: str) -> str:
    """The option as the user types it: ``mc_scenarios`` is ``--mc-scenarios``."""
    for param in ctx.command.params:
        if param.name == name and param.opts:
            longest = max(param.opts, key=len)
            return longest if longest.startswith("-") else longest.upper()
    return "--" + name.replace("_", "-")


def refuse_ignored(ctx: typer.Context, names: Iterable[str], *, because: str) -> None:
    """Exit with status 2 if the user gave any of ``names``: it does not apply with
    ``because`` (the options, as typed, that make it ignored, e.g. ``--model span``)."""
    for name in names:
        if given(ctx, name):
            fail(MSG_OPTION_IGNORED.format(option=flag(ctx, name), other=because))


def refuse_twice(option: str, other: str, setting: str) -> None:
    """Exit with status 2: ``option`` and ``other`` both set ``setting``."""
    fail(MSG_OPTION_TWICE.format(option=option, other=other, setting=setting))
