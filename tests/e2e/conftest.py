"""Fixtures for the end-to-end tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.ci import require_claude_code


@pytest.fixture(scope="session")
def claude_code() -> Path:
    """The real Claude Code CLI; its absence skips the test, and fails it under CI."""
    return require_claude_code()
