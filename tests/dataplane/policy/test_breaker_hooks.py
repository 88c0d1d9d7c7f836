"""The breaker's sharing hooks: on_transition and apply_remote, on an injected clock."""

from __future__ import annotations

from dataplane.policy.breaker import CircuitBreaker, Transition
from tests.dataplane.policy.test_breaker import Clock


def watched(clock: Clock) -> tuple[CircuitBreaker, list[Transition]]:
    b = CircuitBreaker(clock)
    seen: list[Transition] = []
    b.on_transition = seen.append
    return b, seen


def test_transitions_are_reported_once_each() -> None:
    clock = Clock()
    b, seen = watched(clock)
    b.record("p", True)  # closed and stays closed: nothing
    for _ in range(3):
        b.record("p", False, failures=3, cooldown_s=30)
    assert seen == [Transition("p", "open", 1030.0, 1000.0)]
    clock.now += 5
    b.record("p", False, failures=3, cooldown_s=30)  # late failure while open: nothing
    assert len(seen) == 1
    clock.now += 30
    assert b.allow("p")  # the probe
    b.record("p", False, failures=3, cooldown_s=30)  # it failed: open again
    assert seen[-1] == Transition("p", "open", 1065.0, 1035.0)
    clock.now += 31
    assert b.allow("p")
    b.record("p", True)
    assert seen[-1] == Transition("p", "closed", None, 1066.0)
    b.record("p", True)
    assert len(seen) == 3


def test_remote_open_opens_until_its_time_without_reporting() -> None:
    clock = Clock()
    b, seen = watched(clock)
    assert b.apply_remote("p", "open", 1020.0, 999.0)
    assert b.state("p") == "open" and not b.allow("p") and seen == []
    assert not b.apply_remote("p", "open", 1020.0, 999.0)  # the same entry again: no-op
    clock.now = 1021.0
    assert b.state("p") == "half_open" and b.allow("p")
    b.record("p", True)
    assert b.state("p") == "closed" and seen == [Transition("p", "closed", None, 1021.0)]


def test_remote_open_only_extends() -> None:
    clock = Clock()
    b, _ = watched(clock)
    for _ in range(5):
        b.record("p", False)  # open until 1030, changed at 1000
    clock.now = 1001.0
    assert not b.apply_remote("p", "open", 1020.0, 1000.5)  # earlier than ours
    assert b.apply_remote("p", "open", 1040.0, 1000.5)  # later: taken
    clock.now = 1035.0
    assert b.state("p") == "open"
    clock.now = 1040.0
    assert b.state("p") == "half_open"


def test_remote_open_in_the_past_or_older_than_our_change_is_ignored() -> None:
    clock = Clock()
    b, _ = watched(clock)
    assert not b.apply_remote("p", "open", 999.0, 990.0)  # already over
    assert b.state("p") == "closed"
    for _ in range(5):
        b.record("p", False)
    clock.now = 1010.0
    assert b.allow("p") is False
    b.record("p", True)  # closed here at 1010
    assert not b.apply_remote("p", "open", 1050.0, 1005.0)  # opened elsewhere before that
    assert b.state("p") == "closed"


def test_remote_close_newer_than_our_open_closes() -> None:
    clock = Clock()
    b, seen = watched(clock)
    for _ in range(5):
        b.record("p", False)
    assert not b.apply_remote("p", "closed", None, 999.0)  # older than our open
    assert b.state("p") == "open"
    assert b.apply_remote("p", "closed", None, 1002.0)  # another replica's probe succeeded
    assert b.state("p") == "closed" and b.allow("p") and len(seen) == 1
    for _ in range(4):
        b.record("p", False)
    assert b.state("p") == "closed"  # the failure count restarted


def test_remote_close_of_a_closed_or_unknown_target_is_a_no_op() -> None:
    b, _ = watched(Clock())
    assert not b.apply_remote("p", "closed", None, 2000.0)
    assert b.states() == {}


def test_remote_open_frees_the_probe_slot_for_after_its_cooldown() -> None:
    clock = Clock()
    b = CircuitBreaker(clock, probe_lease_s=120)
    for _ in range(5):
        b.record("p", False)
    clock.now = 1031.0
    assert b.allow("p")  # our probe is in flight
    assert b.apply_remote("p", "open", 1041.0, 1031.5)
    clock.now = 1042.0
    assert b.allow("p")  # not blocked by the old probe's 120 s lease
