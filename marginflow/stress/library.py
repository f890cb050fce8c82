"""The built-in stress sets, one file per version in ``marginflow/stress/sets/<name>/``.

A set's version is data, not code: ``historical`` version 1 is the file
``sets/historical/1.toml``, whatever the code that made it does today. A new version (a
change of the method or of the ``arch`` data) is a new file and a test run, as a SIMM
calibration is (``marginflow/simm/params``). The builders (:mod:`.historical`) remake the
latest version; ``tests/stress/test_library.py`` checks that they still give each stored
file's content, so a change that would move a stored set is seen, not shipped under the
old version. To add a version, see ``sets/README.md``.
"""

from __future__ import annotations

import re
from pathlib import Path

from marginflow.core.errors import ConfigurationError
from marginflow.stress.scenarios import StressSet, load_stress_set

SETS_DIR = Path(__file__).resolve().parent / "sets"
_NUMERIC = re.compile(r"\d+(\.\d+)*")


def builtin_versions() -> dict[str, tuple[str, ...]]:
    """Each built-in set's name -> its versions, oldest first (numeric dotted versions)."""
    out: dict[str, tuple[str, ...]] = {}
    for folder in sorted(p for p in SETS_DIR.iterdir() if p.is_dir()):
        versions = [p.stem for p in folder.glob("*.toml") if _NUMERIC.fullmatch(p.stem)]
        if versions:
            out[folder.name] = tuple(sorted(versions, key=_version_key))
    return out


def builtin_set(name: str, version: str | None = None) -> StressSet:
    """The built-in set ``name`` at ``version`` (default its latest).

    Raises :class:`ConfigurationError` naming the sets and versions there are.
    """
    versions = builtin_versions()
    if name not in versions:
        known = ", ".join(versions) or "(none)"
        raise ConfigurationError(f"no built-in stress set {name!r}; there are: {known}")
    chosen = version or versions[name][-1]
    if chosen not in versions[name]:
        raise ConfigurationError(
            f"stress set {name!r} has no version {chosen!r}; there are: {', '.join(versions[name])}"
        )
    stress = load_stress_set(SETS_DIR / name / f"{chosen}.toml")
    if (stress.name, stress.version) != (name, chosen):
        raise ConfigurationError(
            f"sets/{name}/{chosen}.toml holds {stress.name!r} version {stress.version!r}"
        )
    return stress


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split("."))
