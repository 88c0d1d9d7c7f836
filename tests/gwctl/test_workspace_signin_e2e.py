"""A workspace's sign-in settings through gwctl against a real control plane: the flags of
``workspaces create|update|show``, managed settings files (and their errors), and the same
fields in ``gwctl apply -f``."""

from __future__ import annotations

import hashlib
import io
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from gwctl.main import main
from tests.gwctl.cli import fields, gw, gw_json, point_gwctl_at, unique

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("gwctl_env")]

POLICY = {"env": {"CLAUDE_CODE_ENABLE_GATEWAY_MODEL_DISCOVERY": "1"}, "permissions": {"deny": []}}


@pytest.fixture(scope="module", autouse=True)
def objects(control_plane: str) -> None:
    """A provider and a route the member targets can name."""
    mp = pytest.MonkeyPatch()
    point_gwctl_at(mp, control_plane)
    try:
        assert main(["providers", "create", "sim", "--kind", "simulator", "-o", "json"]) == 0
        assert (
            main(
                ["routes", "create", "main", "--mode", "fallback", "--targets", "sim", "-o", "json"]
            )
            == 0
        )
    finally:
        mp.undo()


@pytest.fixture(autouse=True)
def drop_setup_output(capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()  # what the module's fixture printed


def canonical_checksum(doc: dict[str, Any]) -> str:
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def test_sign_in_flags_round_trip(capsys: pytest.CaptureFixture[str]) -> None:
    name = unique("ws")
    ws = gw_json(
        capsys, "workspaces", "create", name, "--sso-group", "platform-eng", "--sso-group", "*",
        "--sso-priority", "10", "--member-budget", "50/day", "--member-budget", "500/month",
        "--member-rpm", "120", "--member-max-parallel", "4", "--member-provider", "sim",
    )  # fmt: skip
    assert ws["sso_groups"] == ["platform-eng", "*"] and ws["sso_priority"] == 10
    member = ws["member_limits"]
    assert {(b["amount_micros"], b["period"]) for b in member["budgets"]} == {
        (50_000_000, "PERIOD_DAY"),
        (500_000_000, "PERIOD_MONTH"),
    }
    assert member["rpm"] == 120 and member["max_parallel"] == 4 and member["tpm"] == 0
    assert ws["member_provider"] == "sim" and ws["member_route"] == ""

    code, out, err = gw(capsys, "workspaces", "show", name)
    assert code == 0, err
    shown = fields(out)
    assert shown["sso groups"] == "platform-eng, * (any signed-in user)"
    assert shown["sso priority"] == "10"
    assert shown["member limits"] == "$50/day, $500/month, rpm 120, max parallel 4"
    assert shown["member target"] == "provider:sim"
    assert shown["managed settings"] == "none (developers get 404)"

    ws = gw_json(capsys, "workspaces", "update", name, "--member-rpm", "60")  # only that
    assert ws["member_limits"]["rpm"] == 60 and len(ws["member_limits"]["budgets"]) == 2
    assert ws["sso_groups"] == ["platform-eng", "*"] and ws["member_provider"] == "sim"

    ws = gw_json(capsys, "workspaces", "update", name, "--sso-group", "data", "--member-route",
                 "main", "--clear-member-budgets", "--sso-priority", "0")  # fmt: skip
    assert ws["sso_groups"] == ["data"] and ws["sso_priority"] == 0
    assert ws["member_route"] == "main" and ws["member_provider"] == ""  # one target at a time
    assert ws["member_limits"]["budgets"] == [] and ws["member_limits"]["rpm"] == 60

    ws = gw_json(capsys, "workspaces", "update", name, "--clear-sso-groups",
                 "--clear-member-target")  # fmt: skip
    assert ws["sso_groups"] == [] and ws["member_route"] == "" and ws["member_provider"] == ""
    shown = fields(gw(capsys, "workspaces", "show", name)[1])
    assert shown["sso groups"] == "- (no developer signs in here)"
    assert shown["sso priority"] == "100 (default)"
    assert shown["member target"] == "- (the sign-in default target)"
    listed = gw(capsys, "workspaces", "list")[1]
    assert "SSO GROUPS" in listed.splitlines()[0]


def test_sign_in_flag_refusals(capsys: pytest.CaptureFixture[str]) -> None:
    name = unique("ws")
    gw_json(capsys, "workspaces", "create", name)
    for argv, words in (
        (["--sso-group", "a", "--clear-sso-groups"], "contradict"),
        (["--member-budget", "5/day", "--clear-member-budgets"], "contradict"),
        (["--member-budget", "5/day", "--member-budget", "6/day"], "one --member-budget per"),
        (["--member-provider", "sim", "--member-route", "main"], "not allowed with"),
        (["--member-rpm", "-1"], "invalid number"),
    ):
        code, _, err = gw(capsys, "workspaces", "update", name, *argv)
        assert code == 2 and words in err, (argv, err)
    code, _, err = gw(capsys, "workspaces", "update", name, "--member-provider", "nope")
    assert code == 1 and "member_provider 'nope' not found" in err
    code, _, err = gw(capsys, "workspaces", "update", name, "--sso-group", " padded ")
    assert code == 1 and "invalid sso group" in err and "Traceback" not in err


def test_managed_settings_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    name = unique("ws")
    gw_json(capsys, "workspaces", "create", name)
    policy = tmp_path / "platform-policy.json"
    policy.write_text(json.dumps(POLICY, indent=4), encoding="utf-8")
    ws = gw_json(capsys, "workspaces", "update", name, "--managed-settings-file", str(policy))
    checksum = canonical_checksum(POLICY)
    assert ws["managed_settings_checksum"] == checksum
    assert json.loads(ws["managed_settings_json"]) == POLICY
    assert ws["managed_settings_updated_at_ms"] > 0

    code, out, err = gw(capsys, "workspaces", "show", name, "--show-managed-settings")
    assert code == 0, err
    size = len(ws["managed_settings_json"].encode())
    head, _, body = out.partition("\nmanaged settings:\n")
    assert fields(head)["managed settings"].startswith(f"sha256 {checksum[:16]}… ({size} bytes")
    assert json.loads(body) == POLICY

    # The same policy written differently (from stdin here) is the same policy.
    sys.stdin = io.StringIO(json.dumps(POLICY, separators=(",", ":")))
    again = gw_json(capsys, "workspaces", "update", name, "--managed-settings-file", "-")
    assert again["managed_settings_checksum"] == checksum
    assert again["managed_settings_updated_at_ms"] == ws["managed_settings_updated_at_ms"]

    cleared = gw_json(capsys, "workspaces", "update", name, "--clear-managed-settings")
    assert cleared["managed_settings_json"] == "" and cleared["managed_settings_checksum"] == ""
    assert fields(gw(capsys, "workspaces", "show", name)[1])["managed settings"].startswith("none")


def test_managed_settings_file_errors_name_the_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    name = unique("ws")
    gw_json(capsys, "workspaces", "create", name)
    bad = tmp_path / "policy.json"
    bad.write_text('{\n  "env": {\n    "A": "1",\n  }\n}\n', encoding="utf-8")
    code, out, err = gw(capsys, "workspaces", "update", name, "--managed-settings-file", str(bad))
    assert code == 1 and out == ""
    assert err.startswith(f"error: {bad}: not valid JSON: ")
    assert "line 4, column 3" in err

    code, _, err = gw(capsys, "workspaces", "update", name, "--managed-settings-file",
                      str(tmp_path / "missing.json"))  # fmt: skip
    assert code == 1 and "cannot read the managed settings file" in err and "missing.json" in err

    bad.write_text('["not", "an", "object"]', encoding="utf-8")
    code, _, err = gw(capsys, "workspaces", "create", unique("ws"), "--managed-settings-file",
                      str(bad))  # fmt: skip
    assert code == 1 and f"{bad}: managed settings must be a JSON object" in err
    assert "not a JSON list" in err

    # Valid JSON the control plane refuses: its reason, with the file's name.
    bad.write_text('{"env": {"CLAUDE_CODE_ENABLE_TELEMETRY": 1}}', encoding="utf-8")
    code, _, err = gw(capsys, "workspaces", "update", name, "--managed-settings-file", str(bad))
    assert code == 1
    assert err.startswith(f"error: {bad}: managed settings: env value")
    assert "must be a string" in err
    assert gw_json(capsys, "workspaces", "show", name)["managed_settings_json"] == ""

    code, _, err = gw(capsys, "workspaces", "update", name, "--managed-settings-file", str(bad),
                      "--clear-managed-settings")  # fmt: skip
    assert code == 2 and "contradict" in err


APPLY_FILE = """
providers:
  - name: sim
    kind: simulator
routes:
  - name: main
    targets: [sim]
workspaces:
  - name: {name}
    sso_groups: [platform-eng]
    sso_priority: 5
    member_limits:
      budgets: ["50/day"]
      rpm: 120
    member_provider: sim
    managed_settings_file: policy/platform.json
"""


def test_apply_manages_the_sign_in_fields(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    name = unique("ws")
    (tmp_path / "policy").mkdir()
    policy = tmp_path / "policy" / "platform.json"
    policy.write_text(json.dumps(POLICY, indent=2), encoding="utf-8")
    config = tmp_path / "gateway.yaml"
    config.write_text(APPLY_FILE.format(name=name), encoding="utf-8")
    checksum = canonical_checksum(POLICY)

    code, out, err = gw(capsys, "apply", "-f", str(config), "--yes")
    assert code == 0, err
    assert f"+ workspace {name}" in out
    assert "    sso_groups: platform-eng" in out and "    sso_priority: 5" in out
    assert "    member_limits.budgets: $50/day" in out and "    member_limits.rpm: 120" in out
    assert "    member_target: provider:sim" in out
    assert f"    managed_settings: sha256 {checksum[:16]}…" in out
    ws = gw_json(capsys, "workspaces", "show", name)
    assert ws["managed_settings_checksum"] == checksum and ws["member_provider"] == "sim"

    # Reformatting the policy is no change; changing it is one, shown by checksum.
    policy.write_text(json.dumps(POLICY), encoding="utf-8")
    code, out, err = gw(capsys, "apply", "-f", str(config), "--yes")
    assert code == 0 and "No changes." in out, out + err
    changed = {**POLICY, "model": "claude-sonnet-4-5"}
    policy.write_text(json.dumps(changed), encoding="utf-8")
    config.write_text(
        APPLY_FILE.format(name=name).replace("member_provider: sim", "member_route: main"),
        encoding="utf-8",
    )
    code, out, err = gw(capsys, "apply", "-f", str(config), "--yes")
    assert code == 0, err
    new = canonical_checksum(changed)
    assert f"~ workspace {name}" in out
    assert f"    managed_settings: sha256 {checksum[:16]}… " in out and f"sha256 {new[:16]}…" in out
    assert "    member_target: provider:sim → route:main" in out
    ws = gw_json(capsys, "workspaces", "show", name)
    assert ws["managed_settings_checksum"] == new
    assert ws["member_route"] == "main" and ws["member_provider"] == ""


def test_apply_refuses_a_bad_policy_file_with_its_path(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "policy").mkdir()
    (tmp_path / "policy" / "platform.json").write_text('{"env": }', encoding="utf-8")
    config = tmp_path / "gateway.yaml"
    config.write_text(APPLY_FILE.format(name="bad-policy"), encoding="utf-8")
    code, out, err = gw(capsys, "apply", "-f", str(config), "--dry-run")
    assert code == 1 and out == ""
    assert "workspaces[0].managed_settings_file: policy/platform.json: not valid JSON" in err
    assert "line 1, column 9" in err

    (tmp_path / "policy" / "platform.json").write_text("{}", encoding="utf-8")
    config.write_text(
        APPLY_FILE.format(name="bad-target").replace("member_provider: sim", "member_provider: x"),
        encoding="utf-8",
    )
    code, _, err = gw(capsys, "apply", "-f", str(config), "--dry-run")
    assert code == 1 and "member provider 'x' is not in the file's providers" in err
