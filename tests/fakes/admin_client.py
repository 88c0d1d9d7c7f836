"""The one in-memory stand-in for the admin client (:class:`gwclient.client.GatewayClient`), used
by the console's tests (``tests/tui``) and gwctl's (``tests/gwctl``). No network, no clock.

It satisfies :class:`gwclient.api.AdminAPI` (mypy checks the assignment at the bottom), so its
signatures cannot drift from the real client's. Each test package fills it with its own data
(``tests/tui/console_data.py``, ``tests/gwctl/cli_data.py``).

Contract:

* Every call is recorded in :attr:`FakeAdminClient.calls` as ``(method, args)``; keyword-only
  calls record their keywords as one dict. :meth:`FakeAdminClient.called` asks about them.
* Unary calls look objects up in the lists given (unknown names or ids: ``NOT_FOUND``) and
  raise :attr:`FakeAdminClient.fail` when it is set, or ``refuse[method]`` for that method
  alone (after recording the call). A new key's id is ``new_key_id`` (default ``key_<name>``).
* Streams (``tail_logs``, ``tail_audit``, ``stream_stats``) send the history, then, when
  following, what the test pushes (``push_log``, ``push_audit``, ``push_stats``); with
  ``ends_streams`` a follow ends after the history, as when the server shuts down. Their own
  failures are ``audit_error`` and ``stats_error`` (``fail`` is for unary calls only).
* gwctl builds its client itself: tests put :meth:`FakeAdminClient.connect` in the place of the
  ``GatewayClient`` class; it records ``("__init__", (target, token))`` and returns the fake.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from types import TracebackType
from typing import Any, Self, TypeVar

import grpc

from gwapi.v1 import admin_pb2, common_pb2, discovery_pb2, telemetry_pb2
from gwclient.api import AdminAPI
from gwclient.errors import ClientError

# What the fake stamps on an object it revokes or disables.
CHANGED_AT_MS = 1_700_000_900_000
T = TypeVar("T")


class FakeAdminClient:
    def __init__(
        self,
        *,
        target: str = "fake-control-plane:50051",
        workspaces: Iterable[common_pb2.Workspace] = (),
        keys: Iterable[common_pb2.VirtualKey] = (),
        providers: Iterable[common_pb2.Provider] = (),
        routes: Iterable[common_pb2.Route] = (),
        developers: Iterable[common_pb2.Developer] = (),
        dataplanes: discovery_pb2.ListDataPlanesResponse | None = None,
        usage: dict[str, list[telemetry_pb2.UsageRow]] | None = None,
        alerts: Iterable[telemetry_pb2.BudgetAlert] = (),
        logs: Iterable[telemetry_pb2.UsageEvent] = (),
        audit: Iterable[admin_pb2.AuditEvent] = (),
        new_key_id: str = "",
        new_key_secret: str = "gw-NewFakeSecret0123456789abcdef",
        ends_streams: bool = False,
    ) -> None:
        self.target = target
        self.token = ""
        self.workspaces = list(workspaces)
        self.keys = list(keys)
        self.providers = list(providers)
        self.routes = list(routes)
        self.developers = list(developers)
        self.dataplanes = dataplanes or discovery_pb2.ListDataPlanesResponse()
        self.usage = dict(usage or {})  # rows per group_by
        self.alerts = list(alerts)
        self.initial_logs = list(logs)
        self.initial_audit = list(audit)
        self.new_key_id = new_key_id
        self.new_key_secret = new_key_secret
        self.ends_streams = ends_streams
        # request id -> (request body, response body) for requests whose workspace keeps bodies
        self.bodies: dict[str, tuple[bytes, bytes]] = {}
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.fail: ClientError | None = None
        self.refuse: dict[str, ClientError] = {}  # method name -> its failure
        self.revoked: list[str] = []
        self.disabled: list[str] = []
        self.tail_calls = 0
        self.audit_calls = 0
        self.stats_calls: list[str] = []
        self.audit_error: ClientError | None = None
        self.stats_error: ClientError | None = None
        self._log_queue: asyncio.Queue[telemetry_pb2.UsageEvent] | None = None
        self._audit_queue: asyncio.Queue[admin_pb2.AuditEvent] | None = None
        self._stats_queues: dict[str, asyncio.Queue[telemetry_pb2.StatsFrame]] = {}

    # ---- the test's side ----------------------------------------------------------------------

    def connect(self, target: str, token: str = "", **_: object) -> Self:
        """Stands for ``GatewayClient(target, token, …)`` in the code under test."""
        self.target, self.token = target, token
        self.calls.append(("__init__", (target, token)))
        return self

    def called(self, name: str, **kwargs: object) -> bool:
        """Whether ``name`` was called (with these keywords, for a keyword-only call)."""
        return any(
            method == name
            and all(
                args and isinstance(args[0], dict) and args[0].get(k) == v
                for k, v in kwargs.items()
            )
            for method, args in self.calls
        )

    def push_log(self, event: telemetry_pb2.UsageEvent) -> None:
        self._queue_of_logs().put_nowait(event)

    def push_audit(self, event: admin_pb2.AuditEvent) -> None:
        self._queue_of_audit().put_nowait(event)

    def push_stats(self, group_by: str, *rows: telemetry_pb2.StatsRow) -> None:
        self._stats_queue(group_by).put_nowait(
            telemetry_pb2.StatsFrame(time_ms=1_700_000_000_000, rows=rows)
        )

    def _record(self, name: str, *args: Any) -> None:
        self.calls.append((name, args))
        failure = self.refuse.get(name, self.fail)
        if failure is not None:
            raise failure

    def _queue_of_logs(self) -> asyncio.Queue[telemetry_pb2.UsageEvent]:
        if self._log_queue is None:
            self._log_queue = asyncio.Queue()
        return self._log_queue

    def _queue_of_audit(self) -> asyncio.Queue[admin_pb2.AuditEvent]:
        if self._audit_queue is None:
            self._audit_queue = asyncio.Queue()
        return self._audit_queue

    def _stats_queue(self, group_by: str) -> asyncio.Queue[telemetry_pb2.StatsFrame]:
        return self._stats_queues.setdefault(group_by, asyncio.Queue())

    # ---- the client's side --------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    async def create_workspace(self, workspace: common_pb2.Workspace) -> common_pb2.Workspace:
        self._record("create_workspace", workspace)
        return workspace

    async def get_workspace(self, name: str) -> common_pb2.Workspace:
        self._record("get_workspace", name)
        return _find(self.workspaces, "workspace", name, lambda w: w.name == name)

    async def list_workspaces(self) -> list[common_pb2.Workspace]:
        self._record("list_workspaces")
        return list(self.workspaces)

    async def update_workspace(
        self, workspace: common_pb2.Workspace, paths: Iterable[str]
    ) -> common_pb2.Workspace:
        self._record("update_workspace", workspace, list(paths))
        return workspace

    async def create_key(self, request: admin_pb2.CreateKeyRequest) -> admin_pb2.CreateKeyResponse:
        self._record("create_key", request)
        return self._new_key(request)

    async def create_keys(
        self, workspace: str, requests: list[admin_pb2.CreateKeyRequest]
    ) -> admin_pb2.CreateKeysResponse:
        self._record("create_keys", workspace, requests)
        return admin_pb2.CreateKeysResponse(keys=[self._new_key(r) for r in requests])

    def _new_key(self, request: admin_pb2.CreateKeyRequest) -> admin_pb2.CreateKeyResponse:
        key = common_pb2.VirtualKey(
            id=self.new_key_id or f"key_{request.name}",
            workspace=request.workspace,
            name=request.name,
            provider=request.provider,
            route=request.route,
            prefix=self.new_key_secret[:8],
            limits=request.limits,
            created_at_ms=1_700_000_000_000,
        )
        return admin_pb2.CreateKeyResponse(key=key, secret=self.new_key_secret)

    async def get_key(self, key_id: str) -> common_pb2.VirtualKey:
        self._record("get_key", key_id)
        return _find(self.keys, "key", key_id, lambda k: k.id == key_id)

    async def list_keys(
        self, workspace: str = "", include_revoked: bool = False
    ) -> list[common_pb2.VirtualKey]:
        self._record("list_keys", workspace, include_revoked)
        return [
            k
            for k in self.keys
            if (include_revoked or not k.revoked_at_ms) and workspace in ("", k.workspace)
        ]

    async def update_key(
        self, key: common_pb2.VirtualKey, paths: Iterable[str]
    ) -> common_pb2.VirtualKey:
        self._record("update_key", key, list(paths))
        return _find(self.keys, "key", key.id, lambda k: k.id == key.id)

    async def revoke_key(self, key_id: str) -> common_pb2.VirtualKey:
        self._record("revoke_key", key_id)
        self.revoked.append(key_id)
        key = _find(self.keys, "key", key_id, lambda k: k.id == key_id)
        key.revoked_at_ms = CHANGED_AT_MS
        return key

    async def create_provider(
        self, provider: common_pb2.Provider, api_key: str = ""
    ) -> common_pb2.Provider:
        self._record("create_provider", provider, api_key)
        return provider

    async def validate(
        self,
        providers: Iterable[common_pb2.Provider] = (),
        routes: Iterable[common_pb2.Route] = (),
        workspaces: Iterable[common_pb2.Workspace] = (),
    ) -> list[admin_pb2.ValidationResult]:
        """Every object accepted as it is (the control plane's rules are its own tests')."""
        providers, routes, workspaces = list(providers), list(routes), list(workspaces)
        self._record("validate", providers, routes, workspaces)
        return [
            *(admin_pb2.ValidationResult(kind="provider", name=p.name, provider=p) for p in providers),
            *(admin_pb2.ValidationResult(kind="route", name=r.name, route=r) for r in routes),
            *(admin_pb2.ValidationResult(kind="workspace", name=w.name, workspace=w)
              for w in workspaces),
        ]  # fmt: skip

    async def list_providers(self) -> list[common_pb2.Provider]:
        self._record("list_providers")
        return list(self.providers)

    async def create_route(self, route: common_pb2.Route) -> common_pb2.Route:
        self._record("create_route", route)
        return route

    async def get_route(self, name: str) -> common_pb2.Route:
        self._record("get_route", name)
        return _find(self.routes, "route", name, lambda r: r.name == name)

    async def list_routes(self) -> list[common_pb2.Route]:
        self._record("list_routes")
        return list(self.routes)

    async def update_route(self, route: common_pb2.Route, paths: Iterable[str]) -> common_pb2.Route:
        self._record("update_route", route, list(paths))
        return route

    async def list_developers(
        self, workspace: str = "", include_disabled: bool = False
    ) -> list[common_pb2.Developer]:
        self._record("list_developers", workspace, include_disabled)
        return [d for d in self.developers if include_disabled or not d.disabled_at_ms]

    async def disable_developer(self, id_or_email: str) -> common_pb2.Developer:
        self._record("disable_developer", id_or_email)
        self.disabled.append(id_or_email)
        developer = _find(
            self.developers, "developer", id_or_email, lambda d: id_or_email in (d.id, d.email)
        )
        developer.disabled_at_ms = CHANGED_AT_MS
        developer.active_sessions = 0
        return developer

    async def list_dataplanes(self) -> discovery_pb2.ListDataPlanesResponse:
        self._record("list_dataplanes")
        return self.dataplanes

    async def query_usage(
        self,
        *,
        workspace: str = "",
        key_id: str = "",
        group_by: str = "",
        since_ms: int = 0,
        until_ms: int = 0,
        developer_id: str = "",
    ) -> Sequence[telemetry_pb2.UsageRow]:
        self._record("query_usage", dict(
            workspace=workspace, key_id=key_id, group_by=group_by, since_ms=since_ms,
            until_ms=until_ms, developer_id=developer_id,
        ))  # fmt: skip
        return list(self.usage.get(group_by, []))

    async def list_alerts(
        self, *, workspace: str = "", since_ms: int = 0, limit: int = 0
    ) -> list[telemetry_pb2.BudgetAlert]:
        self._record("list_alerts", dict(workspace=workspace, since_ms=since_ms, limit=limit))
        return list(self.alerts)

    async def get_log(self, request_id: str) -> telemetry_pb2.UsageEvent:
        """The full record of a logged request; only those in ``bodies`` kept bodies."""
        self._record("get_log", request_id)
        event = next((e for e in self.initial_logs if e.request_id == request_id), None)
        if event is None or request_id not in self.bodies:
            raise ClientError(grpc.StatusCode.NOT_FOUND, f"no log for {request_id}")
        full = telemetry_pb2.UsageEvent()
        full.CopyFrom(event)
        request, response = self.bodies[request_id]
        full.request_headers.update({"anthropic-version": "2023-06-01", "x-api-key": "[redacted]"})
        full.request_body, full.response_body = request, response
        return full

    async def tail_logs(
        self,
        *,
        follow: bool = False,
        limit: int = 20,
        workspace: str = "",
        key_id: str = "",
        session_id: str = "",
        developer_id: str = "",
    ) -> AsyncIterator[telemetry_pb2.UsageEvent]:
        self.calls.append(("tail_logs", (dict(
            follow=follow, limit=limit, workspace=workspace, key_id=key_id,
            session_id=session_id, developer_id=developer_id,
        ),)))  # fmt: skip
        self.tail_calls += 1
        for event in self.initial_logs[-limit:]:
            yield event
        while follow and not self.ends_streams:
            yield await self._queue_of_logs().get()

    async def tail_audit(
        self, *, follow: bool = False, limit: int = 20, workspace: str = ""
    ) -> AsyncIterator[admin_pb2.AuditEvent]:
        self.calls.append(("tail_audit", (dict(follow=follow, limit=limit, workspace=workspace),)))
        self.audit_calls += 1
        if self.audit_error is not None:
            raise self.audit_error
        for event in self.initial_audit[-limit:]:
            yield event
        while follow and not self.ends_streams:
            yield await self._queue_of_audit().get()

    async def stream_stats(
        self, group_by: str, window_s: int = 60, workspace: str = ""
    ) -> AsyncIterator[telemetry_pb2.StatsFrame]:
        self.calls.append(("stream_stats", (group_by, window_s, workspace)))
        self.stats_calls.append(group_by)
        if self.stats_error is not None:
            raise self.stats_error
        queue = self._stats_queue(group_by)
        while not self.ends_streams:
            yield await queue.get()


def _find(items: list[T], kind: str, name: str, match: Callable[[T], bool]) -> T:
    for item in items:
        if match(item):
            return item
    raise ClientError(grpc.StatusCode.NOT_FOUND, f"{kind} {name!r} does not exist")


_: AdminAPI = FakeAdminClient()  # mypy: the fake has every method of the protocol, same shapes
