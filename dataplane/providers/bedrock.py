"""Amazon Bedrock adapter: Anthropic-format request in, Anthropic-format answer out.

Options (``ProviderConfig.option``): ``region`` (required); credentials, first that applies:
an access-key pair stored on the control plane (``ProviderConfig.api_key`` =
``ACCESS_KEY_ID:SECRET_ACCESS_KEY[:SESSION_TOKEN]``, from the snapshot, in memory only; 503 while
it is expected but not received), ``bearer_token_env`` (a Bedrock API key, sent as ``Authorization: Bearer``), ``access_key_env`` +
``secret_key_env`` [+ ``session_token_env``] (names of variables in the data plane's environment),
else botocore's standard chain (env, shared files, SSO, container/instance role) with ``profile``
if named; ``inference_profile`` (``us|eu|apac|jp|global|none``); ``model_map`` (a JSON object
FROM→TO); ``timeout_connect_s``, ``timeout_read_s``; ``ping_interval_s`` (default 10, 0 = off).
``base_url`` is the endpoint root, like ``ANTHROPIC_BEDROCK_BASE_URL`` (default
``https://bedrock-runtime.{region}.amazonaws.com``).

Credentials are resolved once (in a worker thread: the chain may do file or network I/O) and
cached; refreshable ones are refreshed before expiry, also in a thread, one refresh at a time.
Signing is SigV4 (service ``bedrock``) over the exact bytes sent; nothing blocks the event loop.

Model map, first rule that applies (:func:`bedrock_model_id`):

1. ``model_map`` has the id: its value, as is.
2. A Bedrock id (``anthropic.…``, ``<geo>.anthropic.…``) or an ARN passes through.
3. Not ``claude-…``: 404 ``not_found_error`` naming what this provider serves.
4. Otherwise ``<profile>.anthropic.<id>`` with the ``-v1:0`` suffix for dated ids
   (``claude-sonnet-4-5-20250929`` → ``us.anthropic.claude-sonnet-4-5-20250929-v1:0``) and none for
   undated ones (``claude-sonnet-4-6`` → ``us.anthropic.claude-sonnet-4-6``). Aliases of dated
   models are dated first (:data:`ALIASES`); the few ids AWS named irregularly are in
   :data:`IRREGULAR`. ``<profile>.`` is omitted for ``none``. The default profile comes from the
   region: ``us-gov-*`` → none; ``us-*``/``ca-*`` → us; ``eu-*`` → eu; ``ap-northeast-1``/``-3``
   (Tokyo, Osaka) → jp; other ``ap-*`` → apac; anything else → global.

Wire (WIRE.md): body without ``model``/``stream``, with ``anthropic_version: bedrock-2023-05-31``
and the accepted ``anthropic-beta`` values as ``anthropic_beta``; ``POST /model/{id}/invoke`` or
``/invoke-with-response-stream`` (id URL-quoted, ``:`` kept). A streamed 200 is decoded from the
AWS event stream (both CRCs checked) into ``event: <type>\\ndata: <json>\\n\\n``, the JSON byte for
byte, with a ``ping`` during every silence longer than ``ping_interval_s``; an in-stream exception,
a corrupt frame or a truncated stream becomes one SSE ``error`` event and ends the stream.
``count_tokens`` goes to ``/model/{base id}/count-tokens`` (CountTokens takes the foundation model
id, not an inference profile) and is answered as ``{"input_tokens": N}``. Bedrock errors before
the stream become Anthropic-shaped JSON errors with the mapped status and type; their message
names the exception (``ValidationException``) and the gateway request id, never Bedrock's text,
which can name the AWS account (:mod:`dataplane.providers.cloud_errors`; the original goes to the
data plane's log). In-stream exceptions are told the same way.
"""

from __future__ import annotations

import asyncio
import base64
import time
from typing import Any
from urllib.parse import quote

import botocore.session
import orjson
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials, RefreshableCredentials

from dataplane.asgi import Header
from dataplane.config.snapshot import ProviderConfig
from dataplane.errors import GatewayError, Misconfigured, UpstreamProtocolError, error_response_body
from dataplane.providers import cloud_errors
from dataplane.providers.base import (
    BufferedResponse,
    Diagnosis,
    HttpAdapter,
    UpstreamRequest,
    problem_of,
    secret_not_received,
)
from dataplane.providers.bedrock_models import (
    PROFILES,
    bedrock_model_id,
    foundation_model_id,
    model_map,
    shown_model_id,
)
from dataplane.providers.bedrock_stream import BedrockStream, message_of
from dataplane.providers.betas import filter_betas
from dataplane.providers.transport import TransportResponse

ANTHROPIC_VERSION = "bedrock-2023-05-31"
# Bedrock HTTP status -> (status, Anthropic error type) for errors before the stream.
_ERRORS = {
    400: (400, "invalid_request_error"),
    401: (401, "authentication_error"),
    403: (403, "permission_error"),
    404: (404, "not_found_error"),
    408: (504, "timeout_error"),
    424: (502, "api_error"),
    429: (429, "rate_limit_error"),
    500: (500, "api_error"),
    503: (529, "overloaded_error"),
}
_RETRY_FAILED_RESOLUTION_S = 30.0


class BedrockProvider(HttpAdapter):
    kind = "bedrock"

    def _configure(self, config: ProviderConfig) -> None:
        self.region = config.option("region")
        self._base = (
            config.base_url or f"https://bedrock-runtime.{self.region}.amazonaws.com"
        ).rstrip("/")
        self._creds: Any = None  # botocore Credentials / RefreshableCredentials, once resolved
        self._resolving: asyncio.Future[Any] | None = None
        self._resolving_since = 0.0
        self._ping_s = 10.0
        # A stored key pair wins over every environment/chain setting.
        self._bearer = bool(config.option("bearer_token_env")) and not config.has_secret
        self._lock = asyncio.Lock()
        self.credential_resolutions = 0  # how often the credential chain ran (tests, metrics)
        self._problem = self._validate()

    def _validate(self) -> str:
        """A misconfiguration message ('' if none): reported on each request, never raised here,
        so one bad provider never stops a snapshot from being applied."""
        try:
            model_map(self.config)
            self._ping_s = max(0.0, float(self.config.option("ping_interval_s", "10")))
        except ValueError as exc:
            return f"Provider '{self.name}' is misconfigured: {exc}."
        if not self.region:
            return f"Provider '{self.name}' is misconfigured: the Bedrock region is not set."
        if (self.config.option("inference_profile") or "us") not in PROFILES:
            return (
                f"Provider '{self.name}' is misconfigured: inference_profile must be one of "
                f"{', '.join(PROFILES)}."
            )
        return ""

    # -- credentials ----------------------------------------------------------------------------

    def _env_var(self, option: str, required: bool = True) -> str:
        var = self.config.option(option)
        value = self._env.get(var, "") if var else ""
        if required and not value:
            raise Misconfigured(
                500,
                f"Provider '{self.name}' is misconfigured: the data plane's environment has no "
                f"{var or option}. Ask your platform team to set it on the data plane.",
            )
        return value

    def _resolve(self) -> Any:
        """Run the credential chain (blocking: called in a worker thread, once)."""
        self.credential_resolutions += 1
        try:
            if self.config.api_key:
                access_key, _, rest = self.config.api_key.partition(":")
                secret_key, _, session_token = rest.partition(":")
                return Credentials(access_key, secret_key, session_token or None)
            if self.config.option("access_key_env"):
                return Credentials(
                    self._env_var("access_key_env"),
                    self._env_var("secret_key_env"),
                    self._env_var("session_token_env", required=False) or None,
                )
            profile = self.config.option("profile") or None
            creds = botocore.session.Session(profile=profile).get_credentials()
        except GatewayError:
            raise
        except Exception as exc:  # botocore: profile not found, SSO expired, STS refused…
            raise self._credential_error(exc) from None
        if creds is None:
            raise Misconfigured(
                500,
                f"Provider '{self.name}' found no AWS credentials on the data plane. Ask your "
                "platform team to configure a profile, an instance role or access-key variables.",
            )
        return creds

    def _credential_error(self, exc: Exception) -> GatewayError:
        # botocore's text can name the account, role or profile (an STS refusal quotes the ARN):
        # the operator's log gets it, the client the exception's name.
        cloud_errors.log_original("bedrock", self.name, "-", 0, type(exc).__name__, str(exc))
        return Misconfigured(
            500,
            f"Provider '{self.name}': AWS credentials could not be loaded"
            f" ({type(exc).__name__}). Ask your platform team to check the data plane's log.",
        )

    async def _frozen_credentials(self) -> Any:
        """Credentials to sign with now: resolved once, refreshed before expiry, never on the loop.

        Resolution is single-flight and shielded, so a caller that goes away does not waste it;
        a failure is remembered for 30 s rather than re-run on every request.
        """
        creds = self._creds
        if creds is None:
            task = self._resolving
            if task is None or (
                task.done()
                and (task.cancelled() or task.exception() is not None)
                and time.monotonic() - self._resolving_since > _RETRY_FAILED_RESOLUTION_S
            ):
                self._resolving_since = time.monotonic()
                task = self._resolving = asyncio.ensure_future(asyncio.to_thread(self._resolve))
            creds = self._creds = await asyncio.shield(task)
        if isinstance(creds, RefreshableCredentials) and creds.refresh_needed():
            async with self._lock:  # one refresh (STS, SSO, IMDS: network I/O) at a time
                if creds.refresh_needed():
                    try:
                        return await asyncio.to_thread(creds.get_frozen_credentials)
                    except Exception as exc:
                        raise self._credential_error(exc) from None
        return creds.get_frozen_credentials()

    async def _auth(self, url: str, body: bytes, headers: dict[str, str]) -> list[tuple[str, str]]:
        if self.config.has_secret and not self.config.api_key:
            raise secret_not_received(self.name)
        if self._bearer:
            headers["Authorization"] = "Bearer " + self._env_var("bearer_token_env")
        else:
            aws = AWSRequest(method="POST", url=url, data=body, headers=headers)
            SigV4Auth(await self._frozen_credentials(), "bedrock", self.region).add_auth(aws)
            headers = dict(aws.headers.items())
        return [(k.lower(), str(v)) for k, v in headers.items()]

    def diagnose(self, model: str) -> Diagnosis:
        """The Bedrock id ``model`` maps to (an ARN's account id hidden), or why nothing is
        served: misconfiguration, a stored key not received, a credential variable missing on
        the data plane, a failed credential resolution (remembered, never re-run here)."""
        if self._problem:
            return Diagnosis(problem="misconfigured", message=self._problem)
        if self.config.has_secret and not self.config.api_key:
            return problem_of(secret_not_received(self.name))
        try:
            if self._bearer:
                self._env_var("bearer_token_env")
            elif not self.config.api_key and self.config.option("access_key_env"):
                self._env_var("access_key_env")
                self._env_var("secret_key_env")
        except GatewayError as err:
            return problem_of(err)
        task = self._resolving
        if self._creds is None and task is not None and task.done() and not task.cancelled():
            failure = task.exception()
            if isinstance(failure, GatewayError):
                return problem_of(failure)
        try:
            model_id = bedrock_model_id(model, self.config)
        except GatewayError as err:
            return Diagnosis(model_error=err.message)
        return Diagnosis(upstream_model=shown_model_id(model_id))

    # -- requests -------------------------------------------------------------------------------

    def _body(self, request: UpstreamRequest, count_only: bool) -> dict[str, Any]:
        body: dict[str, Any] = {"anthropic_version": ANTHROPIC_VERSION}
        body.update(
            (k, v)
            for k, v in request.json.items()
            if k not in ("model", "stream", "anthropic_version", "anthropic_beta")
        )
        listed = request.json.get("anthropic_beta")
        in_body = [b for b in listed if isinstance(b, str)] if isinstance(listed, list) else []
        betas = filter_betas("bedrock", [*request.betas, *in_body])
        if betas:
            body["anthropic_beta"] = betas
        if count_only and "max_tokens" not in body:
            # CountTokens validates an InvokeModel body, which requires max_tokens (> budget).
            thinking = body.get("thinking")
            budget = thinking.get("budget_tokens") if isinstance(thinking, dict) else None
            body["max_tokens"] = budget + 1 if isinstance(budget, int) else 1
        return body

    async def send(
        self, request: UpstreamRequest
    ) -> BufferedResponse | BedrockStream | TransportResponse:
        if self._problem:
            raise Misconfigured(500, self._problem)
        count_only = request.path.endswith("/count_tokens")
        model_id = bedrock_model_id(request.model, self.config)
        body = orjson.dumps(self._body(request, count_only))
        if count_only:
            operation = "count-tokens"
            model_id = foundation_model_id(model_id)
            body = orjson.dumps(
                {"input": {"invokeModel": {"body": base64.b64encode(body).decode()}}}
            )
        else:
            operation = "invoke-with-response-stream" if request.stream else "invoke"
        url = f"{self._base}/model/{quote(model_id, safe=':')}/{operation}"
        accept = (
            "application/vnd.amazon.eventstream"
            if operation[-6:] == "stream"
            else "application/json"
        )
        signed = {"Content-Type": "application/json", "Accept": accept}
        for k, v in request.trace_headers:  # sent; botocore leaves them out of the signature
            signed[k.decode()] = v.decode()
        headers = await self._auth(url, body, signed)
        headers += [("user-agent", "tollgate"), ("accept-encoding", "identity")]
        # The URL goes out exactly as signed (not re-quoted: ARNs carry %2F), the body likewise.
        response = await self._transport.request(
            "POST", url, headers, body, request.timeouts or self._timeout, self.name
        )
        raw = b""
        if response.status != 200 or count_only:
            raw = await response.drain()
        aws_id = response.header(b"x-amzn-requestid") or b""
        ids: list[Header] = (
            [(b"request-id", aws_id), (b"x-amzn-requestid", aws_id)] if aws_id else []
        )
        if response.status != 200:
            return self._error(response, raw, request.request_id, aws_id.decode("latin-1"), ids)
        if count_only:
            tokens = orjson.loads(raw).get("inputTokens") if raw.startswith(b"{") else None
            if not isinstance(tokens, int):
                message = f"Provider '{self.name}' gave an unreadable token count."
                raise UpstreamProtocolError(502, message)
            return BufferedResponse(
                200,
                [(b"content-type", b"application/json"), *ids],
                orjson.dumps({"input_tokens": tokens}),
            )
        if request.stream:
            sse = [
                (b"content-type", b"text/event-stream; charset=utf-8"),
                (b"cache-control", b"no-cache"),
            ]
            return BedrockStream(
                response, [*sse, *ids], self.name, self._ping_s, request.request_id
            )
        response.headers = [(b"content-type", b"application/json"), *ids] + [
            (k, v) for k, v in response.headers if k.startswith(b"x-amzn-bedrock-")
        ]
        return response

    def _error(
        self,
        response: TransportResponse,
        raw: bytes,
        request_id: str,
        aws_id: str,
        ids: list[Header],
    ) -> BufferedResponse:
        code = response.status
        status, etype = _ERRORS.get(code) or (
            (400, "invalid_request_error") if code < 500 else (502, "api_error")
        )
        kind = (response.header(b"x-amzn-errortype") or b"").decode("latin-1").split(":", 1)[0]
        original = message_of(raw)
        cloud_errors.log_original("bedrock", self.name, request_id, code, kind, original, aws_id)
        text = cloud_errors.client_message("bedrock", self.name, request_id, code, kind, original)
        headers: list[Header] = [(b"content-type", b"application/json"), *ids]
        retry_after = response.header(b"retry-after")
        if retry_after is not None:
            headers.append((b"retry-after", retry_after))
        return BufferedResponse(
            status, headers, error_response_body(etype, text, aws_id or request_id)
        )

    async def aclose(self) -> None:
        """The shared transport belongs to the registry; nothing of our own to close."""
