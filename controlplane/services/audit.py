"""Audit-log RPCs of the Admin service (ListAudit, TailAudit), as a mixin of
:class:`~controlplane.services.admin.AdminService`.

Scope: a principal bound to workspaces sees only those workspaces' events; global objects
(providers, routes, unscoped tokens: workspace "") are shown to unscoped principals only. Who may
call the RPCs at all is decided by the auth interceptor.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from controlplane import audit_log
from controlplane.domain.errors import PermissionDenied
from controlplane.errors import grpc_errors
from controlplane.fanout import Tail
from controlplane.identity import principal
from controlplane.services.state import AppState
from gwapi.v1 import admin_pb2 as apb

Ctx = Any  # grpc.aio.ServicerContext

DEFAULT_TAIL = 20


def _scope(workspace: str) -> frozenset[str] | None:
    """The caller's workspaces (None = unscoped); refuses a workspace outside them."""
    scope = principal().workspaces or None
    if workspace and scope is not None and workspace not in scope:
        raise PermissionDenied(
            f"this token is limited to the workspace(s) {', '.join(sorted(scope))}; "
            f"it cannot read the audit log of {workspace!r}"
        )
    return scope


@grpc_errors
class AuditRpcs:
    _s: AppState

    async def ListAudit(self, request: apb.ListAuditRequest, context: Ctx) -> apb.ListAuditResponse:
        scope = _scope(request.workspace)
        events = await self._s.db.read(
            lambda s: audit_log.list_events(
                s,
                workspaces=scope,
                workspace=request.workspace,
                since_ms=request.since_ms,
                limit=request.limit,
                resource_kind=request.resource_kind,
            )
        )
        return apb.ListAuditResponse(events=events)

    async def TailAudit(
        self, request: apb.TailAuditRequest, context: Ctx
    ) -> AsyncIterator[apb.AuditEvent]:
        """The last ``limit`` events (oldest first); with ``follow``, then every new one once its
        change has committed. The live subscription starts before the history is read, so an
        event committed in between is neither lost nor sent twice."""
        scope = _scope(request.workspace)
        limit = audit_log.validate_filter(request.workspace, "", request.limit or DEFAULT_TAIL)

        def wanted(ev: apb.AuditEvent) -> bool:
            return audit_log.visible(ev, scope, request.workspace)

        with Tail(self._s.audit, request.follow, _audit_id, wanted, "audit tail") as tail:
            history = await self._s.db.read(
                lambda s: audit_log.list_events(
                    s, workspaces=scope, workspace=request.workspace, limit=limit
                )
            )
            tail.seed(reversed(history))
            async for ev in tail:
                yield ev


def _audit_id(ev: apb.AuditEvent) -> int:
    return ev.id
