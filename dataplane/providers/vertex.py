"""Google Vertex AI adapter: Anthropic-format requests to Claude on Vertex, answers relayed as-is.

Options (``ProviderConfig.option``): ``project`` (required), ``region`` (default ``global``),
``credentials_file`` (service-account key; default: ``GOOGLE_APPLICATION_CREDENTIALS`` from the
data plane's environment, else Application Default Credentials), ``model_map`` (a JSON object
``{"FROM": "TO", …}``), ``timeout_connect_s``, ``timeout_read_s``. ``base_url`` follows
``ANTHROPIC_VERTEX_BASE_URL``: it ends in ``/v1``; default ``https://{region}-aiplatform.
googleapis.com/v1``, or ``https://aiplatform.googleapis.com/v1`` for region ``global``.

Request: ``POST {base}/projects/{project}/locations/{region}/publishers/anthropic/models/
{model}:streamRawPredict`` (``:rawPredict`` unless streaming). The body is ``request.json``
without ``model`` and with ``anthropic_version: "vertex-2023-10-16"``; everything else (``stream``,
``system`` as received, unknown fields) is kept. count_tokens goes to ``…/models/count-tokens:
rawPredict`` with ``model`` set to the Vertex model id (Vertex reads it from the body) and answers
Anthropic's ``{"input_tokens": N}``. Betas stay in the ``anthropic-beta`` header, filtered by
:func:`~dataplane.providers.betas.filter_betas` (kind ``vertex``, or ``vertex_count_tokens``).
Other client headers are forwarded as by the Anthropic adapter, plus ``Authorization: Bearer``
with a cached Google token (:mod:`dataplane.providers.gcp_auth`); the client's query string and
any ``x-goog-user-project`` are not forwarded.

Response: a 200 is ordinary Anthropic SSE / JSON and is relayed unchanged, unbuffered. An error
whose body is already Anthropic-shaped (Anthropic's model server) passes unchanged. A Google
front-end error (``{"error": {"code", "status", "message"}}``, possibly wrapped in a JSON array)
or any other body becomes an Anthropic error with the status and type of :data:`GOOGLE_STATUS`;
its message names the Google status (``PERMISSION_DENIED``) and the gateway request id, never
Google's text, which can name the project (:mod:`dataplane.providers.cloud_errors`; the original
goes to the data plane's log). A 401 also drops the cached token so the next request fetches a
new one. Transport failures before a
response raise ``GatewayError`` 502/504 like the Anthropic adapter.

Model map (:func:`vertex_model_id`), first rule that applies:

1. an exact key of the ``model_map`` option → its value;
2. an id containing ``@`` is already a Vertex id → unchanged;
3. an id not starting with ``claude-`` → 404 ``not_found_error`` listing what this provider serves;
4. an id ending in an 8-digit date → ``name@date``
   (``claude-sonnet-4-5-20250929`` → ``claude-sonnet-4-5@20250929``);
5. otherwise unchanged (``claude-opus-4-8``: newer models have no date on Vertex).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import orjson

from dataplane.asgi import Header
from dataplane.config.snapshot import ProviderConfig
from dataplane.errors import ERROR_TYPES, GatewayError, Misconfigured, not_found
from dataplane.providers import cloud_errors
from dataplane.providers.base import BufferedResponse, Diagnosis, HttpAdapter, UpstreamRequest
from dataplane.providers.betas import filter_betas
from dataplane.providers.gcp_auth import GoogleTokenSource
from dataplane.providers.transport import TransportResponse

log = logging.getLogger("tollgate.providers.vertex")

VERTEX_VERSION = "vertex-2023-10-16"
COUNT_TOKENS_MODEL = "count-tokens"

# google.rpc status -> (HTTP status, Anthropic error type)
GOOGLE_STATUS: Mapping[str, tuple[int, str]] = {
    "RESOURCE_EXHAUSTED": (429, "rate_limit_error"),
    "PERMISSION_DENIED": (403, "permission_error"),
    "UNAUTHENTICATED": (401, "authentication_error"),
    "NOT_FOUND": (404, "not_found_error"),
    "INVALID_ARGUMENT": (400, "invalid_request_error"),
    "FAILED_PRECONDITION": (400, "invalid_request_error"),
    "UNAVAILABLE": (529, "overloaded_error"),
    "DEADLINE_EXCEEDED": (504, "timeout_error"),
    "INTERNAL": (500, "api_error"),
}

_DATED = re.compile(r"^(claude-.+)-(\d{8})$")
# Client headers replaced or withheld: the body changed (content-type is ours), betas are
# filtered, and a client's Google billing project must not redirect the gateway's calls.
_DROP = frozenset({b"content-type", b"anthropic-beta", b"x-goog-user-project"})
# Upstream error headers kept when the body is rewritten.
_KEEP_ON_ERROR = frozenset({b"retry-after", b"x-should-retry"})


def default_base_url(region: str) -> str:
    if region == "global":
        return "https://aiplatform.googleapis.com/v1"
    return f"https://{region}-aiplatform.googleapis.com/v1"


def model_map(config: ProviderConfig) -> dict[str, str]:
    """The ``model_map`` option as a dict; raises ValueError if it is not a JSON string map."""
    raw = config.option("model_map", "")
    if not raw.strip():
        return {}
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"model_map is not valid JSON ({exc})") from None
    if not isinstance(obj, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and v for k, v in obj.items()
    ):
        raise ValueError('model_map must be a JSON object of strings, {"FROM": "TO", ...}')
    return dict(obj)


def vertex_model_id(model: str, config: ProviderConfig) -> str:
    """The Vertex model id for ``model`` by the rule in the module docstring; 404 if none."""
    try:
        explicit = model_map(config)
    except ValueError as exc:
        raise Misconfigured(500, f"Provider '{config.name}' is misconfigured: {exc}.") from None
    return _map_model(model, explicit, config.name)


def _map_model(model: str, explicit: Mapping[str, str], provider: str) -> str:
    mapped = explicit.get(model)
    if mapped is not None:
        return mapped
    if "@" in model:
        return model
    if not model.startswith("claude-"):
        listed = ", ".join(sorted(explicit)) or "none"
        raise not_found(
            f"model: {model} is not served by Vertex AI provider '{provider}'. It serves Claude "
            "model ids: 'claude-…-YYYYMMDD' becomes 'claude-…@YYYYMMDD', 'claude-…' ids without "
            f"a date and Vertex ids ('name@date') pass unchanged; mapped names: {listed}. "
            "Check the model name, or ask your platform team to add it to the provider's model map."
        )
    dated = _DATED.match(model)
    if dated is not None:
        return f"{dated.group(1)}@{dated.group(2)}"
    return model


def translate_error(
    status: int, headers: list[Header], body: bytes, provider: str, request_id: str
) -> BufferedResponse:
    """An upstream error as an Anthropic error: unchanged if it already is one, else rewritten
    without Google's message (logged for the operator under ``request_id``)."""
    try:
        obj: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        obj = None
    if isinstance(obj, dict) and obj.get("type") == "error" and isinstance(obj.get("error"), dict):
        kept = [(k, v) for k, v in headers if k.lower() not in (b"content-length",)]
        return BufferedResponse(status, kept, body)
    if isinstance(obj, list) and obj and isinstance(obj[0], dict):
        obj = obj[0]
    err = obj.get("error") if isinstance(obj, dict) else None
    google_status = ""
    message = ""
    if isinstance(err, dict):
        google_status = str(err.get("status") or "")
        message = str(err.get("message") or "")
    new_status, etype = GOOGLE_STATUS.get(
        google_status, (status, ERROR_TYPES.get(status, "api_error"))
    )
    if not message:
        message = body[:500].decode("utf-8", "replace").strip()
    cloud_errors.log_original("vertex", provider, request_id, status, google_status, message)
    told = cloud_errors.client_message(
        "vertex", provider, request_id, status, google_status, message
    )
    out = orjson.dumps({"type": "error", "error": {"type": etype, "message": told}})
    kept = [(k, v) for k, v in headers if k.lower() in _KEEP_ON_ERROR]
    return BufferedResponse(new_status, [(b"content-type", b"application/json"), *kept], out)


class VertexProvider(HttpAdapter):
    kind = "vertex"

    def _configure(self, config: ProviderConfig) -> None:
        self.project = config.option("project")
        self.region = config.option("region", "global") or "global"
        self.base_url = (config.base_url or default_base_url(self.region)).rstrip("/")
        # Problems are reported per request (500), never by failing the snapshot swap.
        self._misconfigured: str | None = None
        self._map: dict[str, str] = {}
        try:
            self._map = model_map(config)
        except ValueError as exc:
            self._misconfigured = str(exc)
        if not self.project:
            self._misconfigured = "it has no 'project' option"
        credentials_file = config.option("credentials_file") or self._env.get(
            "GOOGLE_APPLICATION_CREDENTIALS", ""
        )
        self.tokens = GoogleTokenSource(self.name, credentials_file)

    def url(self, model: str, stream: bool, count_tokens: bool = False) -> str:
        """The endpoint for a Vertex ``model`` id (already mapped)."""
        prefix = (
            f"{self.base_url}/projects/{quote(self.project, safe='')}"
            f"/locations/{quote(self.region, safe='')}/publishers/anthropic/models/"
        )
        if count_tokens:
            return prefix + f"{COUNT_TOKENS_MODEL}:rawPredict"
        verb = "streamRawPredict" if stream else "rawPredict"
        return prefix + f"{quote(model, safe='@.-_~')}:{verb}"

    def body(self, request: UpstreamRequest, model: str, count_tokens: bool = False) -> bytes:
        """``request.json`` rewritten for Vertex (see the module docstring)."""
        out = {k: v for k, v in request.json.items() if k != "model"}
        if count_tokens:
            out = {"model": model, **out}
        out["anthropic_version"] = VERTEX_VERSION
        return orjson.dumps(out)

    def headers(self, request: UpstreamRequest, token: str, count_tokens: bool) -> list[Header]:
        out = [(k, v) for k, v in request.headers if k.lower() not in _DROP]
        betas = filter_betas("vertex_count_tokens" if count_tokens else "vertex", request.betas)
        if betas:
            out.append((b"anthropic-beta", ",".join(betas).encode()))
        out += [
            *request.trace_headers,
            (b"content-type", b"application/json"),
            (b"authorization", b"Bearer " + token.encode()),
            (b"accept-encoding", b"identity"),
        ]
        return out

    def diagnose(self, model: str) -> Diagnosis:
        """The Vertex id ``model`` maps to, or why nothing is served (misconfiguration)."""
        if self._misconfigured:
            return Diagnosis(
                problem="misconfigured",
                message=f"Provider '{self.name}' is misconfigured: {self._misconfigured}.",
            )
        try:
            return Diagnosis(upstream_model=_map_model(model, self._map, self.name))
        except GatewayError as err:
            return Diagnosis(model_error=err.message)

    async def send(self, request: UpstreamRequest) -> TransportResponse | BufferedResponse:
        if self._misconfigured:
            raise Misconfigured(
                500,
                f"Provider '{self.name}' is misconfigured: {self._misconfigured}. "
                "Ask your platform team to fix the provider's options.",
            )
        count_tokens = request.path.endswith("/count_tokens")
        model = _map_model(request.model, self._map, self.name)
        token = await self.tokens.token()
        response = await self._transport.request(
            "POST",
            self.url(model, request.stream, count_tokens),
            self.headers(request, token, count_tokens),
            self.body(request, model, count_tokens),
            request.timeouts or self._timeout,
            self.name,
        )
        if response.status < 400:
            return response
        body = await response.drain()
        if response.status == 401:
            self.tokens.invalidate(token)
        translated = translate_error(
            response.status, response.headers, body, self.name, request.request_id
        )
        log.info("provider %s: upstream %d -> %d", self.name, response.status, translated.status)
        return translated

    async def aclose(self) -> None:
        """The shared transport belongs to the registry; only the token fetcher is ours."""
        await asyncio.to_thread(self.tokens.close)
