"""Routes: an ordered list of provider targets with a mode and retry / timeout policy.

Order of ``targets`` is meaningful (fallback order) and is preserved; ``retry_on`` is a set and is
kept sorted so identical routes serialise identically.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from controlplane.domain.errors import InvalidArgument
from controlplane.domain.names import validate_slug

MODES = ("fallback", "loadbalance")
MAX_TARGETS = 16
MAX_RETRIES = 10
INT32_MAX = 2**31 - 1


@dataclass(frozen=True, slots=True)
class Target:
    provider: str
    weight: int = 0
    model: str = ""


@dataclass(frozen=True, slots=True)
class RoutePolicy:
    """Everything about a route except its name and timestamps."""

    mode: str
    targets: tuple[Target, ...]
    retries: int = 0
    retry_on: tuple[int, ...] = field(default_factory=tuple)
    timeout_connect_ms: int = 0
    timeout_first_byte_ms: int = 0
    timeout_idle_ms: int = 0
    cache_ttl_s: int = 0


def validate_policy(policy: RoutePolicy) -> RoutePolicy:
    """Return the canonical policy or raise :class:`InvalidArgument`.

    Does not check that target providers exist (that needs the store).
    """
    if policy.mode not in MODES:
        raise InvalidArgument(f"unknown route mode {policy.mode!r}: use fallback or loadbalance")
    if not policy.targets:
        raise InvalidArgument("a route needs at least one target provider")
    if len(policy.targets) > MAX_TARGETS:
        raise InvalidArgument(f"too many targets ({len(policy.targets)}, at most {MAX_TARGETS})")
    seen: set[tuple[str, str]] = set()
    for t in policy.targets:
        validate_slug(t.provider, "target provider")
        if t.weight < 0:
            raise InvalidArgument(f"target {t.provider!r}: weight must not be negative")
        if (t.provider, t.model) in seen:
            raise InvalidArgument(f"target {t.provider!r} is listed twice")
        seen.add((t.provider, t.model))
    if policy.mode == "loadbalance" and sum(t.weight for t in policy.targets) <= 0:
        raise InvalidArgument("a loadbalance route needs at least one target with weight > 0")
    if not 0 <= policy.retries <= MAX_RETRIES:
        raise InvalidArgument(f"retries must be between 0 and {MAX_RETRIES}")
    retry_on = _validate_statuses(policy.retry_on)
    for name in ("timeout_connect_ms", "timeout_first_byte_ms", "timeout_idle_ms", "cache_ttl_s"):
        value = getattr(policy, name)
        if not 0 <= value <= INT32_MAX:
            raise InvalidArgument(f"{name} must not be negative (0 means the default)")
    return RoutePolicy(
        mode=policy.mode,
        targets=policy.targets,
        retries=policy.retries,
        retry_on=retry_on,
        timeout_connect_ms=policy.timeout_connect_ms,
        timeout_first_byte_ms=policy.timeout_first_byte_ms,
        timeout_idle_ms=policy.timeout_idle_ms,
        cache_ttl_s=policy.cache_ttl_s,
    )


def _validate_statuses(statuses: Iterable[int]) -> tuple[int, ...]:
    out = sorted(set(statuses))
    for status in out:
        if not 400 <= status <= 599:
            raise InvalidArgument(f"retry_on status {status} is not an HTTP error status (400-599)")
    return tuple(out)
