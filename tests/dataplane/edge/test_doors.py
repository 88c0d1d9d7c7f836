"""Bedrock- and Vertex-format clients, served here by the Anthropic provider (any door → any kind)."""

from __future__ import annotations

import base64

import orjson

from dataplane.codecs.eventstream import EventStreamDecoder
from dataplane.codecs.sse import SSEDecoder
from tests.dataplane.conftest import LIMITED, SECRET, usage_events
from tests.fakes.anthropic import FakeAnthropic, Scripted, stream_frames

BEDROCK_ID = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
CLIENT_HEADERS = {
    "authorization": f"Bearer {SECRET}",
    "content-type": "application/json",
    "anthropic-version": "2023-06-01",
    "anthropic-beta": "claude-code-20250219",
    "x-claude-code-session-id": "sess-door",
    "user-agent": "claude-cli/2.1.197 (external, sdk-cli)",
}
BEDROCK_BODY = {
    "messages": [
        {
            "role": "user",
            "content": [{"type": "text", "text": "héllo", "cache_control": {"type": "ephemeral"}}],
        }
    ],
    "system": [{"type": "text", "text": "sys", "cache_control": {"type": "ephemeral"}}],
    "max_tokens": 32000,
    "thinking": {"type": "adaptive"},
    "unknown_future_field": [1, 2],
    "anthropic_beta": ["interleaved-thinking-2025-05-14", "tool-search-tool-2025-10-19"],
    "anthropic_version": "bedrock-2023-05-31",
}


def decode_chunks(raw: bytes) -> list[dict[str, object]]:
    out = []
    for message in EventStreamDecoder().feed(raw):
        headers = dict(message.headers)
        if headers[":message-type"] == "exception":
            out.append({"exception": headers[":exception-type"], **orjson.loads(message.payload)})
            continue
        assert headers[":event-type"] == "chunk"
        assert headers[":content-type"] == "application/json"
        out.append(orjson.loads(base64.b64decode(orjson.loads(message.payload)["bytes"])))
    return out


async def test_bedrock_client_gets_event_stream_from_anthropic_provider(
    client, upstream: FakeAnthropic, dataplane
) -> None:
    frames = stream_frames("claude-sonnet-4-5-20250929", ["Hi", " there"])
    upstream.script.append(
        Scripted(headers=[(b"content-type", b"text/event-stream")], frames=frames)
    )
    quoted = BEDROCK_ID.replace(":", "%3A")
    r = await client.post(
        f"/bedrock/model/{quoted}/invoke-with-response-stream",
        content=orjson.dumps(BEDROCK_BODY),
        headers=CLIENT_HEADERS,
    )
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/vnd.amazon.eventstream"
    expected = [orjson.loads(e.data) for e in SSEDecoder().feed(b"".join(frames))]
    assert decode_chunks(r.content) == expected
    # Upstream saw the canonical Anthropic request: model and stream set, Bedrock fields gone,
    # body betas merged into the header, everything else untouched.
    (got,) = upstream.requests
    sent = orjson.loads(got.body)
    assert sent["model"] == "claude-sonnet-4-5-20250929" and sent["stream"] is True
    assert "anthropic_version" not in sent and "anthropic_beta" not in sent
    for field in ("messages", "system", "max_tokens", "thinking", "unknown_future_field"):
        assert sent[field] == BEDROCK_BODY[field]
    assert got.header("anthropic-beta") == (
        "claude-code-20250219,interleaved-thinking-2025-05-14,tool-search-tool-2025-10-19"
    )
    (event,) = await usage_events(dataplane, 1)
    assert event.model_requested == "claude-sonnet-4-5-20250929" and event.usage.cost_micros > 0
    assert event.session_id == "sess-door" and event.path.startswith("/bedrock/model/")


async def test_bedrock_arn_model_id_in_raw_path(client, upstream) -> None:
    arn = "arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-haiku-4-5-20251001-v1:0"
    quoted = arn.replace(":", "%3A").replace("/", "%2F")
    r = await client.post(
        f"/bedrock/model/{quoted}/invoke",
        content=orjson.dumps(BEDROCK_BODY),
        headers=CLIENT_HEADERS,
    )
    assert r.status_code == 200, r.text
    assert r.json()["type"] == "message"
    sent = orjson.loads(upstream.requests[-1].body)
    assert sent["model"] == "claude-haiku-4-5-20251001" and "stream" not in sent


async def test_bedrock_client_errors_are_bedrock_shaped(client, upstream) -> None:
    # A gateway refusal (unknown key) ...
    r = await client.post(
        f"/bedrock/model/{BEDROCK_ID}/invoke",
        content=b"{}",
        headers={**CLIENT_HEADERS, "authorization": "Bearer gw-nope"},
    )
    assert r.status_code == 401
    assert r.headers["x-amzn-errortype"] == "AccessDeniedException"
    assert "not a valid Tollgate virtual key" in r.json()["message"]
    # ... and an upstream error keep the status and carry a top-level message.
    err = b'{"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}'
    upstream.script.append(
        Scripted(
            status=429,
            headers=[(b"content-type", b"application/json"), (b"retry-after", b"7")],
            frames=[err],
        )
    )
    r = await client.post(
        f"/bedrock/model/{BEDROCK_ID}/invoke",
        content=orjson.dumps(BEDROCK_BODY),
        headers=CLIENT_HEADERS,
    )
    assert r.status_code == 429 and r.headers["retry-after"] == "7"
    assert r.json()["message"] == "slow down"
    assert r.headers["x-amzn-errortype"] == "ThrottlingException"


async def test_bedrock_client_cut_short_is_billed_for_the_output_relayed(
    client, upstream: FakeAnthropic, dataplane
) -> None:
    """The re-framing door estimates the output like the pass-through one, however the
    upstream's bytes were split (pieces that complete no event still count once completed)."""
    texts = [f"part {i} of the answer " for i in range(12)]
    frames = stream_frames(
        "claude-sonnet-4-5-20250929", texts, usage={"input_tokens": 20, "output_tokens": 1}
    )
    raw = b"".join(frames[:-2])  # no message_delta, no message_stop: the stream ends early
    pieces = [raw[i : i + 7] for i in range(0, len(raw), 7)]
    upstream.script.append(
        Scripted(headers=[(b"content-type", b"text/event-stream")], frames=pieces, delay=0.001)
    )
    upstream.script.append(
        Scripted(headers=[(b"content-type", b"text/event-stream")], frames=pieces, delay=0.001)
    )
    for max_tokens in (32000, 50):
        r = await client.post(
            f"/bedrock/model/{BEDROCK_ID}/invoke-with-response-stream",
            content=orjson.dumps({**BEDROCK_BODY, "max_tokens": max_tokens}),
            headers=CLIENT_HEADERS,
        )
        assert decode_chunks(r.content)[-1]["exception"] == "modelStreamErrorException"
    first, second = await usage_events(dataplane, 2)
    estimate = -(-sum(len(t) for t in texts) // 3)
    assert estimate == 85
    assert first.usage.output_estimated and first.usage.output_tokens == estimate
    assert first.usage.cost_micros == 20 * 3 + estimate * 15
    # The model cannot have produced more than max_tokens: the estimate stops there.
    assert second.usage.output_estimated and second.usage.output_tokens == 50


async def test_bedrock_mid_stream_failure_is_an_exception_frame(client, upstream) -> None:
    frames = stream_frames("claude-sonnet-4-5-20250929", ["a", "b", "c"])
    upstream.script.append(
        Scripted(headers=[(b"content-type", b"text/event-stream")], frames=frames, drop_after=3)
    )
    r = await client.post(
        f"/bedrock/model/{BEDROCK_ID}/invoke-with-response-stream",
        content=orjson.dumps(BEDROCK_BODY),
        headers=CLIENT_HEADERS,
    )
    decoded = decode_chunks(r.content)
    assert decoded[0]["type"] == "message_start"
    assert decoded[-1]["exception"] == "modelStreamErrorException"


async def test_bedrock_inference_profiles_need_no_key(client) -> None:
    r = await client.get("/bedrock/inference-profiles?type=SYSTEM_DEFINED")
    assert r.status_code == 200
    ids = {p["inferenceProfileId"] for p in r.json()["inferenceProfileSummaries"]}
    assert "us.anthropic.claude-sonnet-4-5" in ids
    # A client that does send its key sees only what the key may use.
    r = await client.get(
        "/bedrock/inference-profiles", headers={"authorization": f"Bearer {LIMITED}"}
    )
    ids = {p["inferenceProfileId"] for p in r.json()["inferenceProfileSummaries"]}
    assert ids == {"us.anthropic.claude-haiku-4-5", "global.anthropic.claude-haiku-4-5"}


async def test_vertex_client_gets_anthropic_sse_unchanged(client, upstream, dataplane) -> None:
    frames = stream_frames("claude-sonnet-4-5-20250929", ["x", "y"])
    upstream.script.append(
        Scripted(headers=[(b"content-type", b"text/event-stream")], frames=frames)
    )
    body = {
        k: v for k, v in BEDROCK_BODY.items() if k not in ("anthropic_beta", "anthropic_version")
    }
    body |= {"anthropic_version": "vertex-2023-10-16", "stream": True}
    path = (
        "/vertex/v1/projects/p1/locations/us-east5/publishers/anthropic/models/"
        "claude-sonnet-4-5@20250929:streamRawPredict"
    )
    r = await client.post(path, content=orjson.dumps(body), headers=CLIENT_HEADERS)
    assert r.status_code == 200
    assert r.content == b"".join(frames)
    sent = orjson.loads(upstream.requests[-1].body)
    assert sent["model"] == "claude-sonnet-4-5-20250929" and "anthropic_version" not in sent
    assert upstream.requests[-1].query == b""
    (event,) = await usage_events(dataplane, 1)
    assert event.usage.output_tokens == 42


async def test_vertex_bad_path_and_unknown_model(client) -> None:
    r = await client.post(
        "/vertex/v1/projects/p/locations/r/publishers/google/models/gemini:rawPredict",
        content=b"{}",
        headers=CLIENT_HEADERS,
    )
    assert r.status_code == 404 and r.json()["error"]["type"] == "not_found_error"
    r = await client.post(
        "/vertex/v1/projects/p/locations/r/publishers/anthropic/models/gpt-4:rawPredict",
        content=b'{"max_tokens":1,"messages":[]}',
        headers=CLIENT_HEADERS,
    )
    assert r.status_code == 404 and "gpt-4" in r.json()["error"]["message"]


async def test_only_the_anthropic_door_forwards_the_query_string(client, upstream) -> None:
    """``Door.forwards_query``: a Bedrock or Vertex client's query means nothing upstream."""
    body = {"max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}
    quoted = BEDROCK_ID.replace(":", "%3A")
    for path in (
        f"/bedrock/model/{quoted}/invoke?x=1",
        "/vertex/v1/projects/p/locations/r/publishers/anthropic/models/"
        "claude-sonnet-4-5@20250929:rawPredict?alt=sse",
    ):
        r = await client.post(path, content=orjson.dumps(body), headers=CLIENT_HEADERS)
        assert r.status_code == 200, r.text
        assert upstream.requests[-1].query == b""
    anthropic = orjson.dumps({**body, "model": "claude-sonnet-4-5-20250929"})
    r = await client.post("/v1/messages?beta=true", content=anthropic, headers=CLIENT_HEADERS)
    assert r.status_code == 200, r.text
    assert upstream.requests[-1].query == b"beta=true"
