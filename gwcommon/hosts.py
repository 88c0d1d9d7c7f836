"""Which hosts count as loopback: the one rule behind every "http only for loopback" check.

The data plane's ``--public-url`` and sign-in Host, the control plane's identity-provider issuer
and ``gwctl``'s development identity provider accept plain http (or trust a Host header) only for
a loopback host, so they must agree on what that is. Stdlib only.
"""

from __future__ import annotations

import ipaddress


def is_loopback_host(host: str) -> bool:
    """``localhost``, ``127.0.0.0/8``, ``::1`` (brackets and any letter case allowed); a name
    that merely starts or ends with ``localhost`` is not loopback."""
    host = host.strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
