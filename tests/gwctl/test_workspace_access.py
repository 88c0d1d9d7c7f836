"""gwctl and workspace access controls against a real control plane (SQLite and PostgreSQL):
the --allow-*/--clear-allowed-* flags, `workspaces show` listing keys a narrowing left outside,
and the allowed_* lists in `gwctl apply` files."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.gwctl.cli import gw, gw_json

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("gwctl_env")]


@pytest.fixture
def control_plane(control_plane_per_backend: str) -> str:
    """A control plane per test, on every database backend."""
    return control_plane_per_backend


BASE = """
providers:
  - {name: sim-a, kind: simulator, base_url: "http://127.0.0.1:9"}
  - {name: sim-b, kind: simulator, base_url: "http://127.0.0.1:9"}
routes:
  - {name: main, mode: fallback, targets: [sim-a, sim-b]}
"""


def apply(capsys: pytest.CaptureFixture[str], tmp_path: Path, text: str) -> str:
    path = tmp_path / "gateway.yaml"
    path.write_text(text)
    code, stdout, err = gw(capsys, "apply", "-f", str(path), "--yes")
    assert code == 0, err
    return stdout


def test_flags_set_replace_and_clear_the_lists(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    apply(capsys, tmp_path, BASE)
    ws = gw_json(capsys, "workspaces", "create", "team-a", "--allow-provider", "sim-a",
                 "--allow-provider", "sim-b", "--allow-route", "main",
                 "--allow-model", "claude-sonnet-*")  # fmt: skip
    assert ws["allowed_providers"] == ["sim-a", "sim-b"]
    assert ws["allowed_routes"] == ["main"] and ws["allowed_models"] == ["claude-sonnet-*"]

    ws = gw_json(capsys, "workspaces", "update", "team-a", "--allow-model", "claude-haiku-*",
                 "--allow-model", "claude-sonnet-4-5*")  # fmt: skip
    assert ws["allowed_models"] == ["claude-haiku-*", "claude-sonnet-4-5*"]  # replaced
    assert ws["allowed_providers"] == ["sim-a", "sim-b"]  # not in the mask

    ws = gw_json(capsys, "workspaces", "update", "team-a", "--clear-allowed-providers")
    assert ws["allowed_providers"] == [] and ws["allowed_routes"] == ["main"]

    code, stdout, _ = gw(capsys, "workspaces", "show", "team-a")
    assert code == 0
    assert "allowed providers:" in stdout and "allowed routes:" in stdout
    assert "claude-haiku-*, claude-sonnet-4-5*" in stdout

    code, _, err = gw(capsys, "workspaces", "update", "team-a", "--allow-model", "x",
                      "--clear-allowed-models")  # fmt: skip
    assert code == 2 and "contradict" in err
    code, _, err = gw(capsys, "workspaces", "update", "team-a", "--allow-model", "")
    assert code == 2 and "--clear-allowed-models" in err
    code, _, err = gw(capsys, "workspaces", "update", "team-a", "--allow-route", "ghost")
    assert code == 1 and "allowed route 'ghost' does not exist" in err


def test_key_outside_refused_and_show_lists_keys_left_outside(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    apply(capsys, tmp_path, BASE)
    gw_json(capsys, "workspaces", "create", "team-a", "--allow-provider", "sim-a")
    code, _, err = gw(capsys, "keys", "create", "-w", "team-a", "--name", "x",
                      "--provider", "sim-b")  # fmt: skip
    assert code == 1
    assert "workspace 'team-a' allows providers sim-a; the key targets provider 'sim-b'" in err
    assert "Traceback" not in err

    ok = gw_json(capsys, "keys", "create", "-w", "team-a", "--name", "ok", "--provider", "sim-a",
                 "--models", "claude-*")  # fmt: skip
    key_id = ok["id"]
    # Nothing outside yet.
    shown = gw_json(capsys, "workspaces", "show", "team-a")
    assert shown["keys_outside_access"] == []

    # Narrowing is allowed; show then names the key and why.
    gw_json(capsys, "workspaces", "update", "team-a", "--allow-provider", "sim-b",
            "--allow-model", "claude-haiku-*")  # fmt: skip
    shown = gw_json(capsys, "workspaces", "show", "team-a")
    assert shown["keys_outside_access"] == [f"{key_id} (provider sim-a; models claude-*)"]
    code, stdout, _ = gw(capsys, "workspaces", "show", "team-a")
    assert code == 0 and f"{key_id} (provider sim-a; models claude-*)" in stdout


def test_apply_manages_the_lists(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    text = (
        BASE
        + """
workspaces:
  - name: team-a
    allowed_routes: [main]
    allowed_models: ["claude-sonnet-*", "claude-sonnet-*"]
keys:
  - {workspace: team-a, name: ci, route: main, models: ["claude-sonnet-4-5*"]}
"""
    )
    out = apply(capsys, tmp_path, text)
    assert "allowed_routes: main" in out and "allowed_models: claude-sonnet-*" in out
    ws = gw_json(capsys, "workspaces", "show", "team-a")
    assert ws["allowed_routes"] == ["main"] and ws["allowed_models"] == ["claude-sonnet-*"]
    # The file is normalised as the server stores it: the same file plans nothing.
    assert "No changes." in apply(capsys, tmp_path, text)

    wider = text.replace('["claude-sonnet-*", "claude-sonnet-*"]', '["claude-*"]')
    wider = wider.replace("allowed_routes: [main]", "allowed_providers: [sim-a, sim-b]")
    out = apply(capsys, tmp_path, wider)
    assert "~ workspace team-a" in out
    assert "allowed_models: claude-sonnet-* → claude-*" in out
    assert "allowed_routes: main → any" in out
    assert "allowed_providers: any → sim-a, sim-b" in out
    ws = gw_json(capsys, "workspaces", "show", "team-a")
    assert ws["allowed_providers"] == ["sim-a", "sim-b"] and ws["allowed_routes"] == []


def test_apply_refuses_lists_naming_what_the_file_does_not_define(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(
        BASE + "workspaces:\n  - {name: w, allowed_routes: [nope], allowed_models: [1]}\n"
    )
    code, _, err = gw(capsys, "apply", "-f", str(path), "--dry-run")
    assert code != 0
    assert "workspaces[0].allowed_models[0]: expected text" in err
    path.write_text(BASE + "workspaces:\n  - {name: w, allowed_routes: [nope]}\n")
    code, _, err = gw(capsys, "apply", "-f", str(path), "--dry-run")
    assert code != 0 and "workspace w: allowed route 'nope' is not in the file's routes" in err
