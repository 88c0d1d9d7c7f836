"""``gwctl tui`` is registered, takes --readonly, and is the only place Textual is imported."""

from __future__ import annotations

import subprocess
import sys

import pytest

from gwctl import main as gwctl_main


def test_gwctl_imports_textual_only_inside_the_tui_command() -> None:
    code = "import sys, gwctl.main; assert 'textual' not in sys.modules, 'textual imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_tui_subcommand_parses_readonly_and_runs_lazily(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, object] = {}

    def fake_run(target: str, token: str, *, readonly: bool = False, tls_ca: str = "") -> int:
        seen.update(target=target, token=token, readonly=readonly, tls_ca=tls_ca)
        return 0

    import tui.app

    monkeypatch.setattr(tui.app, "run_tui", fake_run)
    monkeypatch.delenv("TOLLGATE_TLS_CA", raising=False)
    code = gwctl_main.main(["tui", "--readonly", "--control-plane", "h:1", "--token", "t"])
    assert code == 0
    assert seen == {"target": "h:1", "token": "t", "readonly": True, "tls_ca": ""}
    # --tls-ca reaches the console's client.
    code = gwctl_main.main(["tui", "--control-plane", "h:1", "--token", "t", "--tls-ca", "ca.pem"])
    assert code == 0
    assert seen["tls_ca"] == "ca.pem"


def test_tui_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert gwctl_main.main(["tui", "--help"]) == 0
    assert "--readonly" in capsys.readouterr().out
