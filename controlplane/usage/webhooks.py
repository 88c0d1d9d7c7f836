"""Delivering a budget alert to a workspace's webhook without letting it probe the inside network.

A workspace-admin chooses the URL and can trigger a delivery at will (a tiny budget), so the
delivery must not become a way to reach, or learn about, addresses behind the control plane:

* **Destination check.** The host is resolved once per attempt; unless the control plane runs
  with ``--allow-internal-webhooks``, *every* address of the answer must be public
  (:mod:`controlplane.domain.destinations`): loopback, RFC 1918 / unique-local, link-local, CGNAT, multicast,
  unspecified and reserved ranges are refused, also when wrapped in an IPv4-mapped, 6to4 or
  NAT64 IPv6 address. An answer that mixes public and internal addresses is refused as a whole.
* **No second resolution.** The request goes to an address that was checked (the URL's host is
  replaced by it), with the original ``Host`` header and, for https, the original name as TLS SNI
  and for certificate verification — so a DNS answer that changes between check and connect
  (rebinding) cannot redirect it. The client ignores proxy settings from the environment (a proxy
  would resolve the name itself) and keeps no connection alive (a pooled connection to a shared
  address must not carry a request for another name).
* **Nothing comes back.** Redirects are not followed; no response body is read (only the status
  line and headers, bounded by the HTTP parser); each attempt, DNS included, is bounded by
  ``timeout_s`` overall. The outcome is one of a few coarse texts (:data:`DELIVERED`,
  ``failed: HTTP <status>``, ``failed: unreachable``, ``failed: timed out after Ns``,
  :data:`REFUSED`):
  never an error message, an address or a response detail, since the workspace-admin reads it.
  The control plane's own log (operators only) says which kind of address was refused.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from controlplane.domain.destinations import address_kind

log = logging.getLogger(__name__)

DELIVERED = "delivered"
REFUSED = "refused: destination not allowed (internal address)"
UNREACHABLE = "failed: unreachable"

Resolver = Callable[[str, int], Awaitable[list[str]]]


class DestinationRefused(Exception):
    """The webhook's host is (or resolves to) an address deliveries may not reach."""


async def system_resolver(host: str, port: int) -> list[str]:
    """Every address the system resolver gives for ``host`` (once; order kept, no duplicates)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


async def checked_addresses(
    host: str, port: int, *, allow_internal: bool, resolve: Resolver = system_resolver
) -> list[str]:
    """The addresses to connect to; :class:`DestinationRefused` when any is internal (unless
    ``allow_internal``); ``OSError`` when the name does not resolve."""
    addresses = await resolve(host, port)
    if not addresses:
        raise OSError(f"no address for {host}")
    if not allow_internal:
        for text in addresses:
            kind = address_kind(text)
            if kind is not None:
                raise DestinationRefused(f"resolves to {text}, a {kind} address")
    return addresses


def new_client() -> httpx.AsyncClient:
    """The HTTP client deliveries use (see the module docstring for why these settings)."""
    return httpx.AsyncClient(
        follow_redirects=False,
        trust_env=False,
        limits=httpx.Limits(max_keepalive_connections=0),
    )


def _retryable(status: int) -> bool:
    return status in (408, 429) or status >= 500


async def _attempt(
    client: httpx.AsyncClient,
    url: httpx.URL,
    payload: dict[str, Any],
    *,
    allow_internal: bool,
    resolve: Resolver,
) -> int:
    """One delivery: the response's status; ``httpx.HTTPError``/``OSError`` if none came."""
    host = url.raw_host.decode("ascii")
    port = url.port or (443 if url.scheme == "https" else 80)
    addresses = await checked_addresses(host, port, allow_internal=allow_internal, resolve=resolve)
    headers = {"host": url.netloc.decode("ascii")}
    extensions = {"sni_hostname": host} if url.scheme == "https" else {}
    error: Exception = OSError("not attempted")
    for address in addresses:
        try:
            # stream(): the status and headers are read, the body never is.
            async with client.stream(
                "POST",
                url.copy_with(host=address.partition("%")[0]),
                json=payload,
                headers=headers,
                extensions=extensions,
            ) as response:
                return response.status_code
        except httpx.ConnectError as exc:  # try the next checked address
            error = exc
    raise error


async def post_webhook(
    client: httpx.AsyncClient,
    url: str,
    payload: dict[str, Any],
    *,
    timeout_s: float,
    attempts: int,
    backoff_s: float,
    allow_internal: bool = False,
    resolve: Resolver = system_resolver,
    label: str = "webhook",
) -> str:
    """POST ``payload``; one of the coarse outcomes of the module docstring. Never raises; logs
    (as ``label``) why an attempt failed, never the URL (it may embed a secret)."""
    outcome = "failed: not attempted"
    tries = max(1, attempts)
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        return "failed: invalid URL"
    for attempt in range(1, tries + 1):
        status = 0
        try:
            async with asyncio.timeout(timeout_s):
                status = await _attempt(
                    client, parsed, payload, allow_internal=allow_internal, resolve=resolve
                )
        except DestinationRefused as exc:
            log.warning(
                "%s refused: its host %s; start the control plane with "
                "--allow-internal-webhooks to allow internal destinations",
                label,
                exc,
            )
            return REFUSED  # what the name resolves to is not worth retrying
        except TimeoutError:
            outcome = f"failed: timed out after {timeout_s:g}s"
        except (httpx.HTTPError, OSError, UnicodeError) as exc:
            log.info("%s attempt %d: %s", label, attempt, type(exc).__name__)
            outcome = UNREACHABLE
        except Exception as exc:  # never raise (the caller stores a status), never a detail
            log.warning("%s attempt %d failed: %s", label, attempt, type(exc).__name__)
            outcome = UNREACHABLE
        else:
            if 200 <= status < 300:
                return DELIVERED
            outcome = f"failed: HTTP {status}"
            if 300 <= status < 400:
                return f"{outcome} (redirects are not followed)"
            if not _retryable(status):
                return outcome
        if attempt < tries:
            await asyncio.sleep(backoff_s * 2 ** (attempt - 1))
    return outcome if tries == 1 else f"{outcome} (after {tries} attempts)"
