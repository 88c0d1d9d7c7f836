"""What ``gwctl doctor`` reads from a developer's shell and Claude Code's files, the way Claude
Code and the data plane read them (no network here: the servers are in test_doctor*.py)."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

from gwctl.doctor_env import DEFAULT_MODEL, discover, shown, token_expiry_ms

KEY = "gw-abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"


def jwt(exp: int) -> str:
    def part(doc: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(doc).encode()).decode().rstrip("=")

    return f"{part({'alg': 'HS256', 'kid': 'k1'})}.{part({'exp': exp, 'sub': 'dev_1'})}.c2ln"


def env(tmp_path: Path, **values: str) -> dict[str, str]:
    return {"CLAUDE_CONFIG_DIR": str(tmp_path), **values}


def test_the_virtual_key_wins_like_on_the_data_plane(tmp_path: Path) -> None:
    setup = discover(env(tmp_path, ANTHROPIC_BASE_URL="http://h:8080/", ANTHROPIC_API_KEY=KEY,
                         ANTHROPIC_AUTH_TOKEN="something-else"))  # fmt: skip
    assert setup.url == "http://h:8080" and setup.url_source == "ANTHROPIC_BASE_URL"
    assert setup.credential is not None and setup.credential.source == "ANTHROPIC_API_KEY"
    assert setup.credential.headers() == {"x-api-key": KEY}
    assert setup.model == DEFAULT_MODEL and setup.findings == ()
    assert repr(setup).count(KEY[3:]) == 0  # a secret never shows in a repr
    assert shown(KEY) == "gw-abcd…"
    # The Claude-subscription setup: the key in ANTHROPIC_CUSTOM_HEADERS wins over everything.
    setup = discover(env(tmp_path, ANTHROPIC_BASE_URL="http://h", ANTHROPIC_AUTH_TOKEN="sk-ant-oat01-x",
                         ANTHROPIC_CUSTOM_HEADERS=f"x-other: 1\nX-Tollgate-Key: {KEY}"))  # fmt: skip
    assert setup.credential is not None
    assert setup.credential.headers() == {"x-tollgate-key": KEY}


def test_bedrock_and_vertex_doors(tmp_path: Path) -> None:
    setup = discover(env(tmp_path, CLAUDE_CODE_USE_BEDROCK="1", CLAUDE_CODE_SKIP_BEDROCK_AUTH="1",
                         ANTHROPIC_BEDROCK_BASE_URL="https://gw.example.com/bedrock",
                         ANTHROPIC_AUTH_TOKEN=KEY,
                         ANTHROPIC_MODEL="us.anthropic.claude-sonnet-4-5-20250929-v1:0"))  # fmt: skip
    assert setup.url == "https://gw.example.com" and setup.findings == ()
    assert setup.model == "claude-sonnet-4-5-20250929"  # as the Bedrock door reads it
    assert setup.model_source == "ANTHROPIC_MODEL: us.anthropic.claude-sonnet-4-5-20250929-v1:0"

    setup = discover(env(tmp_path, CLAUDE_CODE_USE_VERTEX="1",
                         ANTHROPIC_VERTEX_BASE_URL="https://gw.example.com/vertex",
                         ANTHROPIC_AUTH_TOKEN=KEY))  # fmt: skip
    (door, skip) = setup.findings
    assert (door.status, door.fix) == (
        "FAIL",
        "export ANTHROPIC_VERTEX_BASE_URL=https://gw.example.com/vertex/v1",
    )
    assert setup.url == "https://gw.example.com"
    assert (skip.status, skip.fix) == ("FAIL", "export CLAUDE_CODE_SKIP_VERTEX_AUTH=1")


def test_the_model_claude_code_would_use(tmp_path: Path) -> None:
    (tmp_path / "settings.json").write_text(json.dumps({"model": "opus[1m]"}))
    setup = discover(env(tmp_path, ANTHROPIC_DEFAULT_OPUS_MODEL="claude-opus-4-7"))
    assert (setup.model, setup.model_source) == (
        "claude-opus-4-7",
        "Claude Code settings.json (opus)",
    )
    setup = discover(env(tmp_path, ANTHROPIC_MODEL="claude-haiku-4-5"))
    assert (setup.model, setup.model_source) == ("claude-haiku-4-5", "ANTHROPIC_MODEL")
    setup = discover(env(tmp_path, ANTHROPIC_MODEL="claude-haiku-4-5"), model="haiku")
    assert (setup.model, setup.model_source) == ("claude-haiku-4-5", "--model (haiku)")


def test_a_claude_code_sign_in_is_read_when_nothing_else_is_set(tmp_path: Path) -> None:
    expires = int(time.time() * 1000) + 3_600_000
    token = jwt(expires // 1000)
    (tmp_path / ".credentials.json").write_text(json.dumps({
        "claudeAiOauth": {"accessToken": "sk-ant-oat01-not-this-one"},
        "enterpriseGateway": {"url": "https://gw.example.com/", "jwt": token,
                              "expiresAt": expires, "idpRefreshToken": "r"},
    }))  # fmt: skip
    setup = discover(env(tmp_path))
    assert setup.url == "https://gw.example.com" and setup.url_source.startswith(
        "Claude Code sign-in"
    )
    credential = setup.credential
    assert credential is not None and credential.kind == "access token" and credential.refreshable
    assert credential.expires_at_ms == expires and credential.headers() == {
        "authorization": f"Bearer {token}"
    }
    # The environment's credential is checked when both exist; the sign-in is mentioned.
    setup = discover(
        env(tmp_path, ANTHROPIC_AUTH_TOKEN=KEY, ANTHROPIC_BASE_URL="http://127.0.0.1:1")
    )
    assert setup.credential is not None and setup.credential.source == "ANTHROPIC_AUTH_TOKEN"
    (note,) = setup.findings
    assert (
        note.status == "OK"
        and "a Claude Code sign-in to https://gw.example.com is stored too" in note.detail
    )
    # An access token in the environment: its expiry is read (unverified) from the token.
    setup = discover(env(tmp_path, ANTHROPIC_AUTH_TOKEN=token, ANTHROPIC_BASE_URL="http://h"))
    assert setup.credential is not None and setup.credential.expires_at_ms == expires // 1000 * 1000
    assert token_expiry_ms("not.a.jwt") == 0


def test_nothing_set_at_all(tmp_path: Path) -> None:
    (tmp_path / ".credentials.json").write_text("{not json")
    setup = discover(env(tmp_path))
    assert (setup.url, setup.credential) == ("", None)
