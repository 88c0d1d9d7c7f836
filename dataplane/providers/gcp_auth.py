"""Google OAuth access tokens for Vertex AI: fetched once, cached, refreshed before expiry.

Contract:

* :meth:`GoogleTokenSource.token` returns a cached access token (scope ``cloud-platform``). It
  refreshes only when there is no token yet or the token is within its refresh margin (5 minutes,
  or half the token's lifetime if that is shorter) of expiry — never per request. Concurrent
  callers share one refresh (single flight: one task, awaited by every caller that needs it; a
  caller cancelled meanwhile does not cancel it), and callers holding a still-valid token do not
  wait for it at all.
* Everything google-auth does is blocking (reading the key file, signing the JWT, the HTTP call
  to the token endpoint, ADC's metadata-server probe), so all of it runs in a worker thread.
* Credentials come from ``credentials_file`` (a service-account key, ``gcloud`` user
  credentials, or another type google-auth understands) or, without one, from Application
  Default Credentials. The token endpoint is the file's ``token_uri`` (tests point it at a fake).
* A failed refresh raises :class:`GatewayError`: 500 when the data plane's Google credentials
  are missing or unreadable (an operator must fix the configuration), 502 when the token
  endpoint refused or could not be reached. The message says what to check and never contains a
  secret. If the current token is still valid (refresh happens early), a failed refresh logs a
  warning and the old token keeps serving. After a failure, callers within ``failure_hold_s``
  get the same error without another attempt, so an outage does not become a token storm.
* :meth:`invalidate` drops a token the API refused (401), so the next call fetches a new one.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import json
import logging
import threading
import time
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import google.auth
import google.auth.exceptions
import google.auth.transport
import httpx
from google.oauth2 import credentials as user_credentials
from google.oauth2 import service_account

from dataplane.errors import GatewayError, Misconfigured, UpstreamAuthError

log = logging.getLogger("tollgate.providers.gcp_auth")

# google-auth leaves these untyped; give them the signatures we rely on.
_TransportError: Callable[[str], Exception] = google.auth.exceptions.TransportError
_load_credentials_from_file: Callable[..., tuple[Any, str | None]] = (
    google.auth.load_credentials_from_file
)
_service_account_from_info: Callable[..., Any] = (
    service_account.Credentials.from_service_account_info
)
_user_from_info: Callable[..., Any] = user_credentials.Credentials.from_authorized_user_info

SCOPE = "https://www.googleapis.com/auth/cloud-platform"
REFRESH_MARGIN_S = 300.0
FAILURE_HOLD_S = 2.0
# A token still valid this long is served while a refresh runs or after an early one failed.
_STILL_VALID_S = 10.0
# google-auth may report no expiry (e.g. some user credentials): refresh on this schedule anyway.
UNKNOWN_LIFETIME_S = 45 * 60.0


class _AuthResponse(google.auth.transport.Response):
    def __init__(self, response: httpx.Response) -> None:
        self._response = response

    @property
    def status(self) -> int:
        return self._response.status_code

    @property
    def headers(self) -> Mapping[str, str]:
        return dict(self._response.headers)

    @property
    def data(self) -> bytes:
        return self._response.content


class HttpxAuthRequest(google.auth.transport.Request):
    """google-auth's transport interface over a synchronous :class:`httpx.Client`.

    Only ever called from a worker thread (never on the event loop). Stands in for
    ``google.auth.transport.requests.Request`` so the data plane needs no ``requests`` package.
    """

    def __init__(self, timeout_s: float = 30.0) -> None:
        self._timeout_s = timeout_s
        self._client = httpx.Client(trust_env=False, follow_redirects=False)

    def __call__(
        self,
        url: str,
        method: str = "GET",
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> _AuthResponse:
        try:
            response = self._client.request(
                method,
                url,
                content=body,
                headers=dict(headers or {}),
                timeout=timeout if timeout is not None else self._timeout_s,
            )
        except httpx.HTTPError as exc:
            raise _TransportError(f"{type(exc).__name__} calling {httpx.URL(url).host}") from exc
        return _AuthResponse(response)

    def close(self) -> None:
        self._client.close()


def _load_file(path: str) -> Any:
    """Credentials from the operator's key file (trusted configuration, read in a thread).

    Service-account keys and ``gcloud`` user credentials are built by their own constructors;
    any other type (e.g. ``external_account`` for workload identity federation) goes through
    google-auth's generic loader, whose warning about untrusted files does not apply to the
    data plane's own configuration.
    """
    with open(path, encoding="utf-8") as fh:
        info = json.load(fh)
    if not isinstance(info, dict):
        raise ValueError("credentials file is not a JSON object")
    kind = info.get("type")
    if kind == "service_account":
        return _service_account_from_info(info, scopes=[SCOPE])
    if kind == "authorized_user":
        return _user_from_info(info, scopes=[SCOPE])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        credentials, _ = _load_credentials_from_file(path, scopes=[SCOPE])
    return credentials


def _retrieve(task: asyncio.Task[str]) -> None:
    """Mark a refresh's failure as seen even if every caller that awaited it was cancelled."""
    if not task.cancelled():
        task.exception()


class GoogleTokenSource:
    """Cached OAuth access tokens for one provider (see the module docstring for the contract)."""

    def __init__(
        self,
        provider: str,
        credentials_file: str = "",
        *,
        refresh_margin_s: float = REFRESH_MARGIN_S,
        failure_hold_s: float = FAILURE_HOLD_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.provider = provider
        self.credentials_file = credentials_file
        self.refresh_margin_s = refresh_margin_s
        self.failure_hold_s = failure_hold_s
        self._clock = clock
        self._refreshing: asyncio.Task[str] | None = None
        self._thread_lock = threading.Lock()  # google-auth credentials are not thread-safe
        self._request: HttpxAuthRequest | None = None
        self._credentials: Any = None  # google.auth.credentials.Credentials (untyped methods)
        self._token: str | None = None
        self._expires_at = 0.0  # clock() time at which the token expires
        self._refresh_at = 0.0  # clock() time from which it is refreshed
        self._failure: tuple[float, GatewayError] | None = None
        self.refreshes = 0  # successful refreshes, for tests and metrics

    async def token(self) -> str:
        """A valid access token; refreshes at most once for any number of concurrent callers."""
        token = self._token
        now = self._clock()
        refreshing = self._refreshing
        if token is not None and (
            now < self._refresh_at
            or (refreshing is not None and now < self._expires_at - _STILL_VALID_S)
        ):
            # Fresh, or due for refresh while another caller refreshes it: don't wait.
            return token
        if refreshing is None:
            if self._failure is not None and now - self._failure[0] < self.failure_hold_s:
                return self._fallback(self._failure[1])
            # Single flight: the first caller starts the refresh, everyone awaits the same task.
            # No await between the checks above and this assignment, so no second refresh can
            # start; shielding keeps a cancelled caller (client gone) from wasting the refresh.
            refreshing = asyncio.create_task(self._refresh())
            refreshing.add_done_callback(_retrieve)
            self._refreshing = refreshing
        return await asyncio.shield(refreshing)

    async def _refresh(self) -> str:
        try:
            fresh, lifetime = await asyncio.to_thread(self._refresh_blocking)
        except GatewayError as err:
            self._failure = (self._clock(), err)
            if self._token is not None:
                log.warning(
                    "provider %s: token refresh failed; the old token serves until it "
                    "expires in %.0f s",
                    self.provider,
                    self._expires_at - self._clock(),
                )
            return self._fallback(err)
        finally:
            self._refreshing = None
        now = self._clock()
        self._failure = None
        self._token = fresh
        self._expires_at = now + lifetime
        self._refresh_at = now + lifetime - min(self.refresh_margin_s, lifetime / 2)
        self.refreshes += 1
        return fresh

    def invalidate(self, token: str) -> None:
        """Forget ``token`` (the API refused it) so the next :meth:`token` call refreshes."""
        if self._token == token:
            self._refresh_at = 0.0
            self._expires_at = 0.0

    def _fallback(self, err: GatewayError) -> str:
        """Keep serving a still-valid token when an early refresh failed; else raise ``err``."""
        token = self._token
        if token is not None and self._clock() < self._expires_at - _STILL_VALID_S:
            return token
        raise dataclasses.replace(err)  # a fresh exception each time: no traceback piles up

    # -- worker thread ----------------------------------------------------------------------

    def _refresh_blocking(self) -> tuple[str, float]:
        """Load credentials if needed and refresh them. Returns (token, seconds until expiry)."""
        with self._thread_lock:
            if self._request is None:
                self._request = HttpxAuthRequest()
            if self._credentials is None:
                self._credentials = self._load()
            credentials = self._credentials
            try:
                credentials.refresh(self._request)
            except google.auth.exceptions.GoogleAuthError as exc:
                log.warning("provider %s: token refresh failed: %s", self.provider, exc)
                raise UpstreamAuthError(
                    502,
                    f"Provider '{self.provider}' could not get a Google access token "
                    f"({type(exc).__name__}). Ask your platform team to check that the data "
                    "plane can reach Google's token endpoint and that its service account is "
                    "enabled and its key not revoked.",
                ) from None
            token = credentials.token
            if not isinstance(token, str) or not token:
                raise UpstreamAuthError(
                    502,
                    f"Provider '{self.provider}': Google's token endpoint returned no access "
                    "token. Ask your platform team to check the data plane's Google credentials.",
                )
            expiry = credentials.expiry  # naive UTC, as google-auth keeps it
            if expiry is None:
                lifetime = UNKNOWN_LIFETIME_S
            else:
                now = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
                lifetime = max((expiry - now).total_seconds(), 0.0)
            return token, lifetime

    def _load(self) -> Any:
        path = self.credentials_file
        try:
            if path:
                return _load_file(path)
            credentials, _ = google.auth.default(scopes=[SCOPE])
            return credentials
        except (google.auth.exceptions.GoogleAuthError, OSError, ValueError) as exc:
            where = (
                f"the credentials file configured for it ({path})"
                if path
                else "Application Default Credentials (GOOGLE_APPLICATION_CREDENTIALS, gcloud, "
                "or the metadata server)"
            )
            log.warning("provider %s: cannot load Google credentials: %s", self.provider, exc)
            raise Misconfigured(
                500,
                f"Provider '{self.provider}' is misconfigured: the data plane could not load "
                f"Google credentials from {where} ({type(exc).__name__}). Ask your platform team "
                "to check that the file exists on the data plane and holds a valid key.",
            ) from None

    def close(self) -> None:
        """Release the token transport's connections (blocking; call from a thread)."""
        with self._thread_lock:
            if self._request is not None:
                self._request.close()
                self._request = None
