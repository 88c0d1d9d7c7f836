"""How the data plane connects to Redis: short timeouts, one immediate retry, no backoff.

Every Redis user on the data plane (counters, the response cache, breaker sync) sits on or
beside the request path and has its own breaker that skips Redis after a failure, so a slow
Redis must cost one short timeout, never a wait behind retries with backoff.
"""

from __future__ import annotations

from typing import Any

from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

__all__ = ["connection_options"]


def connection_options(timeout_s: float, max_connections: int) -> dict[str, Any]:
    """Keyword arguments for ``redis.asyncio.Redis.from_url`` or a connection pool's
    ``from_url``: socket and connect timeouts of ``timeout_s``, at most ``max_connections``."""
    return {
        "socket_timeout": timeout_s,
        "socket_connect_timeout": timeout_s,
        "max_connections": max_connections,
        "health_check_interval": 30,
        # One immediate retry (a pooled connection that went stale), no backoff: the request
        # path is waiting; the caller's breaker takes over after that.
        "retry": Retry(NoBackoff(), 1),
    }
