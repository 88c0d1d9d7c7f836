"""Under ``CI=true`` a missing requirement fails the run instead of skipping the test.

Each case runs one real test of the suite in a child pytest with the requirement taken away
(Claude Code at a path that does not exist, Redis and PostgreSQL on a closed port, the SVG
snapshots against another Textual major) and checks the outcome: an error naming what is missing
under CI, a skip on a developer's machine.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.ci import ROOT, in_ci

pytestmark = pytest.mark.slow

CLAUDE_TEST = (
    "tests/e2e/test_claude_code.py::test_claude_code_gives_up_at_once_on_an_unknown_virtual_key"
)
SNAPSHOT_TEST = "tests/tui/test_snapshots.py::test_help"
# Another Textual major than the snapshots' (the module reads textual.__version__ at import).
OTHER_TEXTUAL = "import textual; textual.__version__ = '99.0.0'; "
CASES = {
    "claude": (CLAUDE_TEST, {"TOLLGATE_TEST_CLAUDE": "/nonexistent/claude"}, "", "Claude Code"),
    "snapshots": (SNAPSHOT_TEST, {}, OTHER_TEXTUAL, "Textual 99.0.0 is installed"),
    "redis": (
        "tests/dataplane/policy/counters/test_redis.py::test_key_layout_and_expiry",
        {"TOLLGATE_TEST_REDIS": "redis://127.0.0.1:1/0"},
        "",
        "Redis not reachable",
    ),
    "postgres": (
        "tests/controlplane/test_secrets.py::"
        "test_provider_rows_written_without_the_secret_columns_read_as_none[postgres]",
        {"TOLLGATE_TEST_PG": "postgresql://postgres@127.0.0.1:1/test"},
        "",
        "PostgreSQL not reachable",
    ),
}


def run_child(ci: str, *cases: str) -> tuple[int, str]:
    """The cases' tests in one child pytest (one start-up), their requirements taken away."""
    env = {**os.environ, "CI": ci}
    prelude = ""
    for case in cases:
        env.update(CASES[case][1])
        prelude += CASES[case][2]
    code = f"{prelude}import sys, pytest; sys.exit(pytest.main(sys.argv[1:]))"
    tests = [CASES[case][0] for case in cases]
    proc = subprocess.run(
        [sys.executable, "-c", code, *tests, "-q", "-rsE", "-p", "no:cacheprovider"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    return proc.returncode, proc.stdout + proc.stderr


def test_under_ci_a_missing_requirement_is_an_error() -> None:
    code, output = run_child("true", *CASES)
    assert code == 1, output  # pytest's "tests failed": an error in a fixture counts
    assert f"{len(CASES)} errors" in output and "skipped" not in output, output
    summary = [line for line in output.splitlines() if line.startswith("ERROR ")]
    for test_id, _, _, what in CASES.values():
        (line,) = [line for line in summary if line.startswith(f"ERROR {test_id} ")]
        assert what in line and "CI=true" in line, line


def test_elsewhere_it_is_a_skip_that_says_what_to_do() -> None:
    code, output = run_child("", "claude", "snapshots")
    assert code == 0 and "2 skipped" in output, output
    assert "run `make install`" in output and "regenerate with --snapshot-update" in output


@pytest.mark.parametrize(
    ("value", "expected"), [("true", True), ("1", True), ("", False), ("false", False)]
)
def test_what_counts_as_ci(monkeypatch: pytest.MonkeyPatch, value: str, expected: bool) -> None:
    monkeypatch.setenv("CI", value)
    assert in_ci() is expected
