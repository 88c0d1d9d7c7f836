"""What ``gwctl apply`` reads a gateway file into, and the managed settings' canonical form.

The file's format is described in :mod:`gwctl.config_file`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from gwapi.v1 import common_pb2
from gwctl.config_fields import type_name


class ConfigError(Exception):
    """The file cannot be used; ``problems`` lists every ``path: reason``."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        shown = "\n".join(f"  {p}" for p in problems)
        super().__init__(f"{source}: {len(problems)} problem(s):\n{shown}")


@dataclass(frozen=True)
class KeySpec:
    """A key as the file describes it (keys have no name-based identity on the server)."""

    workspace: str
    name: str
    provider: str = ""
    route: str = ""
    models: tuple[str, ...] = ()
    limits: common_pb2.Limits = field(default_factory=common_pb2.Limits)

    @property
    def ident(self) -> str:
        return f"{self.workspace}/{self.name}"


@dataclass
class GatewayConfig:
    """The desired state. ``sections`` are the lists the file has (even empty): only those are
    compared, and only those are pruned."""

    sections: set[str] = field(default_factory=set)
    providers: list[common_pb2.Provider] = field(default_factory=list)
    routes: list[common_pb2.Route] = field(default_factory=list)
    workspaces: list[common_pb2.Workspace] = field(default_factory=list)
    keys: list[KeySpec] = field(default_factory=list)


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"the key {key!r} appears twice")
        out[key] = value
    return out


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def canonical_settings(text: str) -> str:
    """Managed settings in the control plane's stored form (``controlplane.domain.
    managed_settings``: one JSON object, keys sorted, no blanks, non-ASCII kept), so that the
    plan compares what the control plane will store. ``ValueError`` saying what is wrong."""
    try:
        doc = json.loads(text, object_pairs_hook=_no_duplicate_keys, parse_constant=_no_constants)
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}"
        ) from None
    except RecursionError:
        raise ValueError("the JSON is nested too deeply") from None
    if not isinstance(doc, dict):
        raise ValueError(f"managed settings must be a JSON object, got {type_name(doc)}")
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def settings_checksum(canonical: str) -> str:
    """SHA-256 hex of the canonical form, as the control plane computes it."""
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()
