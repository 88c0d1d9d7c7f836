"""``gwctl sso`` against a real control plane (with a master key, on a fresh SQLite database per
test): the secret from stdin and never shown, update semantics, readable refusals."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.gwctl import cli
from tests.gwctl.cli import fields, gw, gw_json
from tests.gwctl.signin_support import MASTER_KEY
from tests.gwctl.threaded_cp import threaded_control_plane

pytestmark = pytest.mark.e2e

SECRET = "oidc-client-secret-" + uuid.uuid4().hex
ISSUER = "https://login.example.com"


@contextlib.contextmanager
def serving(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, master_key: str) -> Iterator[str]:
    """A control plane for one test (on a fresh database), gwctl pointed at it."""
    settings = cli.settings(f"sqlite:///{tmp_path / 'tollgate.db'}", master_key=master_key)
    with threaded_control_plane(settings) as address:
        cli.point_gwctl_at(monkeypatch, address)
        yield address


@pytest.fixture
def control_plane(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    with serving(tmp_path, monkeypatch, MASTER_KEY) as address:
        yield address


def configure(capsys: pytest.CaptureFixture[str], *extra: str) -> Any:
    return gw_json(
        capsys, "sso", "set", "--issuer", ISSUER, "--client-id", "tollgate",
        "--client-secret-stdin", *extra, stdin=SECRET + "\n",
    )  # fmt: skip


def test_show_says_sign_in_is_off_until_configured(
    control_plane: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = gw(capsys, "sso", "show")
    assert code == 0, err
    assert "sign-in with Claude Code is off" in out and "--client-secret-stdin" in out
    assert gw_json(capsys, "sso", "show")["configured"] is False


def test_set_reads_the_secret_from_stdin_and_never_shows_it(
    control_plane: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = gw(
        capsys, "sso", "set", "--issuer", ISSUER, "--client-id", "tollgate",
        "--client-secret-stdin", "--groups-claim", "groups", "--email-domain", "example.com",
        "--public-url", "https://gw.example.com/", stdin=SECRET + "\n",
    )  # fmt: skip
    assert code == 0, err
    assert SECRET not in out + err
    assert "client secret:" in out and "stored (encrypted; never shown)" in out
    assert "https://gw.example.com/oauth/callback" in out
    assert "openid profile email offline_access" in out
    assert "email domains:" in out and "example.com" in out

    doc = gw_json(capsys, "sso", "show")
    assert SECRET not in orjson.dumps(doc).decode()
    assert doc["configured"] is True and doc["has_client_secret"] is True
    assert doc["issuer"] == ISSUER and doc["client_id"] == "tollgate"
    assert doc["allowed_email_domains"] == ["example.com"]
    assert doc["signing_key_id"] and doc["signing_key_created_at_ms"] > 0
    assert doc["redirect_uri"] == "<data plane --public-url>/oauth/callback"
    assert doc["scopes_requested"] == ["openid", "profile", "email", "offline_access"]

    code, out, _ = gw(capsys, "sso", "show", "--public-url", "https://gw.example.com")
    assert code == 0
    assert "redirect URI:" in out and "https://gw.example.com/oauth/callback" in out
    assert "signing key:" in out and doc["signing_key_id"] in out and " ago)" in out
    assert fields(out)["access token ttl"] == "default (1h)"
    assert fields(out)["session max"] == "default (30d)"


def test_set_changes_only_the_flags_given(
    control_plane: str, capsys: pytest.CaptureFixture[str]
) -> None:
    configure(capsys, "--email-domain", "example.com", "--email-domain", "example.org")
    doc = gw_json(capsys, "sso", "set", "--groups-claim", "roles", "--access-token-ttl", "30m",
                  "--refresh-idle-ttl", "7d", "--scope", "groups")  # fmt: skip
    assert doc["groups_claim"] == "roles"
    assert doc["issuer"] == ISSUER and doc["client_id"] == "tollgate"  # untouched
    assert doc["has_client_secret"] is True  # no secret given: the stored one stays
    assert doc["allowed_email_domains"] == ["example.com", "example.org"]
    assert doc["access_token_ttl_s"] == 1800 and doc["refresh_idle_ttl_s"] == 7 * 86_400
    assert doc["scopes"] == ["groups"]
    assert doc["scopes_requested"][-1] == "groups"

    doc = gw_json(capsys, "sso", "set", "--email-domain", "example.net")  # replaces the list
    assert doc["allowed_email_domains"] == ["example.net"]
    doc = gw_json(capsys, "sso", "set", "--clear-email-domains", "--clear-scopes",
                  "--access-token-ttl", "default")  # fmt: skip
    assert doc["allowed_email_domains"] == [] and doc["scopes"] == []
    assert doc["access_token_ttl_s"] == 0 and doc["groups_claim"] == "roles"

    # A new secret replaces the stored one and is not echoed either.
    code, out, err = gw(capsys, "sso", "set", "--client-secret-stdin", stdin="another-secret\n")
    assert code == 0, err
    assert "another-secret" not in out + err


def test_default_target(control_plane: str, capsys: pytest.CaptureFixture[str]) -> None:
    configure(capsys)
    code, _, err = gw(capsys, "providers", "create", "sim", "--kind", "simulator")
    assert code == 0, err
    code, out, err = gw(capsys, "sso", "set", "--default-provider", "sim")
    assert code == 0, err
    assert fields(out)["default target"] == "provider:sim"
    code, _, err = gw(capsys, "sso", "set", "--default-route", "missing")
    assert code == 1 and "missing" in err and "Traceback" not in err
    assert gw_json(capsys, "sso", "set", "--clear-default-target")["default_provider"] == ""


def test_refusals_are_readable(control_plane: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = gw(capsys, "sso", "set", "--issuer", ISSUER, "--client-id", "tollgate")
    assert code == 2
    assert "the first `gwctl sso set` needs" in err and "--client-secret-stdin" in err

    code, _, err = gw(capsys, "sso", "set", "--groups-claim", "x")
    assert code == 2 and "missing: --issuer, --client-id, --client-secret-stdin" in err

    code, _, err = gw(capsys, "sso", "set", "--issuer", "http://login.example.com",
                      "--client-id", "tollgate", "--client-secret-stdin", stdin=SECRET)  # fmt: skip
    assert code == 1
    assert err.startswith("error: invalid issuer") and "https" in err
    assert SECRET not in err and "Traceback" not in err

    code, _, err = gw(capsys, "sso", "set", "--issuer", ISSUER, "--client-id", "tollgate",
                      "--client-secret-stdin", stdin="\n")  # fmt: skip
    assert code == 2 and "read an empty line" in err

    code, _, err = gw(capsys, "sso", "set")
    assert code == 2 and "nothing to set" in err
    code, _, err = gw(capsys, "sso", "set", "--scope", "a", "--clear-scopes")
    assert code == 2 and "contradict" in err
    code, _, err = gw(capsys, "sso", "set", "--access-token-ttl", "soon")
    assert code == 2 and "invalid duration" in err

    configure(capsys)
    code, _, err = gw(capsys, "sso", "set", "--access-token-ttl", "2d")
    assert code == 1 and "access_token_ttl_s must be between" in err


def test_delete_and_rotate_take_yes(control_plane: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = gw(capsys, "sso", "rotate-signing-key", "--yes")
    assert code == 1 and "not configured" in err
    before = configure(capsys)["signing_key_id"]

    code, _, err = gw(capsys, "sso", "rotate-signing-key")
    assert code == 2 and "--yes" in err
    code, out, err = gw(capsys, "sso", "rotate-signing-key", "--yes")
    assert code == 0, err
    after = gw_json(capsys, "sso", "show")["signing_key_id"]
    assert after != before and f"new signing key {after} (was {before})" in out

    code, _, err = gw(capsys, "sso", "delete")
    assert code == 2 and "--yes" in err
    assert gw_json(capsys, "sso", "show")["configured"] is True
    code, out, err = gw(capsys, "sso", "delete", "--yes")
    assert code == 0 and "off" in out
    assert gw_json(capsys, "sso", "show")["configured"] is False
    code, _, err = gw(capsys, "sso", "delete", "--yes")
    assert code == 1 and "not configured" in err


def test_without_a_master_key_the_refusal_says_how_to_set_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with serving(tmp_path, monkeypatch, master_key=""):
        code, out, err = gw(capsys, "sso", "set", "--issuer", ISSUER, "--client-id", "tollgate",
                            "--client-secret-stdin", stdin=SECRET)  # fmt: skip
    assert code == 1 and out == ""
    assert "no master key" in err and "master-key" in err.lower()
    assert SECRET not in err and "Traceback" not in err
