"""Which providers serve a request, in which order, with which retry and timeout rules.

:meth:`Router.plan` turns the caller (a key or a developer) into a :class:`Plan`: its provider
alone, or its route's targets — in order for a ``fallback`` route; for a ``loadbalance`` route a
weighted choice first, sticky per Claude Code session (``x-claude-code-session-id``) so that a
session keeps hitting the provider where its prompt cache is warm, then the others as fallbacks.

A pure function of the request's runtime (:mod:`dataplane.policy.runtime`, pinned by its principal)
and the request: no I/O, no bookkeeping, no circuit breaker. Only the order of a load-balanced plan
without a session draws on the random source. The breakers are consulted where attempts are made:
the attempt chain (:mod:`dataplane.edge.attempts`) asks
:meth:`dataplane.policy.breaker.CircuitBreaker.tried_order` to put open targets last and claim a
half-open one's probe as it starts, and reports each attempt's outcome.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from hashlib import blake2b

from dataplane.errors import GatewayError, Unavailable
from dataplane.policy.auth import Principal
from dataplane.policy.retry import DEFAULT_RETRY_ON
from dataplane.policy.runtime import Target
from dataplane.providers.transport import Timeouts

_2_64 = float(2**64)


@dataclass(frozen=True, slots=True)
class Plan:
    targets: tuple[Target, ...]  # in the order to try; never empty
    attempts_per_target: int = 1  # 1 + the route's retries
    retry_on: frozenset[int] = DEFAULT_RETRY_ON
    timeouts: Timeouts | None = None  # None: each provider's own
    cache_ttl_s: int = 0  # 0: no response cache
    cache_sampled: bool = False  # cache temperature > 0 requests too
    route: str = ""  # "" when the key names a provider directly


def rendezvous_score(session: bytes, hash_key: bytes, weight: float) -> float:
    """Weighted rendezvous hashing: the target with the LOWEST score wins a session, and a
    target wins with probability weight / total. Adding or removing a target only moves the
    sessions that it wins or had won."""
    h = int.from_bytes(blake2b(session + hash_key, digest_size=8).digest(), "big")
    return -math.log((h + 0.5) / _2_64) / weight


class Router:
    """Plans requests; one per data plane (see the module docstring)."""

    def __init__(self, rng: random.Random | None = None) -> None:
        # The source of a load-balanced plan's order when there is no session to stick to.
        self._rng = rng if rng is not None else random.Random()

    def candidates(self, principal: Principal) -> list[str]:
        """Provider names of the member's provider or route, in configuration order."""
        member = principal.member
        if member.provider:
            return [member.provider]
        route = principal.snapshot.routes.get(member.route)
        if route is None:
            return []
        return [t.provider for t in route.targets]

    def plan(self, principal: Principal, session_id: str = "") -> Plan:
        """The targets to try for this request and the rules for trying them.

        Raises GatewayError 503 when no target has an adapter on this data plane.
        """
        runtime, member = principal.runtime, principal.member
        if member.provider:
            direct = runtime.direct.get(member.provider)
            if direct is None:
                raise self._unservable(principal)
            return Plan(targets=(direct,))
        route = runtime.routes.get(member.route)
        if route is None or not route.targets:
            raise self._unservable(principal)
        targets = route.targets
        if route.loadbalance:
            # (order key, Target): the lowest key leads.
            session = session_id.encode() if session_id else b""
            scored: list[tuple[float, Target]] = []
            for i, target in enumerate(targets):
                if session:
                    order = rendezvous_score(session, route.hash_keys[i], route.weights[i])
                else:  # weighted random order (exponential race: P(first) = weight / total)
                    order = -math.log(1.0 - self._rng.random()) / route.weights[i]
                scored.append((order, target))
            scored.sort(key=lambda pair: pair[0])
            targets = tuple(t for _, t in scored)
        config = route.config
        return Plan(
            targets=targets,
            attempts_per_target=route.attempts_per_target,
            retry_on=route.retry_on,
            timeouts=route.timeouts,
            cache_ttl_s=config.cache_ttl_s,
            cache_sampled=config.cache_sampled,
            route=config.name,
        )

    @staticmethod
    def _unservable(principal: Principal) -> GatewayError:
        member = principal.member
        if member.provider:
            why = f"its provider '{member.provider}' is not available on this data plane"
        elif not member.route:
            return member.no_target_error()
        elif member.route not in principal.snapshot.routes:
            why = f"its route '{member.route}' does not exist"
        else:
            why = (
                f"none of the targets of its route '{member.route}' is available on this data plane"
            )
        return Unavailable(
            503,
            f"{member.title} has no provider this gateway can serve right now ({why}). "
            f"Ask your platform team to check the {member.kind}'s provider or route.",
        )
