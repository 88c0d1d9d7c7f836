"""Per-target circuit breakers: stop sending requests to a provider that keeps failing.

States, per target (a provider name):

* **closed** — requests flow; consecutive failures are counted, a success resets the count.
* **open** — after ``failures`` consecutive failures the target is skipped for ``cooldown_s``.
* **half_open** — the cooldown is over: exactly one request (the *probe*) is let through; the
  others keep skipping the target while it is in flight. Its success closes the breaker, its
  failure opens it again for another cooldown. A probe whose outcome never comes back (a request
  cancelled before it reported) frees its slot after ``probe_lease_s``.

Any success closes the breaker, whatever the state (a request sent before it opened, or one sent
because every target was open, proves the target works).

The attempt chain asks :meth:`CircuitBreaker.tried_order` for the order in which to try a plan's
targets, at the moment it starts trying them: closed targets keep the plan's order, a half-open
target whose probe is free may lead (only the first target tried ever probes: it is the one
surely sent) and claims that probe as it is handed out; the rest (open, probing already, or
half-open behind a healthier target) go last, in plan order. Never dropped: with every target
open, they are still tried. Routing (:mod:`dataplane.policy.routing`) never reads the breakers.

The state lives in this process and decides alone: no request ever waits on another replica.
With Redis configured, :mod:`dataplane.sync.breaker_sync` shares it in the background through two
hooks: ``on_transition`` reports this process's own state changes (opened until T, closed), and
:meth:`CircuitBreaker.apply_remote` applies another replica's (without reporting them again).
Everything here is pure bookkeeping (no I/O, no awaits), safe on a single event loop; time comes
from an injected clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, TypeVar

from gwcommon import breaker_defaults

State = Literal["closed", "open", "half_open"]

DEFAULT_FAILURES = breaker_defaults.FAILURES
DEFAULT_COOLDOWN_S = float(breaker_defaults.COOLDOWN_S)
DEFAULT_PROBE_LEASE_S = 120.0


class Named(Protocol):
    """What the breaker knows of a target: its name (a provider name)."""

    @property
    def name(self) -> str: ...


T = TypeVar("T", bound=Named)


@dataclass(frozen=True, slots=True)
class Transition:
    """A state change decided here: ``open`` until ``open_until``, or ``closed`` (both on the
    breaker's clock); ``at`` is when it happened."""

    name: str
    state: Literal["open", "closed"]
    open_until: float | None
    at: float


@dataclass(slots=True)
class _Cell:
    failures: int = 0  # consecutive failures while closed
    open_until: float | None = None  # set while open / half-open
    probe_until: float | None = None  # set while a probe is in flight (its lease's end)
    changed: float = float("-inf")  # when the state last changed (here or applied from remote)


class CircuitBreaker:
    """The breakers of every target this data plane has sent to."""

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        probe_lease_s: float = DEFAULT_PROBE_LEASE_S,
    ) -> None:
        self._clock = clock
        self._probe_lease_s = probe_lease_s
        self._cells: dict[str, _Cell] = {}
        # Called with each state change decided here (never with one from apply_remote).
        self.on_transition: Callable[[Transition], None] | None = None

    def now(self) -> float:
        """The breaker's clock (what open_until and Transition.at are measured on)."""
        return self._clock()

    def state(self, name: str) -> State:
        """For display: ``half_open`` once the cooldown is over (probing allowed or in flight)."""
        cell = self._cells.get(name)
        if cell is None or cell.open_until is None:
            return "closed"
        return "open" if self._clock() < cell.open_until else "half_open"

    def cooldown_left(self, name: str) -> float:
        """Seconds until an open breaker lets a probe through; 0 when closed or half-open."""
        cell = self._cells.get(name)
        if cell is None or cell.open_until is None:
            return 0.0
        return max(0.0, cell.open_until - self._clock())

    def states(self) -> dict[str, str]:
        """:meth:`state` of every target that ever failed (for metrics and status)."""
        return {name: self.state(name) for name in self._cells}

    def is_closed(self, name: str) -> bool:
        cell = self._cells.get(name)
        return cell is None or cell.open_until is None

    def may_probe(self, name: str) -> bool:
        """Whether ``name`` is half-open with its probe free: what :meth:`allow` would claim now.
        Reads only."""
        cell = self._cells.get(name)
        if cell is None or cell.open_until is None:
            return False
        now = self._clock()
        return now >= cell.open_until and (cell.probe_until is None or now >= cell.probe_until)

    def allow(self, name: str) -> bool:
        """Whether a request may go to ``name`` now. In half-open state, True claims the one
        probe: the caller must send it and record its outcome (or the lease frees it)."""
        if self.is_closed(name):
            return True
        if not self.may_probe(name):
            return False
        self._cells[name].probe_until = self._clock() + self._probe_lease_s
        return True

    def tried_order(self, targets: Sequence[T]) -> Iterator[T]:
        """``targets`` (a plan's, never empty) in the order to try them now, healthy first (see
        the module docstring). Handing out the first one claims its probe when it is half-open:
        iterate only when about to send, and record that attempt's outcome (or the probe lease
        frees it). Nothing is claimed until then: a plan answered from the cache or refused by a
        limit leaves the probe to the next request."""
        ready: list[T] = []
        later: list[T] = []
        for target in targets:
            if self.is_closed(target.name) or (not ready and self.may_probe(target.name)):
                ready.append(target)
            else:
                later.append(target)
        ordered = [*ready, *later] if later else targets
        lead = ordered[0].name
        if not self.is_closed(lead):
            self.allow(lead)  # claims the probe when it is free; else every target is open
        yield from ordered

    def record(
        self,
        name: str,
        ok: bool,
        *,
        failures: int = DEFAULT_FAILURES,
        cooldown_s: float = DEFAULT_COOLDOWN_S,
    ) -> None:
        """The outcome of one attempt on ``name``."""
        cell = self._cells.get(name)
        if ok:
            if cell is not None:
                was_open = cell.open_until is not None
                cell.failures = 0
                cell.open_until = None
                cell.probe_until = None
                if was_open:
                    self._changed(name, cell, "closed")
            return
        if cell is None:
            cell = self._cells[name] = _Cell()
        now = self._clock()
        if cell.open_until is None:
            cell.failures += 1
            if cell.failures >= max(failures, 1):
                cell.open_until = now + cooldown_s
                self._changed(name, cell, "open")
        elif cell.probe_until is not None or now >= cell.open_until:
            # The probe failed (or an attempt sent after the cooldown did): another cooldown.
            cell.open_until = now + cooldown_s
            cell.probe_until = None
            self._changed(name, cell, "open")
        # else: an attempt sent before the breaker opened, or while every target was open,
        # failed during the cooldown: it stays open, the cooldown is not extended.

    def _changed(self, name: str, cell: _Cell, state: Literal["open", "closed"]) -> None:
        cell.changed = now = self._clock()
        callback = self.on_transition
        if callback is not None:
            callback(Transition(name, state, cell.open_until, now))

    def apply_remote(self, name: str, state: str, open_until: float | None, updated: float) -> bool:
        """Another replica's latest state of ``name`` (times on this breaker's clock). Applied
        only when it is newer than this breaker's last change of ``name``:

        * ``open`` until T (still ahead): opens here until T, unless already open until later;
        * ``closed`` (another replica's request succeeded): closes an open breaker here.

        Returns whether anything changed. Never calls ``on_transition``."""
        cell = self._cells.get(name)
        if cell is not None and updated <= cell.changed:
            return False
        if state == "open":
            if open_until is None or open_until <= self._clock():
                return False
            if cell is None:
                cell = self._cells[name] = _Cell()
            elif cell.open_until is not None and cell.open_until >= open_until:
                return False
            cell.open_until = open_until
            cell.probe_until = None
            cell.changed = updated
            return True
        if state == "closed" and cell is not None and cell.open_until is not None:
            cell.failures = 0
            cell.open_until = None
            cell.probe_until = None
            cell.changed = updated
            return True
        return False
