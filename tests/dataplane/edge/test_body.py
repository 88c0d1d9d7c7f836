"""The Anthropic door's body reading (dataplane.edge.doors.body): the three members it reads agree
with a full parse, every body a full parse refuses is refused (but the one documented case), and
the rest of the body is parsed only when something reads it."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from dataplane.edge.doors.anthropic import AnthropicDoor
from dataplane.edge.doors.body import LazyObject, parse_object, read_head
from dataplane.errors import GatewayError

FIXTURE = Path(__file__).parents[2] / "fixtures" / "claude_code_request.json"

GOOD = [
    FIXTURE.read_bytes(),
    b'{"model":"claude-sonnet-4-5","stream":true,"max_tokens":5,"messages":[]}',
    b'{"messages":[{"role":"user","content":"h\xc3\xa9llo \xf0\x9f\x98\x80"}],"model":"m"}',
    b' {"model": "a", "model": "b", "stream": false} ',  # the last duplicate counts, as orjson
    b'{"stream":"yes","max_tokens":true,"model":7}',  # wrong types: read as they are
    b'{"max_tokens":1.5,"model":null,"nested":{"model":"not me","stream":true}}',
    b"{}",
    b'{"a":' * 100 + b"1" + b"}" * 100,
]

BAD = [
    (b"", "not valid JSON"),
    (b"{nope", "not valid JSON"),
    (b'{"model":"a","messages":[', "not valid JSON"),  # truncated
    (b'{"model":"a","messages":[1,2,]}', "not valid JSON"),  # syntax error in a skipped member
    (b'{"model":"a","m":"bad \\q escape"}', "not valid JSON"),
    (b'{"model":"a","m":"\x01"}', "not valid JSON"),  # raw control character
    (b'{"model":"a","m":NaN}', "not valid JSON"),
    (b'{"model":"a","m":"\xff\xfe"}', "not valid JSON"),  # invalid UTF-8 in a skipped string
    (b'{"model":"a"} trailing', "not valid JSON"),
    (b'{"a":' * 5000 + b"1" + b"}" * 5000, "not valid JSON"),  # nested past any parser's limit
    (b"[1,2]", "must be a JSON object"),
    (b'"model"', "must be a JSON object"),
    (b"42", "must be a JSON object"),
]


@pytest.mark.parametrize("body", GOOD)
def test_the_head_is_what_a_full_parse_reads(body: bytes) -> None:
    head = read_head(body)
    full = orjson.loads(body)
    assert (head.model, head.stream, head.max_tokens) == (
        full.get("model"),
        full.get("stream"),
        full.get("max_tokens"),
    )


@pytest.mark.parametrize(("body", "needle"), BAD)
def test_what_a_full_parse_refuses_is_refused(body: bytes, needle: str) -> None:
    with pytest.raises(GatewayError) as head_err:
        read_head(body)
    with pytest.raises(GatewayError) as full_err:
        parse_object(body)
    for err in (head_err.value, full_err.value):
        assert err.status == 400 and err.error_type == "invalid_request_error"
        assert needle in err.message


def test_a_number_out_of_range_in_a_skipped_member_is_left_to_the_upstream() -> None:
    body = b'{"model":"a","temperature":1e999}'
    assert read_head(body).model == "a"  # the documented difference
    lazy = LazyObject(body)
    with pytest.raises(GatewayError) as err:
        lazy.get("temperature")  # read after all: the same 400 as a full parse
    assert err.value.status == 400 and "not valid JSON" in err.value.message


def test_the_lazy_object_parses_once_on_first_read() -> None:
    body = FIXTURE.read_bytes()
    lazy = LazyObject(body)
    assert not lazy.parsed and "unparsed" in repr(lazy)
    assert lazy.get("model") == orjson.loads(body)["model"]
    assert lazy.parsed
    first = lazy._get()
    assert dict(lazy) == orjson.loads(body) and lazy._get() is first
    assert len(lazy) == len(first) and "messages" in lazy and lazy["stream"] is True
    assert "absent" not in lazy and lazy.get("absent", 3) == 3
    with pytest.raises(KeyError):
        lazy["absent"]


def test_the_plain_anthropic_path_never_parses_the_whole_body() -> None:
    body = FIXTURE.read_bytes()
    prepared = AnthropicDoor().prepare({"path": "/v1/messages"}, body, ())
    assert isinstance(prepared.json, LazyObject) and not prepared.json.parsed
    assert prepared.body is body  # the client's bytes go upstream as sent
    full = orjson.loads(body)
    assert (prepared.model, prepared.stream, prepared.max_tokens) == (
        full["model"],
        full["stream"],
        full["max_tokens"],
    )
    counted = AnthropicDoor().prepare({"path": "/v1/messages/count_tokens"}, body, ())
    assert counted.count_only and not counted.stream


@pytest.mark.parametrize(
    ("members", "max_tokens", "stream"),
    [
        (b'"max_tokens":true,"stream":1', 0, False),  # a bool is no count; only true streams
        (b'"max_tokens":"9","stream":"true"', 0, False),
        (b'"max_tokens":12', 12, False),
    ],
)
def test_odd_types_read_as_the_full_parse_did(
    members: bytes, max_tokens: int, stream: bool
) -> None:
    body = b'{"model":"claude-sonnet-4-5",' + members + b"}"
    prepared = AnthropicDoor().prepare({"path": "/v1/messages"}, body, ())
    assert (prepared.max_tokens, prepared.stream) == (max_tokens, stream)
