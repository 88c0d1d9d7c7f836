"""Workspace access rules, shared by both planes: which targets and models a key may use.

A workspace carries three allow-lists (``allowed_providers``, ``allowed_routes``,
``allowed_models``). The control plane applies these rules when a key is created or updated; data
planes apply the same rules on every request, so a key that a later narrowing left outside its
workspace is refused there. Stdlib only.

Targets (the two target lists act together; both empty = any provider or route):

* A key on a provider is allowed when the provider is in ``allowed_providers``.
* A key on a route is allowed when the route is in ``allowed_routes`` (the admin who allowed the
  route chose its targets), or, with ``allowed_routes`` empty, when every provider the route can
  reach is in ``allowed_providers`` (otherwise a route would be a way around the provider list).

So a workspace that lists only routes admits no key aimed directly at a provider, and one that
lists only providers admits only the routes that stay within them.

Models: a request's model must match one ``allowed_models`` glob (``fnmatch`` rules,
case-sensitive) when the list is non-empty, on top of the key's own model list.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class TargetDenial:
    """Why a key's target is outside its workspace.

    ``kind`` is ``"provider"`` (the key's provider, or with ``via_route`` set a provider that
    route reaches) or ``"route"``; ``name`` is the offending provider or route.
    """

    kind: str
    name: str
    via_route: str = ""


def target_denial(
    allowed_providers: Sequence[str],
    allowed_routes: Sequence[str],
    provider: str,
    route: str,
    route_providers: Iterable[str] = (),
) -> TargetDenial | None:
    """None when a key on ``provider`` (or ``route``, reaching ``route_providers``) is allowed."""
    if not allowed_providers and not allowed_routes:
        return None
    if provider:
        return None if provider in allowed_providers else TargetDenial("provider", provider)
    if route in allowed_routes:
        return None
    if allowed_routes:
        return TargetDenial("route", route)
    for reached in route_providers:
        if reached not in allowed_providers:
            return TargetDenial("provider", reached, via_route=route)
    return None


def allowed_targets_text(allowed_providers: Sequence[str], allowed_routes: Sequence[str]) -> str:
    """``"providers a, b; routes main"`` — what a workspace's target lists admit, for messages."""
    parts = []
    if allowed_providers:
        parts.append("providers " + ", ".join(allowed_providers))
    if allowed_routes:
        parts.append("routes " + ", ".join(allowed_routes))
    return "; ".join(parts) if parts else "any provider or route"


def compile_models(patterns: Sequence[str]) -> re.Pattern[str] | None:
    """One regex matching exactly the models some glob in ``patterns`` matches (as
    :func:`fnmatch.fnmatchcase`), or None for an empty list (every model)."""
    if not patterns:
        return None
    return re.compile("|".join(fnmatch.translate(p) for p in patterns))


def pattern_covered(key_pattern: str, workspace_patterns: Sequence[str]) -> bool:
    """Whether a key's model pattern stays within the workspace's: identical to one of them, or
    matching one when read as a plain string (``claude-sonnet-4-5*`` within ``claude-sonnet-*``).

    A conservative test for the admin API; requests are checked against both lists anyway, so a
    key can never reach a model its workspace does not allow.
    """
    return any(key_pattern == w or fnmatch.fnmatchcase(key_pattern, w) for w in workspace_patterns)


def uncovered_patterns(key_patterns: Sequence[str], workspace_patterns: Sequence[str]) -> list[str]:
    """The key patterns outside the workspace's model list (none when that list is empty)."""
    if not workspace_patterns:
        return []
    return [p for p in key_patterns if not pattern_covered(p, workspace_patterns)]
