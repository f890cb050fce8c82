"""Locate the shared reference data (``../shared/reference`` beside the repository, or the
folder named by ``MARGINFLOW_REFERENCE_DIR``).

A test that needs it calls :func:`reference_path`. On a machine without it the test skips
with a message naming what is missing; under CI (``CI=true``) a missing reference fails.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


def reference_dir() -> Path:
    env = os.environ.get("MARGINFLOW_REFERENCE_DIR")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "reference"


def reference_path(relative: str) -> Path:
    """Path of ``relative`` under the reference folder; skip (or fail under CI) if absent."""
    path = reference_dir() / relative
    if not path.exists():
        message = f"reference data missing: {path} (set MARGINFLOW_REFERENCE_DIR)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message)
        pytest.skip(message)
    return path
