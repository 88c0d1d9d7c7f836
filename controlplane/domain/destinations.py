"""Outbound URLs an operator types: the checks every such URL gets (:func:`split_url`) and which
IP addresses count as internal, for outbound calls a tenant chooses (alert webhooks).

Internal: loopback, private (RFC 1918, IPv6 unique-local), link-local, shared/CGNAT
(100.64.0.0/10), unspecified, multicast, site-local, reserved, and anything else Python does not
call global — also when the address is wrapped in an IPv6 one (IPv4-mapped ``::ffff:a.b.c.d``,
6to4 ``2002::/16``, NAT64 ``64:ff9b::/96`` and ``64:ff9b:1::/48``), since such an address reaches
the IPv4 one inside it.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import SplitResult, urlsplit

from controlplane.domain.errors import InvalidArgument

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
_CGNAT = ipaddress.ip_network("100.64.0.0/10")


def split_url(
    url: str, what: str, max_chars: int, credentials_hint: str = ""
) -> tuple[SplitResult, int | None]:
    """The parts and port of ``url`` (stripped, non-empty) once it passes, in this order: at most
    ``max_chars`` characters, no blanks or control characters, a URL with a valid port, no
    ``user:password@`` (checked before any caller's message echoes the URL). Each failure is an
    :class:`InvalidArgument` naming the field ``what``."""
    if len(url) > max_chars:
        raise InvalidArgument(f"{what} is too long (at most {max_chars} characters)")
    # isprintable() is False for C0/C1 controls, NUL, separators and other invisible characters.
    if any(ch.isspace() or not ch.isprintable() for ch in url):
        raise InvalidArgument(f"{what} must not contain spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port  # raises ValueError for a bad port
    except ValueError:
        raise InvalidArgument(f"invalid {what}: not a URL (check the host and port)") from None
    if parts.username is not None or parts.password is not None:
        raise InvalidArgument(
            f"invalid {what}: credentials in the URL (user:password@) are not allowed"
            + credentials_hint
        )
    return parts, port


def _embedded_v4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for (mapped, 6to4, NAT64), if any."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if any(ip in net for net in _NAT64):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def internal_kind(ip: IPAddress) -> str | None:
    """What makes ``ip`` internal (``"loopback"``, ``"private"``…), or ``None`` if it is public."""
    if isinstance(ip, ipaddress.IPv6Address):
        inner = _embedded_v4(ip)
        if inner is not None:
            kind = internal_kind(inner)
            return f"{kind} (inside an IPv6 address)" if kind else None
    checks: tuple[tuple[bool, str], ...] = (
        (ip.is_loopback, "loopback"),
        (ip.is_link_local, "link-local"),
        (ip.is_unspecified, "unspecified"),
        (ip.is_multicast, "multicast"),
        (isinstance(ip, ipaddress.IPv4Address) and ip in _CGNAT, "shared (CGNAT)"),
        (ip.is_private, "private"),
        (isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local, "site-local"),
        (ip.is_reserved, "reserved"),
        (not ip.is_global, "non-public"),
    )
    return next((kind for hit, kind in checks if hit), None)


def address_kind(text: str) -> str | None:
    """:func:`internal_kind` of an address in text form (an IPv6 zone ``%eth0`` is ignored)."""
    return internal_kind(ipaddress.ip_address(text.partition("%")[0]))


def literal_internal_kind(host: str) -> str | None:
    """For a URL host that is an IP literal (``10.0.0.1``, ``[::1]``): what makes it internal.
    ``None`` for a public address or a name (names are checked when they are resolved)."""
    try:
        return address_kind(host.strip("[]"))
    except ValueError:
        return None
