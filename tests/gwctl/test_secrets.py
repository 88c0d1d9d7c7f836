"""``gwctl providers create --api-key-stdin`` and ``gwctl providers rotate`` against a real
control plane (in a thread) with a master key: the key comes from stdin only, is never printed,
and list/show say it is stored and when it was rotated."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from controlplane.settings import Settings
from gwctl.main import main as gwctl_main
from tests.gwctl.threaded_cp import threaded_control_plane

ADMIN = "gwctl-secrets-admin-token"
KEY = "sk-ant-api03-gwctl-stored-0123456789"
ROTATED = "sk-ant-api03-gwctl-rotated-9876543210"


@pytest.fixture
def cp(tmp_path: Path) -> Iterator[str]:
    settings = Settings(
        listen="127.0.0.1:0",
        db_url=f"sqlite:///{tmp_path / 'db.sqlite'}",
        admin_token=ADMIN,
        dataplane_token="gwctl-secrets-dataplane-token",
        master_key=base64.b64encode(b"m" * 32).decode(),
        snapshot_refresh_s=3600.0,
        shutdown_grace_s=0.2,
    )
    with threaded_control_plane(settings) as address:
        yield address


def gwctl(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    cp: str,
    *argv: str,
    stdin: str = "",
) -> tuple[int, str, str]:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    code = gwctl_main(["--control-plane", cp, "--token", ADMIN, *argv])
    captured = capsys.readouterr()
    assert KEY not in captured.out + captured.err and ROTATED not in captured.out + captured.err
    return code, captured.out, captured.err


def test_store_rotate_and_remove(
    cp: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ("--base-url", "http://127.0.0.1:9", "--api-key-env", "ANTHROPIC_API_KEY")
    code, out, err = gwctl(
        monkeypatch, capsys, cp, "providers", "create", "claude", "--kind", "anthropic", *base,
        "--api-key-stdin", stdin=KEY + "\n",
    )  # fmt: skip
    assert code == 0, err
    assert "API key stored on the control plane (rotated 20" in out

    code, out, _ = gwctl(monkeypatch, capsys, cp, "providers", "list")
    assert code == 0 and "stored (20" in out
    code, out, _ = gwctl(monkeypatch, capsys, cp, "providers", "show", "claude", "-o", "json")
    shown = json.loads(out)
    assert shown["has_secret"] is True and int(shown["secret_rotated_at_ms"]) > 0

    # Piped in, the key cannot also answer a confirmation: --yes is required.
    code, _, err = gwctl(
        monkeypatch, capsys, cp, "providers", "rotate", "claude", "--api-key-stdin",
        stdin=ROTATED + "\n",
    )  # fmt: skip
    assert code == 2 and "pass --yes" in err
    code, out, err = gwctl(
        monkeypatch, capsys, cp, "providers", "rotate", "claude", "--api-key-stdin", "--yes",
        stdin=ROTATED + "\n",
    )  # fmt: skip
    assert code == 0, err
    assert "new API key stored" in out and "next request" in out

    code, out, err = gwctl(
        monkeypatch, capsys, cp, "providers", "rotate", "claude", "--remove-secret", "--yes"
    )
    assert code == 0, err
    assert "stored API key removed; it now uses $ANTHROPIC_API_KEY" in out
    code, out, _ = gwctl(monkeypatch, capsys, cp, "providers", "show", "claude")
    assert "API key from $ANTHROPIC_API_KEY" in out and "stored" not in out


def test_refusals_are_readable(
    cp: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = gwctl(
        monkeypatch, capsys, cp, "providers", "create", "claude", "--kind", "anthropic",
        "--api-key-stdin", stdin="\n",
    )  # fmt: skip
    assert code == 2 and "read an empty line" in err
    # A provider the control plane would refuse is refused before the key is read.
    code, _, err = gwctl(
        monkeypatch, capsys, cp, "providers", "create", "br", "--kind", "bedrock",
        "--region", "mars", "--api-key-stdin", stdin="\n",
    )  # fmt: skip
    assert code == 1 and "invalid region 'mars'" in err and "empty line" not in err
    code, _, err = gwctl(
        monkeypatch, capsys, cp, "providers", "create", "br", "--kind", "bedrock",
        "--region", "us-east-1", "--api-key-stdin", stdin=KEY + "\n",
    )  # fmt: skip
    assert code == 1 and "ACCESS_KEY_ID:SECRET_ACCESS_KEY" in err
    code, _, err = gwctl(monkeypatch, capsys, cp, "providers", "rotate", "claude", "--yes")
    assert code == 2 and "--api-key-stdin" in err  # one of the two ways is required
    code, _, err = gwctl(
        monkeypatch, capsys, cp, "providers", "rotate", "nope", "--api-key-stdin", "--yes",
        stdin=KEY + "\n",
    )  # fmt: skip
    assert code == 1 and "provider 'nope' not found" in err


def test_bedrock_stores_an_access_key_pair(
    cp: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pair = "AKIDEXAMPLE000000001:wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
    code, out, err = gwctl(
        monkeypatch, capsys, cp, "providers", "create", "br", "--kind", "bedrock",
        "--region", "us-east-1", "--api-key-stdin", stdin=pair + "\n",
    )  # fmt: skip
    assert code == 0, err
    assert "AWS access key pair stored on the control plane" in out
    assert "wJalrXUtnFEMI" not in out and "AKIDEXAMPLE000000001" not in out


def test_base_url_of_a_stored_key_changes_only_knowingly(
    cp: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = gwctl(
        monkeypatch, capsys, cp, "providers", "create", "claude", "--kind", "anthropic",
        "--api-key-stdin", stdin=KEY + "\n",
    )  # fmt: skip
    assert code == 0, err
    code, _, err = gwctl(
        monkeypatch, capsys, cp, "providers", "update", "claude", "--base-url", "https://x.example"
    )
    assert code == 1
    assert "provider 'claude' has a stored key; changing its base URL" in err
    assert "re-enter the key with --api-key-stdin, or pass --keep-secret" in err
    code, _, err = gwctl(
        monkeypatch, capsys, cp, "providers", "update", "claude", "--base-url",
        "https://x.example", "--keep-secret", "--api-key-stdin", stdin=ROTATED + "\n",
    )  # fmt: skip
    assert code == 2 and "pick one" in err
    code, out, err = gwctl(
        monkeypatch, capsys, cp, "providers", "update", "claude", "--base-url",
        "https://x.example", "--keep-secret", "-o", "json",
    )  # fmt: skip
    assert code == 0, err
    kept = json.loads(out)
    assert kept["base_url"] == "https://x.example" and kept["has_secret"] is True
    code, out, err = gwctl(
        monkeypatch, capsys, cp, "providers", "update", "claude", "--base-url",
        "https://api.anthropic.com", "--api-key-stdin", "-o", "json", stdin=ROTATED + "\n",
    )  # fmt: skip
    assert code == 0, err
    moved = json.loads(out)
    assert moved["base_url"] == "https://api.anthropic.com"
    assert int(moved["secret_rotated_at_ms"]) >= int(kept["secret_rotated_at_ms"])
    code, _, err = gwctl(
        monkeypatch, capsys, cp, "providers", "update", "claude", "--api-key-stdin",
        stdin=ROTATED + "\n",
    )  # fmt: skip
    assert code == 2 and "gwctl providers rotate claude --api-key-stdin" in err
