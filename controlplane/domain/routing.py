"""Routes: an ordered list of provider targets with a mode and retry / timeout / cache / breaker
policy.

Order of ``targets`` is meaningful (fallback order) and is preserved; ``retry_on`` is a set and is
kept sorted so identical routes serialise identically. A target's weight of 0 means "unset" and is
stored as the default, 1 (weights only matter in loadbalance mode, but are kept in either).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from controlplane.domain.errors import InvalidArgument, shown
from controlplane.domain.names import validate_slug
from gwapi import vocab

MODES = vocab.choices(vocab.MODE)
MAX_TARGETS = 16
MAX_RETRIES = 10
MAX_WEIGHT = 10_000
DEFAULT_WEIGHT = 1
MAX_MODEL_LEN = 200
MAX_TIMEOUT_MS = 3_600_000  # 1 h
MAX_CACHE_TTL_S = 7 * 86_400  # 7 days
MAX_BREAKER_FAILURES = 100
MAX_BREAKER_COOLDOWN_S = 3_600  # 1 h


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
    cache_sampled: bool = False
    breaker_failures: int = 0
    breaker_cooldown_s: int = 0


# field -> (upper bound, how the bound reads in an error message)
_BOUNDS: dict[str, tuple[int, str]] = {
    "timeout_connect_ms": (MAX_TIMEOUT_MS, "3600000 ms (1 h)"),
    "timeout_first_byte_ms": (MAX_TIMEOUT_MS, "3600000 ms (1 h)"),
    "timeout_idle_ms": (MAX_TIMEOUT_MS, "3600000 ms (1 h)"),
    "cache_ttl_s": (MAX_CACHE_TTL_S, "604800 s (7 days)"),
    "breaker_failures": (MAX_BREAKER_FAILURES, str(MAX_BREAKER_FAILURES)),
    "breaker_cooldown_s": (MAX_BREAKER_COOLDOWN_S, "3600 s (1 h)"),
}


def validate_model_id(model: str, what: str) -> str:
    """A plausible model id: non-empty, no whitespace or control characters, ≤ 200 characters.

    Provider-specific ids pass (``claude-sonnet-4-5@20250929``, ``eu.anthropic.x-v1:0``, Bedrock
    ARNs); whether the provider serves it is only known upstream.
    """
    if not model:
        raise InvalidArgument(f"{what}: the model id is empty")
    if len(model) > MAX_MODEL_LEN:
        raise InvalidArgument(
            f"{what}: model id is {len(model)} characters long (at most {MAX_MODEL_LEN})"
        )
    if any(c.isspace() or not c.isprintable() for c in model):
        raise InvalidArgument(
            f"{what}: model id {model!r} contains whitespace or control characters"
        )
    return model


def _validate_target(t: Target) -> Target:
    validate_slug(t.provider, "target provider")
    if t.weight < 0:
        raise InvalidArgument(f"target {t.provider!r}: weight must be at least 1 (got {t.weight})")
    if t.weight > MAX_WEIGHT:
        raise InvalidArgument(f"target {t.provider!r}: weight must be at most {MAX_WEIGHT}")
    if t.model:
        validate_model_id(t.model, f"target {t.provider!r}")
    return replace(t, weight=t.weight or DEFAULT_WEIGHT)


def validate_policy(policy: RoutePolicy) -> RoutePolicy:
    """Return the canonical policy or raise :class:`InvalidArgument`.

    Does not check that target providers exist (that needs the store).
    """
    if policy.mode not in MODES:
        raise InvalidArgument(f"unknown route mode {shown(policy.mode)}: use {' or '.join(MODES)}")
    if not policy.targets:
        raise InvalidArgument("a route needs at least one target provider")
    if len(policy.targets) > MAX_TARGETS:
        raise InvalidArgument(f"too many targets ({len(policy.targets)}, at most {MAX_TARGETS})")
    targets: list[Target] = []
    seen: set[str] = set()
    for t in policy.targets:
        target = _validate_target(t)
        if target.provider in seen:
            raise InvalidArgument(
                f"target {target.provider!r} is listed twice: each provider appears once"
            )
        seen.add(target.provider)
        targets.append(target)
    if not 0 <= policy.retries <= MAX_RETRIES:
        raise InvalidArgument(f"retries must be between 0 and {MAX_RETRIES} (got {policy.retries})")
    retry_on = _validate_statuses(policy.retry_on)
    for name, (upper, bound) in _BOUNDS.items():
        value = getattr(policy, name)
        if value < 0:
            raise InvalidArgument(f"{name} must not be negative (0 means the default)")
        if value > upper:
            raise InvalidArgument(f"{name} must be at most {bound} (got {value})")
    return replace(policy, targets=tuple(targets), retry_on=retry_on)


def _validate_statuses(statuses: Iterable[int]) -> tuple[int, ...]:
    out = sorted(set(statuses))
    for status in out:
        if not 400 <= status <= 599:
            raise InvalidArgument(f"retry_on status {status} is not an HTTP error status (400-599)")
    return tuple(out)
