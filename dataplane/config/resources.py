"""The configuration a snapshot carries, as frozen value objects: workspaces, virtual keys, their
limits and budgets, providers and routes.

Parsed and validated from the proto by :mod:`dataplane.config.snapshot` (which also exports them), used
everywhere on the request path; nothing here changes once built. Developers and the sign-in
pieces are :mod:`dataplane.config.members`'.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from typing import Literal

from dataplane.config.members import ManagedSettings
from dataplane.errors import GatewayError, Misconfigured
from gwapi.v1 import common_pb2
from gwcommon import breaker_defaults


class SnapshotError(ValueError):
    """The snapshot is inconsistent; the data plane refuses (NACKs) it."""


class Period(enum.Enum):
    DAY = "day"
    WEEK = "week"
    MONTH = "month"
    LIFETIME = "lifetime"


PERIODS = {
    common_pb2.PERIOD_DAY: Period.DAY,
    common_pb2.PERIOD_WEEK: Period.WEEK,
    common_pb2.PERIOD_MONTH: Period.MONTH,
    common_pb2.PERIOD_LIFETIME: Period.LIFETIME,
}


@dataclass(frozen=True, slots=True)
class Budget:
    amount_micros: int
    period: Period


@dataclass(frozen=True, slots=True)
class Limits:
    budgets: tuple[Budget, ...] = ()
    rpm: int = 0
    rph: int = 0
    tpm: int = 0
    max_parallel: int = 0

    @classmethod
    def from_proto(cls, msg: common_pb2.Limits) -> Limits:
        budgets = []
        for b in msg.budgets:
            if b.period not in PERIODS:
                raise SnapshotError(f"budget with unknown period {b.period}")
            if b.amount_micros < 0:
                raise SnapshotError("budget amount is negative")
            budgets.append(Budget(b.amount_micros, PERIODS[b.period]))
        if min(msg.rpm, msg.rph, msg.tpm, msg.max_parallel) < 0:
            raise SnapshotError("negative rate limit")
        return cls(tuple(budgets), msg.rpm, msg.rph, msg.tpm, msg.max_parallel)

    @classmethod
    def shared(cls, msg: common_pb2.Limits) -> Limits:
        """Like :meth:`from_proto`, but one frozen object per distinct value: thousands of keys
        usually share a handful of limits (memory per key matters at fleet scale)."""
        raw = msg.SerializeToString(deterministic=True)
        limits = _SHARED_LIMITS.get(raw)
        if limits is None:
            if len(_SHARED_LIMITS) >= MAX_SHARED_LIMITS:
                _SHARED_LIMITS.clear()
            limits = _SHARED_LIMITS[raw] = cls.from_proto(msg)
        return limits


MAX_SHARED_LIMITS = 4096
_SHARED_LIMITS: dict[bytes, Limits] = {}


@dataclass(frozen=True, slots=True)
class Workspace:
    name: str
    limits: Limits
    timezone: str
    redis_failure: Literal["", "closed", "open"] = ""  # "" = closed; see gwapi Workspace
    min_client_version: str = ""  # "" = any Claude Code version
    min_client_parts: tuple[int, ...] = ()  # the same, parsed for numeric comparison
    log_bodies: Literal["none", "metadata", "full"] = "none"  # request logging policy
    log_body_max_bytes: int = 256 * 1024  # cap per logged body (full)
    # Access controls (gwcommon.allowlists; empty = everything). ``models_re`` is allowed_models
    # compiled once per snapshot into one regex (None = every model): O(1) regex call per request.
    allowed_providers: tuple[str, ...] = ()
    allowed_routes: tuple[str, ...] = ()
    allowed_models: tuple[str, ...] = ()
    models_re: re.Pattern[str] | None = None
    # Claude Code managed settings for the workspace's signed-in developers (None = no policy).
    managed_settings: ManagedSettings | None = None

    def allows_model(self, model: str) -> bool:
        return self.models_re is None or self.models_re.match(model) is not None


@dataclass(frozen=True, slots=True)
class VirtualKey:
    """A ``gw-…`` key: a :class:`dataplane.config.members.Member` of its workspace."""

    id: str
    name: str
    workspace: str
    limits: Limits
    provider: str
    route: str
    models: tuple[str, ...]
    expires_at_ms: int
    revoked: bool

    kind = "key"
    model_denied_status = 403
    sees_managed_settings = False
    developer_id = ""
    developer_email = ""

    @property
    def counter(self) -> str:
        return "k:" + self.id

    @property
    def label(self) -> str:
        return f"key '{self.name}'"

    @property
    def title(self) -> str:
        return f"Virtual key '{self.name}'"

    @property
    def key_id(self) -> str:
        return self.id

    @property
    def key_name(self) -> str:
        return self.name

    def no_target_error(self) -> GatewayError:
        return Misconfigured(
            503,
            f"Virtual key '{self.name}' has no provider or route. Ask your platform team to set "
            "the key's provider or route.",
        )


@dataclass(frozen=True, slots=True)
class ProviderConfig:
    name: str
    kind: str
    base_url: str
    api_key_env: str
    options: tuple[tuple[str, str], ...]
    # A secret is stored on the control plane for this provider; api_key is "" until it arrives.
    has_secret: bool = False
    # Compared (a rotation rebuilds the adapter) but never shown.
    api_key: str = field(default="", repr=False)

    def option(self, name: str, default: str = "") -> str:
        for k, v in self.options:
            if k == name:
                return v
        return default


@dataclass(frozen=True, slots=True)
class RouteTarget:
    provider: str
    weight: int
    model: str


@dataclass(frozen=True, slots=True)
class RouteConfig:
    name: str
    mode: str
    targets: tuple[RouteTarget, ...]
    retries: int
    retry_on: tuple[int, ...]
    timeout_connect_ms: int
    timeout_first_byte_ms: int
    timeout_idle_ms: int
    cache_ttl_s: int
    cache_sampled: bool = False  # cache answers to temperature > 0 requests too
    breaker_failures: int = (
        breaker_defaults.FAILURES
    )  # consecutive failures that open a target's breaker
    breaker_cooldown_s: int = (
        breaker_defaults.COOLDOWN_S
    )  # how long an open breaker skips its target before one probe
