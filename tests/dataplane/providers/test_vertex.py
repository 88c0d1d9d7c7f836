"""The Vertex AI adapter and its Google token source, against the strict fake Vertex.

This module is long because the adapter and its Google token source are tested together against the
strict fake Vertex and its fake token endpoint, for every request shape and failure."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import google.auth
import google.auth.exceptions
import httpx
import orjson
import pytest

from dataplane.codecs.sse import SSEDecoder
from dataplane.config.snapshot import ProviderConfig
from dataplane.errors import GatewayError
from dataplane.metering.meter import StreamMeter, TokenUsage, usage_from_message
from dataplane.providers.base import UpstreamRequest, UpstreamResponse
from dataplane.providers.gcp_auth import GoogleTokenSource
from dataplane.providers.transport import Transport
from dataplane.providers.vertex import VertexProvider, vertex_model_id
from tests.dataplane.providers.support import upstream_request
from tests.fakes.anthropic import DEFAULT_USAGE, Scripted, message_body, stream_frames
from tests.fakes.vertex import (
    CLIENT_EMAIL,
    GOOGLE_TOKEN_URL,
    PROJECT,
    FakeVertex,
    google_error,
    sign_jwt,
    write_service_account,
)
from tests.waiting import eventually

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "claude_code_request.json"
SESSION = "3f0c1f7e-8f6a-4d8e-9a51-5f3b0c0d9e11"
HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"anthropic-version", b"2023-06-01"),
    (
        b"anthropic-beta",
        b"claude-code-20250219,context-1m-2025-08-07,effort-2025-11-24,future-beta-2099-01-01",
    ),
    (b"anthropic-beta", b"interleaved-thinking-2025-05-14"),
    (b"x-claude-code-session-id", SESSION.encode()),
    (b"x-app", b"cli"),
    (b"user-agent", b"claude-cli/2.1.197 (external, sdk-cli)"),
    (b"content-type", b"application/json"),
    (b"x-goog-user-project", b"someone-elses-project"),
)
BODY: dict[str, Any] = {
    "model": "claude-sonnet-4-5-20250929",
    "max_tokens": 64000,
    "stream": True,
    "zzz_unknown_field": {"nested": [1, 2.5, "x"]},
    "system": [
        {
            "type": "text",
            "text": "x-anthropic-billing-header: cc",
            "cache_control": {"type": "ephemeral"},
        },
        {"type": "text", "text": "You are Claude Code."},
    ],
    "messages": [
        {"role": "user", "content": "Grüß dich — 你好 🚀"},
        {"role": "system", "content": "mid-conversation system message"},
        {"role": "user", "content": "and again"},
    ],
    "thinking": {"type": "adaptive"},
    "metadata": {"user_id": '{"device_id":"abc"}'},
}


def config(base_url: str = "", name: str = "vtx", **options: str) -> ProviderConfig:
    opts = {"project": PROJECT, **options}
    return ProviderConfig(name, "vertex", base_url, "", tuple(sorted(opts.items())))


def request(
    body: dict[str, Any] | None = None,
    path: str = "/v1/messages",
    headers: tuple[tuple[bytes, bytes], ...] = HEADERS,
) -> UpstreamRequest:
    return upstream_request(dict(BODY if body is None else body), path, headers)


@pytest.fixture
async def fake() -> AsyncIterator[FakeVertex]:
    f = FakeVertex()
    await f.start()
    yield f
    await f.stop()


@pytest.fixture
def sa_file(tmp_path: Path, fake: FakeVertex) -> Path:
    return write_service_account(tmp_path, fake.token_uri)


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    """For the tests' own calls to the fake (never the adapter's transport)."""
    async with httpx.AsyncClient(trust_env=False) as c:
        yield c


@pytest.fixture
async def provider(
    fake: FakeVertex, sa_file: Path, transport: Transport
) -> AsyncIterator[VertexProvider]:
    p = VertexProvider(
        config(fake.api_base, region="us-east5", credentials_file=str(sa_file)), transport, env={}
    )
    yield p
    await p.aclose()


async def body_of(response: UpstreamResponse) -> bytes:
    try:
        return b"".join([chunk async for chunk in response.aiter_raw()])
    finally:
        await response.aclose()


async def roundtrip(provider: VertexProvider, req: UpstreamRequest | None = None) -> bytes:
    response = await provider.send(req or request())
    assert response.status == 200
    return await body_of(response)


def error_of(body: bytes) -> tuple[str, str]:
    obj = orjson.loads(body)
    assert obj["type"] == "error"
    return obj["error"]["type"], obj["error"]["message"]


# -- tokens ----------------------------------------------------------------------------------


async def test_one_token_fetch_serves_many_concurrent_requests(
    provider: VertexProvider, fake: FakeVertex
) -> None:
    responses = await asyncio.gather(*(provider.send(request()) for _ in range(20)))
    bodies = await asyncio.gather(*(body_of(r) for r in responses))
    assert [r.status for r in responses] == [200] * 20
    assert all(
        b.endswith(b'event: message_stop\ndata: {"type":"message_stop"}\n\n') for b in bodies
    )
    assert fake.issuances == 1 and len(fake.token_requests) == 1
    (token,) = fake.issued
    assert {r.header("authorization") for r in fake.requests} == {f"Bearer {token}"}
    # ... and it keeps serving later requests.
    await body_of(await provider.send(request()))
    assert fake.issuances == 1


async def test_a_cancelled_caller_does_not_waste_the_refresh(
    provider: VertexProvider, fake: FakeVertex
) -> None:
    fake.token_gate = asyncio.Event()
    first = asyncio.create_task(provider.tokens.token())
    await eventually(lambda: len(fake.token_requests) == 1, "the refresh under way")
    first.cancel()  # e.g. the client hung up while its request waited for the token
    second = asyncio.create_task(provider.tokens.token())  # joins the refresh in flight
    fake.token_gate.set()
    token = await second
    assert fake.issuances == 1 and len(fake.token_requests) == 1
    assert list(fake.issued) == [token]
    assert first.cancelled()


async def test_refresh_happens_before_expiry_not_per_request(
    provider: VertexProvider, fake: FakeVertex, sa_file: Path
) -> None:
    now = [1000.0]
    provider.tokens = GoogleTokenSource("vtx", str(sa_file), clock=lambda: now[0])
    await body_of(await provider.send(request()))
    assert fake.issuances == 1
    now[0] += 3600 - 310  # more than the 5-minute margin left: cached
    await body_of(await provider.send(request()))
    assert fake.issuances == 1
    now[0] += 20  # inside the margin (token still valid): refreshed once, ahead of expiry
    await asyncio.gather(*(roundtrip(provider) for _ in range(5)))
    assert fake.issuances == 2
    _, second = fake.issued
    assert fake.requests[-1].header("authorization") == f"Bearer {second}"


async def test_short_lived_tokens_refresh_at_half_life_in_real_time(
    provider: VertexProvider, fake: FakeVertex
) -> None:
    fake.expires_in = 2  # shorter than the margin: refresh at half its life, not every request
    for _ in range(3):
        await body_of(await provider.send(request()))
    assert fake.issuances == 1
    await asyncio.sleep(1.2)
    await body_of(await provider.send(request()))
    await body_of(await provider.send(request()))
    assert fake.issuances == 2


async def test_unknown_or_expired_token_refused_then_replaced(
    provider: VertexProvider, fake: FakeVertex, http: httpx.AsyncClient
) -> None:
    url = f"{fake.api_base}/projects/{PROJECT}/locations/us-east5/publishers/anthropic/models/claude-opus-4-8:rawPredict"
    body = orjson.dumps({**BODY, "stream": False, "anthropic_version": "vertex-2023-10-16"})
    r = await http.post(url, content=body, headers={"authorization": "Bearer ya29.made-up"})
    assert r.status_code == 401 and r.json()["error"]["status"] == "UNAUTHENTICATED"

    await body_of(await provider.send(request()))  # a real token...
    (token,) = fake.issued
    fake.issued[token] = time.time() - 1  # ...expired
    r = await http.post(url, content=body, headers={"authorization": f"Bearer {token}"})
    assert r.status_code == 401 and r.json()["error"]["status"] == "UNAUTHENTICATED"
    fake.revoke_all()  # ... and revoked: the provider's cached token is refused upstream
    refused = await provider.send(request())
    assert refused.status == 401
    etype, message = error_of(await body_of(refused))
    assert etype == "authentication_error"
    assert message.startswith("Vertex AI (provider 'vtx') refused the request: UNAUTHENTICATED. ")
    # The refused token was dropped: the next request fetches a new one and succeeds.
    ok = await provider.send(request())
    assert ok.status == 200
    await body_of(ok)
    assert fake.issuances == 1 and len(fake.token_requests) == 2
    refusals = fake.take_violations()  # the made-up, the expired and the revoked token
    assert len(refusals) == 3 and all("invalid authentication credentials" in v for v in refusals)


@pytest.mark.parametrize(
    ("claims", "key", "problem"),
    [
        ({}, "other", "invalid JWT signature"),
        ({"iss": "intruder@evil.iam.gserviceaccount.com"}, "default", "iss"),
        ({"aud": "https://example.com/token"}, "default", "aud"),
        ({"scope": "https://www.googleapis.com/auth/devstorage.read_only"}, "default", "scope"),
        ({"exp": int(time.time()) - 10}, "default", "expired"),
    ],
)
async def test_token_endpoint_checks_the_service_account_jwt(
    fake: FakeVertex, http: httpx.AsyncClient, claims: dict[str, Any], key: str, problem: str
) -> None:
    now = int(time.time())
    grant = {
        "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
        "assertion": sign_jwt({**_claims(now), **claims}, key),
    }
    r = await http.post(fake.token_uri, data=grant)
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"
    assert problem in r.json()["error_description"]
    assert fake.issuances == 0
    [violation] = fake.take_violations()
    assert problem in violation
    good = await http.post(fake.token_uri, data={**grant, "assertion": sign_jwt(_claims(now))})
    assert good.status_code == 200 and good.json()["expires_in"] == 3600
    assert fake.issuances == 1


def _claims(now: int) -> dict[str, Any]:
    return {
        "iss": CLIENT_EMAIL,
        "aud": GOOGLE_TOKEN_URL,
        "scope": "https://www.googleapis.com/auth/cloud-platform",
        "iat": now,
        "exp": now + 3600,
    }


async def test_wrong_key_refresh_failure_is_a_clear_502(
    fake: FakeVertex, tmp_path: Path, transport: Transport
) -> None:
    wrong = write_service_account(tmp_path, fake.token_uri, key_label="other")
    p = VertexProvider(config(fake.api_base, credentials_file=str(wrong)), transport, env={})
    with pytest.raises(GatewayError) as info:
        await p.send(request())
    err = info.value
    assert err.status == 502
    assert "could not get a Google access token" in err.message
    assert "token endpoint" in err.message and "service account" in err.message
    assert "PRIVATE KEY" not in err.message and "eyJ" not in err.message
    assert fake.take_violations() == ["token endpoint: invalid JWT signature"]
    assert fake.requests == []
    await p.aclose()


async def test_token_outage_one_attempt_for_concurrent_requests_and_old_token_kept(
    provider: VertexProvider, fake: FakeVertex, sa_file: Path
) -> None:
    now = [0.0]
    provider.tokens = GoogleTokenSource("vtx", str(sa_file), clock=lambda: now[0])
    fake.token_failure = (400, {"error": "invalid_grant", "error_description": "account disabled"})
    results = await asyncio.gather(
        *(provider.send(request()) for _ in range(20)), return_exceptions=True
    )
    assert all(isinstance(r, GatewayError) and r.status == 502 for r in results)
    assert len(fake.token_requests) == 1  # one attempt, the other callers got its answer

    # Recovered: a token is fetched; later an early refresh fails but the old token still serves.
    fake.token_failure = None
    now[0] += 5
    await body_of(await provider.send(request()))
    fake.token_failure = (400, {"error": "invalid_grant", "error_description": "account disabled"})
    now[0] += 3600 - 200  # inside the refresh margin, before expiry
    ok = await provider.send(request())
    assert ok.status == 200
    await body_of(ok)
    now[0] += 300  # expired now: the failure surfaces
    with pytest.raises(GatewayError) as info:
        await provider.send(request())
    assert info.value.status == 502


async def test_missing_credentials_file_is_a_clear_500(
    transport: Transport, tmp_path: Path
) -> None:
    missing = tmp_path / "nope.json"
    p = VertexProvider(
        config("http://127.0.0.1:9/v1", credentials_file=str(missing)), transport, env={}
    )
    with pytest.raises(GatewayError) as info:
        await p.send(request())
    assert info.value.status == 500
    assert str(missing) in info.value.message and "misconfigured" in info.value.message


async def test_adc_failure_is_a_clear_500(
    transport: Transport, monkeypatch: pytest.MonkeyPatch
) -> None:
    no_credentials: Any = google.auth.exceptions.DefaultCredentialsError

    def no_adc(**_: Any) -> Any:
        raise no_credentials("no ADC here")

    monkeypatch.setattr(google.auth, "default", no_adc)
    p = VertexProvider(config("http://127.0.0.1:9/v1"), transport, env={})
    with pytest.raises(GatewayError) as info:
        await p.send(request())
    assert info.value.status == 500 and "Application Default Credentials" in info.value.message


async def test_google_application_credentials_from_the_data_plane_env(
    fake: FakeVertex, sa_file: Path, transport: Transport
) -> None:
    p = VertexProvider(
        config(fake.api_base), transport, env={"GOOGLE_APPLICATION_CREDENTIALS": str(sa_file)}
    )
    r = await p.send(request())
    assert r.status == 200
    await body_of(r)
    assert fake.issuances == 1


# -- request rewrite ---------------------------------------------------------------------------


async def test_body_rewrite_and_headers_exact(provider: VertexProvider, fake: FakeVertex) -> None:
    for body in (BODY, orjson.loads(FIXTURE.read_bytes())):
        fake.requests.clear()
        await body_of(await provider.send(request(body)))
        (seen,) = fake.requests
        expected = {k: v for k, v in body.items() if k != "model"}
        expected["anthropic_version"] = "vertex-2023-10-16"
        assert seen.body == orjson.dumps(expected)
        assert list(orjson.loads(seen.body)["system"]) == body["system"]  # order kept
        assert seen.query == b""
        names = [k.decode().lower() for k, _ in seen.headers]
        assert names.count("anthropic-beta") == 1 and names.count("content-type") == 1
        assert seen.header("anthropic-beta") == (
            "claude-code-20250219,context-1m-2025-08-07,interleaved-thinking-2025-05-14"
        )
        assert seen.header("anthropic-version") == "2023-06-01"
        assert seen.header("x-claude-code-session-id") == SESSION
        assert seen.header("user-agent") == "claude-cli/2.1.197 (external, sdk-cli)"
        assert seen.header("content-type") == "application/json"
        assert seen.header("x-goog-user-project") is None
        assert (seen.header("authorization") or "").startswith("Bearer ya29.fake-")


def test_urls_regional_and_global(transport: Transport) -> None:
    regional = VertexProvider(config(region="us-east5"), transport, env={})
    assert regional.url("claude-sonnet-4-5@20250929", stream=True) == (
        "https://us-east5-aiplatform.googleapis.com/v1/projects/tollgate-test/locations/"
        "us-east5/publishers/anthropic/models/claude-sonnet-4-5@20250929:streamRawPredict"
    )
    glob = VertexProvider(config(), transport, env={})
    assert glob.region == "global"
    assert glob.url("claude-opus-4-8", stream=False) == (
        "https://aiplatform.googleapis.com/v1/projects/tollgate-test/locations/global/"
        "publishers/anthropic/models/claude-opus-4-8:rawPredict"
    )
    assert glob.url("claude-opus-4-8", stream=False, count_tokens=True) == (
        "https://aiplatform.googleapis.com/v1/projects/tollgate-test/locations/global/"
        "publishers/anthropic/models/count-tokens:rawPredict"
    )
    custom = VertexProvider(
        config("https://gw.example/vertex/v1/", region="europe-west1"), transport
    )
    assert custom.url("claude-haiku-4-5@20251001", stream=True).startswith(
        "https://gw.example/vertex/v1/projects/tollgate-test/locations/europe-west1/"
    )


async def test_paths_reach_the_fake_for_stream_and_non_stream(
    provider: VertexProvider, fake: FakeVertex
) -> None:
    await body_of(await provider.send(request()))
    await body_of(
        await provider.send(request({**BODY, "model": "claude-opus-4-8", "stream": False}))
    )
    assert [r.path for r in fake.requests] == [
        "/v1/projects/tollgate-test/locations/us-east5/publishers/anthropic/models/"
        "claude-sonnet-4-5@20250929:streamRawPredict",
        "/v1/projects/tollgate-test/locations/us-east5/publishers/anthropic/models/"
        "claude-opus-4-8:rawPredict",
    ]


# -- model map ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("claude-sonnet-4-5-20250929", "claude-sonnet-4-5@20250929"),
        ("claude-haiku-4-5-20251001", "claude-haiku-4-5@20251001"),
        ("claude-opus-4-8", "claude-opus-4-8"),
        ("claude-sonnet-4-5", "claude-sonnet-4-5"),
        ("claude-sonnet-4-5@20250929", "claude-sonnet-4-5@20250929"),
        ("claude-3-5-haiku-20241022", "claude-3-5-haiku@20241022"),
    ],
)
def test_model_map_rule(model: str, expected: str) -> None:
    assert vertex_model_id(model, config()) == expected


def test_model_map_overrides_win_and_unmappable_is_404_listing_what_is_served() -> None:
    cfg = config(
        model_map=orjson.dumps(
            {
                "claude-sonnet-4-5-20250929": "claude-sonnet-4-5@20251111",
                "sonnet": "claude-sonnet-4-6",
            }
        ).decode()
    )
    assert vertex_model_id("claude-sonnet-4-5-20250929", cfg) == "claude-sonnet-4-5@20251111"
    assert vertex_model_id("sonnet", cfg) == "claude-sonnet-4-6"
    assert vertex_model_id("claude-opus-4-8", cfg) == "claude-opus-4-8"
    with pytest.raises(GatewayError) as info:
        vertex_model_id("gpt-4o", cfg)
    err = info.value
    assert err.status == 404 and err.error_type == "not_found_error"
    assert "gpt-4o" in err.message and "claude-sonnet-4-5-20250929, sonnet" in err.message
    assert "claude-…@YYYYMMDD" in err.message
    with pytest.raises(GatewayError) as bad:
        vertex_model_id("claude-opus-4-8", config(model_map="[1, 2]"))
    assert bad.value.status == 500


async def test_unmappable_model_refused_before_any_upstream_call(
    provider: VertexProvider, fake: FakeVertex
) -> None:
    with pytest.raises(GatewayError) as info:
        await provider.send(
            request({**BODY, "model": "us.anthropic.claude-sonnet-4-5-20250929-v1:0"})
        )
    assert info.value.status == 404
    assert fake.requests == [] and fake.token_requests == []


async def test_misconfigured_provider_is_a_500_per_request(transport: Transport) -> None:
    no_project = ProviderConfig("vtx", "vertex", "", "", ())
    with pytest.raises(GatewayError) as info:
        await VertexProvider(no_project, transport, env={}).send(request())
    assert info.value.status == 500 and "project" in info.value.message
    with pytest.raises(GatewayError) as info:
        await VertexProvider(config(model_map="{not json"), transport, env={}).send(request())
    assert info.value.status == 500 and "model_map" in info.value.message


# -- responses ---------------------------------------------------------------------------------


async def test_sse_relayed_unchanged_and_metered_exactly(
    provider: VertexProvider, fake: FakeVertex
) -> None:
    frames = stream_frames("claude-sonnet-4-5@20250929", ["Hi ", "there"], output_tokens=77)
    fake.script.append(
        Scripted(headers=[(b"content-type", b"text/event-stream")], frames=frames, delay=0.01)
    )
    response = await provider.send(request())
    assert response.status == 200
    assert (b"content-type", b"text/event-stream") in [(k.lower(), v) for k, v in response.headers]
    decoder, meter = SSEDecoder(), StreamMeter()
    chunks: list[bytes] = []
    async for chunk in response.aiter_raw():
        chunks.append(chunk)
        for event in decoder.feed(chunk):
            meter.feed(event)
    await response.aclose()
    assert b"".join(chunks) == b"".join(frames)
    assert meter.saw_message_stop and meter.error is None
    assert meter.model == "claude-sonnet-4-5@20250929"
    assert meter.usage == TokenUsage(
        input_tokens=DEFAULT_USAGE["input_tokens"],
        output_tokens=77,
        cache_creation_input_tokens=2500,
        cache_read_input_tokens=18000,
        cache_write_5m_tokens=2000,
        cache_write_1h_tokens=500,
    )


async def test_json_answer_relayed_unchanged(provider: VertexProvider, fake: FakeVertex) -> None:
    response = await provider.send(request({**BODY, "stream": False}))
    body = await body_of(response)
    assert body == message_body("claude-sonnet-4-5@20250929", fake.text)
    assert usage_from_message(orjson.loads(body)).output_tokens == 42


@pytest.mark.parametrize("wrapped", [False, True])
@pytest.mark.parametrize(
    ("code", "status", "http_status", "etype"),
    [
        (429, "RESOURCE_EXHAUSTED", 429, "rate_limit_error"),
        (403, "PERMISSION_DENIED", 403, "permission_error"),
        (401, "UNAUTHENTICATED", 401, "authentication_error"),
        (404, "NOT_FOUND", 404, "not_found_error"),
        (400, "INVALID_ARGUMENT", 400, "invalid_request_error"),
        (503, "UNAVAILABLE", 529, "overloaded_error"),
        (504, "DEADLINE_EXCEEDED", 504, "timeout_error"),
        (500, "INTERNAL", 500, "api_error"),
    ],
)
async def test_google_errors_translated(
    provider: VertexProvider,
    fake: FakeVertex,
    wrapped: bool,
    code: int,
    status: str,
    http_status: int,
    etype: str,
) -> None:
    fake.script.append(google_error(code, status, "Quota exceeded for aiplatform.", wrapped))
    response = await provider.send(request())
    assert response.status == http_status
    got_type, message = error_of(await body_of(response))
    assert got_type == etype
    verb = "refused the request" if code < 500 else "failed"
    assert message.startswith(f"Vertex AI (provider 'vtx') {verb}: {status}. ")
    assert "Quota exceeded" not in message and "gwreq_test" in message
    assert (b"content-type", b"application/json") in response.headers


async def test_anthropic_shaped_error_passes_unchanged(
    provider: VertexProvider, fake: FakeVertex
) -> None:
    body = orjson.dumps(
        {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    )
    fake.script.append(
        Scripted(
            status=529,
            headers=[(b"content-type", b"application/json"), (b"retry-after", b"7")],
            frames=[body],
        )
    )
    response = await provider.send(request())
    assert response.status == 529
    assert await body_of(response) == body
    assert (b"retry-after", b"7") in response.headers


async def test_non_json_error_becomes_an_anthropic_error(
    provider: VertexProvider, fake: FakeVertex
) -> None:
    fake.script.append(
        Scripted(
            status=502,
            headers=[(b"content-type", b"text/html"), (b"retry-after", b"3")],
            frames=[b"<html>Bad Gateway</html>"],
        )
    )
    response = await provider.send(request())
    assert response.status == 502
    etype, message = error_of(await body_of(response))
    assert etype == "api_error"
    assert message.startswith("Vertex AI (provider 'vtx') failed: HTTP 502. ")
    assert "html" not in message
    assert (b"retry-after", b"3") in response.headers


async def test_rejected_beta_would_fail_upstream_but_is_filtered(
    provider: VertexProvider, fake: FakeVertex
) -> None:
    # The fake 400s on effort-2025-11-24 like Vertex; the client sent it, the adapter dropped it.
    response = await provider.send(request())
    assert response.status == 200
    await body_of(response)
    assert "effort" not in (fake.requests[0].header("anthropic-beta") or "")


async def test_count_tokens(provider: VertexProvider, fake: FakeVertex) -> None:
    body = {k: v for k, v in BODY.items() if k not in ("stream", "max_tokens")}
    response = await provider.send(request(body, path="/v1/messages/count_tokens"))
    assert response.status == 200
    answer = orjson.loads(await body_of(response))
    (seen,) = fake.requests
    assert seen.path == (
        "/v1/projects/tollgate-test/locations/us-east5/publishers/anthropic/models/"
        "count-tokens:rawPredict"
    )
    sent = orjson.loads(seen.body)
    assert sent["model"] == "claude-sonnet-4-5@20250929"
    assert sent["anthropic_version"] == "vertex-2023-10-16"
    assert sent["messages"] == BODY["messages"] and sent["system"] == BODY["system"]
    assert answer == {"input_tokens": len(seen.body) // 4}
    # count-tokens takes a stricter beta set than Messages.
    assert seen.header("anthropic-beta") == "claude-code-20250219,interleaved-thinking-2025-05-14"


async def test_transport_failures_are_502_and_504(
    fake: FakeVertex, sa_file: Path, transport: Transport
) -> None:
    dead = VertexProvider(
        config("http://127.0.0.1:9/v1", credentials_file=str(sa_file)), transport, env={}
    )
    with pytest.raises(GatewayError) as info:
        await dead.send(request())
    assert info.value.status == 502
    slow = VertexProvider(
        config(fake.api_base, credentials_file=str(sa_file), timeout_read_s="0.2"),
        transport,
        env={},
    )
    fake.script.append(Scripted(hang=True))
    with pytest.raises(GatewayError) as info:
        await slow.send(request())
    assert info.value.status == 504
    await dead.aclose()
    await slow.aclose()


async def test_trace_headers_are_sent(fake: FakeVertex, provider: VertexProvider) -> None:
    """With tracing on, the attempt's traceparent goes to Vertex too."""
    parent = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    req = dataclasses.replace(request(), trace_headers=((b"traceparent", parent),))
    await roundtrip(provider, req)
    assert fake.requests[-1].header("traceparent") == parent.decode()
