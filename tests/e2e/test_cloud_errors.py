"""Errors from Bedrock and Vertex that name the cloud account never reach the client.

A data plane on loopback in front of the strict fakes, which answer with errors written the way
AWS and Google write them: an ARN with the account id, a Google project. The client (Anthropic,
Bedrock and Vertex formats) gets the status and error type Claude Code retries on, plus a message
naming the provider, the upstream's error code and the gateway request id; the account appears
neither in the answer nor in the usage event (which workspace viewers read), only in the data
plane's log. Anthropic's own validation messages relayed by the clouds keep their wording.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import orjson
import pytest

from dataplane.codecs.eventstream import EventStreamDecoder
from dataplane.codecs.sse import SSEDecoder
from dataplane.process.server import DataPlane
from gwapi.v1 import common_pb2, discovery_pb2
from tests.dataplane.conftest import build_snapshot, sha, usage_events
from tests.dataplane.providers import test_bedrock as bedrock_t
from tests.e2e.faults_support import start_faulty
from tests.fakes import bedrock as fake_bedrock
from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.vertex import FakeVertex, Scripted, google_error, write_service_account

pytestmark = pytest.mark.e2e

ACCOUNT = "123456789012"
ROLE_ARN = f"arn:aws:sts::{ACCOUNT}:assumed-role/BedrockInvoke/tollgate-dp"
DENIED = (
    f"User: {ROLE_ARN} is not authorized to perform: bedrock:InvokeModelWithResponseStream on"
    f" resource: arn:aws:bedrock:us-east-1:{ACCOUNT}:inference-profile/us.anthropic.claude"
    " because no identity-based policy allows the bedrock:InvokeModelWithResponseStream action"
)
PROJECT = "acme-secret-prod-4711"
VERTEX_DENIED = (
    "Permission 'aiplatform.endpoints.predict' denied on resource '//aiplatform.googleapis.com/"
    f"projects/{PROJECT}/locations/us-east5/publishers/anthropic/models/claude-sonnet-4-5' (or"
    " it may not exist)."
)
TOO_LONG = "prompt is too long: 201234 tokens > 200000 maximum"
BEDROCK_KEY = "gw-cloud-bedrock-0123456789abcdefghijklmnopqrstuvwxyz"
VERTEX_KEY = "gw-cloud-vertex-0123456789abcdefghijklmnopqrstuvwxyzA"
MODEL = "claude-sonnet-4-5-20250929"
BEDROCK_ID = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"


class Stack:
    def __init__(self, dp: DataPlane, bedrock: fake_bedrock.FakeBedrock, vertex: FakeVertex):
        self.dp, self.bedrock, self.vertex = dp, bedrock, vertex
        self.http = httpx.AsyncClient(base_url=f"http://127.0.0.1:{dp.port}", timeout=10)

    async def post(
        self, key: str, *, stream: bool = False, path: str = "/v1/messages"
    ) -> httpx.Response:
        body = {
            "model": MODEL,
            "max_tokens": 100,
            "stream": stream,
            "messages": [{"role": "user", "content": "hi"}],
        }
        if not path.startswith("/v1/"):  # the cloud formats: no model in the body
            body = {k: v for k, v in body.items() if k not in ("model", "stream")}
            body["anthropic_version"] = (
                "bedrock-2023-05-31" if path.startswith("/bedrock") else "vertex-2023-10-16"
            )
        return await self.http.post(
            path,
            content=orjson.dumps(body),
            headers={
                "authorization": f"Bearer {key}",
                "content-type": "application/json",
                "anthropic-version": "2023-06-01",
            },
        )


def snapshot(
    anthropic_url: str, bedrock_url: str, vertex_url: str, sa_file: Path
) -> discovery_pb2.Snapshot:
    snap = build_snapshot(anthropic_url)
    snap.providers.extend(
        [
            common_pb2.Provider(
                name="bedrock-prod",
                kind="bedrock",
                base_url=bedrock_url,
                options={
                    "region": "us-east-1",
                    "access_key_env": "FAKE_AK",
                    "secret_key_env": "FAKE_SK",
                },
            ),
            common_pb2.Provider(
                name="vertex-prod",
                kind="vertex",
                base_url=vertex_url,
                options={
                    "project": "tollgate-test",
                    "region": "us-east5",
                    "credentials_file": str(sa_file),
                },
            ),
        ]
    )
    for secret, provider in ((BEDROCK_KEY, "bedrock-prod"), (VERTEX_KEY, "vertex-prod")):
        snap.keys.append(
            discovery_pb2.SnapshotKey(
                id=f"key_{provider}",
                secret_sha256=sha(secret),
                name=provider,
                workspace="team-a",
                provider=provider,
            )
        )
    return snap


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    anthropic, bedrock, vertex = FakeAnthropic(), fake_bedrock.FakeBedrock(), FakeVertex()
    for fake in (anthropic, bedrock, vertex):
        await fake.start()
    sa_file = write_service_account(tmp_path, vertex.token_uri)
    snap = snapshot(anthropic.base_url, bedrock.base_url, vertex.api_base, sa_file)
    dp = await start_faulty(tmp_path / "dp", snap, env=bedrock_t.ENV)
    s = Stack(dp, bedrock, vertex)
    try:
        yield s
    finally:
        await s.http.aclose()
        await dp.stop()
        for fake in (anthropic, bedrock, vertex):
            await fake.stop()


def assert_no_account(*texts: str) -> None:
    for text in texts:
        for secret in (ACCOUNT, "arn:aws", "BedrockInvoke", PROJECT):
            assert secret not in text, f"{secret!r} leaked in {text!r}"


def logged(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("tollgate."))


async def test_bedrock_access_denied_keeps_status_and_type_not_the_account(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="tollgate.providers")
    stack.bedrock.script.append(fake_bedrock.error(403, "AccessDeniedException", DENIED))
    r = await stack.post(BEDROCK_KEY, stream=True)
    assert r.status_code == 403
    request_id = r.headers["x-tollgate-request-id"]
    error = r.json()["error"]
    assert error["type"] == "permission_error"
    assert error["message"].startswith(
        "Amazon Bedrock (provider 'bedrock-prod') refused the request: AccessDeniedException."
    )
    assert request_id in error["message"]
    (event,) = await usage_events(stack.dp, 1)
    assert (event.status, event.error_type) == (403, "permission_error")
    assert_no_account(r.text, str(dict(r.headers)), event.error_message)
    assert DENIED in logged(caplog) and request_id in logged(caplog)  # the operator's copy


async def test_bedrock_throttling_keeps_retry_after_and_anthropic_wording_survives(
    stack: Stack,
) -> None:
    stack.bedrock.script.append(
        fake_bedrock.error(429, "ThrottlingException", f"Rate exceeded for account {ACCOUNT}", "7")
    )
    r = await stack.post(BEDROCK_KEY)
    assert r.status_code == 429 and r.headers["retry-after"] == "7"
    assert r.json()["error"]["type"] == "rate_limit_error"
    assert "ThrottlingException" in r.json()["error"]["message"]
    assert_no_account(r.text)
    # Claude Code compacts on this message: Anthropic's own wording, relayed by Bedrock, is kept.
    stack.bedrock.script.append(fake_bedrock.error(400, "ValidationException", TOO_LONG))
    r = await stack.post(BEDROCK_KEY)
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    assert TOO_LONG in r.json()["error"]["message"]


async def test_bedrock_in_stream_exception_names_no_account(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="tollgate.providers")
    frames = fake_bedrock.stream_frames(MODEL, ["a"])
    stack.bedrock.script.append(
        fake_bedrock.Scripted(
            headers=[(b"content-type", b"application/vnd.amazon.eventstream")],
            frames=[*frames[:2], fake_bedrock.exception("modelStreamErrorException", DENIED)],
        )
    )
    r = await stack.post(BEDROCK_KEY, stream=True)
    assert r.status_code == 200
    events = SSEDecoder().feed(r.content)
    assert events[-1].event == "error"
    error = orjson.loads(events[-1].data)["error"]
    assert error["type"] == "api_error" and "modelStreamErrorException" in error["message"]
    assert r.headers["x-tollgate-request-id"] in error["message"]
    (event,) = await usage_events(stack.dp, 1)
    assert_no_account(r.text, event.error_message)
    assert DENIED in logged(caplog)


async def test_bedrock_format_client_gets_a_bedrock_error_without_the_account(
    stack: Stack,
) -> None:
    stack.bedrock.script.append(fake_bedrock.error(403, "AccessDeniedException", DENIED))
    r = await stack.post(BEDROCK_KEY, path=f"/bedrock/model/{BEDROCK_ID}/invoke")
    assert r.status_code == 403
    assert r.headers["x-amzn-errortype"] == "AccessDeniedException"
    assert "AccessDeniedException" in r.json()["message"]
    assert_no_account(r.text)
    # ... and an in-stream exception, re-framed as an AWS exception message.
    frames = fake_bedrock.stream_frames(MODEL, ["a"])
    stack.bedrock.script.append(
        fake_bedrock.Scripted(
            headers=[(b"content-type", b"application/vnd.amazon.eventstream")],
            frames=[*frames[:2], fake_bedrock.exception("throttlingException", DENIED)],
        )
    )
    r = await stack.post(
        BEDROCK_KEY, path=f"/bedrock/model/{BEDROCK_ID}/invoke-with-response-stream"
    )
    last = EventStreamDecoder().feed(r.content)[-1]
    assert dict(last.headers)[":exception-type"] == "throttlingException"
    assert_no_account(r.content.decode("utf-8", "replace"))


@pytest.mark.parametrize("door", ["anthropic", "vertex"])
async def test_vertex_permission_denied_names_no_project(
    stack: Stack, caplog: pytest.LogCaptureFixture, door: str
) -> None:
    caplog.set_level(logging.WARNING, logger="tollgate.providers")
    stack.vertex.script.append(google_error(403, "PERMISSION_DENIED", VERTEX_DENIED))
    path = (
        "/v1/messages"
        if door == "anthropic"
        else "/vertex/v1/projects/p1/locations/us-east5/publishers/anthropic/models/"
        "claude-sonnet-4-5@20250929:rawPredict"
    )
    r = await stack.post(VERTEX_KEY, path=path)
    assert r.status_code == 403
    error = r.json()["error"]
    assert error["type"] == "permission_error"
    assert error["message"].startswith(
        "Vertex AI (provider 'vertex-prod') refused the request: PERMISSION_DENIED."
    )
    assert r.headers["x-tollgate-request-id"] in error["message"]
    (event,) = await usage_events(stack.dp, 1)
    assert_no_account(r.text, event.error_message)
    assert VERTEX_DENIED in logged(caplog)


async def test_vertex_anthropic_shaped_errors_still_pass_byte_for_byte(stack: Stack) -> None:
    body = orjson.dumps(
        {"type": "error", "error": {"type": "invalid_request_error", "message": TOO_LONG}}
    )
    stack.vertex.script.append(
        Scripted(status=400, headers=[(b"content-type", b"application/json")], frames=[body])
    )
    r = await stack.post(VERTEX_KEY)
    assert r.status_code == 400 and r.content == body
