"""An upstream that never ends an SSE event (an endless line, or endless lines with no blank one)
meets the decoder's memory cap: the client's stream ends with an ``api_error`` event and the
usage record says so, instead of the data plane buffering the upstream's bytes without bound."""

from __future__ import annotations

from dataplane.codecs.sse import MAX_EVENT_BYTES
from tests.dataplane.conftest import usage_events
from tests.dataplane.edge.test_proxy import HEADERS, ODD_BODY
from tests.fakes.anthropic import Scripted, stream_frames

MIB = 1024 * 1024


async def test_an_endless_event_ends_the_stream_with_an_error(client, upstream, dataplane) -> None:
    frames = stream_frames("claude-opus-4-8", ["a"])[:2]  # message_start, content_block_start
    endless = [b"event: content_block_delta\ndata: {"] + [b"x" * MIB] * (MAX_EVENT_BYTES // MIB + 1)
    upstream.script.append(
        Scripted(headers=[(b"content-type", b"text/event-stream")], frames=frames + endless)
    )
    async with client.stream("POST", "/v1/messages", content=ODD_BODY, headers=HEADERS) as r:
        assert r.status_code == 200  # committed before the upstream went wrong
        body = b"".join([c async for c in r.aiter_raw()])
    assert body.startswith(b"".join(frames))
    assert len(body) > MAX_EVENT_BYTES  # pass-through: the client saw what the upstream sent
    tail = body[-600:]
    assert b"event: error" in tail and b"failed mid-answer" in tail
    assert b"message_stop" not in body
    (event,) = await usage_events(dataplane, 1)
    assert event.error_type == "api_error"
