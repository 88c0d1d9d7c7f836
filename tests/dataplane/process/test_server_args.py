"""``gwctl dataplane serve``'s token: from TOLLGATE_DATAPLANE_TOKEN or --token-file, never from a
flag's value (``ps`` shows it) and never the admin token (it would let a data plane administer
the gateway)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dataplane.process import server


@pytest.fixture
def started(served: list[Any], monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The settings main() would serve with (nothing is started)."""
    for name in (
        "TOLLGATE_DATAPLANE_TOKEN",
        "TOLLGATE_DATAPLANE_TOKEN_FILE",
        "TOLLGATE_ADMIN_TOKEN",
    ):
        monkeypatch.delenv(name, raising=False)
    return served


def refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as info:
        server.main(argv)
    assert info.value.code == 2
    return capsys.readouterr().err


def test_the_admin_token_is_not_a_fallback(
    started: list[Any], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TOLLGATE_ADMIN_TOKEN", "admin-secret-value")
    err = refused([], capsys)
    assert (
        "a data-plane token is required: set TOLLGATE_DATAPLANE_TOKEN or pass --token-file" in err
    )
    assert started == [] and "admin-secret-value" not in err


def test_a_token_value_on_the_command_line_is_refused(
    started: list[Any], capsys: pytest.CaptureFixture[str]
) -> None:
    err = refused(["--token", "dp-secret-value"], capsys)
    assert "--token no longer takes the token on the command line" in err
    assert "set TOLLGATE_DATAPLANE_TOKEN or pass --token-file PATH" in err
    assert started == [] and "dp-secret-value" not in err


def test_token_from_the_environment_or_a_private_file(
    started: list[Any],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("TOLLGATE_DATAPLANE_TOKEN", "dp-from-env")
    server.main(["--state-dir", str(tmp_path / "dp")])
    token_file = tmp_path / "dp-token"
    token_file.write_text("dp-from-file\n")
    token_file.chmod(0o600)
    server.main(["--state-dir", str(tmp_path / "dp"), "--token-file", str(token_file)])
    assert [s.token for s in started] == ["dp-from-env", "dp-from-file"]
    token_file.chmod(0o640)
    err = refused(["--token-file", str(token_file)], capsys)
    assert "readable by other users (mode 0640)" in err and "dp-from-file" not in err
