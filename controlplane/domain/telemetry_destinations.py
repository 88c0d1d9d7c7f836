"""Rules for telemetry destinations: where data planes forward Claude Code's OTLP telemetry.

* ``url`` — the collector's OTLP/HTTP base URL (``/v1/{metrics,logs,traces}`` is appended):
  ``https://…``, or ``http://`` only to a loopback host (a collector on the data plane's own
  machine); no user:password (put credentials in a header, which is stored encrypted), no query
  or fragment; at most 2048 characters.
* ``headers`` — sent with every export (typically a collector API key): names are HTTP tokens,
  not headers the data plane itself sets; values are non-empty printable ASCII, at most 4096
  characters; at most 20 headers. Values are secret: never echoed in a message.
* ``signals`` — a subset of ``metrics``, ``logs``, ``traces`` (none = all three), returned in
  that order without repeats.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit

from controlplane.domain.errors import InvalidArgument, shown

SIGNALS = ("metrics", "logs", "traces")
MAX_URL = 2048
MAX_HEADERS = 20
MAX_HEADER_VALUE = 4096
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,100}$")
# Set by the data plane for every export, or hop-by-hop: a destination cannot override them.
RESERVED_HEADERS = frozenset(
    {
        "content-type",
        "content-length",
        "content-encoding",
        "transfer-encoding",
        "host",
        "connection",
        "keep-alive",
        "te",
        "trailer",
        "upgrade",
        "expect",
        "proxy-connection",
    }
)


def is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def validate_url(url: str) -> str:
    """The URL to store (trailing slashes removed), or :class:`InvalidArgument` saying why."""
    if not url:
        raise InvalidArgument(
            "url is required: the collector's OTLP/HTTP base URL, e.g. https://otel.example.com"
        )
    if len(url) > MAX_URL:
        raise InvalidArgument(f"url is too long ({len(url)} characters, at most {MAX_URL})")
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in url):
        raise InvalidArgument(f"url {shown(url)} contains spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise InvalidArgument(f"url {shown(url)} is not a valid URL") from None
    del port  # parsed only to reject a malformed port
    host = parts.hostname or ""
    if parts.scheme not in ("http", "https") or not host:
        raise InvalidArgument(
            f"url {shown(url)} must be https://host[:port][/path] (http:// only to a loopback "
            "collector)"
        )
    if parts.scheme == "http" and not is_loopback(host):
        raise InvalidArgument(
            f"url {shown(url)}: telemetry leaves the gateway over https only; plain http is "
            "accepted only for a loopback collector (127.0.0.1, ::1, localhost)"
        )
    if parts.username is not None or parts.password is not None:
        raise InvalidArgument(
            "url must not carry user:password: put the collector's credentials in a header "
            "(--header Authorization=…), which is stored encrypted"
        )
    if parts.query or parts.fragment:
        raise InvalidArgument(
            f"url {shown(url)} must not have a query or fragment: /v1/<signal> is appended to it"
        )
    return url.rstrip("/")


def validate_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Header names lower-cased, values checked (never shown in a message)."""
    if len(headers) > MAX_HEADERS:
        raise InvalidArgument(f"too many headers ({len(headers)}, at most {MAX_HEADERS})")
    out: dict[str, str] = {}
    for name, value in headers.items():
        if not _TOKEN.fullmatch(name):
            raise InvalidArgument(
                f"header name {shown(name)} is not a valid HTTP header name (letters, digits "
                "and !#$%&'*+.^_`|~-)"
            )
        lower = name.lower()
        if lower in RESERVED_HEADERS:
            raise InvalidArgument(f"header {name!r} is set by the data plane itself")
        if lower in out:
            raise InvalidArgument(f"header {name!r} is given twice")
        if not value:
            raise InvalidArgument(f"header {name!r} has an empty value")
        if len(value) > MAX_HEADER_VALUE:
            raise InvalidArgument(
                f"the value of header {name!r} is too long (at most {MAX_HEADER_VALUE} characters)"
            )
        if any((ord(ch) < 32 and ch != "\t") or ord(ch) > 126 for ch in value):
            raise InvalidArgument(
                f"the value of header {name!r} contains a line break, a control character or "
                "a non-ASCII character"
            )
        out[lower] = value
    return out


def validate_signals(signals: Iterable[str]) -> list[str]:
    given = list(signals)
    unknown = sorted({s for s in given if s not in SIGNALS})
    if unknown:
        raise InvalidArgument(
            f"unknown signal {shown(unknown[0])}: use metrics, logs or traces (none = all three)"
        )
    return [s for s in SIGNALS if s in given] if given else list(SIGNALS)
