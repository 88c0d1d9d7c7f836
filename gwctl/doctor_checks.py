"""The checks of ``gwctl doctor``, in the order a request meets them: the URL, the connection and
TLS, the data plane's health, the credential, then — from ``GET /v1/tollgate/whoami`` (see
:mod:`dataplane.edge.whoami`) — budgets, the model, the providers behind it, and the local Claude
Code's version against the workspace's minimum. Each yields a :class:`Finding` whose fix mirrors
the README's *Errors* wording; a check that cannot run because an earlier one failed is
``SKIP``. Only the data-plane URL and the developer's own credential are needed.

Nothing is sent upstream unless ``send`` is set (one ``max_tokens: 1`` request: it costs a
little). A provider key is never sent anywhere; nor is a refresh token ever used (it is single
use: doctor would end Claude Code's session).
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Generator, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

from gwctl.clients import below
from gwctl.doctor_env import Credential, Finding, Setup, now_ms
from gwctl.doctor_net import ASK, Network, json_of, reason, tls_context
from gwctl.doctor_whoami import budget_findings, limits_finding, provider_findings

WHOAMI = "/v1/tollgate/whoami"
USER_AGENT = "gwctl-doctor"
SIGNIN_MIN_VERSION = "2.1.195"  # the first Claude Code that signs in to a gateway with /login
_VERSION = re.compile(r"\d+\.\d+[0-9A-Za-z.+-]*")


@dataclass
class Options:
    timeout: float = 5.0
    ca_file: str = ""
    claude: str = ""  # path of the claude executable ("" = none found)
    send: bool = False


class Doctor:
    def __init__(self, setup: Setup, options: Options, env: Mapping[str, str]) -> None:
        self.setup = setup
        self.options = options
        self.env = env
        self.context, self.early = tls_context(env, options.ca_file)
        self.net = Network(setup, options.timeout, self.context)
        self.whoami: dict[str, Any] | None = None
        self.claude_version = ""

    def run(self) -> list[Finding]:
        return list(self.checks())

    def checks(self) -> Iterator[Finding]:
        setup = self.setup
        yield from setup.findings
        yield from self.early
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
        reachable = yield from self.net.connection()
        with httpx.Client(
            verify=self.context, timeout=self.options.timeout, headers={"user-agent": USER_AGENT}
        ) as http:
            if reachable:
                reachable = yield from self.net.probe(http)
            if reachable:
                yield from self.net.health(http)
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
                yield from provider_findings(self.whoami, self.setup.model)
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
                f"the gateway did not answer ({reason(exc)})",
                "retry; if it persists, " + ASK,
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
                f"{ASK} to upgrade the data planes",
            )
            return None
        if r.status_code != 200:
            yield Finding(
                "auth",
                "FAIL",
                f"HTTP {r.status_code}: {message}",
                "retry in a few seconds; if it persists, " + ASK,
            )
            return None
        body = json_of(r)
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
            yield Finding("model", "FAIL", message, ASK)
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
        data = json_of(r).get("data")
        return (
            [str(m.get("id")) for m in data if isinstance(m, dict)]
            if isinstance(data, list)
            else []
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
                "request", "FAIL", f"no answer ({reason(exc)})", "retry; if it persists, " + ASK
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
            "the message says what to do; else " + ASK,
        )


def _error_message(r: httpx.Response) -> str:
    error = json_of(r).get("error")
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return str(error["message"])
    return r.text[:200] or f"HTTP {r.status_code}"


def _instant(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_instant(text: str) -> int:
    try:
        return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)
    except ValueError:
        return 0


__all__ = ["Doctor", "Options"]
