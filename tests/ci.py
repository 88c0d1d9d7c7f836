"""What a test needs from the machine (PostgreSQL, Redis, the real Claude Code, the Textual version
the SVG snapshots were made with): on a developer's machine its absence skips the test with the
fix in the reason; under CI it fails the test, because CI's machine has all of them and a green run
that skipped them would prove nothing.

``CI`` counts as set unless empty, ``0``, ``false`` or ``no`` (CI services export ``CI=true``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NoReturn

import pytest

ROOT = Path(__file__).resolve().parents[1]


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def unavailable(reason: str) -> NoReturn:
    """Skip with ``reason``; under CI, fail with it."""
    if in_ci():
        pytest.fail(f"CI=true, so this fails rather than skips: {reason}")
    pytest.skip(reason)


def claude_code_path() -> Path:
    """The Claude Code CLI ``make install`` puts in node_modules (``TOLLGATE_TEST_CLAUDE``
    points elsewhere, e.g. at a global install)."""
    override = os.environ.get("TOLLGATE_TEST_CLAUDE", "")
    return Path(override) if override else ROOT / "node_modules" / ".bin" / "claude"


def require_claude_code() -> Path:
    path = claude_code_path()
    if not (path.is_file() and os.access(path, os.X_OK)):
        unavailable(f"Claude Code is not installed at {path}: run `make install`")
    return path
