"""A strict fake of the Amazon Bedrock runtime, served by Hypercorn on 127.0.0.1.

Strict where the gateway could go wrong:

* Authentication: a SigV4 signature is recomputed with botocore for the received request (raw
  path, signed headers, body, the request's own ``x-amz-date``) using the secret the fake knows for
  the access key id; a wrong secret, a tampered body or path, a wrong region/service scope, a
  missing session token, or a clock skew over 15 minutes is refused with 403 like AWS does. A
  configured Bedrock API key (``Authorization: Bearer``) is accepted instead.
* Routing is on the RAW path (model ids are URL-quoted; ARNs contain ``%2F``).
* Body fidelity: JSON object, no ``model``/``stream``, ``anthropic_version ==
  "bedrock-2023-05-31"``, ``anthropic_beta`` (if any) only values Bedrock accepts, ``max_tokens``
  and ``messages`` present; count-tokens wraps that body base64-encoded in
  ``input.invokeModel.body`` and takes a foundation model id (no inference-profile prefix).

It records every request and answers with real event-stream frames (made by its own encoder,
:mod:`tests.fakes.eventstream`) carrying base64 Anthropic events (usage with cache fields, a final
chunk with ``amazon-bedrock-invocationMetrics``), plain JSON for ``/invoke``,
``{"inputTokens": N}`` for count-tokens, or scripted answers (pre-stream errors, in-stream
exceptions, silences, corrupt frames).
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

import orjson
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from dataplane.providers.betas import ACCEPTED
from tests.fakes.anthropic import message_body, stream_events
from tests.fakes.eventstream import encode_frame
from tests.fakes.server import HeaderLookup, LoopbackServer, read_body
from tests.fakes.strict import Strict

ACCESS_KEY = "AKIDTOLLGATEFAKE0001"
SECRET_KEY = "fake/secret/K7MDENG+bPxRfiCYEXAMPLEKEY"
BEARER_TOKEN = "ABSKZmFrZS1iZWRyb2NrLWFwaS1rZXk="
REGION = "us-east-1"
SIGNATURE_MISMATCH = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your AWS Secret Access Key and signing method. Consult the service documentation "
    "for details."
)
_AUTH = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=([^/]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request, "
    r"SignedHeaders=([a-z0-9;-]+), Signature=([0-9a-f]{64})$"
)
_ROUTE = re.compile(r"^/model/([^/]+)/(invoke|invoke-with-response-stream|count-tokens)$")
_MODEL = re.compile(
    r"^(?:(?:us|eu|apac|jp|global)\.)?anthropic\.claude-[a-z0-9.:-]+$|^arn:aws:bedrock:"
)


def _errortype(name: str) -> bytes:
    return f"{name}:http://internal.amazon.com/coral/com.amazon.bedrock/".encode()


def chunk(event: dict[str, Any]) -> bytes:
    """One ``chunk`` frame carrying one Anthropic stream event, as Bedrock sends it."""
    data = orjson.dumps(event)
    payload = orjson.dumps(
        {"bytes": base64.b64encode(data).decode(), "p": "abcdefghijklmnop"[: len(data) % 16]}
    )
    return encode_frame(
        {":event-type": "chunk", ":content-type": "application/json", ":message-type": "event"},
        payload,
    )


def exception(kind: str, message: str) -> bytes:
    """An in-stream exception frame (``:message-type=exception``)."""
    return encode_frame(
        {
            ":exception-type": kind,
            ":content-type": "application/json",
            ":message-type": "exception",
        },
        orjson.dumps({"message": message}),
    )


METRICS = {
    "inputTokenCount": 12,
    "outputTokenCount": 42,
    "invocationLatency": 1234,
    "firstByteLatency": 456,
}


def anthropic_events(
    model: str, text_chunks: list[str], usage: dict[str, Any] | None = None, output_tokens: int = 42
) -> list[dict[str, Any]]:
    """The Anthropic stream events Bedrock wraps (no ``ping``); the last carries the invocation
    metrics."""
    events = [
        e
        for e in stream_events(model, text_chunks, usage, output_tokens, msg_id="msg_bdrk_01")
        if e["type"] != "ping"
    ]
    events[-1]["amazon-bedrock-invocationMetrics"] = METRICS
    return events


def stream_frames(model: str, text_chunks: list[str], **kw: Any) -> list[bytes]:
    return [chunk(e) for e in anthropic_events(model, text_chunks, **kw)]


@dataclass
class Received(HeaderLookup):
    method: str
    raw_path: str
    model_id: str
    operation: str
    headers: list[tuple[bytes, bytes]]
    body: bytes
    json: dict[str, Any] = field(default_factory=dict)  # the invoke body (unwrapped for count)


@dataclass
class Scripted:
    """One scripted answer: ``frames`` sent as separate chunks; ``delays[i]`` before frame i."""

    status: int = 200
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    frames: list[bytes] = field(default_factory=list)
    delays: dict[int, float] = field(default_factory=dict)
    hang: float = 0.0  # seconds before the response headers (timeout tests)


def error(status: int, kind: str, message: str, retry_after: str | None = None) -> Scripted:
    """A Bedrock pre-stream error: JSON ``{"message": …}`` plus ``x-amzn-errortype``."""
    headers = [(b"content-type", b"application/json"), (b"x-amzn-errortype", _errortype(kind))]
    if retry_after is not None:
        headers.append((b"retry-after", retry_after.encode()))
    return Scripted(status=status, headers=headers, frames=[orjson.dumps({"message": message})])


class FakeBedrock(LoopbackServer, Strict):
    def __init__(
        self,
        keys: dict[str, tuple[str, str | None]] | None = None,
        bearer_token: str = BEARER_TOKEN,
        region: str = REGION,
        text: str = "Hello from the fake Bedrock.",
    ) -> None:
        # access key id -> (secret, session token or None)
        self.keys: dict[str, tuple[str, str | None]] = (
            keys if keys is not None else {ACCESS_KEY: (SECRET_KEY, None)}
        )
        self.bearer_token = bearer_token
        self.region = region
        self.text = text
        self.requests: list[Received] = []
        self.violations: list[str] = []
        self.script: deque[Scripted] = deque()
        self.on_request: Callable[[Received], Scripted | None] | None = None
        self._n = 0

    # -- the ASGI app ------------------------------------------------------------------------

    async def app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = await read_body(receive)
        raw_path = scope["raw_path"].decode("latin-1")
        route = _ROUTE.match(raw_path)
        req = Received(
            scope["method"],
            raw_path,
            unquote(route.group(1)) if route else "",
            route.group(2) if route else "",
            list(scope["headers"]),
            body,
        )
        self.requests.append(req)
        problem = self._check(req, route is not None)
        if problem is not None:
            self.violations.append(problem.frames[0].decode())
            await self._play(send, problem)
            return
        scripted = self.on_request(req) if self.on_request else None
        if scripted is None and self.script:
            scripted = self.script.popleft()
        await self._play(send, scripted or self.default_answer(req))

    def _check(self, req: Received, routed: bool) -> Scripted | None:
        auth = req.header("authorization") or ""
        if "gw-" in auth:
            return error(403, "AccessDeniedException", "a virtual key reached the upstream")
        if auth.startswith("Bearer "):
            if not hmac.compare_digest(auth[7:], self.bearer_token):
                return error(
                    403,
                    "AccessDeniedException",
                    "Authentication failed: Please make sure your API Key is valid.",
                )
        else:
            problem = self._check_signature(req, auth)
            if problem is not None:
                return error(
                    403,
                    "InvalidSignatureException"
                    if "signature" in problem
                    else "UnrecognizedClientException",
                    problem,
                )
        if req.method != "POST" or not routed:
            return error(
                404, "UnknownOperationException", f"unexpected {req.method} {req.raw_path}"
            )
        if not _MODEL.match(req.model_id):
            return error(400, "ValidationException", "The provided model identifier is invalid.")
        if (req.header("content-type") or "").split(";")[0] != "application/json":
            return error(400, "ValidationException", "content-type must be application/json")
        try:
            obj = orjson.loads(req.body)
            if req.operation == "count-tokens":
                if req.model_id.split(".", 1)[0] in ("us", "eu", "apac", "jp", "global"):
                    return error(
                        400,
                        "ValidationException",
                        "The provided model doesn't support counting tokens.",
                    )
                obj = orjson.loads(
                    base64.b64decode(obj["input"]["invokeModel"]["body"], validate=True)
                )
        except (ValueError, KeyError, TypeError):
            return error(
                400,
                "ValidationException",
                "Malformed input request, please reformat your input and try again.",
            )
        if not isinstance(obj, dict):
            return error(400, "ValidationException", "body must be a JSON object")
        req.json = obj
        for bad in ("model", "stream"):
            if bad in obj:
                return error(
                    400, "ValidationException", f"#: extraneous key [{bad}] is not permitted"
                )
        if obj.get("anthropic_version") != "bedrock-2023-05-31":
            return error(400, "ValidationException", "anthropic_version: invalid or missing")
        betas = obj.get("anthropic_beta", [])
        if not isinstance(betas, list) or not all(b in ACCEPTED["bedrock"] for b in betas):
            return error(400, "ValidationException", "invalid beta flag")
        if not isinstance(obj.get("max_tokens"), int) or "messages" not in obj:
            return error(400, "ValidationException", "max_tokens and messages are required")
        return None

    def _check_signature(self, req: Received, auth: str) -> str | None:
        m = _AUTH.match(auth)
        if m is None:
            return "Missing Authentication Token"
        key_id, day, region, service, signed, signature = m.groups()
        if key_id not in self.keys:
            return "The security token included in the request is invalid."
        secret, token = self.keys[key_id]
        amz_date = req.header("x-amz-date") or ""
        if region != self.region or service != "bedrock" or not amz_date.startswith(day):
            return "Credential should be scoped to a valid region and service 'bedrock'; signature scope mismatch"
        try:
            when = datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        except ValueError:
            return "invalid x-amz-date; signature cannot be verified"
        if abs((datetime.now(UTC) - when).total_seconds()) > 900:
            return "Signature expired: the request signature is too old"
        if token is not None and req.header("x-amz-security-token") != token:
            return "The security token included in the request is invalid."
        names = signed.split(";")
        if not {"host", "x-amz-date"} <= set(names):
            return "host and x-amz-date must be signed; signature refused"
        headers = {name: req.header(name) or "" for name in names}
        aws = AWSRequest(
            method=req.method,
            url=f"http://{headers['host']}{req.raw_path}",
            data=req.body,
            headers=headers,
        )
        aws.context["timestamp"] = amz_date
        signer = SigV4Auth(Credentials(key_id, secret, token), "bedrock", region)
        expected = signer.signature(signer.string_to_sign(aws, signer.canonical_request(aws)), aws)
        return None if hmac.compare_digest(expected, signature) else SIGNATURE_MISMATCH

    def default_answer(self, req: Received) -> Scripted:
        self._n += 1
        ids = [(b"x-amzn-requestid", f"bdrk-req-{self._n:04d}".encode())]
        if req.operation == "count-tokens":
            inner = base64.b64decode(orjson.loads(req.body)["input"]["invokeModel"]["body"])
            return Scripted(
                headers=[(b"content-type", b"application/json"), *ids],
                frames=[orjson.dumps({"inputTokens": len(inner) // 4})],
            )
        model = req.model_id.split("anthropic.", 1)[-1]
        if req.operation == "invoke":
            return Scripted(
                headers=[
                    (b"content-type", b"application/json"),
                    (b"x-amzn-bedrock-output-token-count", b"42"),
                    *ids,
                ],
                frames=[message_body(model, self.text)],
            )
        return Scripted(
            headers=[
                (b"content-type", b"application/vnd.amazon.eventstream"),
                (b"x-amzn-bedrock-content-type", b"application/json"),
                *ids,
            ],
            frames=stream_frames(model, [w + " " for w in self.text.split()]),
        )

    async def _play(self, send: Any, s: Scripted) -> None:
        if s.hang:
            await asyncio.sleep(s.hang)
        await send({"type": "http.response.start", "status": s.status, "headers": s.headers})
        for i, frame in enumerate(s.frames):
            if i in s.delays:
                await asyncio.sleep(s.delays[i])
            await send({"type": "http.response.body", "body": frame, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
