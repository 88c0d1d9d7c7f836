"""A per-address rate limit for the unauthenticated sign-in endpoints (RFC 8628 §5.1).

A token bucket per client address, in memory: ``burst`` requests at once, then ``per_minute``
on average. A user code has 20^8 values and expires in ten minutes, so a few guesses a minute
per address makes guessing hopeless, while a developer who mistypes (or runs /login twice) never
notices. The table is bounded (least recently seen addresses go first), so a scan from many
addresses costs memory, not correctness. Per replica: behind N data planes an address gets N
buckets, which still leaves guessing hopeless.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable

MAX_ADDRESSES = 100_000


class PerIpLimiter:
    def __init__(
        self,
        per_minute: float,
        burst: int,
        clock: Callable[[], float] = time.monotonic,
        max_addresses: int = MAX_ADDRESSES,
    ) -> None:
        if per_minute <= 0 or burst < 1:
            raise ValueError("a rate limit needs a positive rate and a burst of at least 1")
        self.rate = per_minute / 60.0  # tokens per second
        self.burst = float(burst)
        self.clock = clock
        self.max_addresses = max_addresses
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # ip -> tokens, at

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, address: str) -> int:
        """Spend one request of ``address``: 0 when allowed, else the whole seconds to wait."""
        now = self.clock()
        buckets = self._buckets
        tokens, at = buckets.pop(address, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        if tokens >= 1.0:
            buckets[address] = (tokens - 1.0, now)
            wait = 0
        else:
            buckets[address] = (tokens, now)
            wait = max(1, math.ceil((1.0 - tokens) / self.rate))
        while len(buckets) > self.max_addresses:
            buckets.popitem(last=False)
        return wait
