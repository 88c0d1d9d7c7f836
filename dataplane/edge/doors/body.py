"""A Messages request body as the Anthropic door reads it: three fields now, the rest on demand.

The plain Anthropic path needs ``model``, ``stream`` and ``max_tokens`` of a body that is tens
of kilobytes of prompt, tools and history (Claude Code's: ~60 KB). :func:`read_head` decodes
those three with msgspec, which checks the whole document's JSON syntax but skips the other
members without building them: ~2.5x less CPU than orjson building the whole tree, and no tree
to free when the request ends (``make bench``: about a tenth of the data plane's CPU per
request went to that parse and that free). :class:`LazyObject` is the whole object for the
callers that need it (a route's model override rewrites the body, the response cache keys and
reads it, the Bedrock and Vertex adapters reshape it): parsed by orjson on first use, once.

Contract of :func:`read_head`, the same refusals as a full parse (400, an Anthropic-shaped
``invalid_request_error`` through :func:`dataplane.errors.bad_request`): a body that is not
JSON (syntax, truncation, invalid UTF-8 anywhere, nesting deeper than the decoder's limit) or
not a JSON object. A duplicated member counts by its last value, as orjson (and the upstream)
read it. One difference remains, by design: a number outside a double's range *inside the
skipped members* is not refused here (orjson would refuse it); the bytes go upstream as sent and
the provider judges them. If a :class:`LazyObject` is then materialised, its parse refuses the
body with the same 400.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import msgspec
import orjson

from dataplane.errors import bad_request


class Head(msgspec.Struct):
    """The members the request path reads; None when absent (any JSON value otherwise)."""

    model: Any = None
    stream: Any = None
    max_tokens: Any = None


_HEAD = msgspec.json.Decoder(Head)


def _not_json(detail: object) -> Exception:
    return bad_request(f"The request body is not valid JSON ({detail}).")


def read_head(body: bytes) -> Head:
    """``model``, ``stream`` and ``max_tokens`` of ``body``, which must be a JSON object (see the
    module docstring); raises the 400 otherwise."""
    try:
        head = _HEAD.decode(body)
    except msgspec.ValidationError:  # valid JSON, but an array, a string, a number, …
        raise bad_request("The request body must be a JSON object.") from None
    except msgspec.DecodeError as exc:
        raise _not_json(exc) from None
    except RecursionError:
        raise _not_json("nested too deeply") from None
    # msgspec does not check the UTF-8 of strings it skips; orjson (and the upstream) would.
    if not body.isascii():
        try:
            body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _not_json(f"invalid UTF-8 at byte {exc.start}") from None
    return head


def parse_object(body: bytes) -> dict[str, Any]:
    """The whole body as a dict (orjson); the 400 of the module docstring otherwise."""
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise _not_json(exc) from None
    if not isinstance(obj, dict):
        raise bad_request("The request body must be a JSON object.")
    return obj


class LazyObject(Mapping[str, Any]):
    """A read-only mapping over a JSON object's bytes, parsed the first time it is read.

    A body that :func:`read_head` accepted parses here too, except in the one case its module
    docstring names (then the first read raises the same 400). Copy it (``dict(obj)``) to change
    it."""

    __slots__ = ("_body", "_obj")

    def __init__(self, body: bytes) -> None:
        self._body = body
        self._obj: dict[str, Any] | None = None

    @property
    def parsed(self) -> bool:
        """Whether the body has been parsed (for tests and benchmarks)."""
        return self._obj is not None

    def _get(self) -> dict[str, Any]:
        obj = self._obj
        if obj is None:
            obj = self._obj = parse_object(self._body)
        return obj

    def __getitem__(self, key: str) -> Any:
        return self._get()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._get())

    def __len__(self) -> int:
        return len(self._get())

    def __contains__(self, key: object) -> bool:
        return key in self._get()

    def get(self, key: str, default: Any = None) -> Any:
        return self._get().get(key, default)

    def __repr__(self) -> str:
        state = "parsed" if self._obj is not None else "unparsed"
        return f"LazyObject({len(self._body)} bytes, {state})"
