"""A data plane's settings, the checks its flags need, and its node id: stdlib only, so the
``--workers`` supervisor (:mod:`dataplane.process.workers`) and ``gwctl dataplane serve``'s argument
parsing (:mod:`dataplane.process.cli`) do not load the server's libraries (Hypercorn, gRPC, aiohttp).

:func:`settings_to_json` / :func:`settings_from_json` carry a worker's settings over its stdin
pipe (secrets never in argv or the environment).
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from dataplane.private import make_private, write_atomic
from dataplane.process.workerrole import WorkerRole

OTLP_ENDPOINT_ENV = "TOLLGATE_OTLP_ENDPOINT"
DEFAULT_MAX_BODY = 32 * 1024 * 1024


@dataclass(frozen=True)
class Settings:
    listen: str = "127.0.0.1:8080"
    control_plane: str = "127.0.0.1:50051"
    token: str = ""
    state_dir: Path = Path(".tollgate/dataplane")
    max_body: int = DEFAULT_MAX_BODY
    # PEM CA that signed the control plane's certificate: talk to it over TLS ("" = plaintext).
    tls_ca: str = ""
    drain_seconds: float = 0.0  # how long /healthz reports draining before the listener closes
    # Slow clients: a connection must complete its request headers (or, idle between requests,
    # start the next one) within keep_alive_s, and a request's body must be complete within
    # body_timeout_s of its start (408 otherwise); either way the connection is freed.
    keep_alive_s: float = 75.0
    body_timeout_s: float = 60.0
    # How long in-flight requests may run on after the listener closed (SIGTERM, stop()).
    graceful_s: float = 30.0
    # Shared counters for budgets and rate limits across replicas; "" = in-process (one replica).
    redis_url: str = field(default="", repr=False)
    redis_prefix: str = "tollgate:"
    env: Mapping[str, str] | None = field(default=None, repr=False)
    # The URL developers sign in to with Claude Code (https://gw.example.com). "" = derived from
    # the request's Host, on a loopback listener only; elsewhere sign-in then says to set it.
    public_url: str = ""
    # The gateway's own traces (dataplane.edge.tracing): an OTLP/HTTP collector's base URL, and the
    # headers its exports carry (an API key: never on the command line). "" = no tracing.
    otlp_endpoint: str = ""
    otlp_headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    otlp_flush_s: float = 5.0  # at stop, how long queued spans may take to reach the collector
    # One worker of `--workers N` (dataplane.process.workers): its index, the listening socket it
    # inherited (or SO_REUSEPORT), its own node id, and the peers /metrics gathers from.
    worker: WorkerRole | None = None
    # Spools of workers that no longer run (another --workers count before): replayed too.
    adopt_spools: tuple[Path, ...] = ()


def parse_otlp_endpoint(url: str) -> str:
    """``--otlp-endpoint``: an http(s) URL with a host; refused with a readable reason."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(
            f"--otlp-endpoint must be an http:// or https:// URL of an OTLP/HTTP collector, "
            f"e.g. http://127.0.0.1:4318 (got {url[:100]!r})"
        )
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError(
            "--otlp-endpoint takes no query, fragment or credentials: put an API key in a "
            "variable named by --otlp-headers-env"
        )
    return url


def otlp_headers_from_env(var: str, env: Mapping[str, str]) -> dict[str, str]:
    """The headers in ``env[var]``, ``k=v,k2=v2`` as ``OTEL_EXPORTER_OTLP_HEADERS`` (values
    URL-encoded)."""
    from opentelemetry.util.re import parse_env_headers

    value = env.get(var, "")
    if not value:
        raise ValueError(f"--otlp-headers-env names {var}, which is not set or empty")
    headers = dict(parse_env_headers(value, liberal=True))
    if not headers:
        raise ValueError(f"{var} holds no header: write it as name=value[,name2=value2]")
    return headers


def node_id(state_dir: Path) -> str:
    """A stable identity for this replica, kept across restarts."""
    path = state_dir / "node-id"
    try:
        node = path.read_text().strip()
        make_private(path)
        return node
    except FileNotFoundError:
        node = "dp-" + uuid.uuid4().hex[:12]
        write_atomic(path, node.encode())
        return node


def settings_to_json(settings: Settings, log_level: str) -> str:
    out: dict[str, Any] = {"log_level": log_level}
    for f in dataclasses.fields(settings):
        value = getattr(settings, f.name)
        if isinstance(value, Path):
            value = str(value)
        elif f.name == "adopt_spools":
            value = [str(p) for p in value]
        elif isinstance(value, WorkerRole):
            value = dataclasses.asdict(value)
        elif f.name in ("env", "otlp_headers") and value is not None:
            value = dict(value)
        out[f.name] = value
    return json.dumps(out)


def settings_from_json(text: str) -> tuple[Settings, str]:
    raw: dict[str, Any] = json.loads(text)
    level = str(raw.pop("log_level", "INFO"))
    raw["state_dir"] = Path(raw["state_dir"])
    raw["adopt_spools"] = tuple(Path(p) for p in raw.get("adopt_spools", ()))
    if raw.get("worker") is not None:
        raw["worker"] = WorkerRole(**raw["worker"])
    return Settings(**raw), level
