"""A workspace's Claude Code managed settings (served at ``/managed/settings``): validation, the
canonical form that is stored and served, and its checksum.

Contract of :func:`parse_managed_settings`:

* ``""`` means "no policy" (the data plane answers 404) and returns ``None``.
* Otherwise the text must be one JSON object of at most :data:`MAX_BYTES` bytes (UTF-8), without
  duplicate keys, ``NaN``/``Infinity`` or nesting deeper than :data:`MAX_DEPTH`; its ``env``, if
  present, must be an object whose values are all strings (Claude Code exports them as
  environment variables). ``{}`` is an empty policy, which is not the same as none.
* The canonical form is the object re-serialised with sorted keys, no insignificant whitespace
  and non-ASCII characters kept; ``checksum`` is the SHA-256 hex of its UTF-8 bytes. The same
  policy written differently yields the same checksum, so a re-upload does not make every client
  download it again.

Every refusal is :class:`InvalidArgument` naming the problem (with the JSON error's line and
column when the text does not parse).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from controlplane.domain.errors import InvalidArgument, shown
from controlplane.domain.names import unique_keys

MAX_BYTES = 64 * 1024
MAX_DEPTH = 32


@dataclass(frozen=True, slots=True)
class ManagedSettings:
    canonical: str
    checksum: str


_no_duplicates = unique_keys(lambda key: f"managed settings: the key {key} appears twice")


def _no_constants(name: str) -> Any:
    raise InvalidArgument(f"managed settings: {name} is not valid JSON")


def _depth(value: Any, level: int = 1) -> int:
    if level > MAX_DEPTH:
        return level
    if isinstance(value, dict):
        return max([level, *(_depth(v, level + 1) for v in value.values())])
    if isinstance(value, list):
        return max([level, *(_depth(v, level + 1) for v in value)])
    return level


def parse_managed_settings(text: str) -> ManagedSettings | None:
    """The canonical policy, or ``None`` for ``""`` (no policy). See the module contract."""
    if text == "":
        return None
    size = len(text.encode("utf-8"))
    if size > MAX_BYTES:
        raise InvalidArgument(
            f"managed settings are {size} bytes; at most {MAX_BYTES} (64 KiB) are allowed"
        )
    try:
        doc = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
    except json.JSONDecodeError as exc:
        raise InvalidArgument(
            f"managed settings are not valid JSON: {exc.msg} at line {exc.lineno} column "
            f"{exc.colno}"
        ) from None
    except RecursionError:
        raise InvalidArgument(
            f"managed settings are nested too deeply (at most {MAX_DEPTH} levels)"
        ) from None
    if not isinstance(doc, dict):
        raise InvalidArgument(
            'managed settings must be a JSON object such as {"env": {...}, "permissions": '
            f"{{...}}}}, got a JSON {type(doc).__name__.replace('dict', 'object')}"
        )
    if _depth(doc) > MAX_DEPTH:
        raise InvalidArgument(
            f"managed settings are nested too deeply (at most {MAX_DEPTH} levels)"
        )
    env = doc.get("env")
    if env is not None:
        if not isinstance(env, dict):
            raise InvalidArgument(
                'managed settings: "env" must be an object of environment variables, e.g. '
                '{"env": {"CLAUDE_CODE_ENABLE_GATEWAY_MODEL_DISCOVERY": "1"}}'
            )
        for name, value in env.items():
            if not isinstance(value, str):
                kind = {bool: "true/false", int: "number", float: "number", dict: "object"}.get(
                    type(value), "list" if isinstance(value, list) else "null"
                )
                raise InvalidArgument(
                    f"managed settings: env value {shown(name)} must be a string (environment "
                    f'variables are text, e.g. "1"), got a JSON {kind}'
                )
    canonical = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    checksum = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    return ManagedSettings(canonical=canonical, checksum=checksum)
