"""Fixtures for the end-to-end tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.ci import require_claude_code
from tests.fakes.anthropic import FakeAnthropic


@pytest.fixture(scope="session")
def claude_code() -> Path:
    """The real Claude Code CLI; its absence skips the test, and fails it under CI."""
    return require_claude_code()


@pytest.fixture
async def upstream() -> AsyncIterator[FakeAnthropic]:
    """The strict fake Anthropic API for one test (a module may override it with its own)."""
    async with FakeAnthropic() as fake:
        yield fake


@pytest.fixture
async def backup() -> AsyncIterator[FakeAnthropic]:
    """A second fake Anthropic API, answering with its own text: where a route falls back to."""
    async with FakeAnthropic(text="Served by the backup provider.") as fake:
        yield fake
