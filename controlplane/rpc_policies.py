"""Who may call what: ONE table with a rule for every method of Admin, Telemetry, Discovery and
SignIn.

The auth interceptor (:mod:`controlplane.auth`) authenticates the caller, then applies the
method's :class:`Policy` here *before* the handler runs. Handlers never check roles by hand; the
only thing the service layer does with the principal is filter lists/queries/streams to its
workspaces (``identity.principal().workspaces``).

Rules:

* ``OPEN`` — health and reflection: no token.
* ``DATAPLANE`` — Watch, ReportUsage, ReportActivity and every SignIn call: the data-plane token
  (or the bootstrap admin token; never a created token, since Watch carries decrypted provider
  secrets and SignIn mints developers' tokens).
* ``ANY`` — any admin-API principal (WhoAmI).
* ``ADMIN_ONLY`` — role admin: workspaces, providers, routes, secrets, tokens.
* ``GLOBAL_READ`` — every admin-API role: providers, routes, prices, data planes.
* ``WORKSPACE_READ`` / ``WORKSPACE_WRITE`` — one object of one workspace, found by the policy's
  resolver (a name in the request, or a key / logged request looked up by id). Write allows
  admin and the workspace-admin of that workspace; a viewer is read-only.
* ``SCOPED_READ`` — a list/query/stream: a workspace the request names must be in the
  principal's scope; the results are filtered to that scope by the service layer.

"Learns nothing": a scoped principal gets the SAME status (PERMISSION_DENIED) and the same
message shape ("key 'key_…': not found in the workspaces this token can access") for an object
of another workspace and for an object that does not exist. Only an unscoped principal reaches
the handler's NOT_FOUND.

Methods missing from the table are denied to everyone but admins (deny by default); a test
asserts that every method of the four services has an explicit rule.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlmodel import Session

from controlplane.catalog import developers
from controlplane.catalog.workspaces import UPDATE_PATHS as WORKSPACE_UPDATE_PATHS
from controlplane.domain import keys as key_rules
from controlplane.domain.errors import PermissionDenied, Unauthenticated
from controlplane.identity import BOOTSTRAP, Principal, TokenRole
from controlplane.store.models.config import VirtualKeyRow
from controlplane.store.models.usage import UsageEventRow


class Rule(enum.Enum):
    OPEN = "open"
    DATAPLANE = "dataplane"
    ANY = "any"
    ADMIN_ONLY = "admin-only"
    GLOBAL_READ = "global-read"
    WORKSPACE_READ = "workspace-read"
    WORKSPACE_WRITE = "workspace-write"
    SCOPED_READ = "scoped-read"


@dataclass(frozen=True)
class Target:
    """What a request addresses: ``kind`` and ``label`` name it in messages; ``workspace`` is
    the workspace it belongs to (``None``: the object does not exist)."""

    kind: str
    label: str
    workspace: str | None


@dataclass(frozen=True)
class Resolve:
    """Finds a request's target; ``fn`` gets a session only when ``needs_db`` (and then only
    for scoped principals: an unscoped one is allowed whatever the target)."""

    fn: Callable[[Any, Session | None], Target | None]
    needs_db: bool = False


@dataclass(frozen=True)
class Policy:
    rule: Rule
    resolve: Resolve | None = None  # WORKSPACE_* and SCOPED_READ
    mutates: bool = False  # ADMIN_ONLY: a viewer is told it is read-only
    check: Callable[[Principal, Any], None] | None = None  # extra per-field rule


def _named(kind: str, get: Callable[[Any], str]) -> Resolve:
    """The workspace is named in the request itself (``""`` for SCOPED_READ: not narrowed)."""

    def fn(request: Any, _s: Session | None) -> Target | None:
        name = get(request)
        return Target(kind, name, name) if name else None

    return Resolve(fn)


def _key_of(get_id: Callable[[Any], str]) -> Resolve:
    def fn(request: Any, s: Session | None) -> Target:
        key_id = key_rules.validate_key_id(get_id(request))
        assert s is not None
        row = s.get(VirtualKeyRow, key_id)
        return Target("key", key_id, row.workspace if row is not None else None)

    return Resolve(fn, needs_db=True)


def _developer_of(get: Callable[[Any], str]) -> Resolve:
    """A developer named by id or email; its workspace (``None``: no such developer)."""

    def fn(request: Any, s: Session | None) -> Target:
        assert s is not None
        label = get(request).strip()[:320]
        return Target("developer", label, developers.workspace_of(s, label))

    return Resolve(fn, needs_db=True)


def _logged_request(request: Any, s: Session | None) -> Target:
    assert s is not None
    rid = request.request_id
    row = s.get(UsageEventRow, rid) if rid else None
    return Target("request", rid[:130], row.workspace if row is not None else None)


# The fields a workspace-admin may change on its own workspaces; everything else (limits,
# timezone, redis_failure, access controls, and any field added later) is admin-only.
WORKSPACE_ADMIN_FIELDS = frozenset(
    {
        "description",
        "alert_webhook",
        "alert_format",
        "min_client_version",
        "log_bodies",
        "log_body_max_bytes",
        "log_retention_days",
    }
)


def _workspace_fields(principal: Principal, request: Any) -> None:
    if principal.role is not TokenRole.WORKSPACE_ADMIN:
        return
    paths = list(request.update_mask.paths)
    if not paths:  # as catalog.common.resolve_mask: every allowed top-level field that is set
        present = {fd.name for fd, _ in request.workspace.ListFields()}
        paths = [p for p in WORKSPACE_UPDATE_PATHS if "." not in p and p in present]
    denied = sorted({p for p in paths if p.split(".", 1)[0] not in WORKSPACE_ADMIN_FIELDS})
    if denied:
        raise PermissionDenied(
            f"changing {', '.join(denied)} of a workspace needs an admin token; a workspace-admin "
            f"may change {', '.join(sorted(WORKSPACE_ADMIN_FIELDS))}"
        )


_A, _T, _D = "/gwapi.v1.Admin/", "/gwapi.v1.Telemetry/", "/gwapi.v1.Discovery/"
_S = "/gwapi.v1.SignIn/"
_DATAPLANE = Policy(Rule.DATAPLANE)
_ADMIN_WRITE = Policy(Rule.ADMIN_ONLY, mutates=True)
_GLOBAL = Policy(Rule.GLOBAL_READ)


def _scoped(get: Callable[[Any], str] = lambda r: r.workspace) -> Policy:
    return Policy(Rule.SCOPED_READ, _named("workspace", get))


_KEY_WRITE_BY_ID = Policy(Rule.WORKSPACE_WRITE, _key_of(lambda r: r.id))

POLICIES: dict[str, Policy] = {
    # -- workspaces
    _A + "CreateWorkspace": _ADMIN_WRITE,
    _A + "GetWorkspace": Policy(Rule.WORKSPACE_READ, _named("workspace", lambda r: r.name)),
    _A + "ListWorkspaces": Policy(Rule.SCOPED_READ),
    _A + "UpdateWorkspace": Policy(
        Rule.WORKSPACE_WRITE,
        _named("workspace", lambda r: r.workspace.name),
        check=_workspace_fields,
    ),
    _A + "DeleteWorkspace": _ADMIN_WRITE,
    # -- keys
    _A + "CreateKey": Policy(Rule.WORKSPACE_WRITE, _named("workspace", lambda r: r.workspace)),
    _A + "CreateKeys": Policy(Rule.WORKSPACE_WRITE, _named("workspace", lambda r: r.workspace)),
    _A + "GetKey": Policy(Rule.WORKSPACE_READ, _key_of(lambda r: r.id)),
    _A + "ListKeys": _scoped(),
    _A + "UpdateKey": Policy(Rule.WORKSPACE_WRITE, _key_of(lambda r: r.key.id)),
    _A + "RevokeKey": _KEY_WRITE_BY_ID,
    _A + "DeleteKey": _KEY_WRITE_BY_ID,
    # -- providers, routes, prices: global objects
    _A + "CreateProvider": _ADMIN_WRITE,
    _A + "GetProvider": _GLOBAL,
    _A + "ListProviders": _GLOBAL,
    _A + "UpdateProvider": _ADMIN_WRITE,
    _A + "DeleteProvider": _ADMIN_WRITE,
    _A + "RotateProviderSecret": _ADMIN_WRITE,
    _A + "CreateRoute": _ADMIN_WRITE,
    _A + "GetRoute": _GLOBAL,
    _A + "ListRoutes": _GLOBAL,
    _A + "UpdateRoute": _ADMIN_WRITE,
    _A + "DeleteRoute": _ADMIN_WRITE,
    _A + "ListPrices": _GLOBAL,
    _A + "Validate": _ADMIN_WRITE,  # a dry run of provider, route and workspace writes
    # -- tokens: only admins manage them; everyone may ask who they are
    _A + "CreateToken": _ADMIN_WRITE,
    _A + "ListTokens": Policy(Rule.ADMIN_ONLY),
    _A + "RevokeToken": _ADMIN_WRITE,
    _A + "WhoAmI": Policy(Rule.ANY),
    # -- audit log: filtered to the principal's workspaces
    _A + "ListAudit": _scoped(),
    _A + "TailAudit": _scoped(),
    # -- sign-in with Claude Code: the SSO configuration is the platform's (admins only);
    # developers belong to a workspace, like keys
    _A + "GetSso": Policy(Rule.ADMIN_ONLY),
    _A + "SetSso": _ADMIN_WRITE,
    _A + "DeleteSso": _ADMIN_WRITE,
    _A + "RotateSigningKey": _ADMIN_WRITE,
    _A + "ListDevelopers": _scoped(),
    _A + "GetDeveloper": Policy(Rule.WORKSPACE_READ, _developer_of(lambda r: r.id)),
    _A + "UpdateDeveloper": Policy(Rule.WORKSPACE_WRITE, _developer_of(lambda r: r.developer.id)),
    _A + "DisableDeveloper": Policy(Rule.WORKSPACE_WRITE, _developer_of(lambda r: r.id)),
    _A + "EnableDeveloper": Policy(Rule.WORKSPACE_WRITE, _developer_of(lambda r: r.id)),
    # -- where Claude Code's telemetry goes: global (collector headers are secrets)
    _A + "ListTelemetryDestinations": _GLOBAL,
    _A + "AddTelemetryDestination": _ADMIN_WRITE,
    _A + "RemoveTelemetryDestination": _ADMIN_WRITE,
    # -- telemetry
    _T + "ReportUsage": _DATAPLANE,
    _T + "ReportActivity": _DATAPLANE,
    _T + "QueryUsage": _scoped(),
    _T + "TailLogs": _scoped(),
    _T + "ListAlerts": _scoped(),
    # Stats frames are aggregated per (workspace, group), so a scoped principal's frames are
    # computed from its workspaces' traffic only (a provider row then shows only that share).
    _T + "StreamStats": _scoped(),
    _T + "GetLog": Policy(Rule.WORKSPACE_READ, Resolve(_logged_request, needs_db=True)),
    # -- discovery
    _D + "Watch": _DATAPLANE,
    _D + "DeltaWatch": _DATAPLANE,
    _D + "ListDataPlanes": _GLOBAL,
    # -- sign-in steps, served by data planes
    _S + "StartDevice": _DATAPLANE,
    _S + "PollDevice": _DATAPLANE,
    _S + "BeginBrowser": _DATAPLANE,
    _S + "CompleteBrowser": _DATAPLANE,
    _S + "Refresh": _DATAPLANE,
}

_OPEN_PREFIXES = (
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1alpha.ServerReflection/",
    "/grpc.reflection.v1.ServerReflection/",
)
_OPEN = Policy(Rule.OPEN)
_DEFAULT = Policy(Rule.ADMIN_ONLY, mutates=True)  # deny by default


def policy_for(method: str) -> Policy:
    """The method's policy; health/reflection are open; anything unlisted is admin-only."""
    if method.startswith(_OPEN_PREFIXES):
        return _OPEN
    return POLICIES.get(method, _DEFAULT)


def short_name(method: str) -> str:
    return method.rpartition("/")[2]


def describe(p: Principal) -> str:
    """``"viewer"``, ``"workspace-admin of a, b"``: how a refusal names the caller's role."""
    if p.workspaces:
        return f"{p.role.value} of {', '.join(sorted(p.workspaces))}"
    return p.role.value


READ_ONLY = "this token is read-only (viewer)"
DATAPLANE_ONLY = (
    "this call needs an admin token; the data-plane token only allows Watch, DeltaWatch, "
    "ReportUsage, ReportActivity and the SignIn calls"
)


def not_accessible(target: Target) -> PermissionDenied:
    """The one refusal for "in another workspace" and "does not exist" alike."""
    return PermissionDenied(
        f"{target.kind} {target.label!r}: not found in the workspaces this token can access"
    )


def check_role(policy: Policy, p: Principal, method: str) -> None:
    """The part of the decision that needs no request: raises on refusal."""
    if policy.rule is Rule.OPEN:
        return
    if p.role is TokenRole.DATAPLANE:
        if policy.rule is Rule.DATAPLANE:
            return
        raise Unauthenticated(DATAPLANE_ONLY)
    if policy.rule is Rule.DATAPLANE:
        # Watch carries decrypted provider secrets: only the data-plane token and the bootstrap
        # admin token (which holds everything anyway) may call it, never a created token.
        if p.id == BOOTSTRAP.id:
            return
        raise PermissionDenied(
            f"{short_name(method)} is for data planes: use the data-plane token "
            f"(this token is {describe(p)})"
        )
    if policy.rule is Rule.ADMIN_ONLY and p.role is not TokenRole.ADMIN:
        if policy.mutates and p.role is TokenRole.VIEWER:
            raise PermissionDenied(READ_ONLY)
        raise PermissionDenied(
            f"{short_name(method)} needs an admin token (this token is {describe(p)})"
        )
    if policy.rule is Rule.WORKSPACE_WRITE and p.role is TokenRole.VIEWER:
        raise PermissionDenied(READ_ONLY)


def check_target(policy: Policy, p: Principal, request: Any, target: Target | None) -> None:
    """The workspace part: the target must lie in the principal's scope (when it has one)."""
    if policy.rule not in (Rule.WORKSPACE_READ, Rule.WORKSPACE_WRITE, Rule.SCOPED_READ):
        return
    if p.workspaces and target is not None:
        if target.workspace is None or target.workspace not in p.workspaces:
            raise not_accessible(target)
    if policy.check is not None:
        policy.check(p, request)


def needs_lookup(policy: Policy, p: Principal) -> bool:
    """Whether deciding needs the resolver's database read (only for scoped principals)."""
    return policy.resolve is not None and policy.resolve.needs_db and bool(p.workspaces)
