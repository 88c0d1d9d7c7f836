"""``gwctl doctor``'s network checks: the URL's shape, DNS, TCP, TLS (the certificate as Claude
Code would judge it: the public CAs plus ``NODE_EXTRA_CA_CERTS``), the data plane's probe
(``GET /``) and its health (``/healthz``: draining, no configuration). Behind an HTTP proxy from
the environment, the DNS/TCP/TLS steps are left to the proxy and the HTTP errors tell."""

from __future__ import annotations

import socket
import ssl
import time
import urllib.request
from collections.abc import Generator, Iterator, Mapping
from typing import Any
from urllib.parse import urlsplit

import certifi
import httpx

from gwctl.doctor_env import Finding, Setup, is_loopback

ASK = "ask your platform team"


def tls_context(env: Mapping[str, str], ca_file: str) -> tuple[ssl.SSLContext, list[Finding]]:
    """What Claude Code trusts: the public CAs, plus NODE_EXTRA_CA_CERTS (and ``--ca-file``:
    OSError when unreadable). An unreadable NODE_EXTRA_CA_CERTS is a finding, as Node only warns
    about it."""
    context = ssl.create_default_context(cafile=certifi.where())
    findings: list[Finding] = []
    extra = env.get("NODE_EXTRA_CA_CERTS", "")
    if extra:
        try:
            context.load_verify_locations(cafile=extra)
        except OSError as exc:
            findings.append(
                Finding(
                    "environment",
                    "WARN",
                    f"NODE_EXTRA_CA_CERTS={extra} cannot be read ({exc}): Claude Code ignores it",
                    "point NODE_EXTRA_CA_CERTS at your company's CA file (PEM), or unset it",
                )
            )
    if ca_file:
        context.load_verify_locations(cafile=ca_file)
    return context, findings


class Network:
    """The checks up to an authenticated request; each returns whether the next may run."""

    def __init__(self, setup: Setup, timeout: float, context: ssl.SSLContext) -> None:
        self.setup = setup
        self.timeout = timeout
        self.context = context

    # -- reaching the data plane ------------------------------------------------------------

    def connection(self) -> Generator[Finding, None, bool]:
        """URL shape, DNS, TCP and TLS; returns whether HTTP may be tried."""
        url, source = self.setup.url, self.setup.url_source
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            yield Finding(
                "url",
                "FAIL",
                f"{url!r} ({source}) is not an http(s) URL",
                "use the data plane's URL, e.g. https://gw.example.com",
            )
            return False
        if parts.scheme == "https":
            yield Finding("url", "OK", f"{url} ({source})")
        elif is_loopback(url):
            yield Finding("url", "OK", f"{url} ({source}): plain http on loopback")
        else:
            yield Finding(
                "url",
                "WARN",
                f"{url} ({source}) is plain http to another host: your "
                "key travels in clear text, and Claude Code's /login only accepts https",
                "use the gateway's https URL (ask your platform team)",
            )
        host, port = parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)
        if _proxied(url):
            return True  # the proxy decides: HTTP errors will tell
        try:
            socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            yield Finding(
                "reachable",
                "FAIL",
                f"cannot resolve {host} ({exc.strerror})",
                f"check the host name in {source}; on a company network, connect the VPN",
            )
            return False
        try:
            sock = socket.create_connection((host, port), timeout=self.timeout)
        except ConnectionRefusedError:
            yield Finding(
                "reachable",
                "FAIL",
                f"connection refused by {host}:{port}: nothing listens there",
                f"check the port in {source}; is the data plane "
                f"running? ({ASK}; on your machine: make up)",
            )
            return False
        except TimeoutError:
            yield Finding(
                "reachable",
                "FAIL",
                f"no answer from {host}:{port} within {self.timeout:g} s",
                f"a firewall, proxy or VPN is in the way, or the host in {source} is wrong",
            )
            return False
        except OSError as exc:
            reason = exc.strerror or str(exc)
            yield Finding(
                "reachable",
                "FAIL",
                f"cannot connect to {host}:{port} ({reason})",
                f"check {source} and your network",
            )
            return False
        with sock:
            if parts.scheme == "https":
                return (yield from self.tls(sock, host, source))
        return True

    def tls(self, sock: socket.socket, host: str, source: str) -> Generator[Finding, None, bool]:
        sock.settimeout(self.timeout)
        try:
            with self.context.wrap_socket(sock, server_hostname=host) as tls:
                cert = tls.getpeercert() or {}
        except ssl.SSLCertVerificationError as exc:
            reason = exc.verify_message or exc.reason or str(exc)
            fix = (
                f"use the host name the certificate names in {source}"
                if "mismatch" in str(reason).lower()
                else "if your company has its own CA, export NODE_EXTRA_CA_CERTS=/path/ca.pem "
                "(Claude Code and doctor trust it; or pass --ca-file); else tell your platform "
                "team the gateway's certificate is not valid"
            )
            yield Finding("tls", "FAIL", f"the certificate of {host} is not trusted: {reason}", fix)
            return False
        except (ssl.SSLError, OSError) as exc:
            yield Finding(
                "tls",
                "FAIL",
                f"TLS handshake with {host} failed ({exc})",
                "does this port speak plain http? then use http:// (on loopback only)",
            )
            return False
        not_after = cert.get("notAfter")
        days = (
            int((ssl.cert_time_to_seconds(not_after) - time.time()) // 86400)
            if isinstance(not_after, str)
            else -1
        )
        if 0 <= days < 14:
            yield Finding(
                "tls",
                "WARN",
                f"certificate valid, but it expires in {days} days",
                f"tell your platform team to renew the certificate of {host}",
            )
        else:
            yield Finding(
                "tls",
                "OK",
                f"certificate valid for {host}" + (f" ({days} more days)" if days >= 0 else ""),
            )
        return True

    def probe(self, http: httpx.Client) -> Generator[Finding, None, bool]:
        url = self.setup.url
        start = time.perf_counter()
        try:
            r = http.get(url + "/")
        except httpx.HTTPError as exc:
            yield Finding(
                "reachable",
                "FAIL",
                f"{url} did not answer ({reason(exc)})",
                f"check {self.setup.url_source} and your network (proxy, VPN)",
            )
            return False
        ms = int((time.perf_counter() - start) * 1000)
        if r.status_code == 200 and json_of(r).get("service") == "tollgate":
            yield Finding("reachable", "OK", f"a Tollgate data plane answered in {ms} ms")
            return True
        yield Finding(
            "reachable",
            "FAIL",
            f"{url} answers (HTTP {r.status_code}), but not as a Tollgate data plane",
            f"{self.setup.url_source} must be the data plane's "
            "root URL, as your platform team gave it (no /v1)",
        )
        return False

    def health(self, http: httpx.Client) -> Iterator[Finding]:
        try:
            r = http.get(self.setup.url + "/healthz")
        except httpx.HTTPError as exc:
            yield Finding("gateway", "WARN", f"/healthz did not answer ({reason(exc)})")
            return
        state = json_of(r)
        status = state.get("status")
        if r.status_code == 200 and status == "ok":
            yield Finding(
                "gateway", "OK", f"serving (configuration {state.get('snapshot_version')})"
            )
        elif status == "draining":
            yield Finding(
                "gateway",
                "FAIL",
                "this data plane is shutting down (draining): requests get 503",
                "retry in a minute; if it persists, "
                f"{ASK} (the balancer should send you to another replica)",
            )
        elif status == "no-snapshot":
            yield Finding(
                "gateway",
                "FAIL",
                "this data plane has not received its configuration "
                "from the control plane: every request gets 503",
                f"{ASK}: the data plane cannot reach the control plane (gwctl dataplanes list)",
            )
        else:
            yield Finding("gateway", "WARN", f"/healthz answered HTTP {r.status_code}")


def _proxied(url: str) -> bool:
    parts = urlsplit(url)
    proxies = urllib.request.getproxies()
    return bool(proxies.get(parts.scheme)) and not urllib.request.proxy_bypass(parts.netloc)


def json_of(r: httpx.Response) -> dict[str, Any]:
    try:
        doc = r.json()
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}


def reason(exc: httpx.HTTPError) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    return str(exc) or type(exc).__name__
