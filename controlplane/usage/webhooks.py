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
  line and headers, bounded by the HTTP parser; of the headers only ``Retry-After``, as a number
  of seconds or an HTTP date); each attempt, DNS included, is bounded by ``timeout_s`` overall.
  The outcome is one of a few coarse texts (:data:`DELIVERED`, ``failed: HTTP <status>``,
  ``failed: unreachable``, ``failed: timed out after Ns``, :data:`REFUSED`): never an error
  message, an address or a response detail, since the workspace-admin reads it. The control
  plane's own log (operators only) says which kind of address was refused.
* **Retries.** Up to ``attempts`` tries. Retried: connection errors, timeouts, 408, 429 and 5xx;
  not retried: other 4xx, 3xx and refused destinations. The wait before try *n + 1* is
  ``backoff_s * 2**(n-1)`` scaled by a random factor in [0.5, 1.5) (jitter, so many alerts
  failing together do not retry in step), at least a 429's or 503's ``Retry-After``, and never
  more than ``max_delay_s`` (a longer ``Retry-After`` is honoured up to that cap). After each
  try ``on_attempt`` gets an :class:`AttemptReport` (the caller records it: ``gwctl alerts``
  shows attempts, the last one's time and, while retrying, the next one's).
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from controlplane.domain.destinations import address_kind

log = logging.getLogger(__name__)

DELIVERED = "delivered"
REFUSED = "refused: destination not allowed (internal address)"
UNREACHABLE = "failed: unreachable"

RETRYING = "retrying"
MAX_RETRY_AFTER_CHARS = 64  # a longer header is no delta-seconds nor HTTP date: ignored
_DELTA_SECONDS = re.compile(r"^[0-9]{1,9}$", re.ASCII)

Resolver = Callable[[str, int], Awaitable[list[str]]]


@dataclass(frozen=True)
class AttemptReport:
    """One delivery try, as the caller records it.

    ``status`` is what to show now: the final outcome when ``next_attempt_ms`` is 0, else
    ``retrying: <this try's coarse reason>``. Times are Unix milliseconds."""

    attempt: int
    ended_ms: int
    status: str
    next_attempt_ms: int = 0


OnAttempt = Callable[[AttemptReport], Awaitable[None]]


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


def retry_after_s(value: str | None, now_s: float) -> float | None:
    """A ``Retry-After`` header as seconds from now: delta-seconds or an HTTP date; ``None``
    when absent or unreadable (then the backoff alone applies)."""
    if not value or len(value) > MAX_RETRY_AFTER_CHARS:
        return None
    text = value.strip()
    if _DELTA_SECONDS.fullmatch(text):
        return float(int(text))
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now_s)


def retry_delay_s(
    attempt: int,
    *,
    backoff_s: float,
    max_delay_s: float,
    retry_after: float | None = None,
    rng: Callable[[], float] = random.random,
) -> float:
    """The wait after failed try ``attempt`` (1-based): see the module docstring."""
    delay = float(backoff_s * 2 ** (attempt - 1) * (0.5 + rng()))
    if retry_after is not None:
        delay = max(delay, retry_after)
    return max(0.0, min(delay, max_delay_s))


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


async def _attempt(
    client: httpx.AsyncClient,
    url: httpx.URL,
    payload: dict[str, Any],
    *,
    allow_internal: bool,
    resolve: Resolver,
) -> tuple[int, float | None]:
    """One delivery: the response's status and its ``Retry-After`` in seconds (429 and 503
    only); ``httpx.HTTPError``/``OSError`` if no response came."""
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
                wait = None
                if response.status_code in (429, 503):
                    wait = retry_after_s(response.headers.get("retry-after"), time.time())
                return response.status_code, wait
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
    max_delay_s: float = 60.0,
    allow_internal: bool = False,
    resolve: Resolver = system_resolver,
    label: str = "webhook",
    on_attempt: OnAttempt | None = None,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    rng: Callable[[], float] = random.random,
) -> str:
    """POST ``payload``; one of the coarse outcomes of the module docstring. Never raises; logs
    (as ``label``) why an attempt failed, never the URL (it may embed a secret). ``on_attempt``
    failures are logged and do not stop the delivery."""
    tries = max(1, attempts)
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        outcome = "failed: invalid URL"
        await _report(on_attempt, AttemptReport(0, _now_ms(), outcome), label)
        return outcome
    for attempt in range(1, tries + 1):
        reason, final, wait = await _try_once(
            client, parsed, payload, timeout_s, allow_internal, resolve, label, attempt
        )
        if final is None and attempt < tries:
            delay = retry_delay_s(
                attempt, backoff_s=backoff_s, max_delay_s=max_delay_s, retry_after=wait, rng=rng
            )
            ended = _now_ms()
            report = AttemptReport(
                attempt, ended, f"{RETRYING}: {reason}", ended + int(delay * 1000)
            )
            await _report(on_attempt, report, label)
            await sleep(delay)
            continue
        if final is None:
            final = f"failed: {reason}" + (f" (after {tries} attempts)" if tries > 1 else "")
        await _report(on_attempt, AttemptReport(attempt, _now_ms(), final), label)
        return final
    raise AssertionError("unreachable")  # pragma: no cover - the loop always returns


async def _try_once(
    client: httpx.AsyncClient,
    url: httpx.URL,
    payload: dict[str, Any],
    timeout_s: float,
    allow_internal: bool,
    resolve: Resolver,
    label: str,
    attempt: int,
) -> tuple[str, str | None, float | None]:
    """``(reason, final outcome or None when worth retrying, Retry-After seconds)``."""
    try:
        async with asyncio.timeout(timeout_s):
            status, wait = await _attempt(
                client, url, payload, allow_internal=allow_internal, resolve=resolve
            )
    except DestinationRefused as exc:
        log.warning(
            "%s refused: its host %s; start the control plane with "
            "--allow-internal-webhooks to allow internal destinations",
            label,
            exc,
        )
        return "refused", REFUSED, None  # what the name resolves to is not worth retrying
    except TimeoutError:
        return f"timed out after {timeout_s:g}s", None, None
    except (httpx.HTTPError, OSError, UnicodeError) as exc:
        log.info("%s attempt %d: %s", label, attempt, type(exc).__name__)
        return "unreachable", None, None
    except Exception as exc:  # never raise (the caller stores a status), never a detail
        log.warning("%s attempt %d failed: %s", label, attempt, type(exc).__name__)
        return "unreachable", None, None
    if 200 <= status < 300:
        return "delivered", DELIVERED, None
    reason = f"HTTP {status}"
    if 300 <= status < 400:
        return reason, f"failed: {reason} (redirects are not followed)", None
    if not _retryable(status):
        return reason, f"failed: {reason}", None
    return reason, None, wait


async def _report(on_attempt: OnAttempt | None, report: AttemptReport, label: str) -> None:
    if on_attempt is None:
        return
    try:
        await on_attempt(report)
    except Exception:
        log.exception("%s: could not record attempt %d", label, report.attempt)
