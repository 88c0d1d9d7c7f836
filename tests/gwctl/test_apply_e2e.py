"""``gwctl apply`` and ``gwctl routes`` against a real control plane, on SQLite and PostgreSQL.

Each test gets its own control plane on an empty database (``db_url``), run in a background
thread; ``gwctl.main.main`` runs on the test thread, as in test_e2e.py.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.gwctl.cli import gw, gw_json

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("gwctl_env")]


@pytest.fixture
def control_plane(control_plane_per_backend: str) -> str:
    """A control plane per test, on every database backend."""
    return control_plane_per_backend


EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "gateway.yaml"


@pytest.fixture
def gateway_file(tmp_path: Path) -> Path:
    path = tmp_path / "gateway.yaml"
    shutil.copy(EXAMPLE, path)
    shutil.copy(EXAMPLE.parent / "platform-policy.json", tmp_path)  # named relative to the file
    return path


def test_apply_example_then_nothing_then_an_update(
    capsys: pytest.CaptureFixture[str], gateway_file: Path
) -> None:
    code, stdout, err = gw(capsys, "apply", "-f", str(gateway_file), "--yes")
    assert code == 0, err
    assert "Plan: 10 to create, 0 to update, 0 to delete." in stdout
    assert stdout.index("+ provider anthropic") < stdout.index("+ route sonnet-resilient")
    assert stdout.index("+ route batch-split") < stdout.index("+ workspace platform")
    assert stdout.index("+ workspace data-science") < stdout.index("+ key platform/alice")
    secrets = [line.split()[-1] for line in stdout.splitlines() if "secret: gw-" in line]
    assert len(secrets) == 3 and all(s.startswith("gw-") for s in secrets)
    assert "only time" in err

    # Everything is there, as the file says.
    route = gw_json(capsys, "routes", "show", "sonnet-resilient")
    assert [(t["provider"], t["model"]) for t in route["targets"]] == [
        ("anthropic", ""),
        ("bedrock-eu", "eu.anthropic.claude-sonnet-4-5-20250929-v1:0"),
    ]
    assert route["timeout_first_byte_ms"] == 60_000 and route["breaker_cooldown_s"] == 30
    assert gw_json(capsys, "routes", "show", "batch-split")["cache_ttl_s"] == 600
    ws = gw_json(capsys, "workspaces", "show", "platform")
    assert sorted(ws["budgets"]) == ["$150/day", "$2,000/month"]
    keys = gw_json(capsys, "keys", "list", "-w", "platform")
    assert {k["name"] for k in keys} == {"alice", "claude-code-ci"}

    # Second apply: nothing to do, and no secret is printed again.
    code, stdout, err = gw(capsys, "apply", "-f", str(gateway_file))
    assert code == 0, err
    assert stdout.strip() == "No changes."
    assert "gw-" not in stdout

    # A changed budget: one field-level update, applied; the key keeps its id.
    alice_id = next(k["id"] for k in keys if k["name"] == "alice")
    text = gateway_file.read_text().replace('["25/day", "300/month"]', '["40/day", "300/month"]')
    gateway_file.write_text(text)
    code, stdout, err = gw(capsys, "apply", "-f", str(gateway_file), "--dry-run")
    assert code == 0, err
    assert f"~ key platform/alice ({alice_id})" in stdout
    assert "limits.budgets: $25/day, $300/month → $40/day, $300/month" in stdout
    assert "Plan: 0 to create, 1 to update, 0 to delete." in stdout
    assert "dry run" in err
    assert gw_json(capsys, "keys", "show", alice_id)["budgets"] == ["$25/day", "$300/month"]

    code, stdout, err = gw(capsys, "apply", "-f", str(gateway_file))
    assert code == 2 and "--yes" in err  # stdin is not a terminal: no silent apply
    code, stdout, err = gw(capsys, "apply", "-f", str(gateway_file), "--yes")
    assert code == 0, err
    assert "updated key platform/alice" in stdout and "gw-" not in stdout
    assert gw_json(capsys, "keys", "show", alice_id)["budgets"] == ["$40/day", "$300/month"]
    assert gw(capsys, "apply", "-f", str(gateway_file))[1].strip() == "No changes."


def test_apply_prune_and_dry_run(capsys: pytest.CaptureFixture[str], gateway_file: Path) -> None:
    assert gw(capsys, "apply", "-f", str(gateway_file), "--yes")[0] == 0
    # Things the file does not know about.
    assert gw(capsys, "providers", "create", "sim", "--kind", "simulator")[0] == 0
    assert gw(capsys, "routes", "create", "extra", "--mode", "fallback", "--targets", "sim")[0] == 0
    assert gw(capsys, "workspaces", "create", "scratch")[0] == 0
    stray = gw_json(capsys, "keys", "create", "-w", "scratch", "--name", "tmp", "--route", "extra")
    capsys.readouterr()

    code, stdout, _ = gw(capsys, "apply", "-f", str(gateway_file))
    assert code == 0 and "No changes." in stdout
    assert "--prune deletes them" in stdout and "route extra" in stdout

    before = gw_json(capsys, "routes", "list")
    code, stdout, err = gw(capsys, "apply", "-f", str(gateway_file), "--prune", "--dry-run")
    assert code == 0, err
    lines = [line for line in stdout.splitlines() if line.startswith("- ")]
    assert lines == [
        f"- key scratch/tmp ({stray['id']})",
        "- workspace scratch",
        "- route extra",
        "- provider sim",
    ]
    assert gw_json(capsys, "routes", "list") == before  # the dry run changed nothing

    doc = gw_json(capsys, "apply", "-f", str(gateway_file), "--prune", "--yes")
    assert doc["applied"] is True and doc["created_keys"] == []
    assert [(c["action"], c["kind"], c["name"]) for c in doc["changes"]] == [
        ("delete", "key", "scratch/tmp"),
        ("delete", "workspace", "scratch"),
        ("delete", "route", "extra"),
        ("delete", "provider", "sim"),
    ]
    assert {r["name"] for r in gw_json(capsys, "routes", "list")} == {
        "sonnet-resilient",
        "batch-split",
    }
    assert "scratch" not in {w["name"] for w in gw_json(capsys, "workspaces", "list")}
    code, stdout, _ = gw(capsys, "apply", "-f", str(gateway_file), "--prune")
    assert code == 0 and stdout.strip() == "No changes."


def test_apply_json_creates_keys_once_and_manages_only_its_sections(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert gw(capsys, "workspaces", "create", "team")[0] == 0
    assert gw(capsys, "providers", "create", "sim", "--kind", "simulator")[0] == 0
    path = tmp_path / "keys.yaml"
    path.write_text(
        "keys:\n"
        "  - {workspace: team, name: bot, provider: sim, limits: {budgets: 50/day, rpm: 5}}\n"
    )
    doc = gw_json(capsys, "apply", "-f", str(path), "--yes", "--prune")
    (created,) = doc["created_keys"]
    assert created["key"].startswith("gw-") and created["name"] == "bot"
    key = gw_json(capsys, "keys", "show", created["id"])
    assert key["budgets"] == ["$50/day"] and key["limits"]["rpm"] == 5
    # No workspaces/providers sections: the workspace and the provider are left alone.
    doc = gw_json(capsys, "apply", "-f", str(path), "--prune")
    assert doc["changes"] == [] and doc["created_keys"] == []
    assert "team" in {w["name"] for w in gw_json(capsys, "workspaces", "list")}


def test_the_control_plane_fills_in_its_defaults(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """gwctl holds none of them: the plan compares the stored form Admin.Validate gives."""
    path = tmp_path / "gateway.yaml"
    path.write_text(
        "providers:\n  - {name: a, kind: anthropic}\n"
        "  - {name: v, kind: vertex, base_url: 'https://x.example/v1/',"
        " options: {project: my-project, timeout_read_s: 300}}\n"
    )
    code, stdout, err = gw(capsys, "apply", "-f", str(path), "--yes")
    assert code == 0, err
    assert "base_url: https://api.anthropic.com" in stdout  # the plan shows what is stored
    v = gw_json(capsys, "providers", "show", "v")
    assert v["base_url"] == "https://x.example/v1"
    assert v["options"] == {"project": "my-project", "region": "global", "timeout_read_s": "300"}
    assert gw(capsys, "apply", "-f", str(path))[1].strip() == "No changes."


def test_apply_reports_every_refusal_before_changing_anything(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert gw(capsys, "providers", "create", "sim", "--kind", "simulator")[0] == 0
    path = tmp_path / "gateway.yaml"
    path.write_text(
        "providers:\n  - {name: sim, kind: anthropic}\n"
        "  - {name: br, kind: bedrock, options: {region: mars}}\n"
        "  - {name: ok, kind: simulator}\n"
        "workspaces:\n  - {name: w, timezone: Mars/Olympus}\n"
    )
    code, stdout, err = gw(capsys, "apply", "-f", str(path), "--yes")
    assert code == 1 and stdout == ""
    assert "the control plane would refuse the file (nothing was changed)" in err
    assert "provider sim: provider 'sim' is simulator on the control plane but anthropic" in err
    assert "provider br: invalid region 'mars' for a bedrock provider" in err
    assert "workspace w: " in err and "provider ok" not in err
    assert [p["name"] for p in gw_json(capsys, "providers", "list")] == ["sim"]


def test_apply_refuses_bad_files_and_changes_nothing(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("providers:\n  - name: sim\n    kind: simulator\n  routes: [\n")
    code, stdout, err = gw(capsys, "apply", "-f", str(path), "--yes")
    assert code == 1 and "invalid YAML: line" in err and stdout == ""

    path.write_text(
        "providers:\n  - {name: sim, kind: simulator}\n"
        "routes:\n  - {name: a, targets: [sim]}\n  - {name: b, targts: [sim]}\n"
    )
    code, stdout, err = gw(capsys, "apply", "-f", str(path), "--yes")
    assert code == 1
    assert "routes[1].targts: unknown field; did you mean targets?" in err
    assert gw_json(capsys, "providers", "list") == []  # nothing was applied

    path.write_text("routes:\n  - {name: a, targets: [ghost]}\n")
    code, _, err = gw(capsys, "apply", "-f", str(path), "--yes")
    # Refused by the control plane's dry run, before any change.
    assert code == 1 and "would refuse the file (nothing was changed)" in err
    assert "route a: route target provider(s) not found: ghost" in err

    code, _, err = gw(capsys, "apply", "-f", str(tmp_path / "missing.yaml"))
    assert code == 1 and "cannot read" in err


def test_routes_cli_round_trip(capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("p1", "p2"):
        assert gw(capsys, "providers", "create", name, "--kind", "simulator")[0] == 0
    r = gw_json(capsys, "routes", "create", "main", "--mode", "loadbalance",
                "--targets", "p1,p2", "--weights", "3,1", "--retries", "2",
                "--retry-on", "429,529", "--timeout-connect", "2.5", "--timeout-first-byte", "30",
                "--timeout-idle", "1m", "--cache-ttl", "300", "--cache-sampled",
                "--breaker-failures", "4", "--breaker-cooldown", "45",
                "--target-model", "p2=claude-sonnet-4-5@20250929")  # fmt: skip
    assert [(t["provider"], t["weight"], t["model"]) for t in r["targets"]] == [
        ("p1", 3, ""),
        ("p2", 1, "claude-sonnet-4-5@20250929"),
    ]
    assert (r["timeout_connect_ms"], r["timeout_first_byte_ms"], r["timeout_idle_ms"]) == (
        2500,
        30_000,
        60_000,
    )
    assert (r["cache_ttl_s"], r["cache_sampled"], r["breaker_failures"]) == (300, True, 4)
    assert r["retry_on"] == [429, 529] and r["breaker_cooldown_s"] == 45

    # Weights alone: the targets (and their model overrides) stay, re-weighted.
    r = gw_json(capsys, "routes", "update", "main", "--weights", "1,5", "--no-cache-sampled")
    assert [(t["provider"], t["weight"], t["model"]) for t in r["targets"]] == [
        ("p1", 1, ""),
        ("p2", 5, "claude-sonnet-4-5@20250929"),
    ]
    assert r["cache_sampled"] is False and r["retries"] == 2
    r = gw_json(capsys, "routes", "update", "main", "--target-model", "p2=")
    assert [t["model"] for t in r["targets"]] == ["", ""]

    code, stdout, _ = gw(capsys, "routes", "show", "main")
    assert code == 0 and "p1×1, p2×5" in stdout and "connect 2.5s" in stdout
    code, stdout, _ = gw(capsys, "routes", "list")
    assert code == 0 and "main" in stdout and "300s" in stdout

    code, _, err = gw(capsys, "routes", "update", "main", "--retries", "11")
    assert code == 1 and "retries must be between 0 and 10" in err
    code, _, err = gw(capsys, "routes", "update", "main", "--cache-ttl", "8d")
    assert code == 1 and "7 days" in err
    code, _, err = gw(capsys, "providers", "delete", "p2", "--yes")
    assert code == 1 and "route 'main'" in err

    code, _, err = gw(capsys, "routes", "delete", "main")
    assert code == 2 and "--yes" in err
    assert gw_json(capsys, "routes", "delete", "main", "--yes") == {"deleted": "main"}
    assert gw_json(capsys, "routes", "list") == []
