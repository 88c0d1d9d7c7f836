"""The teardown check of tests/fakes/strict.py: a violation fails the test it happened in, unless
the test took it; a wider-scoped fake's earlier violations are not charged to the next test."""

from __future__ import annotations

import pytest

from tests.fakes.strict import Strict, no_new_violations, watch


class Fake(Strict):
    def __init__(self) -> None:
        self.violations: list[str] = []


def test_a_violation_recorded_during_the_block_fails_it() -> None:
    with pytest.raises(AssertionError, match=r"Fake: body is not JSON"), no_new_violations():
        fake = Fake()
        watch(fake)
        fake.violations.append("body is not JSON")


def test_a_taken_violation_passes() -> None:
    with no_new_violations():
        fake = Fake()
        watch(fake)
        fake.violations.append("wrong key")
        assert fake.take_violations() == ["wrong key"]
    assert fake.violations == []


def test_a_fake_started_before_counts_only_what_is_new() -> None:
    wide = Fake()
    watch(wide)
    wide.violations.append("an earlier test's")  # that test already failed for it
    with no_new_violations():
        pass
    with pytest.raises(AssertionError, match="this test's") as info, no_new_violations():
        wide.violations.append("this test's")
    assert "earlier" not in str(info.value)
    wide.violations.clear()
