"""Client strings on their way into usage events (P2 finding 1): a real data plane, the strict fake.

A model id is validated at the edge, before it is recorded anywhere: a huge or NUL-bearing one
gets a readable 400 and the refused request is still recorded, with the model cleaned and cut.
Every other client string an event carries (session id, user agent, path, metadata) is cleaned
and cut, so no event holds NUL (PostgreSQL refuses it) or anything huge.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote

import httpx
import orjson
import pytest

from dataplane.clienttext import BadModel, check_model, clean
from dataplane.metering.record import RequestRecord, fit_bodies
from dataplane.process.server import DataPlane
from gwcommon.usage_limits import TEXT_CHARS
from tests.dataplane.conftest import SECRET, build_snapshot, start_dataplane, usage_events
from tests.fakes.anthropic import FakeAnthropic

HEADERS = {
    "x-api-key": SECRET,
    "anthropic-version": "2023-06-01",
    "content-type": "application/json",
}


def body(model: str, **extra: object) -> bytes:
    return orjson.dumps(
        {
            "model": model,
            "max_tokens": 10,
            "messages": [{"role": "user", "content": "hi"}],
            **extra,
        }
    )


@pytest.fixture
async def big_dp(tmp_path: Path, upstream: FakeAnthropic) -> AsyncIterator[DataPlane]:
    """The default 32 MiB body limit, so a model string of megabytes reaches the door."""
    dp = await start_dataplane(tmp_path / "dp", build_snapshot(upstream.base_url))
    yield dp
    await dp.stop()


@pytest.fixture
async def big_client(big_dp: DataPlane) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{big_dp.port}", timeout=30) as c:
        yield c


def test_model_ids_of_every_door_pass() -> None:
    for model in (
        "claude-sonnet-4-5-20250929",
        "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
        "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-opus-4-8",
        "claude-sonnet-4-5@20250929",
        "claude-opus-4-8[1m]",
    ):
        assert check_model(model) is model


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        ("claude-" + "x" * 300, "at most 256 characters; this one has 307"),
        ("claude-sonnet-4-5\x00", "printable ASCII characters only"),
        ("claude sonnet", "without spaces"),
        ("claude-\x1b[31m", "control characters"),
        ("claude-sönnet", "printable ASCII"),
        ("", "Field required"),
        (42, "Field required"),
    ],
)
def test_bad_model_ids_are_refused_saying_why(value: object, needle: str) -> None:
    with pytest.raises(BadModel) as info:
        check_model(value)
    assert info.value.status == 400 and info.value.error_type == "invalid_request_error"
    assert needle in info.value.message and "e.g. claude-sonnet-4-5" in info.value.message
    assert len(info.value.message) < 400  # the value is quoted cut, never whole
    assert "\x00" not in info.value.model and len(info.value.model) <= 256


def test_clean_is_free_when_there_is_nothing_to_do() -> None:
    text = "claude-sonnet-4-5"
    assert clean(text, 256) is text
    assert clean("a\x00b\x7fc\x9f", 256) == "a\ufffdb\ufffdc\ufffd"
    cut = clean("x" * 1000, 256)
    assert len(cut) == 256 and cut.endswith("…")


def test_fit_bodies_keeps_an_event_under_the_budget() -> None:
    assert fit_bodies(b"a" * 10, b"b" * 10, 100) == (b"a" * 10, b"b" * 10)
    req, resp = fit_bodies(b"a" * 10, b"b" * 500, 100)
    assert (len(req), len(resp)) == (10, 90)
    req, resp = fit_bodies(b"a" * 500, b"b" * 500, 100)
    assert (len(req), len(resp)) == (50, 50)


def test_every_event_string_is_cleaned_and_cut() -> None:
    rec = RequestRecord(request_id="r1", dataplane_id="dp", path="/vertex/" + "p\x00" * 5000)
    rec.session_id = "s\x00" * 10_000
    rec.user_agent = "claude-cli/2.1.197 " + "u" * 10_000
    rec.model_requested = "m\x00" * 1000
    rec.error_message = "e\x00" * 1000
    rec.upstream_request_id = "req_" + "q" * 10_000
    event = rec.to_event()
    for name, limit in TEXT_CHARS.items():
        value = getattr(event, name)
        assert "\x00" not in value and len(value) <= limit, name
    assert event.client_version == "2.1.197"
    assert event.model_served == event.model_requested


async def test_huge_model_is_refused_readably_and_recorded_cut(
    big_client: httpx.AsyncClient, big_dp: DataPlane, upstream: FakeAnthropic
) -> None:
    model = "claude-" + "x" * (5 * 1024 * 1024)
    r = await big_client.post("/v1/messages", content=body(model), headers=HEADERS)
    assert r.status_code == 400, r.text[:300]
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert "a model id has at most 256 characters" in error["message"]
    assert len(r.content) < 1000  # the refusal does not echo the model back
    assert r.headers["x-should-retry"] == "false"
    assert upstream.requests == []  # never forwarded
    (event,) = await usage_events(big_dp, 1)
    assert event.status == 400 and event.error_type == "invalid_request_error"
    assert len(event.model_requested) == 256 and event.model_requested.startswith("claude-xxx")
    assert len(event.model_served) == 256
    assert len(event.SerializeToString()) < 4096


async def test_nul_model_is_refused_and_recorded_without_nul(
    big_client: httpx.AsyncClient, big_dp: DataPlane
) -> None:
    r = await big_client.post(
        "/v1/messages", content=body("claude-sonnet-4-5\x00"), headers=HEADERS
    )
    assert r.status_code == 400
    assert "is not a model id" in r.json()["error"]["message"]
    (event,) = await usage_events(big_dp, 1)
    assert event.model_requested == "claude-sonnet-4-5\ufffd"
    assert "\x00" not in event.model_served


async def test_vertex_and_bedrock_model_ids_in_the_path_are_checked_too(
    big_client: httpx.AsyncClient, big_dp: DataPlane
) -> None:
    long_id = "claude-" + "v" * 20_000
    vertex = (
        f"/vertex/v1/projects/p/locations/us-east5/publishers/anthropic/models/{long_id}:rawPredict"
    )
    r = await big_client.post(
        vertex,
        content=orjson.dumps(
            {"anthropic_version": "vertex-2023-10-16", "max_tokens": 5, "messages": []}
        ),
        headers={**HEADERS, "authorization": f"Bearer {SECRET}"},
    )
    assert r.status_code == 400 and "at most 256 characters" in r.json()["error"]["message"]
    r = await big_client.post(
        f"/bedrock/model/{quote('claude-x' + chr(0), safe='')}/invoke",
        content=orjson.dumps({"anthropic_version": "bedrock-2023-05-31", "max_tokens": 5}),
        headers=HEADERS,
    )
    assert r.status_code == 400
    assert r.headers["x-amzn-errortype"] == "ValidationException"
    assert "is not a model id" in r.json()["message"]
    events = await usage_events(big_dp, 2)
    assert len(events) == 2
    for event in events:
        assert len(event.path) <= 1024 and "\x00" not in event.path
        assert len(event.model_requested) <= 256 and "\x00" not in event.model_requested


async def test_other_client_strings_are_cut_and_odd_metadata_refused(
    big_client: httpx.AsyncClient, big_dp: DataPlane
) -> None:
    headers = {
        **HEADERS,
        "x-claude-code-session-id": "s" * 20_000,
        "user-agent": "claude-cli/2.1.197 " + "u" * 20_000,
    }
    r = await big_client.post("/v1/messages", content=body("claude-haiku-4-5"), headers=headers)
    assert r.status_code == 200
    r = await big_client.post(
        "/v1/messages",
        content=body("claude-haiku-4-5"),
        headers={**HEADERS, "x-tollgate-metadata": '{"team":"a\\u0000b"}'},
    )
    assert r.status_code == 400
    assert "contains a control character" in r.json()["error"]["message"]
    ok, refused = await usage_events(big_dp, 2)
    assert len(ok.session_id) == 256 and len(ok.user_agent) == 256
    assert ok.client_version == "2.1.197"
    assert refused.status == 400 and dict(refused.metadata) == {}
