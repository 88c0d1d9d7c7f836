"""``gwctl doctor`` against a real control plane and data plane when the gateway itself says no:
budgets spent or nearly spent, a model outside the allow-lists, a failing provider (its circuit
breaker open), a Bedrock provider that cannot map the model, a provider whose stored key the data
plane has not received, a Claude Code older than the workspace allows, and a data plane that is
draining or has no configuration. Always as a developer: no admin token."""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dataplane.server import Settings
from gwapi.v1 import discovery_pb2
from tests.gwctl.doctor_support import (
    ADMIN,
    Gateway,
    closed_port,
    developer_shell,
    fake_claude,
    run_doctor,
    statuses,
    team_gateway,
    threaded_dataplane,
)

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    with team_gateway(tmp_path_factory.mktemp("doctor-gw")) as running:
        yield running


@pytest.fixture(autouse=True)
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, gw: Gateway) -> Path:
    developer_shell(monkeypatch, tmp_path)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", gw.url)
    return tmp_path


def use(monkeypatch: pytest.MonkeyPatch, secret: str) -> None:
    monkeypatch.setenv("ANTHROPIC_AUTH_TOKEN", secret)


def only_failure(checks: dict[str, list[dict[str, str]]], name: str) -> dict[str, str]:
    """The one FAIL of the run, which must be check ``name``."""
    failed = [c for found in checks.values() for c in found if c["status"] == "FAIL"]
    assert [c["name"] for c in failed] == [name], failed
    return failed[0]


def test_budget_spent(gw: Gateway, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    key_id, secret = gw.key("team", "--provider", "sim", "--budget", "0.000001/day")
    assert gw.message(secret).status_code == 200  # the budget's tail request: now spent
    assert gw.message(secret).status_code == 429
    use(monkeypatch, secret)
    code, checks, _ = run_doctor(capsys)
    assert code == 1
    budget = only_failure(checks, "budget")
    assert budget["detail"].startswith("Budget of $0.000001/day for key '")
    assert "(workspace team) is spent ($0.0" in budget["detail"]
    assert "it resets at 20" in budget["detail"]
    assert budget["fix"] == (
        f"ask your platform team to raise it (gwctl keys update {key_id} --budget …), or wait "
        "for the reset"
    )


def test_budget_nearly_spent_warns(
    gw: Gateway, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    key_id, secret = gw.key("team", "--provider", "sim", "--budget", "1/day")
    assert gw.message(secret).status_code == 200
    (day,) = gw.whoami(secret)["budgets"]
    spent = day["spent_micros"]
    limit = spent * 10 // 9 + 1  # ~90 % spent
    gw.admin("keys", "update", key_id, "--budget", f"{limit // 10**6}.{limit % 10**6:06d}/day")
    gw.dp.wait_for(lambda _: gw.key_state(secret).limits.budgets[0].amount_micros == limit)
    use(monkeypatch, secret)
    code, checks, _ = run_doctor(capsys)
    assert code == 0
    (budget,) = checks["budget"]
    percent = spent * 100 // limit
    assert percent >= 80
    assert budget["status"] == "WARN" and f"spent ({percent} %)" in budget["detail"], budget
    assert budget["fix"].startswith("nearly spent: ask your platform team to raise it")


def test_model_not_allowed(gw: Gateway, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    _, secret = gw.key("team", "--provider", "sim", "--models", "claude-sonnet-*")
    use(monkeypatch, secret)
    code, checks, _ = run_doctor(capsys)
    assert code == 1
    model = only_failure(checks, "model")
    assert model["detail"].startswith("claude-opus-4-8 (Claude Code's default): Virtual key '")
    assert (
        "may not use model 'claude-opus-4-8'. Allowed models: claude-sonnet-*." in (model["detail"])
    )
    assert "pick an allowed model with /model, or export ANTHROPIC_MODEL=…" in model["fix"]
    assert "(allowed here: claude-sonnet-" in model["fix"]
    # The model Claude Code would use, from ANTHROPIC_MODEL: fine.
    monkeypatch.setenv("ANTHROPIC_MODEL", "claude-sonnet-4-6")
    code, checks, doc = run_doctor(capsys)
    assert code == 0 and doc["model"] == {"id": "claude-sonnet-4-6", "source": "ANTHROPIC_MODEL"}


def test_breaker_open_on_the_only_provider_fails_and_on_a_fallback_target_warns(
    gw: Gateway, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    dead = f"http://127.0.0.1:{closed_port()}"
    gw.admin("providers", "create", "down", "--kind", "anthropic", "--base-url", dead,
             "--api-key-env", "DOWN_KEY")  # fmt: skip
    _, secret = gw.key("team", "--provider", "down")
    for _ in range(5):  # the default: five failures in a row open the breaker
        assert gw.message(secret).status_code == 502
    use(monkeypatch, secret)
    code, checks, _ = run_doctor(capsys)
    assert code == 1
    provider = only_failure(checks, "provider")
    assert (
        "'down' (anthropic): claude-opus-4-8 → claude-opus-4-8, circuit breaker OPEN"
        in (provider["detail"])
    )
    assert "gwctl logs tail --status 5xx" in provider["fix"]

    gw.admin("providers", "create", "down2", "--kind", "anthropic", "--base-url", dead,
             "--api-key-env", "DOWN_KEY")  # fmt: skip
    gw.admin("routes", "create", "fb", "--mode", "fallback", "--targets", "down2,sim",
             "--breaker-failures", "1")  # fmt: skip
    _, routed = gw.key("team", "--route", "fb")
    r = gw.message(routed)
    assert r.status_code == 200 and r.headers["x-tollgate-provider"] == "sim"
    use(monkeypatch, routed)
    code, checks, _ = run_doctor(capsys)
    assert code == 0
    (provider,) = checks["provider"]
    assert provider["status"] == "WARN"
    assert provider["detail"].startswith("route 'fb' (fallback): 'down2' (anthropic):")
    assert (
        "circuit breaker OPEN" in provider["detail"] and "'sim' (simulator)" in provider["detail"]
    )
    assert provider["fix"].startswith("your requests go to the other targets meanwhile")


def test_bedrock_model_mapping_and_a_model_it_cannot_map(
    gw: Gateway, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    gw.admin("providers", "create", "bedrock", "--kind", "bedrock", "--region", "eu-west-1",
             "--model-map", "big=arn:aws:bedrock:eu-west-1:123456789012:application-inference-profile/x")  # fmt: skip
    _, secret = gw.key("team", "--provider", "bedrock")
    use(monkeypatch, secret)
    code, checks, _ = run_doctor(capsys)
    assert code == 0
    assert (
        "'bedrock' (bedrock): claude-opus-4-8 → eu.anthropic.claude-opus-4-8"
        in (checks["provider"][0]["detail"])
    )
    code, checks, _ = run_doctor(capsys, "--model", "big")
    assert code == 0
    assert (
        "big → arn:aws:bedrock:eu-west-1:…:application-inference-profile/x"
        in (checks["provider"][0]["detail"])
    )
    assert "123456789012" not in str(checks)

    code, checks, _ = run_doctor(capsys, "--model", "mistral-large")
    assert code == 1
    provider = only_failure(checks, "provider")
    assert "Model 'mistral-large' is not served by Bedrock provider 'bedrock'" in provider["detail"]
    assert "--model-map mistral-large=…" in provider["fix"]


def test_provider_key_not_received(
    gw: Gateway, env: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    gw.admin("providers", "create", "vault", "--kind", "anthropic", "--api-key-stdin",
             stdin="sk-ant-stored-provider-key-0123456789")  # fmt: skip
    _, secret = gw.key("team", "--provider", "vault")
    # A second data plane started from the first one's disk cache (which never holds provider
    # secrets) while the control plane is out of its reach. The cache is written after the
    # swap: wait until it holds the new key, not merely until it exists.
    digest = hashlib.sha256(secret.encode()).hexdigest()
    cache = gw.tmp / "dp" / "resources.pb"  # the delta stream's disk cache

    def cached() -> bool:
        if not cache.exists():
            return False
        held = discovery_pb2.ResourceCache.FromString(cache.read_bytes())
        return any(r.kind == "key" and r.key.secret_sha256 == digest for r in held.resources)

    gw.dp.wait_for(lambda _: cached())
    state = env / "dp2"
    state.mkdir()
    shutil.copy(cache, state / "resources.pb")
    settings = Settings(listen="127.0.0.1:0", control_plane=f"127.0.0.1:{closed_port()}",
                        token="unused", state_dir=state, graceful_s=1)  # fmt: skip
    with threaded_dataplane(settings) as cut_off:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", cut_off.url)
        use(monkeypatch, secret)
        code, checks, _ = run_doctor(capsys)
        assert code == 1
        provider = only_failure(checks, "provider")
        assert "Provider 'vault' has its key stored on the control plane, and this data plane " \
            "has not received it yet" in provider["detail"]  # fmt: skip
        assert provider["fix"].startswith("ask your platform team: the data plane has not received")
        assert "sk-ant-stored" not in str(checks)

        # With an admin token, doctor adds why: this data plane is not connected.
        monkeypatch.setenv("TOLLGATE_CONTROL_PLANE", gw.address)
        monkeypatch.setenv("TOLLGATE_ADMIN_TOKEN", ADMIN)
        code, checks, _ = run_doctor(capsys)
    (plane,) = checks["control plane"]
    assert plane["status"] == "WARN" and cut_off.dp.node_id in plane["detail"]
    assert "unknown to the control plane" in plane["detail"]


def test_claude_code_older_than_the_workspace_allows(
    gw: Gateway, env: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    _, secret = gw.key("team", "--provider", "sim")
    use(monkeypatch, secret)
    old = fake_claude(env / "old", "2.0.9")
    code, checks, _ = run_doctor(capsys, "--claude", str(old))
    assert code == 1
    claude = only_failure(checks, "claude")
    assert claude["detail"] == (
        "Claude Code 2.0.9 is older than this workspace allows (2.1.0): every request gets 400"
    )
    assert claude["fix"] == "run `claude update`"
    # Found on PATH the same way.
    monkeypatch.setenv("PATH", f"{env / 'old'}:/usr/bin:/bin")
    code, checks, _ = run_doctor(capsys)
    assert code == 1 and only_failure(checks, "claude")["fix"] == "run `claude update`"
    # Not installed at all: a warning, since the gateway may be fine.
    monkeypatch.setenv("PATH", "/nonexistent")
    code, checks, _ = run_doctor(capsys)
    assert code == 0 and checks["claude"][0]["status"] == "WARN"


def test_a_draining_data_plane(gw: Gateway, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    _, secret = gw.key("team", "--provider", "sim")
    use(monkeypatch, secret)
    gw.dp.dp.health.draining = True  # what SIGTERM does first
    try:
        code, checks, _ = run_doctor(capsys)
    finally:
        gw.dp.dp.health.draining = False
    assert code == 1
    (health,) = checks["gateway"]
    assert health["status"] == "FAIL" and "shutting down (draining)" in health["detail"]
    assert checks["auth"][0]["status"] == "FAIL"  # refused with 503 meanwhile
    code, checks, _ = run_doctor(capsys)
    assert code == 0 and statuses(checks)["gateway"] == "OK"


def test_a_data_plane_without_configuration(
    env: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    settings = Settings(listen="127.0.0.1:0", control_plane=f"127.0.0.1:{closed_port()}",
                        token="unused", state_dir=env / "empty", graceful_s=1)  # fmt: skip
    with threaded_dataplane(settings) as lonely:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", lonely.url)
        use(monkeypatch, "gw-some-key-0123456789abcdefghijklmnop")
        code, checks, _ = run_doctor(capsys)
    assert code == 1
    (health,) = checks["gateway"]
    assert health["status"] == "FAIL"
    assert "has not received its configuration from the control plane" in health["detail"]
    assert "gwctl dataplanes list" in health["fix"]
    (auth,) = checks["auth"]
    assert auth["status"] == "FAIL" and "HTTP 503" in auth["detail"]
