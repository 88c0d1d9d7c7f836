"""The base URL developers sign in to: ``--public-url``, or (loopback only) the request's Host.

Every URL the sign-in hands out — the discovery document's endpoints, the verification page, the
redirect URI registered at the identity provider — is built from it. A Host header is the
client's word, so it is trusted only on a data plane that listens on loopback (a developer's own
machine, ``make up``), and even there only when it names a loopback host (a DNS-rebinding page
sends ``Host: evil.example``). A data plane listening anywhere else without ``--public-url``
answers every sign-in endpoint with an error telling the operator to set it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from dataplane.asgi import Scope, header
from gwcommon.hosts import is_loopback_host

PUBLIC_URL_ENV = "TOLLGATE_PUBLIC_URL"

MISSING = (
    "Sign-in is not set up on this gateway: its operator must start the data plane with "
    "--public-url https://… (the URL developers sign in to; env TOLLGATE_PUBLIC_URL)."
)

_HOST = re.compile(r"^(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(?::(?P<port>[0-9]{1,5}))?$")


def parse_public_url(value: str) -> str:
    """Validate ``--public-url``: ``https://host[:port]`` (``http://`` only for a loopback
    host, as Claude Code accepts it only there), no path, query or fragment. Returns it without
    a trailing slash; ValueError says what is wrong."""
    value = value.strip()
    parts = urlsplit(value)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError(f"--public-url {value!r} must look like https://gateway.example.com")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        raise ValueError(
            f"--public-url {value!r} must be the gateway's origin only (no path, query or "
            "user): the data plane serves the sign-in endpoints at its root"
        )
    try:
        parts.port  # noqa: B018 - validates the port
    except ValueError:
        raise ValueError(f"--public-url {value!r} has an invalid port") from None
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        raise ValueError(
            f"--public-url {value!r}: Claude Code signs in over https only (http is accepted "
            "for loopback addresses alone)"
        )
    return f"{parts.scheme}://{parts.netloc}"


@dataclass(frozen=True, slots=True)
class PublicUrl:
    configured: str  # from --public-url, validated; "" = derive (loopback listeners only)
    loopback_listener: bool

    def resolve(self, scope: Scope) -> str | None:
        """The base URL for this request, or None when it cannot be trusted (see MISSING)."""
        if self.configured:
            return self.configured
        if not self.loopback_listener:
            return None
        raw = header(scope, b"host")
        if raw is None:
            return None
        host = raw.decode("latin-1").strip()
        match = _HOST.match(host)
        if match is None or not is_loopback_host(match.group("host")):
            return None
        scheme = "https" if scope.get("scheme") == "https" else "http"
        return f"{scheme}://{host.lower()}"


def listener_is_loopback(listen: str) -> bool:
    """Whether a ``HOST:PORT`` listen address binds loopback only."""
    host = listen.rpartition(":")[0]
    return is_loopback_host(host)
