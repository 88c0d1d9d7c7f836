"""Authentication: ASGI middleware in front of every API route.

Two kinds of callers (both :class:`dataplane.config.members.Member`):

* a virtual key, as ``x-api-key`` (ANTHROPIC_API_KEY) or ``Authorization: Bearer``
  (ANTHROPIC_AUTH_TOKEN); looked up by SHA-256 of the secret in the current snapshot;
* a developer signed in with Claude Code's ``/login``: ``Authorization: Bearer <JWT>``, verified
  by :class:`dataplane.policy.tokens.TokenVerifier` (HMAC with a key from the snapshot, then cached).

No I/O either way. On success the middleware puts a :class:`Principal` into the ASGI scope; on
failure it answers 401 ``authentication_error`` saying *why* (missing, unknown, revoked, expired,
sign-in ended) without echoing the secret. A workspace with a minimum Claude Code version refuses
older ``claude-cli`` clients with 400 ``invalid_request_error`` (:func:`check_client_version`).
What the member may reach — its own model list and its workspace's access controls — is checked
per request, once the model is known (:meth:`Principal.check_access`), against model lists compiled
once: the member's on first use, kept across runtimes (``Runtime.model_lists``), the workspace's
when the snapshot was read (``Workspace.models_re``).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from dataplane.asgi import (
    ASGIApp,
    Header,
    Receive,
    Scope,
    Send,
    header,
    send_error_body,
    send_response,
)
from dataplane.config.members import Member
from dataplane.config.snapshot import Snapshot, Workspace, version_parts
from dataplane.errors import (
    Forbidden,
    GatewayError,
    Unavailable,
    bad_request,
    forbidden,
    new_request_id,
    unauthenticated,
)
from dataplane.metering.record import client_version
from dataplane.policy.runtime import Runtime, SnapshotHolder
from dataplane.policy.tokens import TokenVerifier, looks_like_jwt
from gwcommon.allowlists import allowed_targets_text, target_denial

PRINCIPAL = "tollgate.principal"


class ErrorRenderer(Protocol):
    """Renders a refusal in the format of the door the client came in by."""

    def error_body(
        self, status: int, error_type: str, message: str, request_id: str
    ) -> tuple[bytes, list[Header]]: ...


REQUEST_ID = "tollgate.request_id"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling, resolved against one runtime that the whole request then uses."""

    member: Member  # a virtual key or a signed-in developer
    workspace: Workspace
    runtime: Runtime  # pinned: its snapshot, adapters and compiled routes serve the request

    @property
    def snapshot(self) -> Snapshot:
        return self.runtime.snapshot

    def member_admits(self, model: str) -> bool:
        """Whether the member's own allow-list (glob patterns, as fnmatchcase; empty = any)
        admits ``model``: one match of the list compiled once (the runtime's model lists)."""
        return self.runtime.model_lists.admits(self.member.models, model)

    def check_model(self, model: str) -> None:
        """Refused unless the member's allow-list (glob patterns) admits ``model``."""
        if not self.member_admits(model):
            member = self.member
            raise Forbidden(
                member.model_denied_status,
                f"{member.title} may not use model '{model}'. "
                f"Allowed models: {', '.join(member.models)}.",
            )

    def check_access(self, model: str) -> None:
        """503 when the member has no target at all; 403 ``permission_error`` unless its target
        is within its workspace's access controls (:mod:`gwcommon.allowlists`); refused unless both
        the member's and the workspace's model lists admit ``model`` (403 for a key, 400
        ``invalid_request_error`` for a developer, as Claude Code's gateway protocol asks). Runs
        before any limit is reserved, so a refusal costs no budget."""
        ws = self.workspace
        member = self.member
        if not member.provider and not member.route:
            raise member.no_target_error()
        if ws.allowed_providers or ws.allowed_routes:
            route = self.snapshot.routes.get(member.route) if member.route else None
            reached = tuple(t.provider for t in route.targets) if route is not None else ()
            denial = target_denial(
                ws.allowed_providers, ws.allowed_routes, member.provider, member.route, reached
            )
            if denial is not None:
                allowed = allowed_targets_text(ws.allowed_providers, ws.allowed_routes)
                what = (
                    f"uses route '{denial.via_route}', which reaches provider '{denial.name}'"
                    if denial.via_route
                    else f"targets {denial.kind} '{denial.name}'"
                )
                raise forbidden(
                    f"{member.title} {what}, which workspace '{ws.name}' does not "
                    f"allow (allowed: {allowed}). Ask your platform team to point it at an "
                    "allowed provider or route."
                )
        self.check_model(model)
        if not ws.allows_model(model):
            raise Forbidden(
                member.model_denied_status,
                f"Model '{model}' is not allowed in workspace '{ws.name}' (allowed: "
                f"{', '.join(ws.allowed_models)}). Pick an allowed model with /model, or ask "
                "your platform team.",
            )

    def allows_model(self, model: str) -> bool:
        """Whether both the member's and the workspace's model lists admit ``model``
        (listings)."""
        return self.member_admits(model) and self.workspace.allows_model(model)


def extract_secret(scope: Scope) -> str | None:
    """The virtual key from ``x-api-key`` or ``Authorization: Bearer``.

    A developer may have a real ANTHROPIC_API_KEY in the shell next to ANTHROPIC_AUTH_TOKEN, and
    Claude Code then sends both headers: whichever carries a ``gw-`` key wins. With a Claude
    subscription the Authorization header carries the user's OAuth token and the virtual key
    travels in ``x-tollgate-key`` (via ANTHROPIC_CUSTOM_HEADERS), which then wins over both.
    """
    dedicated = header(scope, b"x-tollgate-key")
    if dedicated and dedicated.strip():
        return dedicated.decode("latin-1").strip()
    candidates: list[str] = []
    api_key = header(scope, b"x-api-key")
    if api_key and api_key.strip():
        candidates.append(api_key.decode("latin-1").strip())
    auth = header(scope, b"authorization")
    if auth:
        scheme, _, value = auth.decode("latin-1").partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            candidates.append(value.strip())
    for candidate in candidates:
        if candidate.startswith("gw-"):
            return candidate
    # Signed in with /login, the bearer is an access token; a provider key left in the shell as
    # ANTHROPIC_API_KEY must not hide it.
    for candidate in candidates:
        if looks_like_jwt(candidate):
            return candidate
    return candidates[0] if candidates else None


def passthrough_authorization(
    authorization: bytes | None, virtual_key: bytes | None
) -> bytes | None:
    """The client's own ``Authorization`` header, for a provider with ``auth: passthrough``,
    or None. The arguments are the request's ``Authorization`` and ``x-tollgate-key`` headers.

    Only when the virtual key travelled apart in ``x-tollgate-key`` (a Claude subscription's
    OAuth token then fills ``Authorization``): otherwise ``Authorization`` carries the gateway's
    own credential, which must never reach an upstream.
    """
    return authorization if virtual_key else None


def authenticate(
    runtime: Runtime, secret: str | None, now_ms: int, tokens: TokenVerifier | None = None
) -> Principal:
    """Resolve a secret to a principal or raise a 401 saying which check failed.

    A secret that is not a ``gw-`` key and looks like a JWT is a signed-in developer's access
    token, verified by ``tokens`` (a fresh, uncached verifier when None)."""
    snapshot = runtime.snapshot
    if not secret:
        raise unauthenticated(
            "No API key was sent. Set ANTHROPIC_AUTH_TOKEN to your Tollgate virtual key (gw-…), "
            "or sign in with /login."
        )
    if not secret.startswith("gw-") and looks_like_jwt(secret):
        verifier = tokens if tokens is not None else TokenVerifier()
        developer = verifier.resolve(snapshot, secret, now_ms)
        return Principal(developer, snapshot.workspaces[developer.workspace], runtime)
    digest = hashlib.sha256(secret.encode("utf-8", "surrogateescape")).hexdigest()
    key = snapshot.keys_by_hash.get(digest)
    if key is None:
        hint = (
            " It looks like a provider key, not a virtual key." if secret.startswith("sk-") else ""
        )
        raise unauthenticated(
            "This API key is not a valid Tollgate virtual key." + hint + " Ask your platform team "
            "for a virtual key (gw-…) and set it as ANTHROPIC_AUTH_TOKEN."
        )
    if key.revoked:
        raise unauthenticated(
            f"Virtual key '{key.name}' ({key.id}) has been revoked. Ask your platform team for a "
            "new key."
        )
    if key.expires_at_ms and now_ms >= key.expires_at_ms:
        when = datetime.fromtimestamp(key.expires_at_ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        raise unauthenticated(
            f"Virtual key '{key.name}' ({key.id}) expired at {when}. Ask your platform team for a "
            "new key."
        )
    workspace = snapshot.workspaces[key.workspace]  # validated when the snapshot was parsed
    return Principal(key, workspace, runtime)


def check_client_version(workspace: Workspace, user_agent: bytes | None) -> None:
    """400 when the caller is a Claude Code older than the workspace's ``min_client_version``.

    Versions compare numerically part by part (``2.1.10`` > ``2.1.9``; missing parts are 0).
    Requests without a ``claude-cli/…`` user-agent (SDKs, curl) are never refused.
    """
    minimum = workspace.min_client_parts
    if not minimum:
        return
    version = client_version(user_agent)
    parts = version_parts(version) if version else None
    if parts is None:
        return
    width = max(len(parts), len(minimum))
    if parts + (0,) * (width - len(parts)) < minimum + (0,) * (width - len(minimum)):
        raise bad_request(
            f"Claude Code {version} is older than this workspace allows "
            f"({workspace.min_client_version}): run `claude update`"
        )


class AuthMiddleware:
    """Authenticates the requests on protected paths: ``protects(path)`` gives the renderer of a
    protected path's refusals (its door, from :class:`dataplane.edge.app.RouteTable`), None for an
    open path."""

    def __init__(
        self,
        app: ASGIApp,
        holder: SnapshotHolder,
        protects: Callable[[str], ErrorRenderer | None],
        clock: Callable[[], float] = time.time,
        on_refuse: Callable[[str, int, str, str], None] | None = None,
        tokens: TokenVerifier | None = None,
    ) -> None:
        self.app = app
        self.holder = holder
        self.protects = protects
        self.clock = clock
        self.on_refuse = on_refuse
        self.tokens = tokens if tokens is not None else TokenVerifier()

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        # A plain function returning the app's (or the refusal's) awaitable: authentication
        # needs no await, and the middleware then adds no frame to the request's coroutine
        # chain, which every streamed chunk resumes.
        renderer = self.protects(scope["path"]) if scope["type"] == "http" else None
        if renderer is None:
            return self.app(scope, receive, send)
        request_id = new_request_id()
        scope[REQUEST_ID] = request_id
        runtime = self.holder.runtime
        workspace = ""
        try:
            if runtime is None:
                raise Unavailable(
                    503,
                    "The gateway has not received its configuration from the control plane yet. "
                    "Try again in a few seconds.",
                    headers=((b"retry-after", b"2"),),
                )
            principal = authenticate(
                runtime, extract_secret(scope), int(self.clock() * 1000), self.tokens
            )
            workspace = principal.workspace.name
            check_client_version(principal.workspace, header(scope, b"user-agent"))
            scope[PRINCIPAL] = principal
        except GatewayError as err:
            if self.on_refuse is not None:
                self.on_refuse(workspace, err.status, err.error_type, err.message)
            body, extra = renderer.error_body(err.status, err.error_type, err.message, request_id)
            return send_error_body(send, err.status, body, [*err.headers, *extra], request_id)
        return self.app(scope, receive, send)


__all__ = ["AuthMiddleware", "Principal", "authenticate", "extract_secret", "send_response"]
