"""gwctl audit against a real control plane (127.0.0.1:0, temporary SQLite) in a background
thread: changes made with gwctl show up with who/what/before/after; filters; --follow."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from tests.gwctl.cli import following, gw, gw_json, unique

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("gwctl_env")]


def test_changes_made_with_gwctl_are_listed_with_before_and_after(
    capsys: pytest.CaptureFixture[str],
) -> None:
    ws = unique("aud")
    prov = unique("sim")
    assert gw(capsys, "workspaces", "create", ws, "--description", "first")[0] == 0
    assert gw(capsys, "workspaces", "update", ws, "--description", "second", "--rpm", "60")[0] == 0
    assert gw(capsys, "providers", "create", prov, "--kind", "simulator")[0] == 0
    created = gw_json(capsys, "keys", "create", "-w", ws, "--name", "ci", "--provider", prov)
    key_id, secret = created["id"], created["key"]
    assert gw(capsys, "keys", "revoke", key_id, "--yes")[0] == 0

    events = gw_json(capsys, "audit", "--workspace", ws)
    assert [e["action"] for e in events] == [  # newest first; the global provider is not in ws
        "key.revoke",
        "key.create",
        "workspace.update",
        "workspace.create",
    ]
    update = events[2]
    assert update["before"]["description"] == "first" and update["after"]["description"] == "second"
    assert update["after"]["limits"]["rpm"] == 60
    assert update["actor"] == "bootstrap" and update["actor_role"] == "admin"
    assert update["method"] == "UpdateWorkspace" and "127.0.0.1" in update["peer"]
    assert update["time"].startswith("20") and "before_json" not in update
    assert events[3]["before"] is None and events[1]["after"]["name"] == "ci"

    code, table, _ = gw(capsys, "audit", "-w", ws)
    assert code == 0
    header, *lines = table.splitlines()
    assert header.split() == ["TIME", "ACTOR", "FROM", "ACTION", "RESOURCE", "WORKSPACE", "CHANGED"]
    assert "bootstrap admin token (admin)" in lines[2] and "127.0.0.1:" in lines[2]
    assert "workspace.update" in lines[2] and "description, limits.rpm" in lines[2]
    assert "ipv4:" not in table

    everything = gw(capsys, "audit", "-o", "json", "--limit", "1000")[1]
    assert secret not in everything and secret[10:] not in everything  # never the key's secret

    kinds = gw_json(capsys, "audit", "--kind", "provider", "--since", "1h")
    assert kinds[0]["action"] == "provider.create" and kinds[0]["resource"] == prov
    assert {e["resource_kind"] for e in kinds} == {"provider"}
    assert len(gw_json(capsys, "audit", "-n", "2")) == 2


def test_bad_filters_are_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = gw(capsys, "audit", "--kind", "user")
    assert code == 2 and "invalid choice" in err
    code, _, err = gw(capsys, "audit", "--since", "yesterday")
    assert code == 2 and "Traceback" not in err
    code, _, err = gw(capsys, "audit", "-w", "x" * 70)
    assert code == 1 and err.startswith("error: ") and "63" in err


def test_follow_prints_new_changes_as_they_happen(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    ws = unique("follow")
    assert gw(capsys, "workspaces", "create", ws)[0] == 0
    proc = following(tmp_path, "audit", "-f", "-o", "json", "-w", ws)
    try:
        assert proc.stdout is not None
        first = orjson.loads(proc.stdout.readline())
        assert (first["action"], first["resource"]) == ("workspace.create", ws)
        assert gw(capsys, "workspaces", "update", ws, "--description", "live")[0] == 0
        second = orjson.loads(proc.stdout.readline())
        assert second["action"] == "workspace.update"
        assert second["after"]["description"] == "live"
    finally:
        proc.terminate()
        proc.wait(10)
