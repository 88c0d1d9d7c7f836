"""The route table, row by row, through a real data plane: what each path answers to a method it
does not serve (404, or 405 on the Messages paths), whether it is authenticated first, in which
door's format its refusals come, and which paths the drain gate closes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import pytest

from dataplane.asgi import Receive, Scope, Send
from dataplane.edge.app import Route, RouteTable, route_table
from dataplane.edge.doors.anthropic import AnthropicDoor
from dataplane.edge.metrics import Metrics
from dataplane.policy.tokens import TokenVerifier
from dataplane.process.server import DataPlane
from tests.dataplane.conftest import SECRET

KEY = {"authorization": f"Bearer {SECRET}"}
BEDROCK_INVOKE = "/bedrock/model/us.anthropic.claude-haiku-4-5-20251001-v1:0/invoke"
VERTEX_PREDICT = (
    "/vertex/v1/projects/p/locations/r/publishers/anthropic/models/claude-haiku-4-5:rawPredict"
)


@dataclass(frozen=True)
class Case:
    """One row: a method it does not serve and what that gets (with the key, so that protected
    rows get past authentication), and whether it is authenticated and closed while draining."""

    row: str  # the row's path in the table
    path: str  # a request path the row takes
    wrong_method: str
    status: int  # the answer to ``wrong_method`` (with a key)
    protected: bool
    door: str  # the door whose format the row's refusals use (Vertex's is Anthropic's)


CASES = [
    Case("/v1/messages", "/v1/messages", "GET", 405, True, "anthropic"),
    Case("/v1/messages/count_tokens", "/v1/messages/count_tokens", "PUT", 405, True, "anthropic"),
    Case("/bedrock/model/", BEDROCK_INVOKE, "GET", 404, True, "bedrock"),
    Case("/vertex/v1/", VERTEX_PREDICT, "GET", 404, True, "vertex"),
    Case(
        "/bedrock/inference-profiles", "/bedrock/inference-profiles", "POST", 404, False, "bedrock"
    ),
    Case("/", "/", "POST", 404, False, "anthropic"),
    Case("/v1/models", "/v1/models", "POST", 404, True, "anthropic"),
    Case("/v1/tollgate/whoami", "/v1/tollgate/whoami", "POST", 404, True, "anthropic"),
    Case("/managed/settings", "/managed/settings", "POST", 404, True, "anthropic"),
    Case("/metrics", "/metrics", "POST", 404, False, "anthropic"),
    # The OTLP handler answers every method itself (405 but for POST).
    Case("/v1/metrics", "/v1/metrics", "GET", 405, True, "anthropic"),
    Case("/v1/logs", "/v1/logs", "GET", 405, True, "anthropic"),
    Case("/v1/traces", "/v1/traces", "GET", 405, True, "anthropic"),
    # Claimed only: authenticated, then 404 whatever the method.
    Case("/v1/", "/v1/nothing-here", "GET", 404, True, "anthropic"),
]
# Rows every method reaches (their handler answers): never a 404/405 from the table.
ANY_METHOD = {
    "/healthz",
    "/.well-known/oauth-authorization-server",
    "/oauth/device_authorization",
    "/oauth/token",
    "/oauth/callback",
    "/device",
}


async def _nothing(scope: Scope, receive: Receive, send: Send) -> None:
    raise AssertionError("not called")


async def test_every_row_of_the_table_is_tested_here(dataplane: DataPlane) -> None:
    table = route_table(
        lambda door: _nothing,
        dataplane.health,
        TokenVerifier(),
        _nothing,
        Metrics(),
        signin=_nothing,
        otlp=_nothing,
    )
    assert sorted(r.path for r in table.routes) == sorted({c.row for c in CASES} | ANY_METHOD)
    for case in CASES:
        route = table.find(case.path)
        assert route is not None and route.path == case.row
        assert route.protected is case.protected and route.door.name == case.door
    assert table.find("/nope") is None and table.protected_door("/nope") is None
    assert table.find("/bedrock/other") is None  # only /bedrock/model/… is the Bedrock API


def test_an_exact_path_wins_over_a_prefix_and_duplicates_are_refused() -> None:
    door = AnthropicDoor()
    v1 = Route("/v1/", frozenset(), door, True, None, prefix=True)
    models = Route("/v1/models", frozenset({"GET"}), door, False, _nothing)
    table = RouteTable([v1, models])
    assert table.find("/v1/models") is models and table.find("/v1/models/x") is v1
    assert table.protected_door("/v1/models") is None and table.protected_door("/v1/x") is door
    with pytest.raises(ValueError, match="two routes for /v1/models"):
        RouteTable([models, models])


def _assert_door(r: httpx.Response, door: str, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body = orjson.loads(r.content)
    assert body["type"] == "error" and body["request_id"] == r.headers["request-id"]
    if door == "bedrock":  # Bedrock's own fields on top of the Anthropic shape
        assert body["message"] == body["error"]["message"]
        assert r.headers["x-amzn-errortype"] and r.headers["x-amzn-requestid"]
    else:
        assert set(body) == {"type", "error", "request_id"}
        assert "x-amzn-errortype" not in r.headers
    return body


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.wrong_method} {c.row}")
async def test_a_method_a_row_does_not_serve(client: httpx.AsyncClient, case: Case) -> None:
    r = await client.request(case.wrong_method, case.path, headers=KEY)
    body = _assert_door(r, case.door, case.status)
    error = body["error"]
    assert isinstance(error, dict)
    assert error["type"] == ("not_found_error" if case.status == 404 else "invalid_request_error")
    if case.status == 404:
        assert error["message"].startswith(f"Not found: {case.wrong_method} {case.path}.")
    elif case.row.startswith("/v1/messages"):
        assert error["message"] == f"Use POST for {case.path}."
    assert r.headers["x-should-retry"] == "false"


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.wrong_method} {c.row}")
async def test_protected_rows_authenticate_first(client: httpx.AsyncClient, case: Case) -> None:
    r = await client.request(case.wrong_method, case.path)  # no key
    if case.protected:
        body = _assert_door(r, case.door, 401)
        assert body["error"] == {
            "type": "authentication_error",
            "message": body["error"]["message"],
        }
    else:
        assert r.status_code == case.status


async def test_served_methods_and_open_paths(client: httpx.AsyncClient) -> None:
    assert (await client.get("/")).content == b'{"service":"tollgate"}'
    head = await client.head("/")
    assert head.status_code == 200 and head.content == b""
    for method in ("GET", "POST", "DELETE"):
        assert (await client.request(method, "/healthz")).status_code == 200
    assert (await client.get("/metrics")).status_code == 200
    assert (await client.get("/bedrock/inference-profiles")).status_code == 200
    assert (await client.get("/v1/models", headers=KEY)).status_code == 200
    assert (await client.get("/v1/tollgate/whoami", headers=KEY)).status_code == 200
    # Outside every row: 404 without asking who is calling, in the Anthropic format.
    for path in ("/nope", "/bedrock/other", "/vertex/v2/x", "/managed/settings/x"):
        _assert_door(await client.post(path), "anthropic", 404)
    # Sign-in paths are open: a developer without a token comes here for one.
    r = await client.get("/.well-known/oauth-authorization-server")
    assert r.status_code != 401


async def test_draining_closes_the_protected_rows_in_their_door_format(
    client: httpx.AsyncClient, dataplane: DataPlane
) -> None:
    dataplane.health.draining = True
    try:
        for case in CASES:
            r = await client.request(case.wrong_method, case.path)
            if not case.protected:
                assert r.status_code == case.status
                continue
            body = _assert_door(r, case.door, 503)
            assert body["error"]["type"] == "overloaded_error"
            assert r.headers["retry-after"] == "1" and r.headers["connection"] == "close"
        assert (await client.get("/")).status_code == 200
        assert (await client.get("/healthz")).status_code == 503
    finally:
        dataplane.health.draining = False
