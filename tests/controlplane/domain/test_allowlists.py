"""Workspace access controls on the admin API: allow-list syntax and the key checks' messages."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controlplane.domain.allowlists import (
    MAX_ALLOWED_NAMES,
    check_key_models,
    check_key_target,
    validate_allowed_models,
    validate_allowed_names,
)
from controlplane.domain.errors import InvalidArgument
from controlplane.domain.names import SLUG_RE


def test_names_are_trimmed_deduplicated_in_order() -> None:
    assert validate_allowed_names([" b ", "a", "b"], "provider") == ("b", "a")
    assert validate_allowed_names([], "route") == ()


@pytest.mark.parametrize("bad", ["", "Team A", "-x", "a" * 64, "a/b"])
def test_bad_names_refused_naming_the_list(bad: str) -> None:
    with pytest.raises(InvalidArgument, match="allowed route name"):
        validate_allowed_names(["ok", bad], "route")


def test_too_many_names() -> None:
    with pytest.raises(InvalidArgument, match=f"at most {MAX_ALLOWED_NAMES}"):
        validate_allowed_names([f"p{i}" for i in range(MAX_ALLOWED_NAMES + 1)], "provider")


def test_model_patterns_follow_key_rules() -> None:
    assert validate_allowed_models(["claude-sonnet-*", "claude-sonnet-*", "claude-haiku-4-5"]) == (
        "claude-sonnet-*",
        "claude-haiku-4-5",
    )
    with pytest.raises(InvalidArgument, match="glob such as 'claude-sonnet-\\*'"):
        validate_allowed_models(["claude sonnet"])
    with pytest.raises(InvalidArgument, match="model pattern"):
        validate_allowed_models([""])


def test_target_refusal_names_what_is_allowed_and_what_to_do() -> None:
    check_key_target("team-a", ("a", "b"), (), "a", "")
    with pytest.raises(InvalidArgument) as err:
        check_key_target("team-a", ("a", "b"), (), "c", "")
    msg = str(err.value)
    assert "workspace 'team-a' allows providers a, b" in msg
    assert "the key targets provider 'c'" in msg
    assert "allowed_providers" in msg


def test_route_refusals() -> None:
    with pytest.raises(InvalidArgument, match="allows routes main; the key targets route 'r2'"):
        check_key_target("team-a", (), ("main",), "", "r2", ("a",))
    with pytest.raises(InvalidArgument, match="route 'r', which reaches provider 'z'"):
        check_key_target("team-a", ("a",), (), "", "r", ("a", "z"))
    check_key_target("team-a", ("a",), ("r",), "", "r", ("a", "z"))


def test_key_models_must_stay_within_the_workspace() -> None:
    check_key_models("team-a", (), ("anything-*",))
    check_key_models("team-a", ("claude-sonnet-*",), ())  # the workspace list applies
    check_key_models("team-a", ("claude-sonnet-*",), ("claude-sonnet-4-5*",))
    with pytest.raises(InvalidArgument) as err:
        check_key_models("team-a", ("claude-sonnet-*", "claude-haiku-*"), ("claude-*",))
    msg = str(err.value)
    assert "allows models claude-sonnet-*, claude-haiku-*" in msg
    assert "claude-*" in msg and "widen the workspace's allowed_models" in msg


@given(st.lists(st.text(max_size=70), max_size=4))
def test_any_name_list_is_normalised_or_refused_with_a_reason(names: list[str]) -> None:
    try:
        got = validate_allowed_names(names, "provider")
    except InvalidArgument as exc:
        assert "allowed provider name" in str(exc)
        return
    assert all(SLUG_RE.fullmatch(n) for n in got) and len(set(got)) == len(got)


@given(st.lists(st.text(max_size=210), max_size=4))
def test_any_model_list_is_normalised_or_refused_with_a_reason(patterns: list[str]) -> None:
    try:
        got = validate_allowed_models(patterns)
    except InvalidArgument as exc:
        assert "model pattern" in str(exc)
        return
    assert all(p and p == p.strip() and " " not in p for p in got)
