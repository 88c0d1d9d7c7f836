"""The circuit breaker's defaults, for a route that leaves them unset (stdlib only).

A route's ``breaker_failures`` / ``breaker_cooldown_s`` of 0 means "the default": the data plane
breaks a target after :data:`FAILURES` consecutive failures and skips it for :data:`COOLDOWN_S`
seconds before one probe (:mod:`dataplane.policy.breaker`); ``gwctl routes`` shows the same numbers.
"""

from __future__ import annotations

FAILURES = 5
COOLDOWN_S = 30
