"""Rendering: money from micros, tables, JSON documents, and the CLI end to end over a fake client.

This module is long because it covers every renderer (money, tables, JSON) and then the CLI end to
end over the same fake client, so a format and its use are read together."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path
from typing import Any

import grpc
import orjson
import pytest

from gwapi.v1 import common_pb2, telemetry_pb2
from gwclient.errors import ClientError
from gwctl import main as gwctl_main
from gwctl import output as out
from tests.fakes.admin_client import FakeAdminClient
from tests.gwctl.cli import gw
from tests.gwctl.cli_data import SECRET, sample_event, sample_key

# gwctl's client is this test's fresh fake control plane (the ``fake_cp`` fixture).
pytestmark = pytest.mark.usefixtures("fake_cp")


@pytest.mark.parametrize(
    ("micros", "text"),
    [
        (12_345, "0.012345"),
        (0, "0.000000"),
        (1, "0.000001"),
        (1_500_000, "1.500000"),
        (-1, "-0.000001"),
        (123_456_789_012_345, "123456789.012345"),
        (2**53 + 1, "9007199254.740993"),
    ],
)
def test_format_usd_is_exact(micros: int, text: str) -> None:
    assert out.format_usd(micros) == text


def test_format_usd_rounds_half_up_on_integers() -> None:
    assert out.format_usd(1_234_567, places=2) == "1.23"
    assert out.format_usd(1_235_000, places=2) == "1.24"
    assert out.format_usd(9_995_000, places=2) == "10.00"
    assert out.format_usd(1_499_999, places=0) == "1"


def test_format_money_and_budget() -> None:
    assert out.format_money(50_000_000) == "$50"
    assert out.format_money(1_000_500_000) == "$1,000.50"
    assert out.format_money(1) == "$0.000001"
    day = common_pb2.Budget(amount_micros=50_000_000, period=common_pb2.PERIOD_DAY)
    assert out.format_budget(day) == "$50/day"
    life = common_pb2.Budget(amount_micros=100_000_000, period=common_pb2.PERIOD_LIFETIME)
    assert out.format_budget(life) == "$100/lifetime"


def test_key_status() -> None:
    assert out.key_status(sample_key(), at_ms=1) == "active"
    assert out.key_status(sample_key(expires_at_ms=10), at_ms=10) == "expired"
    assert out.key_status(sample_key(expires_at_ms=10, revoked_at_ms=5), at_ms=1) == "revoked"


def test_message_dict_keeps_ints_and_zero_fields() -> None:
    doc = out.message_dict(telemetry_pb2.UsageRow(group="m", requests=3, cost_micros=2**40))
    assert doc["requests"] == 3
    assert doc["cost_micros"] == 2**40
    assert doc["errors"] == 0  # zero values are present, so scripts need no defaults


def test_render_table_aligns() -> None:
    text = out.render_table(["NAME", "N"], [["a", 1], ["long-name", 100]], right=[1])
    assert text.splitlines() == ["NAME         N", "a            1", "long-name  100"]


def test_tables_fields_and_json_write_no_raw_controls(capsys: pytest.CaptureFixture[str]) -> None:
    text = out.render_table(["MODEL", "N"], [["m\x1b[2J", 1], ["a\rb", 22]], right=[1])
    assert text.splitlines() == ["MODEL      N", "m\\x1b[2J   1", "a\\rb      22"]
    out.print_fields([("model", "m\x07\u202e")])
    out.print_json({"model": "m\x1b\x7f\x9b\u202e\u2028"})
    printed = capsys.readouterr().out
    assert printed.startswith("model: m\\x07\\u202e\n")
    assert '"m\\u001b\\u007f\\u009b\\u202e\\u2028"' in printed
    assert orjson.loads(printed.split("\n", 1)[1]) == {"model": "m\x1b\x7f\x9b\u202e\u2028"}


# ---- the CLI over a fake client --------------------------------------------------------------


def test_usage_json_has_exact_costs_and_a_total(
    capsys: pytest.CaptureFixture[str], fake_cp: FakeAdminClient
) -> None:
    fake_cp.usage["model"] = [
        telemetry_pb2.UsageRow(group="claude-sonnet-4-5", requests=2, input_tokens=10,
                               cost_micros=12_345),
        telemetry_pb2.UsageRow(group="claude-haiku-4-5", requests=1, output_tokens=5,
                               cost_micros=1),
    ]  # fmt: skip
    code, stdout, _ = gw(capsys, "usage", "--by", "model", "--since", "24h", "-o", "json")
    assert code == 0
    doc = orjson.loads(stdout)  # exactly one document
    assert [r["cost_usd"] for r in doc["rows"]] == ["0.012345", "0.000001"]
    assert doc["total"]["cost_usd"] == "0.012346"
    assert doc["total"]["requests"] == 3
    assert doc["group_by"] == "model"
    (_, (kwargs,)) = next(c for c in fake_cp.calls if c[0] == "query_usage")
    assert kwargs["group_by"] == "model" and kwargs["since_ms"] > 0


def test_usage_table_ends_with_total(
    capsys: pytest.CaptureFixture[str], fake_cp: FakeAdminClient
) -> None:
    fake_cp.usage["workspace"] = [
        telemetry_pb2.UsageRow(group="team-a", requests=1200, cache_read_input_tokens=1_000_000,
                               cost_micros=2_500_000),
        telemetry_pb2.UsageRow(group="team-b", requests=1, cost_micros=12_345,
                               web_search_requests=1_234, web_fetch_requests=2),
    ]  # fmt: skip
    code, stdout, _ = gw(capsys, "usage", "--by", "workspace")
    assert code == 0
    lines = stdout.splitlines()
    assert lines[0].split()[:3] == ["WORKSPACE", "REQUESTS", "ERRORS"]
    assert lines[0].split()[-3:] == ["SEARCHES", "COST", "USD"]
    assert lines[1].split()[0] == "team-a" and "1,000,000" in lines[1]
    assert lines[2].split()[-2:] == ["1,234", "0.012345"]
    assert lines[-1].split()[0] == "TOTAL"
    assert lines[-1].split()[1] == "1,201"
    assert lines[-1].split()[-2] == "1,234"
    assert lines[-1].endswith("2.512345")
    code, stdout, _ = gw(capsys, "usage", "--by", "workspace", "-o", "json")
    total = orjson.loads(stdout)["total"]
    assert (total["web_search_requests"], total["web_fetch_requests"]) == (1_234, 2)


def test_usage_rejects_unknown_grouping(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = gw(capsys, "usage", "--by", "colour")
    assert code == 2
    assert "metadata.FIELD" in err
    assert gw(capsys, "usage", "--by", "metadata.team")[0] == 0


def test_output_flag_before_or_after_the_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    _, before, _ = gw(capsys, "-o", "json", "workspaces", "list")
    _, after, _ = gw(capsys, "workspaces", "list", "-o", "json")
    assert orjson.loads(before) == orjson.loads(after)
    ws = orjson.loads(after)[0]
    assert ws["budgets"] == ["$1,000.50/month"]
    assert ws["limits"]["budgets"][0]["amount_micros"] == 1_000_500_000
    assert ws["limits"]["budgets"][0]["period"] == "PERIOD_MONTH"


def test_control_plane_and_token_flags_reach_the_client(
    capsys: pytest.CaptureFixture[str], fake_cp: FakeAdminClient
) -> None:
    _, _, err = gw(capsys, "workspaces", "list", "--control-plane", "10.0.0.1:1", "--token", "t2")
    assert fake_cp.calls[0] == ("__init__", ("10.0.0.1:1", "t2"))
    # Still accepted, but said loudly: `ps` and shell history show a flag's value.
    assert "warning: --token puts the admin token on the command line" in err
    assert "TOLLGATE_ADMIN_TOKEN or use --token-file PATH" in err and "t2" not in err


def inits(fake_cp: FakeAdminClient) -> list[Any]:
    return [args for name, args in fake_cp.calls if name == "__init__"]


def test_token_from_a_file_or_the_environment_without_a_warning(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    fake_cp: FakeAdminClient,
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("tga-from-file\n")
    token_file.chmod(0o600)
    monkeypatch.setenv("TOLLGATE_ADMIN_TOKEN", "from-env")
    _, _, err = gw(capsys, "workspaces", "list", "--control-plane", "h:1")
    assert inits(fake_cp)[-1] == ("h:1", "from-env") and "warning" not in err
    _, _, err = gw(
        capsys, "workspaces", "list", "--control-plane", "h:1", "--token-file", str(token_file)
    )
    assert inits(fake_cp)[-1] == ("h:1", "tga-from-file") and "warning" not in err
    monkeypatch.setenv("TOLLGATE_ADMIN_TOKEN_FILE", str(token_file))
    gw(capsys, "workspaces", "list", "--control-plane", "h:1")
    assert inits(fake_cp)[-1] == ("h:1", "tga-from-file")
    token_file.chmod(0o644)
    code, _, err = gw(capsys, "workspaces", "list", "--control-plane", "h:1")
    assert code == 2 and "readable by other users (mode 0644)" in err and "tga-from-file" not in err


def test_workspace_update_sends_only_given_fields(
    capsys: pytest.CaptureFixture[str], fake_cp: FakeAdminClient
) -> None:
    code, _, _ = gw(capsys, "workspaces", "update", "team-a", "--budget", "20/week", "--rpm", "0",
                     "--description", "")  # fmt: skip
    assert code == 0
    _, (ws, paths) = fake_cp.calls[-1]
    assert paths == ["limits.budgets", "limits.rpm", "description"]
    assert ws.limits.budgets[0].amount_micros == 20_000_000


def test_workspace_update_without_flags_is_a_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, _, err = gw(capsys, "workspaces", "update", "team-a")
    assert code == 2
    assert err.startswith("error: nothing to update")


def test_bad_budget_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = gw(capsys, "workspaces", "create", "x", "--budget", "1.0000001/day")
    assert code == 2
    assert "6 decimal places" in err


def test_key_create_table_shows_secret_once_with_warning(
    capsys: pytest.CaptureFixture[str], fake_cp: FakeAdminClient
) -> None:
    code, stdout, err = gw(capsys, "keys", "create", "--workspace", "team-a", "--name", "alice",
                            "--provider", "anthropic", "--budget", "50/day", "--expires", "30d",
                            "--models", "claude-sonnet-*, claude-haiku-*")  # fmt: skip
    assert code == 0
    assert SECRET in stdout
    assert "only time" in err
    _, (request,) = fake_cp.calls[-1]
    assert request.ttl_seconds == 30 * 86400
    assert list(request.models) == ["claude-sonnet-*", "claude-haiku-*"]
    assert request.limits.budgets[0].amount_micros == 50_000_000


def test_key_create_json_has_id_and_key(capsys: pytest.CaptureFixture[str]) -> None:
    code, stdout, _ = gw(capsys, "keys", "create", "-w", "team-a", "--name", "a", "--route", "r",
                          "-o", "json")  # fmt: skip
    assert code == 0
    doc = orjson.loads(stdout)
    assert doc["id"] == "key_abc123"
    assert doc["key"] == SECRET
    assert doc["status"] == "active"


def test_key_create_needs_a_target(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = gw(capsys, "keys", "create", "-w", "team-a", "--name", "a")
    assert code == 2
    assert "--provider" in err


def test_key_list_never_shows_secrets(
    capsys: pytest.CaptureFixture[str], fake_cp: FakeAdminClient
) -> None:
    code, stdout, _ = gw(capsys, "keys", "list", "--all")
    assert code == 0
    assert SECRET not in stdout
    assert "gw-Sup3r…" in stdout
    assert "revoked" in stdout and "active" in stdout
    assert fake_cp.calls[-1] == ("list_keys", ("", True))


def test_key_update_target_switch_clears_the_other(
    capsys: pytest.CaptureFixture[str], fake_cp: FakeAdminClient
) -> None:
    code, _, _ = gw(capsys, "keys", "update", "key_abc123", "--route", "main", "--expires", "never")
    assert code == 0
    _, (key, paths) = fake_cp.calls[-1]
    assert key.route == "main" and key.provider == ""
    assert paths == ["provider", "route", "expires_at_ms"]


def test_revoke_without_yes_on_non_tty_is_refused(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, fake_cp: FakeAdminClient
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("y\n"))
    code, _, err = gw(capsys, "keys", "revoke", "key_abc123")
    assert code == 2
    assert "not a terminal" in err and "--yes" in err
    assert not any(c[0] == "revoke_key" for c in fake_cp.calls)
    assert gw(capsys, "keys", "revoke", "key_abc123", "--yes")[0] == 0


def test_revoke_prompts_on_a_tty(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(sys, "stdin", Tty("n\n"))
    assert gw(capsys, "keys", "revoke", "key_abc123")[0] == 2
    monkeypatch.setattr(sys, "stdin", Tty("yes\n"))
    code, stdout, _ = gw(capsys, "keys", "revoke", "key_abc123")
    assert code == 0 and "revoked key key_abc123" in stdout


def test_server_refusal_exits_1_without_traceback(
    capsys: pytest.CaptureFixture[str], fake_cp: FakeAdminClient
) -> None:
    fake_cp.fail = ClientError(grpc.StatusCode.NOT_FOUND, "workspace 'nope' does not exist")
    code, stdout, err = gw(capsys, "workspaces", "list")
    assert code == 1
    assert err == "error: workspace 'nope' does not exist\n"
    assert stdout == ""


def test_missing_token_hint(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, fake_cp: FakeAdminClient
) -> None:
    monkeypatch.delenv("TOLLGATE_ADMIN_TOKEN")
    fake_cp.fail = ClientError(grpc.StatusCode.UNAUTHENTICATED, "missing admin token")
    code, _, err = gw(capsys, "workspaces", "list")
    assert code == 1
    assert err.startswith("error: missing admin token")
    assert "TOLLGATE_ADMIN_TOKEN" in err


def test_logs_tail_json_and_follow_lines(
    capsys: pytest.CaptureFixture[str], fake_cp: FakeAdminClient
) -> None:
    fake_cp.initial_logs = [sample_event(1), sample_event(2)]
    code, stdout, _ = gw(capsys, "logs", "tail", "-n", "5", "-o", "json")
    assert code == 0
    doc = orjson.loads(stdout)
    assert [e["request_id"] for e in doc] == ["req_0001", "req_0002"]
    assert doc[0]["cost_usd"] == "0.012345"
    code, stdout, _ = gw(capsys, "logs", "tail", "-f", "-o", "json")
    assert [orjson.loads(line)["request_id"] for line in stdout.splitlines()] == [
        "req_0001",
        "req_0002",
    ]
    _, (kwargs,) = fake_cp.calls[-1]
    assert kwargs["follow"] is True


def test_logs_tail_table_line(capsys: pytest.CaptureFixture[str], fake_cp: FakeAdminClient) -> None:
    fake_cp.initial_logs = [sample_event(7)]
    code, stdout, _ = gw(capsys, "logs", "tail")
    assert code == 0
    header, line = stdout.splitlines()
    assert header.split()[:3] == ["TIME", "STATUS", "WORKSPACE"]
    for part in (
        "200",
        "team-a",
        "alice",
        "claude-sonnet-4-5",
        "anthropic",
        "1,200",
        "340",
        "5,000",
        "20,000",
        "0.012345",
        "1234ms",
        "300ms",
        "0f8e7d6c",
        "req_0007",
    ):
        assert part in line.split(), part  # fmt: skip


def test_dataplanes_list(capsys: pytest.CaptureFixture[str]) -> None:
    code, stdout, _ = gw(capsys, "dataplanes", "list")
    assert code == 0
    assert "current snapshot version: v2abcdef0123" in stdout
    assert "behind" in stdout and "stream closed" in stdout
    code, stdout, _ = gw(capsys, "dataplanes", "list", "-o", "json")
    doc = orjson.loads(stdout)
    assert [d["sync"] for d in doc["dataplanes"]] == ["current", "behind", "current"]
    assert doc["dataplanes"][0]["breakers"] == {"anthropic": "open", "sim": "half_open"}


def test_dataplanes_list_shows_breakers(capsys: pytest.CaptureFixture[str]) -> None:
    _, stdout, _ = gw(capsys, "dataplanes", "list")
    lines = stdout.splitlines()
    assert "BREAKERS" in lines[1]
    (dp1,) = [line for line in lines if line.startswith("dp-1")]
    assert "anthropic=open, sim=half_open" in dp1
    (dp2,) = [line for line in lines if line.startswith("dp-2")]
    assert "bedrock=open" in dp2  # as last reported, shown with CONNECTED no


def test_dataplanes_list_shows_usage_events_set_aside(capsys: pytest.CaptureFixture[str]) -> None:
    _, stdout, _ = gw(capsys, "dataplanes", "list")
    lines = stdout.splitlines()
    column = lines[1].split().index("QUARANTINED")
    rows = {line.split()[0]: line.split() for line in lines[2:]}
    assert rows["dp-2"][column] == "3" and rows["dp-3"][column] == "-"
    _, stdout, _ = gw(capsys, "dataplanes", "list", "-o", "json")
    doc = orjson.loads(stdout)
    assert [int(d.get("quarantined_events", 0)) for d in doc["dataplanes"]] == [0, 3, 0]


def test_routes_weights_must_match_targets(
    capsys: pytest.CaptureFixture[str], fake_cp: FakeAdminClient
) -> None:
    code, _, err = gw(capsys, "routes", "create", "r", "--mode", "loadbalance",
                       "--targets", "a,b", "--weights", "3")  # fmt: skip
    assert code == 2 and "one each" in err
    code, _, _ = gw(capsys, "routes", "create", "r", "--mode", "loadbalance",
                     "--targets", "a,b", "--weights", "3,1", "--retries", "2")  # fmt: skip
    assert code == 0
    _, (route,) = fake_cp.calls[-1]
    assert [(t.provider, t.weight) for t in route.targets] == [("a", 3), ("b", 1)]


def test_provider_simulator_latency_option(
    capsys: pytest.CaptureFixture[str], fake_cp: FakeAdminClient
) -> None:
    code, _, _ = gw(capsys, "providers", "create", "sim", "--kind", "simulator",
                     "--latency-ms", "25", "--option", "chunk_delay_ms=1")  # fmt: skip
    assert code == 0
    _, (provider, _) = fake_cp.calls[-1]
    assert dict(provider.options) == {"latency_ms": "25", "chunk_delay_ms": "1"}
    code, _, err = gw(capsys, "providers", "create", "a", "--kind", "anthropic",
                       "--latency-ms", "25")  # fmt: skip
    assert code == 2 and "simulator" in err


def test_unknown_arguments_are_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = gw(capsys, "workspaces", "list", "--bogus")
    assert code == 2 and "--bogus" in err


def test_serve_passes_argv_through(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from dataplane.process import cli

    seen: list[list[str]] = []
    monkeypatch.setattr(cli, "main", seen.append)
    argv = ["--listen", "127.0.0.1:9", "--control-plane", "127.0.0.1:1", "-h", "--token=x"]
    assert gwctl_main.main(["dataplane", "serve", *argv]) == 0
    assert seen == [argv]


def test_cli_import_does_not_load_the_servers() -> None:
    code = (
        "import sys, gwctl.main\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('controlplane', 'dataplane', "
        "'textual', 'sqlmodel', 'hypercorn')]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_log_lines_mark_estimated_output_and_count_tokens_calls() -> None:
    from gwctl import logs

    cut = telemetry_pb2.UsageEvent(
        path="/v1/messages",
        model_served="claude-opus-4-8",
        usage=common_pb2.Usage(output_tokens=1234, output_estimated=True),
    )
    cells = logs.cells(cut)
    assert cells[4] == "claude-opus-4-8" and cells[7] == "~1,234"
    assert "(estimated: the stream ended before its final usage)" in logs.render(cut)
    counted = telemetry_pb2.UsageEvent(
        path="/v1/messages/count_tokens", model_requested="claude-opus-4-8"
    )
    cells = logs.cells(counted)
    assert cells[4] == "claude-opus-4-8 (count_tokens)" and cells[7] == "0"
    assert "path:" in logs.render(counted) and "/v1/messages/count_tokens" in logs.render(counted)
