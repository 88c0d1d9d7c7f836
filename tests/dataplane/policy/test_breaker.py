"""The per-target circuit breaker, on an injected clock."""

from __future__ import annotations

from dataplane.policy.breaker import CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def opened(clock: Clock, failures: int = 3, cooldown_s: float = 30.0) -> CircuitBreaker:
    b = CircuitBreaker(clock)
    for _ in range(failures):
        b.record("p", False, failures=failures, cooldown_s=cooldown_s)
    return b


def test_opens_after_n_consecutive_failures() -> None:
    clock = Clock()
    b = CircuitBreaker(clock)
    for _ in range(4):
        b.record("p", False)  # default threshold 5
    assert b.state("p") == "closed" and b.allow("p")
    b.record("p", False)
    assert b.state("p") == "open"
    assert not b.allow("p") and not b.is_closed("p")
    assert b.states() == {"p": "open"}
    assert b.state("other") == "closed" and b.allow("other")


def test_a_success_resets_the_count() -> None:
    b = CircuitBreaker(Clock())
    for _ in range(4):
        b.record("p", False)
    b.record("p", True)
    for _ in range(4):
        b.record("p", False)
    assert b.state("p") == "closed"


def test_skips_for_the_cooldown_then_one_probe_recovers() -> None:
    clock = Clock()
    b = opened(clock)
    clock.now += 29.9
    assert not b.allow("p") and b.state("p") == "open"
    clock.now += 0.2
    assert b.state("p") == "half_open"
    assert b.allow("p")  # the probe
    b.record("p", True, failures=3)
    assert b.state("p") == "closed" and b.allow("p") and b.allow("p")


def test_probe_exclusivity() -> None:
    clock = Clock()
    b = opened(clock)
    clock.now += 31
    assert b.allow("p")
    assert [b.allow("p") for _ in range(10)] == [False] * 10  # concurrent requests skip it
    assert b.state("p") == "half_open"


def test_failed_probe_reopens_for_another_cooldown() -> None:
    clock = Clock()
    b = opened(clock)
    clock.now += 31
    assert b.allow("p")
    b.record("p", False, failures=3, cooldown_s=30)
    assert b.state("p") == "open" and not b.allow("p")
    clock.now += 29
    assert not b.allow("p")
    clock.now += 2
    assert b.allow("p")


def test_a_lost_probe_frees_its_slot_after_the_lease() -> None:
    clock = Clock()
    b = CircuitBreaker(clock, probe_lease_s=60)
    for _ in range(5):
        b.record("p", False)
    clock.now += 31
    assert b.allow("p")
    clock.now += 59
    assert not b.allow("p")
    clock.now += 2
    assert b.allow("p")


def test_late_failures_while_open_do_not_extend_the_cooldown() -> None:
    clock = Clock()
    b = opened(clock)
    clock.now += 20
    b.record("p", False, failures=3)  # a request sent before it opened
    clock.now += 11
    assert b.allow("p")


def test_any_success_closes() -> None:
    b = opened(Clock())
    b.record("p", True)
    assert b.state("p") == "closed"
