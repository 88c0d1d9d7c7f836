"""Admin-token rules: roles, workspace lists, TTLs, names, secret shape."""

from __future__ import annotations

import pytest

from controlplane.domain import tokens
from controlplane.domain.errors import InvalidArgument
from controlplane.identity import TokenRole


def test_roles_parse_and_unknown_roles_name_the_choices() -> None:
    assert tokens.parse_role("admin") is TokenRole.ADMIN
    assert tokens.parse_role("Workspace_Admin") is TokenRole.WORKSPACE_ADMIN
    assert tokens.parse_role(" viewer ") is TokenRole.VIEWER
    with pytest.raises(InvalidArgument, match="admin, workspace-admin, viewer"):
        tokens.parse_role("root")
    with pytest.raises(InvalidArgument, match="role is required"):
        tokens.parse_role("")
    with pytest.raises(InvalidArgument, match="unknown role"):
        tokens.parse_role("dataplane")  # the env data-plane token is not a creatable role


def test_workspace_rules_per_role() -> None:
    assert tokens.validate_workspaces(TokenRole.WORKSPACE_ADMIN, ["b", "a", "b"]) == ("a", "b")
    assert tokens.validate_workspaces(TokenRole.VIEWER, []) == ()
    assert tokens.validate_workspaces(TokenRole.VIEWER, ["a"]) == ("a",)
    with pytest.raises(InvalidArgument, match="at least one workspace"):
        tokens.validate_workspaces(TokenRole.WORKSPACE_ADMIN, [])
    with pytest.raises(InvalidArgument, match="admin token covers every workspace"):
        tokens.validate_workspaces(TokenRole.ADMIN, ["a"])
    with pytest.raises(InvalidArgument, match="invalid workspace name"):
        tokens.validate_workspaces(TokenRole.VIEWER, ["Not Valid"])


def test_ttl_and_name() -> None:
    assert tokens.validate_ttl(0) == 0
    assert tokens.expires_at_ms(1_000, 0) == 0
    assert tokens.expires_at_ms(1_000, 30) == 31_000
    with pytest.raises(InvalidArgument, match="negative"):
        tokens.validate_ttl(-1)
    with pytest.raises(InvalidArgument, match="too long"):
        tokens.validate_ttl(tokens.MAX_TTL_S + 1)
    assert tokens.validate_name("  ci deploy ") == "ci deploy"
    with pytest.raises(InvalidArgument, match="token name is required"):
        tokens.validate_name("   ")
    with pytest.raises(InvalidArgument, match="control characters"):
        tokens.validate_name("a\nb")


def test_generated_secrets_are_distinct_from_virtual_keys_and_hidden_in_repr() -> None:
    t = tokens.generate_token()
    assert t.secret.startswith("tga-") and not t.secret.startswith("gw-")
    assert tokens.looks_like_token(t.secret)
    assert not tokens.looks_like_token("gw-abc") and not tokens.looks_like_token("tga-")
    assert t.secret_sha256 == tokens.hash_secret(t.secret) and len(t.secret_sha256) == 64
    assert t.prefix == t.secret[: tokens.PREFIX_LEN]
    assert t.secret not in repr(t)
    assert tokens.validate_token_id(t.id) == t.id
    with pytest.raises(InvalidArgument, match="expected 'tok_'"):
        tokens.validate_token_id("key_0123456789abcdef")
    assert tokens.generate_token().secret != t.secret
