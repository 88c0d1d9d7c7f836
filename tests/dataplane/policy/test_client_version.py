"""A workspace's min_client_version: older Claude Code gets a 400 that says to update."""

from __future__ import annotations

import orjson
import pytest

from dataplane.config.snapshot import Snapshot, SnapshotError, version_parts
from dataplane.errors import GatewayError
from dataplane.policy.auth import check_client_version
from dataplane.process.server import DataPlane
from tests.dataplane.conftest import SECRET, build_snapshot

BODY = orjson.dumps(
    {"model": "claude-haiku-4-5", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}
)


def headers(agent: str) -> dict[str, str]:
    return {
        "authorization": f"Bearer {SECRET}",
        "anthropic-version": "2023-06-01",
        "content-type": "application/json",
        "user-agent": agent,
    }


async def test_old_claude_code_is_refused(client, upstream, dataplane: DataPlane) -> None:
    snap = build_snapshot(upstream.base_url, version="v2")
    snap.workspaces[0].min_client_version = "2.1.10"
    dataplane.holder.swap(Snapshot.from_proto(snap))

    r = await client.post("/v1/messages", content=BODY, headers=headers("claude-cli/2.1.9 (x)"))
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["type"] == "invalid_request_error"
    assert err["message"] == (
        "Claude Code 2.1.9 is older than this workspace allows (2.1.10): run `claude update`"
    )
    for agent in ("claude-cli/2.1.10 (external, cli)", "claude-cli/2.2 (x)", "python-httpx/0.28"):
        r = await client.post("/v1/messages", content=BODY, headers=headers(agent))
        assert r.status_code == 200, agent
    metrics = (await client.get("/metrics")).text
    assert 'tollgate_refusals_total{workspace="team-a",reason="client_version"} 1' in metrics


@pytest.mark.parametrize(
    ("agent", "minimum", "refused"),
    [
        ("claude-cli/1.0.0", "2", True),
        ("claude-cli/2.0.0", "2", False),
        ("claude-cli/2.1.9", "2.1.10", True),
        ("claude-cli/2.1.100", "2.1.10", False),
        ("claude-cli/2.1.0-beta.1", "2.1.1", True),
        ("claude-code-sdk", "9", False),
        ("", "9", False),
    ],
)
def test_numeric_comparison(agent: str, minimum: str, refused: bool) -> None:
    snap = build_snapshot("http://127.0.0.1:9")
    snap.workspaces[0].min_client_version = minimum
    ws = Snapshot.from_proto(snap).workspaces["team-a"]
    if refused:
        with pytest.raises(GatewayError):
            check_client_version(ws, agent.encode())
    else:
        check_client_version(ws, agent.encode())


def test_snapshot_rejects_a_bad_minimum() -> None:
    assert version_parts("2.1.197") == (2, 1, 197)
    snap = build_snapshot("http://127.0.0.1:9")
    snap.workspaces[0].min_client_version = "latest"
    with pytest.raises(SnapshotError):
        Snapshot.from_proto(snap)
