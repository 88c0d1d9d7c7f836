"""Workspace access controls on the admin API: the allow-lists' syntax, and the check that a key
stays within its workspace (the rules themselves live in :mod:`gwcommon.allowlists`, shared with the
data planes, which apply them again on every request).

Narrowing a workspace is allowed while keys exist outside the new lists: those keys are refused
at request time (403) until they are updated, and ``gwctl workspaces show`` lists them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from controlplane.domain.errors import InvalidArgument
from controlplane.domain.keys import validate_models
from controlplane.domain.names import unique_list, validate_slug
from gwcommon.allowlists import allowed_targets_text, target_denial, uncovered_patterns

MAX_ALLOWED_NAMES = 100


def validate_allowed_names(names: Iterable[str], what: str) -> tuple[str, ...]:
    """Normalise ``allowed_providers`` / ``allowed_routes`` (``what`` = ``"provider"`` or
    ``"route"``): valid names, blanks refused, duplicates dropped, order kept. Whether each exists
    is the catalog's check."""
    return unique_list(
        names,
        lambda raw: validate_slug(raw.strip(), f"allowed {what} name"),
        MAX_ALLOWED_NAMES,
        f"allowed {what}s",
    )


def validate_allowed_models(patterns: Iterable[str]) -> tuple[str, ...]:
    """``allowed_models``: the same glob syntax and limits as a key's model list."""
    return validate_models(patterns)


def check_key_target(
    workspace: str,
    allowed_providers: Sequence[str],
    allowed_routes: Sequence[str],
    provider: str,
    route: str,
    route_providers: Sequence[str] = (),
    who: str = "the key targets",
) -> None:
    """:class:`InvalidArgument` unless a key on ``provider``/``route`` is within the workspace
    (``who`` says what targets it in the message, e.g. "the workspace's developers target")."""
    denial = target_denial(allowed_providers, allowed_routes, provider, route, route_providers)
    if denial is None:
        return
    allowed = allowed_targets_text(allowed_providers, allowed_routes)
    if denial.via_route:
        raise InvalidArgument(
            f"workspace {workspace!r} allows {allowed}; {who} route "
            f"{denial.via_route!r}, which reaches provider {denial.name!r}: pick a route within "
            f"those providers, or add the route to the workspace's allowed_routes"
        )
    raise InvalidArgument(
        f"workspace {workspace!r} allows {allowed}; {who} {denial.kind} "
        f"{denial.name!r}: pick one of those, or add it to the workspace's "
        f"allowed_{denial.kind}s"
    )


def check_key_models(
    workspace: str, allowed_models: Sequence[str], key_models: Sequence[str]
) -> None:
    """:class:`InvalidArgument` unless each of the key's model patterns is within the
    workspace's (a key with no list of its own simply gets the workspace's)."""
    outside = uncovered_patterns(key_models, allowed_models)
    if outside:
        raise InvalidArgument(
            f"workspace {workspace!r} allows models {', '.join(allowed_models)}; the key's "
            f"model pattern(s) {', '.join(outside)} go beyond them: use patterns within those "
            "(or none, to get the workspace's list), or widen the workspace's allowed_models"
        )
