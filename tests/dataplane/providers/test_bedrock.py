"""BedrockProvider against the strict fake Bedrock runtime (real SigV4, real event-stream frames).

This module is long because every request shape and failure is checked against the strict fake
Bedrock runtime with real SigV4 and real event-stream frames."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import threading
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import botocore.session
import orjson
import pytest
from botocore.credentials import RefreshableCredentials

from dataplane.codecs.sse import SSEDecoder, SSEEvent
from dataplane.config.snapshot import ProviderConfig
from dataplane.errors import GatewayError
from dataplane.metering.meter import StreamMeter, TokenUsage
from dataplane.providers.base import UpstreamRequest
from dataplane.providers.bedrock import BedrockProvider
from dataplane.providers.bedrock_models import (
    bedrock_model_id,
    default_profile,
    foundation_model_id,
)
from dataplane.providers.betas import filter_betas, header_betas
from dataplane.providers.transport import OutHeader, Timeouts, Transport, TransportResponse
from tests.dataplane.providers.support import upstream_request
from tests.fakes.anthropic import DEFAULT_USAGE
from tests.fakes.bedrock import (
    ACCESS_KEY,
    BEARER_TOKEN,
    SECRET_KEY,
    FakeBedrock,
    Scripted,
    error,
    exception,
    stream_frames,
)
from tests.fakes.eventstream import encode_frame

ENV = {"FAKE_AK": ACCESS_KEY, "FAKE_SK": SECRET_KEY, "FAKE_BEARER": BEARER_TOKEN}
SONNET = "claude-sonnet-4-5-20250929"
BETAS = "claude-code-20250219,context-1m-2025-08-07, interleaved-thinking-2025-05-14,fancy-new-2099-01-01"
EXPECTED_USAGE = TokenUsage(
    input_tokens=12,
    output_tokens=42,
    cache_creation_input_tokens=2500,
    cache_read_input_tokens=18000,
    cache_write_5m_tokens=2000,
    cache_write_1h_tokens=500,
)


def config(base_url: str = "", **options: str) -> ProviderConfig:
    opts = {"region": "us-east-1", "access_key_env": "FAKE_AK", "secret_key_env": "FAKE_SK"}
    opts.update(options)
    return ProviderConfig("bdrk", "bedrock", base_url, "", tuple(sorted(opts.items())))


def messages_request(
    body: dict[str, Any] | None = None, path: str = "/v1/messages", betas: str = BETAS
) -> UpstreamRequest:
    obj = body or {
        "model": SONNET,
        "max_tokens": 64000,
        "stream": True,
        "system": [{"type": "text", "text": "sys", "cache_control": {"type": "ephemeral"}}],
        "messages": [{"role": "user", "content": "hi"}, {"role": "system", "content": "mid"}],
        "thinking": {"type": "adaptive"},
        "context_management": {"edits": []},
        "metadata": {"user_id": '{"device":"d"}'},
        "some_future_field": {"x": [1, 2]},
    }
    headers = ((b"anthropic-version", b"2023-06-01"), (b"anthropic-beta", betas.encode()))
    return upstream_request(obj, path, headers)


@pytest.fixture
async def fake() -> AsyncIterator[FakeBedrock]:
    f = FakeBedrock()
    await f.start()
    yield f
    await f.stop()


async def collect(
    provider: BedrockProvider, request: UpstreamRequest
) -> tuple[int, list[SSEEvent], StreamMeter, bytes]:
    response = await provider.send(request)
    raw = b""
    decoder, meter = SSEDecoder(), StreamMeter()
    events: list[SSEEvent] = []
    try:
        async for piece in response.aiter_raw():
            raw += piece
            for ev in decoder.feed(piece):
                meter.feed(ev)
                events.append(ev)
    finally:
        await response.aclose()
    assert decoder.pending == 0
    return response.status, events, meter, raw


# --- signing and authentication ------------------------------------------------------------------


async def test_stream_signed_translated_and_metered_exactly(
    fake: FakeBedrock, transport: Transport
) -> None:
    provider = BedrockProvider(config(fake.base_url), transport, ENV)
    status, events, meter, raw = await collect(provider, messages_request())
    assert status == 200
    [req] = fake.requests
    assert req.raw_path == f"/model/us.anthropic.{SONNET}-v1:0/invoke-with-response-stream"
    assert req.header("accept") == "application/vnd.amazon.eventstream"
    assert meter.usage == EXPECTED_USAGE
    assert meter.saw_message_stop and meter.error is None
    assert [e.event for e in events][:2] == ["message_start", "content_block_start"]
    text = "".join(
        orjson.loads(e.data)["delta"]["text"] for e in events if e.event == "content_block_delta"
    )
    assert text.split() == fake.text.split()
    # each event's JSON is the exact bytes Bedrock carried, framed as Anthropic SSE
    expected = b""
    for frame in stream_frames(f"{SONNET}-v1:0", [w + " " for w in fake.text.split()]):
        payload = orjson.loads(frame[frame.index(b'{"bytes"') : -4])
        data = base64.b64decode(payload["bytes"])
        expected += b"event: " + orjson.loads(data)["type"].encode() + b"\ndata: " + data + b"\n\n"
    assert raw == expected
    assert b"amazon-bedrock-invocationMetrics" in raw  # kept, and metering unaffected


async def test_response_headers_are_sse_with_aws_request_id(
    fake: FakeBedrock, transport: Transport
) -> None:
    provider = BedrockProvider(config(fake.base_url), transport, ENV)
    response = await provider.send(messages_request())
    await response.aclose()
    headers = dict(response.headers)
    assert headers[b"content-type"] == b"text/event-stream; charset=utf-8"
    assert headers[b"request-id"] == headers[b"x-amzn-requestid"] == b"bdrk-req-0001"
    assert b"application/vnd.amazon.eventstream" not in b"".join(headers.values())


async def test_wrong_secret_is_refused_as_permission_error(
    fake: FakeBedrock, transport: Transport
) -> None:
    env = {**ENV, "FAKE_SK": "not-the-secret"}
    provider = BedrockProvider(config(fake.base_url), transport, env)
    response = await provider.send(messages_request())
    assert response.status == 403
    body = orjson.loads(await response.read())
    assert body["type"] == "error"
    assert body["error"]["type"] == "permission_error"
    assert body["error"]["message"].startswith(
        "Amazon Bedrock (provider 'bdrk') refused the request: InvalidSignatureException."
    )
    [violation] = fake.take_violations()
    assert "signature we calculated does not match" in violation


async def test_tampered_body_fails_signature(fake: FakeBedrock, transport: Transport) -> None:
    """The fake really recomputes the signature: change one byte after signing and it refuses."""
    provider = BedrockProvider(config(fake.base_url), transport, ENV)
    original = transport.request

    async def tamper(
        method: str,
        url: str,
        headers: list[OutHeader],
        body: bytes,
        timeout: Timeouts,
        provider: str,
    ) -> TransportResponse:
        forged = body.replace(b'"hi"', b'"HI"')
        return await original(method, url, headers, forged, timeout, provider)

    transport.request = tamper  # type: ignore[method-assign,assignment]
    response = await provider.send(messages_request())
    assert response.status == 403
    assert b"InvalidSignatureException" in await response.read()
    [violation] = fake.take_violations()
    assert "signature we calculated does not match" in violation


async def test_session_token_is_sent_and_checked(transport: Transport) -> None:
    f = FakeBedrock(keys={"ASIATEMP": ("tmp-secret", "the-session-token")})
    await f.start()
    try:
        env = {"AK": "ASIATEMP", "SK": "tmp-secret", "TOK": "the-session-token"}
        cfg = config(f.base_url, access_key_env="AK", secret_key_env="SK", session_token_env="TOK")
        status, _, meter, _ = await collect(
            BedrockProvider(cfg, transport, env), messages_request()
        )
        assert status == 200 and meter.saw_message_stop
        assert f.requests[0].header("x-amz-security-token") == "the-session-token"
    finally:
        await f.stop()


async def test_bearer_api_key_mode(fake: FakeBedrock, transport: Transport) -> None:
    cfg = config(fake.base_url, bearer_token_env="FAKE_BEARER")
    provider = BedrockProvider(cfg, transport, ENV)
    status, _, meter, _ = await collect(provider, messages_request())
    assert status == 200 and meter.usage == EXPECTED_USAGE
    assert fake.requests[0].header("authorization") == f"Bearer {BEARER_TOKEN}"
    assert fake.requests[0].header("x-amz-date") is None
    assert provider.credential_resolutions == 0
    wrong = BedrockProvider(cfg, transport, {**ENV, "FAKE_BEARER": "ABSKwrong"})
    response = await wrong.send(messages_request())
    assert response.status == 403
    [violation] = fake.take_violations()
    assert "Please make sure your API Key is valid" in violation


async def test_missing_secret_variable_is_a_clear_500(
    fake: FakeBedrock, transport: Transport
) -> None:
    provider = BedrockProvider(config(fake.base_url), transport, {"FAKE_AK": ACCESS_KEY})
    with pytest.raises(GatewayError) as info:
        await provider.send(messages_request())
    assert info.value.status == 500 and "FAKE_SK" in info.value.message
    assert fake.requests == []


# --- credentials: resolved once, refreshed off the loop -------------------------------------------


async def test_credentials_resolved_once_across_many_requests(
    fake: FakeBedrock, transport: Transport, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The default botocore chain (here: AWS_* variables) runs once for 25 concurrent requests."""
    for var in (
        "AWS_PROFILE",
        "AWS_SESSION_TOKEN",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    ):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/config")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials")
    cfg = ProviderConfig("bdrk", "bedrock", fake.base_url, "", (("region", "us-east-1"),))
    provider = BedrockProvider(cfg, transport, {})
    results = await asyncio.gather(*(collect(provider, messages_request()) for _ in range(25)))
    assert all(r[0] == 200 and r[2].usage == EXPECTED_USAGE for r in results)
    assert provider.credential_resolutions == 1
    assert len(fake.requests) == 25


async def test_refreshable_credentials_refresh_once_in_a_thread(
    fake: FakeBedrock, transport: Transport, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake.keys["ASIAROTATED"] = ("rotated-secret", "rotated-token")
    loop_thread = threading.get_ident()
    refreshes: list[bool] = []  # one entry per credential fetch: was it on the loop's thread?
    expiry = [datetime.now(UTC) + timedelta(hours=1)]

    def metadata() -> dict[str, str]:
        refreshes.append(threading.get_ident() == loop_thread)
        return {
            "access_key": "ASIAROTATED",
            "secret_key": "rotated-secret",
            "token": "rotated-token",
            "expiry_time": expiry[0].isoformat(),
        }

    def resolve(self: BedrockProvider) -> RefreshableCredentials:
        self.credential_resolutions += 1
        return RefreshableCredentials.create_from_metadata(metadata(), metadata, "test")

    monkeypatch.setattr(BedrockProvider, "_resolve", resolve)
    provider = BedrockProvider(config(fake.base_url), transport, ENV)
    for _ in range(5):
        assert (await collect(provider, messages_request()))[0] == 200
    assert provider.credential_resolutions == 1 and refreshes == [False]  # no refresh needed yet
    # Within the mandatory refresh window: exactly one refresh for many concurrent requests.
    provider._creds._expiry_time = datetime.now(UTC) + timedelta(seconds=30)
    results = await asyncio.gather(*(collect(provider, messages_request()) for _ in range(10)))
    assert all(r[0] == 200 for r in results)
    assert refreshes == [False, False]  # refreshed once, in a worker thread
    assert provider.credential_resolutions == 1


async def test_failed_resolution_is_not_rerun_per_request(
    transport: Transport, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []

    def nothing(self: object) -> None:
        calls.append(1)

    monkeypatch.setattr(botocore.session.Session, "get_credentials", nothing)
    cfg = ProviderConfig("bdrk", "bedrock", "http://127.0.0.1:9", "", (("region", "us-east-1"),))
    provider = BedrockProvider(cfg, transport, {})
    for _ in range(3):
        with pytest.raises(GatewayError) as info:
            await provider.send(messages_request())
        assert info.value.status == 500 and "no AWS credentials" in info.value.message
    assert calls == [1] and provider.credential_resolutions == 1


async def test_unknown_profile_is_a_clear_500(
    transport: Transport, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/config")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials")
    cfg = ProviderConfig(
        "bdrk", "bedrock", "http://127.0.0.1:9", "", (("profile", "nope"), ("region", "us-east-1"))
    )
    with pytest.raises(GatewayError) as info:
        await BedrockProvider(cfg, transport, {}).send(messages_request())
    # botocore's text (which can quote a role ARN) goes to the log; the client gets its kind.
    assert info.value.status == 500 and "ProfileNotFound" in info.value.message
    assert "nope" not in info.value.message and "nope" in caplog.text


async def test_a_cancelled_caller_does_not_waste_the_resolution(
    fake: FakeBedrock, transport: Transport, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = BedrockProvider._resolve
    resolving, release = threading.Event(), threading.Event()

    def slow(self: BedrockProvider) -> Any:
        resolving.set()
        release.wait(5)
        return original(self)

    monkeypatch.setattr(BedrockProvider, "_resolve", slow)
    provider = BedrockProvider(config(fake.base_url), transport, ENV)
    first = asyncio.create_task(provider.send(messages_request()))
    assert await asyncio.to_thread(resolving.wait, 5)  # the resolution is under way
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    release.set()
    status, _, meter, _ = await collect(provider, messages_request())
    assert status == 200 and meter.saw_message_stop
    assert provider.credential_resolutions == 1


# --- body rewrite, paths, model map ---------------------------------------------------------------


async def test_body_rewrite_is_exact(fake: FakeBedrock, transport: Transport) -> None:
    request = messages_request()
    await collect(BedrockProvider(config(fake.base_url), transport, ENV), request)
    sent = orjson.loads(fake.requests[0].body)
    expected = {k: v for k, v in request.json.items() if k not in ("model", "stream")}
    expected["anthropic_version"] = "bedrock-2023-05-31"
    expected["anthropic_beta"] = ["context-1m-2025-08-07", "interleaved-thinking-2025-05-14"]
    assert sent == expected
    assert request.json["model"] == SONNET  # the parsed request is not mutated


async def test_no_accepted_betas_means_no_anthropic_beta_key(
    fake: FakeBedrock, transport: Transport
) -> None:
    request = messages_request(betas="claude-code-20250219")
    await collect(BedrockProvider(config(fake.base_url), transport, ENV), request)
    assert "anthropic_beta" not in orjson.loads(fake.requests[0].body)


async def test_arn_is_quoted_and_routed_on_the_raw_path(
    fake: FakeBedrock, transport: Transport
) -> None:
    arn = "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/abc123"
    cfg = config(fake.base_url, model_map=orjson.dumps({"claude-opus-4-8": arn}).decode())
    body = {**messages_request().json, "model": "claude-opus-4-8"}
    status, _, meter, _ = await collect(
        BedrockProvider(cfg, transport, ENV), messages_request(body)
    )
    assert status == 200 and meter.saw_message_stop
    req = fake.requests[0]
    assert (
        req.raw_path
        == "/model/arn:aws:bedrock:us-east-1:123456789012:application-inference-profile%2Fabc123/invoke-with-response-stream"
    )
    assert req.model_id == arn


@pytest.mark.parametrize(
    ("model", "options", "expected"),
    [
        (SONNET, {}, f"us.anthropic.{SONNET}-v1:0"),
        ("claude-sonnet-4-6", {}, "us.anthropic.claude-sonnet-4-6"),
        ("claude-opus-4-8", {}, "us.anthropic.claude-opus-4-8"),
        ("claude-opus-4-6", {}, "us.anthropic.claude-opus-4-6-v1"),
        ("claude-sonnet-4-5", {}, f"us.anthropic.{SONNET}-v1:0"),
        (
            "claude-haiku-4-5",
            {"region": "eu-west-3"},
            "eu.anthropic.claude-haiku-4-5-20251001-v1:0",
        ),
        (SONNET, {"region": "ap-northeast-1"}, f"jp.anthropic.{SONNET}-v1:0"),
        (SONNET, {"region": "ap-southeast-2"}, f"apac.anthropic.{SONNET}-v1:0"),
        (SONNET, {"region": "ca-central-1"}, f"us.anthropic.{SONNET}-v1:0"),
        (SONNET, {"region": "sa-east-1"}, f"global.anthropic.{SONNET}-v1:0"),
        (SONNET, {"inference_profile": "global"}, f"global.anthropic.{SONNET}-v1:0"),
        (SONNET, {"inference_profile": "none"}, f"anthropic.{SONNET}-v1:0"),
        ("us.anthropic.claude-x-v1:0", {}, "us.anthropic.claude-x-v1:0"),
        ("anthropic.claude-x-v1:0", {}, "anthropic.claude-x-v1:0"),
        (
            "arn:aws:bedrock:us-east-1:1:inference-profile/x",
            {},
            "arn:aws:bedrock:us-east-1:1:inference-profile/x",
        ),
        (
            "claude-sonnet-4-5",
            {"model_map": '{"claude-sonnet-4-5": "eu.anthropic.pinned-v1:0"}'},
            "eu.anthropic.pinned-v1:0",
        ),
        (
            "house-model",
            {"model_map": '{"house-model": "us.anthropic.claude-opus-4-8"}'},
            "us.anthropic.claude-opus-4-8",
        ),
    ],
)
def test_model_map_rule(model: str, options: dict[str, str], expected: str) -> None:
    assert bedrock_model_id(model, config(**options)) == expected


def test_unmappable_model_is_404_listing_what_is_served() -> None:
    cfg = config(
        model_map='{"house-model": "us.anthropic.claude-opus-4-8", "fast": "us.anthropic.claude-haiku-4-5-20251001-v1:0"}'
    )
    with pytest.raises(GatewayError) as info:
        bedrock_model_id("gpt-4o", cfg)
    err = info.value
    assert err.status == 404 and err.error_type == "not_found_error"
    assert "gpt-4o" in err.message and "claude-" in err.message
    assert "house-model → us.anthropic.claude-opus-4-8" in err.message and "fast →" in err.message


def test_region_rule_and_foundation_id() -> None:
    assert [
        default_profile(r)
        for r in (
            "us-west-2",
            "us-gov-west-1",
            "eu-central-1",
            "ap-northeast-3",
            "ap-south-1",
            "me-central-1",
        )
    ] == ["us", "none", "eu", "jp", "apac", "global"]
    assert foundation_model_id("us.anthropic.claude-x-v1:0") == "anthropic.claude-x-v1:0"
    assert foundation_model_id("us-gov.anthropic.claude-x") == "anthropic.claude-x"
    assert foundation_model_id("anthropic.claude-x") == "anthropic.claude-x"


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"region": ""}, "region"),
        ({"inference_profile": "mars"}, "inference_profile"),
        ({"model_map": "{nope"}, "model_map"),
        ({"ping_interval_s": "x"}, "misconfigured"),
    ],
)
async def test_misconfiguration_is_reported_per_request_not_raised(
    transport: Transport, options: dict[str, str], fragment: str
) -> None:
    provider = BedrockProvider(
        config("http://127.0.0.1:9", **options), transport, ENV
    )  # never raises
    with pytest.raises(GatewayError) as info:
        await provider.send(messages_request())
    assert info.value.status == 500 and fragment in info.value.message


def test_beta_table() -> None:
    values = [
        "claude-code-20250219",
        "effort-2025-11-24",
        " effort-2025-11-24",
        "",
        "x-1",
        "context-1m-2025-08-07",
    ]
    assert filter_betas("bedrock", values) == ["effort-2025-11-24", "context-1m-2025-08-07"]
    assert filter_betas("vertex", values) == ["claude-code-20250219", "context-1m-2025-08-07"]
    assert filter_betas("anthropic", values) == [
        "claude-code-20250219",
        "effort-2025-11-24",
        "x-1",
        "context-1m-2025-08-07",
    ]
    assert header_betas(
        [(b"Anthropic-Beta", b"a, b"), (b"x", b"c"), (b"anthropic-beta", b"d")]
    ) == ["a", "b", "d"]


# --- stream translation: pings, exceptions, corruption ---------------------------------------------


async def test_synthetic_pings_during_a_silence(fake: FakeBedrock, transport: Transport) -> None:
    frames = stream_frames(SONNET, ["a", "b"])
    fake.script.append(
        Scripted(
            headers=[(b"content-type", b"application/vnd.amazon.eventstream")],
            frames=frames,
            delays={3: 0.45},
        )
    )
    provider = BedrockProvider(config(fake.base_url, ping_interval_s="0.1"), transport, ENV)
    started = time.monotonic()
    _, events, meter, _ = await collect(provider, messages_request())
    assert time.monotonic() - started >= 0.45
    kinds = [e.event for e in events]
    pings = [i for i, k in enumerate(kinds) if k == "ping"]
    assert len(pings) >= 3
    assert all(kinds[i - 1] == "content_block_delta" for i in pings[:1])  # during the silence
    assert all(orjson.loads(events[i].data) == {"type": "ping"} for i in pings)
    assert meter.usage == EXPECTED_USAGE and meter.saw_message_stop  # the stream is intact


async def test_in_stream_exception_becomes_an_error_event_and_ends(
    fake: FakeBedrock, transport: Transport
) -> None:
    frames = stream_frames(SONNET, ["a", "b"])
    frames = [
        *frames[:3],
        exception("throttlingException", "Too many tokens, please wait."),
        *frames[3:],
    ]
    fake.script.append(
        Scripted(headers=[(b"content-type", b"application/vnd.amazon.eventstream")], frames=frames)
    )
    _, events, meter, _ = await collect(
        BedrockProvider(config(fake.base_url), transport, ENV), messages_request()
    )
    assert events[-1].event == "error"
    told = (
        "Amazon Bedrock (provider 'bdrk') failed mid-answer: throttlingException. The cloud's own"
        " message can name accounts, so it is not passed on: your platform team can find it in"
        " the gateway's data-plane log under request id gwreq_test."
    )
    assert orjson.loads(events[-1].data) == {
        "type": "error",
        "error": {"type": "rate_limit_error", "message": told},
    }
    assert meter.error == ("rate_limit_error", told)
    assert not meter.saw_message_stop  # nothing after the exception is relayed


@pytest.mark.parametrize(
    ("kind", "etype"),
    [
        ("validationException", "invalid_request_error"),
        ("modelStreamErrorException", "api_error"),
        ("modelTimeoutException", "timeout_error"),
        ("internalServerException", "api_error"),
        ("serviceUnavailableException", "overloaded_error"),
        ("somethingNewException", "api_error"),
    ],
)
async def test_exception_type_mapping(
    fake: FakeBedrock, transport: Transport, kind: str, etype: str
) -> None:
    fake.script.append(Scripted(frames=[exception(kind, "boom")]))
    _, events, _, _ = await collect(
        BedrockProvider(config(fake.base_url), transport, ENV), messages_request()
    )
    assert [e.event for e in events] == ["error"] and orjson.loads(events[0].data)["error"][
        "type"
    ] == etype


async def test_corrupt_crc_ends_the_stream_with_an_api_error(
    fake: FakeBedrock, transport: Transport
) -> None:
    frames = stream_frames(SONNET, ["a", "b"])
    bad = bytearray(frames[3])
    bad[-8] ^= 0x01  # inside the payload: only the message CRC can tell
    fake.script.append(Scripted(frames=[*frames[:3], bytes(bad), *frames[4:]]))
    _, events, meter, _ = await collect(
        BedrockProvider(config(fake.base_url), transport, ENV), messages_request()
    )
    assert [e.event for e in events] == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "error",
    ]
    err = orjson.loads(events[-1].data)["error"]
    assert err["type"] == "api_error" and "CRC" in err["message"]
    assert meter.error is not None


async def test_truncated_frame_and_undecodable_chunk_are_errors(
    fake: FakeBedrock, transport: Transport
) -> None:
    frames = stream_frames(SONNET, ["a"])
    fake.script.append(Scripted(frames=[frames[0], frames[1][:20]]))
    _, events, _, _ = await collect(
        BedrockProvider(config(fake.base_url), transport, ENV), messages_request()
    )
    assert [e.event for e in events] == ["message_start", "error"]
    assert "middle of a frame" in orjson.loads(events[-1].data)["error"]["message"]
    junk = encode_frame({":event-type": "chunk", ":message-type": "event"}, b'{"bytes": "!!!"}')
    fake.script.append(Scripted(frames=[frames[0], junk]))
    _, events, _, _ = await collect(
        BedrockProvider(config(fake.base_url), transport, ENV), messages_request()
    )
    assert [e.event for e in events] == ["message_start", "error"]


async def test_unknown_event_types_are_ignored(fake: FakeBedrock, transport: Transport) -> None:
    frames = stream_frames(SONNET, ["a"])
    other = encode_frame({":event-type": "metadata", ":message-type": "event"}, b"{}")
    fake.script.append(Scripted(frames=[frames[0], other, *frames[1:]]))
    _, _, meter, _ = await collect(
        BedrockProvider(config(fake.base_url), transport, ENV), messages_request()
    )
    assert meter.saw_message_stop and meter.error is None


# --- non-streamed, count_tokens, pre-stream errors, transport -------------------------------------


async def test_non_streamed_invoke_passes_the_message_json(
    fake: FakeBedrock, transport: Transport
) -> None:
    body = {**messages_request().json, "stream": False}
    response = await BedrockProvider(config(fake.base_url), transport, ENV).send(
        messages_request(body)
    )
    assert response.status == 200
    message = orjson.loads(await response.read())
    await response.aclose()
    assert (
        message["type"] == "message"
        and message["usage"]["cache_read_input_tokens"] == DEFAULT_USAGE["cache_read_input_tokens"]
    )
    assert (
        fake.requests[0].operation == "invoke"
        and fake.requests[0].header("accept") == "application/json"
    )
    headers = dict(response.headers)
    assert (
        headers[b"content-type"] == b"application/json"
        and headers[b"x-amzn-bedrock-output-token-count"] == b"42"
    )


async def test_count_tokens(fake: FakeBedrock, transport: Transport) -> None:
    body = {
        "model": SONNET,
        "messages": [{"role": "user", "content": "count me"}],
        "system": "s",
        "thinking": {"type": "enabled", "budget_tokens": 2048},
    }
    request = messages_request(body, path="/v1/messages/count_tokens")
    response = await BedrockProvider(config(fake.base_url), transport, ENV).send(request)
    assert response.status == 200
    req = fake.requests[0]
    assert req.raw_path == f"/model/anthropic.{SONNET}-v1:0/count-tokens"
    assert req.json == {
        "anthropic_version": "bedrock-2023-05-31",
        "messages": body["messages"],
        "system": "s",
        "thinking": body["thinking"],
        "anthropic_beta": ["context-1m-2025-08-07", "interleaved-thinking-2025-05-14"],
        "max_tokens": 2049,
    }
    inner = base64.b64decode(orjson.loads(req.body)["input"]["invokeModel"]["body"])
    assert orjson.loads(await response.read()) == {"input_tokens": len(inner) // 4}


@pytest.mark.parametrize(
    ("status", "kind", "mapped", "etype"),
    [
        (400, "ValidationException", 400, "invalid_request_error"),
        (403, "AccessDeniedException", 403, "permission_error"),
        (404, "ResourceNotFoundException", 404, "not_found_error"),
        (408, "ModelTimeoutException", 504, "timeout_error"),
        (424, "ModelErrorException", 502, "api_error"),
        (429, "ThrottlingException", 429, "rate_limit_error"),
        (500, "InternalServerException", 500, "api_error"),
        (503, "ServiceUnavailableException", 529, "overloaded_error"),
    ],
)
async def test_pre_stream_errors_are_anthropic_shaped(
    fake: FakeBedrock, transport: Transport, status: int, kind: str, mapped: int, etype: str
) -> None:
    fake.script.append(error(status, kind, f"{kind} says no", retry_after="7"))
    response = await BedrockProvider(config(fake.base_url), transport, ENV).send(messages_request())
    assert response.status == mapped
    body = orjson.loads(await response.read())
    verb = "refused the request" if status < 500 else "failed"
    assert body["type"] == "error" and body["error"]["type"] == etype
    message = body["error"]["message"]
    assert message.startswith(f"Amazon Bedrock (provider 'bdrk') {verb}: {kind}. ")
    assert "says no" not in message and "gwreq_test" in message
    assert (b"retry-after", b"7") in response.headers


async def test_transport_failures_are_gateway_errors(transport: Transport) -> None:
    closed = BedrockProvider(config("http://127.0.0.1:9"), transport, ENV)
    with pytest.raises(GatewayError) as info:
        await closed.send(messages_request())
    assert info.value.status == 502


async def test_read_timeout_before_headers_is_504(fake: FakeBedrock, transport: Transport) -> None:
    fake.script.append(Scripted(hang=2.0))
    provider = BedrockProvider(config(fake.base_url, timeout_read_s="0.2"), transport, ENV)
    with pytest.raises(GatewayError) as info:
        await provider.send(messages_request())
    assert info.value.status == 504


async def test_trace_headers_are_sent_beside_the_signature(
    fake: FakeBedrock, transport: Transport
) -> None:
    """With tracing on, the attempt's traceparent goes to Bedrock too. SigV4 leaves trace headers
    unsigned (botocore's rule: tracing proxies on the way may rewrite them), and the signature of
    the rest still holds."""
    parent = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    request = dataclasses.replace(
        messages_request(),
        trace_headers=((b"traceparent", parent), (b"tracestate", b"vendor=v")),
    )
    status, *_ = await collect(BedrockProvider(config(fake.base_url), transport, ENV), request)
    assert status == 200
    [req] = fake.requests
    assert req.header("traceparent") == parent.decode()
    assert req.header("tracestate") == "vendor=v"
    signed = (req.header("authorization") or "").split("SignedHeaders=")[1].split(",")[0]
    assert "traceparent" not in signed.split(";") and "x-amz-date" in signed.split(";")
