"""``gwctl tokens`` and ``gwctl whoami`` end to end against a real control plane (SQLite, in a
background thread): the secret is printed once and works as --token; roles limit what it can
do; list/revoke; -o json everywhere; exit codes and messages for refusals."""

from __future__ import annotations

import pytest

from gwapi.v1 import admin_pb2
from gwctl.tokens import status
from tests.gwctl.cli import gw, gw_json

pytestmark = pytest.mark.usefixtures("gwctl_env")


def test_tokens_lifecycle(capsys: pytest.CaptureFixture[str]) -> None:
    assert gw(capsys, "workspaces", "create", "team-a")[0] == 0
    assert gw(capsys, "workspaces", "create", "team-b")[0] == 0

    # create (table): fields, the secret once, and the warning on stderr
    code, out, err = gw(
        capsys,
        "tokens", "create", "--role", "workspace-admin", "-w", "team-a", "--name", "lead", "--expires", "30d",
    )  # fmt: skip
    assert code == 0, err
    secret = next(line.split()[-1] for line in out.splitlines() if line.startswith("secret:"))
    assert secret.startswith("tga-")
    assert "role:" in out and "workspace-admin" in out and "team-a" in out
    assert "only time the token is shown" in err

    # whoami with the new token
    me = gw_json(capsys, "whoami", "--token", secret)
    assert isinstance(me, dict)
    assert (me["role"], me["workspaces"], me["name"], me["status"]) == (
        "workspace-admin",
        ["team-a"],
        "lead",
        "active",
    )
    assert "secret" not in me
    code, out, _ = gw(capsys, "whoami")
    assert code == 0 and "bootstrap" in out and "admin" in out

    # the workspace-admin manages keys of its workspace only
    assert gw(capsys, "providers", "create", "sim", "--kind", "simulator")[0] == 0

    def key_in(workspace: str) -> tuple[int, str, str]:
        """``keys create`` in ``workspace`` with the scoped token."""
        argv = ("-w", workspace, "--name", "ci", "--provider", "sim", "--token", secret)
        return gw(capsys, "keys", "create", *argv)

    code, _, err = key_in("team-a")
    assert code == 0, err
    code, _, err = key_in("team-b")
    assert code == 1
    assert "workspace 'team-b': not found in the workspaces this token can access" in err
    code, _, err = gw(capsys, "tokens", "list", "--token", secret)
    assert code == 1 and "ListTokens needs an admin token" in err
    assert secret not in err

    # create (json) a viewer; list shows both, never a secret
    viewer = gw_json(capsys, "tokens", "create", "--role", "viewer")
    assert isinstance(viewer, dict)
    assert viewer["secret"].startswith("tga-") and viewer["name"] == "viewer"
    listed = gw_json(capsys, "tokens", "list")
    assert isinstance(listed, list)
    assert {t["role"] for t in listed} == {"workspace-admin", "viewer"}
    assert all("secret" not in t for t in listed)
    code, out, _ = gw(capsys, "tokens", "list")
    assert code == 0 and "ID" in out and "LAST USED" in out and secret not in out
    code, _, err = gw(capsys, "keys", "list", "--token", viewer["secret"])
    assert code == 0, err
    code, _, err = gw(capsys, "workspaces", "create", "x", "--token", viewer["secret"])
    assert code == 1 and "this token is read-only (viewer)" in err

    # revoke: needs --yes without a terminal; then the token is refused
    code, _, err = gw(capsys, "tokens", "revoke", viewer["id"])
    assert code == 2 and "--yes" in err
    revoked = gw_json(capsys, "tokens", "revoke", viewer["id"], "--yes")
    assert isinstance(revoked, dict) and revoked["status"] == "revoked"
    code, _, err = gw(capsys, "whoami", "--token", viewer["secret"])
    assert code == 1 and "was revoked" in err and viewer["secret"] not in err
    active = gw_json(capsys, "tokens", "list")
    assert isinstance(active, list) and viewer["id"] not in {t["id"] for t in active}
    everything = gw_json(capsys, "tokens", "list", "--all")
    assert isinstance(everything, list) and viewer["id"] in {t["id"] for t in everything}


def test_bad_create_requests(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = gw(capsys, "tokens", "create", "--role", "workspace-admin")
    assert code == 1 and "at least one workspace" in err
    code, _, err = gw(capsys, "tokens", "create", "--role", "viewer", "-w", "ghost")
    assert code == 1 and "workspace 'ghost' does not exist" in err
    code, _, err = gw(capsys, "tokens", "create", "--role", "root")
    assert code == 2 and "invalid choice" in err
    code, _, err = gw(capsys, "tokens", "create", "--role", "viewer", "--expires", "soon")
    assert code == 2 and "invalid duration" in err
    code, _, err = gw(capsys, "whoami", "--token", "tga-not-a-real-token")
    assert code == 1 and "invalid admin token" in err and "tga-not-a-real-token" not in err


def test_status_words() -> None:
    assert status(admin_pb2.AdminToken(revoked_at_ms=5, expires_at_ms=1), at_ms=10) == "revoked"
    assert status(admin_pb2.AdminToken(expires_at_ms=10), at_ms=10) == "expired"
    assert status(admin_pb2.AdminToken(expires_at_ms=11), at_ms=10) == "active"
    assert status(admin_pb2.AdminToken(), at_ms=10) == "active"
