"""``gwctl doctor`` for a developer signed in with Claude Code's ``/login``: nothing in the
environment, only the gateway credential Claude Code stored (``.credentials.json``,
``enterpriseGateway``). The access tokens are minted by the real sign-in path (the control
plane's SignIn calls, the strict fake identity provider)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.gwctl.doctor_support import (
    DATAPLANE,
    Gateway,
    developer_shell,
    gateway,
    run_doctor,
    statuses,
)
from tests.gwctl.signin_support import CLIENT_SECRET, MASTER_KEY, Login, sign_in, threaded_idp

pytestmark = pytest.mark.e2e

ALICE = Login(sub="sub-alice", email="alice@example.com", name="Alice", groups=["platform-eng"])
BOB = Login(sub="sub-bob", email="bob@example.com", name="Bob", groups=["platform-eng"])
CAROL = Login(sub="sub-carol", email="carol@example.com", name="Carol", groups=["platform-eng"])


class SignedIn:
    def __init__(self, gw: Gateway, tokens: dict[str, str]) -> None:
        self.gw = gw
        self.tokens = tokens  # email -> access token


@pytest.fixture(scope="module")
def signed_in(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SignedIn]:
    with gateway(tmp_path_factory.mktemp("doctor-signin"), MASTER_KEY) as gw, threaded_idp() as idp:
        gw.admin("sso", "set", "--issuer", idp.issuer, "--client-id", idp.client_id,
                 "--client-secret-stdin", stdin=CLIENT_SECRET)  # fmt: skip
        gw.admin("workspaces", "create", "platform", "--sso-group", "platform-eng",
                 "--member-budget", "50/day", "--member-provider", "sim")  # fmt: skip
        tokens = {login.email: sign_in(gw.address, DATAPLANE, idp, login) for login in (ALICE, BOB, CAROL)}  # fmt: skip
        emails = set(tokens)
        gw.dp.wait_for(
            lambda dp: (
                dp.holder.current is not None
                and emails <= {d.email for d in dp.holder.current.developers.values()}
            )
        )
        yield SignedIn(gw, tokens)


@pytest.fixture(autouse=True)
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A laptop whose Claude Code signed in: no ANTHROPIC_* variable at all."""
    config = developer_shell(monkeypatch, tmp_path)
    config.mkdir()
    return config


def store_login(config: Path, url: str, jwt: str, expires_in_s: float, refresh: bool) -> Path:
    """What Claude Code writes after /login (``enterpriseGateway``)."""
    gateway = {"url": url, "jwt": jwt, "expiresAt": int((time.time() + expires_in_s) * 1000),
               "tokenEndpoint": f"{url}/oauth/token"}  # fmt: skip
    if refresh:
        gateway["idpRefreshToken"] = "opaque-refresh-token-never-used-by-doctor"
    path = config / ".credentials.json"
    path.write_text(json.dumps({"enterpriseGateway": gateway}))
    path.chmod(0o600)
    return path


def test_a_signed_in_developer_is_checked_from_claude_codes_credentials(
    signed_in: SignedIn, env: Path, capsys: Any
) -> None:
    gw, jwt = signed_in.gw, signed_in.tokens["alice@example.com"]
    path = store_login(env, gw.url, jwt, 3600, refresh=True)
    code, checks, doc = run_doctor(capsys)
    assert code == 0, doc
    assert set(statuses(checks).values()) == {"OK"}
    assert doc["url"] == gw.url and doc["url_source"] == f"Claude Code sign-in ({path})"
    assert doc["credential"]["kind"] == "access token"
    assert doc["credential"]["source"] == f"Claude Code sign-in ({path})"
    assert checks["auth"][0]["detail"].startswith("signed-in developer 'alice@example.com' (dev_")
    assert "in workspace 'platform'" in checks["auth"][0]["detail"]
    assert (
        "Budget of $50.00/day for developer 'alice@example.com'" in (checks["budget"][0]["detail"])
    )
    assert jwt not in str(doc) and jwt.split(".")[1] not in str(doc)


def test_an_expired_sign_in(signed_in: SignedIn, env: Path, capsys: Any) -> None:
    gw, jwt = signed_in.gw, signed_in.tokens["alice@example.com"]
    # Claude Code holds a refresh token: it renews the access token itself; doctor never uses
    # the refresh token (single use: that would end Claude Code's session).
    store_login(env, gw.url, jwt, -60, refresh=True)
    code, checks, _ = run_doctor(capsys)
    assert code == 0
    (credential,) = checks["credential"]
    assert credential["status"] == "WARN" and "Claude Code renews it" in credential["detail"]
    assert checks["auth"][0]["status"] == "SKIP"
    # Without one, only /login helps.
    store_login(env, gw.url, jwt, -60, refresh=False)
    code, checks, _ = run_doctor(capsys)
    assert code == 1
    (credential,) = checks["credential"]
    assert credential["status"] == "FAIL" and "cannot be renewed" in credential["detail"]
    assert credential["fix"] == "run claude and sign in again with /login"


def test_a_developers_spent_budget_names_the_developer_command(
    signed_in: SignedIn, env: Path, capsys: Any
) -> None:
    gw, jwt = signed_in.gw, signed_in.tokens["carol@example.com"]
    gw.admin("developers", "update", "carol@example.com", "--budget", "0.000001/day")
    gw.dp.wait_for(
        lambda dp: any(
            d.email == "carol@example.com" and d.limits.budgets[0].amount_micros == 1
            for d in dp.holder.current.developers.values()  # type: ignore[union-attr]
        )
    )
    assert gw.message(jwt).status_code == 200  # the budget's tail request: now spent
    store_login(env, gw.url, jwt, 3600, refresh=True)
    code, checks, _ = run_doctor(capsys)
    assert code == 1
    (budget,) = [c for c in checks["budget"] if c["status"] == "FAIL"]
    assert "for developer 'carol@example.com' (workspace platform) is spent" in budget["detail"]
    assert "gwctl developers update carol@example.com --budget …" in budget["fix"]


def test_a_disabled_developer_is_told_why(signed_in: SignedIn, env: Path, capsys: Any) -> None:
    gw, jwt = signed_in.gw, signed_in.tokens["bob@example.com"]
    gw.admin("developers", "disable", "bob@example.com", "--yes")
    gw.dp.wait_for(
        lambda dp: any(
            d.email == "bob@example.com" and d.disabled
            for d in dp.holder.current.developers.values()  # type: ignore[union-attr]
        )
    )
    store_login(env, gw.url, jwt, 3600, refresh=True)
    code, checks, _ = run_doctor(capsys)
    assert code == 1
    (auth,) = checks["auth"]
    assert auth["status"] == "FAIL"
    assert "Your sign-in was revoked: developer 'bob@example.com' is disabled" in auth["detail"]
    assert auth["fix"] == "run claude and sign in again with /login"
