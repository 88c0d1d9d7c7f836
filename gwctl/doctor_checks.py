"""The checks of ``gwctl doctor``, in the order a request meets them: the URL, the connection and
TLS, the data plane's health, the credential, then — from ``GET /v1/tollgate/whoami`` (see
:mod:`dataplane.whoami`) — budgets, the model, the providers behind it, and the local Claude
Code's version against the workspace's minimum. Each yields a :class:`Finding` whose fix mirrors
the README's *Errors* wording; a check that cannot run because an earlier one failed is
``SKIP``. Only the data-plane URL and the developer's own credential are needed.

Nothing is sent upstream unless ``send`` is set (one ``max_tokens: 1`` request: it costs a
little). A provider key is never sent anywhere; nor is a refresh token ever used (it is single
use: doctor would end Claude Code's session).
"""

from __future__ import annotations

import re
import socket
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Generator, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import certifi
import httpx

from gwctl.clients import below
from gwctl.doctor_budgets import budget_findings, limits_finding
from gwctl.doctor_env import Credential, Finding, Setup, is_loopback, now_ms, shown

WHOAMI = "/v1/tollgate/whoami"
USER_AGENT = "gwctl-doctor"
SIGNIN_MIN_VERSION = "2.1.195"  # the first Claude Code that signs in to a gateway with /login
_VERSION = re.compile(r"\d+\.\d+[0-9A-Za-z.+-]*")
_ASK = "ask your platform team"


@dataclass
class Options:
    timeout: float = 5.0
    ca_file: str = ""
    claude: str = ""  # path of the claude executable ("" = none found)
    send: bool = False


def tls_context(env: Mapping[str, str], ca_file: str) -> ssl.SSLContext:
    """What Claude Code trusts: the public CAs, plus NODE_EXTRA_CA_CERTS (and ``--ca-file``)."""
    context = ssl.create_default_context(cafile=certifi.where())
    for extra in (env.get("NODE_EXTRA_CA_CERTS", ""), ca_file):
        if extra:
            context.load_verify_locations(cafile=extra)
    return context


class Doctor:
    def __init__(self, setup: Setup, options: Options, env: Mapping[str, str]) -> None:
        self.setup = setup
        self.options = options
        self.env = env
        self.context = tls_context(env, options.ca_file)
        self.whoami: dict[str, Any] | None = None
        self.claude_version = ""

    def run(self) -> list[Finding]:
        return list(self.checks())

    def checks(self) -> Iterator[Finding]:
        setup = self.setup
        yield from setup.findings
        credential = yield from self._credential(setup.credential)
        if not setup.url:
            yield Finding(
                "url",
                "FAIL",
                "no gateway URL: ANTHROPIC_BASE_URL is not set and Claude Code has no sign-in",
                "export ANTHROPIC_BASE_URL=https://HOST (your data plane), or pass --url",
            )
            yield from self._client(None)
            return
        reachable = yield from self._connection()
        with httpx.Client(
            verify=self.context, timeout=self.options.timeout, headers={"user-agent": USER_AGENT}
        ) as http:
            if reachable:
                reachable = yield from self._probe(http)
            if reachable:
                yield from self._health(http)
            if reachable and credential is not None:
                self.whoami = yield from self._auth(http, credential)
            else:
                yield Finding(
                    "auth",
                    "SKIP",
                    "not checked: "
                    + ("no usable credential" if reachable else "gateway unreachable"),
                )
            if self.whoami is not None:
                yield from budget_findings(self.whoami)
                yield limits_finding(self.whoami)
                yield from self._model(http, credential)
                yield from self._providers(self.whoami)
            yield from self._client(self.whoami)
            if self.options.send and self.whoami is not None and credential is not None:
                yield self._send(http, credential)

    # -- the credential ---------------------------------------------------------------------

    def _credential(
        self, credential: Credential | None
    ) -> Generator[Finding, None, Credential | None]:
        """The credential check; returns the credential to send, or None."""
        if credential is None:
            yield Finding(
                "credential",
                "FAIL",
                "no credential: ANTHROPIC_AUTH_TOKEN, "
                "ANTHROPIC_API_KEY and a Claude Code sign-in are all missing",
                "export ANTHROPIC_AUTH_TOKEN=gw-… (your virtual key, from your platform "
                "team), or run claude and sign in with /login",
            )
            return None
        what = f"{credential.source}: {credential.shown} ({credential.kind})"
        if credential.kind in ("provider key", "Claude subscription token"):
            yield Finding(
                "credential",
                "FAIL",
                f"{what}, not a Tollgate virtual key; doctor does not send it",
                f"unset {credential.source}; export ANTHROPIC_AUTH_TOKEN="
                "gw-… (your virtual key, from your platform team), or sign in with "
                "/login",
            )
            return None
        expires = credential.expires_at_ms
        if credential.kind == "access token" and expires and expires <= now_ms():
            when = _instant(expires)
            if credential.refreshable:
                yield Finding(
                    "credential",
                    "WARN",
                    f"{what} expired at {when}; Claude Code renews"
                    " it with its refresh token on its next request (doctor never uses "
                    "it: that would end Claude Code's session)",
                    "run claude once (or claude -p hi), then gwctl doctor again",
                )
            else:
                yield Finding(
                    "credential",
                    "FAIL",
                    f"{what} expired at {when} and cannot be renewed",
                    "run claude and sign in again with /login",
                )
            return None
        yield Finding("credential", "OK", what)
        return credential

    # -- reaching the data plane ------------------------------------------------------------

    def _connection(self) -> Generator[Finding, None, bool]:
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
            sock = socket.create_connection((host, port), timeout=self.options.timeout)
        except ConnectionRefusedError:
            yield Finding(
                "reachable",
                "FAIL",
                f"connection refused by {host}:{port}: nothing listens there",
                f"check the port in {source}; is the data plane "
                f"running? ({_ASK}; on your machine: make up)",
            )
            return False
        except TimeoutError:
            yield Finding(
                "reachable",
                "FAIL",
                f"no answer from {host}:{port} within {self.options.timeout:g} s",
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
                return (yield from self._tls(sock, host, source))
        return True

    def _tls(self, sock: socket.socket, host: str, source: str) -> Generator[Finding, None, bool]:
        sock.settimeout(self.options.timeout)
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

    def _probe(self, http: httpx.Client) -> Generator[Finding, None, bool]:
        url = self.setup.url
        start = time.perf_counter()
        try:
            r = http.get(url + "/")
        except httpx.HTTPError as exc:
            yield Finding(
                "reachable",
                "FAIL",
                f"{url} did not answer ({_reason(exc)})",
                f"check {self.setup.url_source} and your network (proxy, VPN)",
            )
            return False
        ms = int((time.perf_counter() - start) * 1000)
        if r.status_code == 200 and _json(r).get("service") == "tollgate":
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

    def _health(self, http: httpx.Client) -> Iterator[Finding]:
        try:
            r = http.get(self.setup.url + "/healthz")
        except httpx.HTTPError as exc:
            yield Finding("gateway", "WARN", f"/healthz did not answer ({_reason(exc)})")
            return
        state = _json(r)
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
                f"{_ASK} (the balancer should send you to another replica)",
            )
        elif status == "no-snapshot":
            yield Finding(
                "gateway",
                "FAIL",
                "this data plane has not received its configuration "
                "from the control plane: every request gets 503",
                f"{_ASK}: the data plane cannot reach the control plane (gwctl dataplanes list)",
            )
        else:
            yield Finding("gateway", "WARN", f"/healthz answered HTTP {r.status_code}")

    # -- the credential, as the gateway sees it ---------------------------------------------

    def _auth(
        self, http: httpx.Client, credential: Credential
    ) -> Generator[Finding, None, dict[str, Any] | None]:
        try:
            r = http.get(
                self.setup.url + WHOAMI,
                params={"model": self.setup.model},
                headers=credential.headers(),
            )
        except httpx.HTTPError as exc:
            yield Finding(
                "auth",
                "FAIL",
                f"the gateway did not answer ({_reason(exc)})",
                "retry; if it persists, " + _ASK,
            )
            return None
        message = _error_message(r)
        if r.status_code == 401:
            fix = (
                "run claude and sign in again with /login"
                if credential.kind == "access token"
                else "ask your platform team for a new virtual key (gw-…) and set it as "
                "ANTHROPIC_AUTH_TOKEN"
            )
            yield Finding("auth", "FAIL", message, fix)
            return None
        if r.status_code == 404:
            yield Finding(
                "auth",
                "WARN",
                "this data plane predates gwctl doctor (no "
                f"{WHOAMI}): budgets, models and providers are not checked",
                f"{_ASK} to upgrade the data planes",
            )
            return None
        if r.status_code != 200:
            yield Finding(
                "auth",
                "FAIL",
                f"HTTP {r.status_code}: {message}",
                "retry in a few seconds; if it persists, " + _ASK,
            )
            return None
        body = _json(r)
        member, ws = body.get("member") or {}, body.get("workspace") or {}
        what = "virtual key" if member.get("kind") == "key" else "signed-in developer"
        detail = (
            f"{what} '{member.get('name')}' ({member.get('id')}) in workspace "
            f"'{ws.get('name')}', answered by {body.get('dataplane_id')}"
        )
        expires = member.get("expires_at")
        if expires:
            left = _parse_instant(expires) - now_ms()
            detail += f"; expires {expires}"
            if 0 < left < 7 * 86_400_000:
                yield Finding(
                    "auth", "WARN", detail, "ask your platform team for a new key before it expires"
                )
                return body
        yield Finding("auth", "OK", detail)
        return body

    # -- the model and who serves it -------------------------------------------------------

    def _model(self, http: httpx.Client, credential: Credential | None) -> Iterator[Finding]:
        assert self.whoami is not None
        model = self.whoami.get("model") or {}
        chosen = f"{self.setup.model} ({self.setup.model_source})"
        if model.get("allowed"):
            yield Finding("model", "OK", f"{chosen} is allowed")
            return
        message = model.get("message") or "refused"
        if model.get("status") == 503:
            yield Finding("model", "FAIL", message, _ASK)
            return
        allowed = self._allowed_models(http, credential)
        example = f" (allowed here: {', '.join(allowed[:4])})" if allowed else ""
        yield Finding(
            "model",
            "FAIL",
            f"{chosen}: {message}",
            f"pick an allowed model with /model, or export ANTHROPIC_MODEL=…{example}",
        )

    def _allowed_models(self, http: httpx.Client, credential: Credential | None) -> list[str]:
        if credential is None:
            return []
        try:
            r = http.get(self.setup.url + "/v1/models", headers=credential.headers())
        except httpx.HTTPError:
            return []
        data = _json(r).get("data")
        return (
            [str(m.get("id")) for m in data if isinstance(m, dict)]
            if isinstance(data, list)
            else []
        )

    def _providers(self, whoami: dict[str, Any]) -> Iterator[Finding]:
        targets = [t for t in whoami.get("targets") or [] if isinstance(t, dict)]
        if not targets:
            return  # no target at all: the model check said so
        route = whoami.get("target") or {}
        good: list[dict[str, Any]] = []
        bad: list[dict[str, Any]] = []
        for t in targets:
            (bad if _target_problem(t) else good).append(t)
        lines = [_describe_target(t) for t in targets]
        detail = "; ".join(lines)
        if route.get("kind") == "route":
            detail = f"route '{route.get('name')}' ({route.get('mode')}): {detail}"
        if not bad:
            yield Finding("provider", "OK", detail)
            return
        yield Finding(
            "provider",
            "WARN" if good else "FAIL",
            detail,
            _target_fix(bad[0], self.setup.model, bool(good)),
        )

    # -- the local Claude Code -------------------------------------------------------------

    def _client(self, whoami: dict[str, Any] | None) -> Iterator[Finding]:
        minimum = str(((whoami or {}).get("workspace") or {}).get("min_client_version") or "")
        policy = (
            f"this workspace requires {minimum} or later"
            if minimum
            else "no minimum version in this workspace"
        )
        path = self.options.claude
        if not path:
            yield Finding(
                "claude",
                "WARN",
                f"Claude Code not found on PATH ({policy})",
                "install Claude Code, or pass --claude PATH",
            )
            return
        try:
            done = subprocess.run(
                [path, "--version"], capture_output=True, text=True, timeout=30, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            yield Finding(
                "claude", "WARN", f"{path} --version failed ({exc})", "pass --claude PATH"
            )
            return
        found = _VERSION.search(done.stdout)
        if done.returncode != 0 or found is None:
            yield Finding(
                "claude", "WARN", f"{path} --version printed no version", "pass --claude PATH"
            )
            return
        version = self.claude_version = found.group(0)
        if below(version, minimum):
            yield Finding(
                "claude",
                "FAIL",
                f"Claude Code {version} is older than this workspace "
                f"allows ({minimum}): every request gets 400",
                "run `claude update`",
            )
            return
        credential = self.setup.credential
        if (
            credential is not None
            and credential.kind == "access token"
            and below(version, SIGNIN_MIN_VERSION)
        ):
            yield Finding(
                "claude",
                "WARN",
                f"Claude Code {version} cannot sign in to a gateway "
                f"with /login ({SIGNIN_MIN_VERSION} or later can)",
                "run `claude update`",
            )
            return
        yield Finding("claude", "OK", f"Claude Code {version} ({policy})")

    # -- one real request (--send) ---------------------------------------------------------

    def _send(self, http: httpx.Client, credential: Credential) -> Finding:
        body = {
            "model": self.setup.model,
            "max_tokens": 1,
            "messages": [{"role": "user", "content": "gwctl doctor: reply with one word"}],
        }
        headers = {
            **credential.headers(),
            "anthropic-version": "2023-06-01",
            "content-type": "application/json",
        }
        start = time.perf_counter()
        try:
            r = http.post(
                self.setup.url + "/v1/messages",
                json=body,
                headers=headers,
                timeout=max(self.options.timeout, 60),
            )
        except httpx.HTTPError as exc:
            return Finding(
                "request", "FAIL", f"no answer ({_reason(exc)})", "retry; if it persists, " + _ASK
            )
        ms = int((time.perf_counter() - start) * 1000)
        if r.status_code == 200:
            served = r.headers.get("x-tollgate-provider", "?")
            return Finding(
                "request", "OK", f"a 1-token request was answered by provider '{served}' in {ms} ms"
            )
        return Finding(
            "request",
            "FAIL",
            f"HTTP {r.status_code}: {_error_message(r)}",
            "the message says what to do; else " + _ASK,
        )


def _target_problem(t: dict[str, Any]) -> str:
    if t.get("problem"):
        return str(t.get("message") or t.get("problem"))
    if t.get("model_error"):
        return str(t["model_error"])
    if t.get("breaker") == "open":
        return "open"
    return ""


def _describe_target(t: dict[str, Any]) -> str:
    name = f"'{t.get('provider')}' ({t.get('kind')})"
    if t.get("problem"):
        return f"{name}: {t.get('message')}"
    if t.get("model_error"):
        return f"{name}: {t.get('model_error')}"
    text = f"{name}: {t.get('model')} → {t.get('upstream_model')}"
    breaker = t.get("breaker")
    if breaker == "open":
        text += f", circuit breaker OPEN (failing; next try in {t.get('breaker_retry_s')} s)"
    elif breaker == "half_open":
        text += ", circuit breaker half-open (recovering)"
    else:
        text += ", breaker closed"
    return text


def _target_fix(t: dict[str, Any], model: str, others: bool) -> str:
    lead = "your requests go to the other targets meanwhile; " if others else ""
    if t.get("problem") == "secret_not_received":
        return (
            lead
            + f"{_ASK}: the data plane has not received the provider's key from the control plane (gwctl dataplanes list)"
        )
    if t.get("problem"):
        return lead + f"{_ASK} to fix provider '{t.get('provider')}'"
    if t.get("model_error"):
        return lead + (
            f"pick a model provider '{t.get('provider')}' serves with /model, or ask "
            f"your platform team to map {model} (gwctl providers update "
            f"{t.get('provider')} --model-map {model}=…)"
        )
    return lead + (
        "the provider is failing right now; retry later, and if it persists tell your "
        "platform team (gwctl logs tail --status 5xx)"
    )


def _proxied(url: str) -> bool:
    parts = urlsplit(url)
    proxies = urllib.request.getproxies()
    return bool(proxies.get(parts.scheme)) and not urllib.request.proxy_bypass(parts.netloc)


def _json(r: httpx.Response) -> dict[str, Any]:
    try:
        doc = r.json()
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}


def _error_message(r: httpx.Response) -> str:
    error = _json(r).get("error")
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return str(error["message"])
    return r.text[:200] or f"HTTP {r.status_code}"


def _reason(exc: httpx.HTTPError) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    return str(exc) or type(exc).__name__


def _instant(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_instant(text: str) -> int:
    try:
        return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)
    except ValueError:
        return 0


__all__ = ["Doctor", "Options", "shown", "tls_context"]
