"""Authentication: where the secret comes from, virtual keys and developers' tokens, what each
refusal says."""

from __future__ import annotations

import time

import pytest

from dataplane.config.members import Developer
from dataplane.config.snapshot import Snapshot
from dataplane.edge.proxy import ClientHeaders
from dataplane.errors import GatewayError
from dataplane.policy.auth import authenticate, extract_secret, passthrough_authorization
from dataplane.policy.tokens import TokenVerifier
from tests.dataplane import runtimes
from tests.dataplane.conftest import EXPIRED, REVOKED, SECRET, build_snapshot
from tests.fakes.signin import mint, sso_snapshot


def scope(*headers: tuple[bytes, bytes]) -> dict[str, object]:
    return {"headers": list(headers)}


def test_secret_from_x_api_key_or_bearer() -> None:
    assert extract_secret(scope((b"x-api-key", b"gw-a"))) == "gw-a"
    assert extract_secret(scope((b"authorization", b"Bearer gw-b"))) == "gw-b"
    assert extract_secret(scope((b"authorization", b"bearer  gw-c "))) == "gw-c"
    assert extract_secret(scope((b"authorization", b"Basic Zm9v"))) is None
    assert extract_secret(scope()) is None
    # A real provider key in the shell next to the virtual key: the virtual key wins.
    both = scope((b"x-api-key", b"sk-ant-real"), (b"authorization", b"Bearer gw-d"))
    assert extract_secret(both) == "gw-d"


def test_authenticate() -> None:
    snap = Snapshot.from_proto(build_snapshot("http://127.0.0.1:1"))
    rt = runtimes.runtime(snap)
    p = authenticate(rt, SECRET, 0)
    assert p.member.id == "key_alice" and p.workspace.name == "team-a" and p.runtime is rt
    assert p.snapshot is snap
    for secret, words in ((REVOKED, "revoked"), (EXPIRED, "expired"), ("gw-x", "not a valid")):
        with pytest.raises(GatewayError) as err:
            authenticate(rt, secret, 10**13)
        assert err.value.status == 401 and words in err.value.message
        assert secret not in err.value.message


def test_a_signed_in_developers_token_is_found_beside_a_stray_provider_key() -> None:
    token = mint()
    stray = scope(
        (b"x-api-key", b"sk-ant-api03-stray"), (b"authorization", f"Bearer {token}".encode())
    )
    assert extract_secret(stray) == token
    with_key = scope((b"x-api-key", b"gw-k"), (b"authorization", f"Bearer {token}".encode()))
    assert extract_secret(with_key) == "gw-k"  # a virtual key still wins


def test_authenticate_a_developer() -> None:
    snap = Snapshot.from_proto(sso_snapshot("http://127.0.0.1:1"))
    rt = runtimes.runtime(snap)
    p = authenticate(rt, mint(), int(time.time() * 1000), TokenVerifier())
    assert isinstance(p.member, Developer) and p.workspace.name == "team-a"
    assert p.member.key_id == "" and p.member.developer_email == "alice@example.com"
    key = authenticate(rt, SECRET, 0)
    assert key.member.key_id == "key_alice" and key.member.developer_id == ""
    # Not a JWT and not a key: the usual virtual-key refusal, no token talk.
    with pytest.raises(GatewayError) as err:
        authenticate(rt, "not-a-key", 0)
    assert "not a valid Tollgate virtual key" in err.value.message


def test_model_denial_is_400_for_developers_and_403_for_keys() -> None:
    msg = sso_snapshot("http://127.0.0.1:1", allowed_models=("claude-haiku-*",))
    snap = Snapshot.from_proto(msg)
    rt = runtimes.runtime(snap)
    developer = authenticate(rt, mint(), int(time.time() * 1000))
    key = authenticate(rt, SECRET, 0)
    for principal, status in ((developer, 400), (key, 403)):
        with pytest.raises(GatewayError) as err:
            principal.check_access("claude-opus-4-8")
        assert err.value.status == status
        assert "not allowed in workspace 'team-a'" in err.value.message
        principal.check_access("claude-haiku-4-5")


def test_no_target_is_said_before_the_access_controls() -> None:
    msg = sso_snapshot("http://127.0.0.1:1", member_provider="")
    msg.workspaces[0].allowed_routes.append("main")
    snap = Snapshot.from_proto(msg)
    rt = runtimes.runtime(snap)
    developer = authenticate(rt, mint(), int(time.time() * 1000))
    with pytest.raises(GatewayError) as err:
        developer.check_access("claude-haiku-4-5")
    assert err.value.status == 503 and err.value.error_type == "api_error"
    assert "--member-provider" in err.value.message


def passthrough(scope: dict[str, object]) -> bytes | None:
    """As the handler asks: the headers read once, then the two that decide."""
    client = ClientHeaders.read(scope)
    return passthrough_authorization(client.authorization, client.virtual_key)


def test_the_clients_authorization_passes_through_only_when_the_key_travelled_apart() -> None:
    """With ``x-tollgate-key`` the Authorization header is the user's own credential (a
    passthrough provider forwards it); without it, Authorization carries the gateway's key and
    must never go upstream."""
    oauth = (b"authorization", b"Bearer sk-ant-oat01-user")
    assert passthrough(scope(oauth, (b"x-tollgate-key", SECRET.encode()))) == (
        b"Bearer sk-ant-oat01-user"
    )
    assert passthrough(scope((b"authorization", b"Bearer " + SECRET.encode()))) is None
    assert passthrough(scope((b"x-tollgate-key", SECRET.encode()))) is None
