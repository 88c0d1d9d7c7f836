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

The state lives in this process: each data plane learns about its providers' health on its own.
Sharing it between replicas through Redis is future work. Everything here is pure bookkeeping
(no I/O, no awaits), safe on a single event loop; time comes from an injected clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

State = Literal["closed", "open", "half_open"]

DEFAULT_FAILURES = 5
DEFAULT_COOLDOWN_S = 30.0
DEFAULT_PROBE_LEASE_S = 120.0


@dataclass(slots=True)
class _Cell:
    failures: int = 0  # consecutive failures while closed
    open_until: float | None = None  # set while open / half-open
    probe_until: float | None = None  # set while a probe is in flight (its lease's end)


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

    def state(self, name: str) -> State:
        """For display: ``half_open`` once the cooldown is over (probing allowed or in flight)."""
        cell = self._cells.get(name)
        if cell is None or cell.open_until is None:
            return "closed"
        return "open" if self._clock() < cell.open_until else "half_open"

    def states(self) -> dict[str, State]:
        return {name: self.state(name) for name in self._cells}

    def is_closed(self, name: str) -> bool:
        cell = self._cells.get(name)
        return cell is None or cell.open_until is None

    def allow(self, name: str) -> bool:
        """Whether a request may go to ``name`` now. In half-open state, True claims the one
        probe: the caller must send it and record its outcome (or the lease frees it)."""
        cell = self._cells.get(name)
        if cell is None or cell.open_until is None:
            return True
        now = self._clock()
        if now < cell.open_until:
            return False
        if cell.probe_until is not None and now < cell.probe_until:
            return False
        cell.probe_until = now + self._probe_lease_s
        return True

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
                cell.failures = 0
                cell.open_until = None
                cell.probe_until = None
            return
        if cell is None:
            cell = self._cells[name] = _Cell()
        now = self._clock()
        if cell.open_until is None:
            cell.failures += 1
            if cell.failures >= max(failures, 1):
                cell.open_until = now + cooldown_s
        elif cell.probe_until is not None or now >= cell.open_until:
            # The probe failed (or an attempt sent after the cooldown did): another cooldown.
            cell.open_until = now + cooldown_s
            cell.probe_until = None
        # else: an attempt sent before the breaker opened, or while every target was open,
        # failed during the cooldown: it stays open, the cooldown is not extended.
