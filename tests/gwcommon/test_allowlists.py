"""The workspace access rules both planes apply (gwcommon.allowlists)."""

from __future__ import annotations

import fnmatch

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gwcommon.allowlists import (
    TargetDenial,
    allowed_targets_text,
    compile_models,
    pattern_covered,
    target_denial,
    uncovered_patterns,
)


def test_no_lists_allow_every_target() -> None:
    assert target_denial((), (), "anything", "") is None
    assert target_denial((), (), "", "any-route", ("p1", "p2")) is None


def test_provider_key_needs_a_listed_provider() -> None:
    assert target_denial(("a", "b"), (), "b", "") is None
    assert target_denial(("a", "b"), (), "c", "") == TargetDenial("provider", "c")


def test_routes_only_list_admits_no_direct_provider_key() -> None:
    assert target_denial((), ("main",), "a", "") == TargetDenial("provider", "a")
    assert target_denial((), ("main",), "", "main", ("x",)) is None
    assert target_denial((), ("main",), "", "other", ("x",)) == TargetDenial("route", "other")


def test_listed_route_is_allowed_whatever_it_reaches() -> None:
    # The admin who listed the route chose its targets.
    assert target_denial(("a",), ("main",), "", "main", ("a", "z")) is None


def test_unlisted_route_must_stay_within_the_providers() -> None:
    assert target_denial(("a", "b"), (), "", "r", ("a", "b")) is None
    assert target_denial(("a",), (), "", "r", ("a", "z")) == TargetDenial(
        "provider", "z", via_route="r"
    )
    # With routes listed too, an unlisted route is refused as a route.
    assert target_denial(("a",), ("main",), "", "r", ("a",)) == TargetDenial("route", "r")


def test_allowed_targets_text() -> None:
    assert allowed_targets_text(("a", "b"), ("main",)) == "providers a, b; routes main"
    assert allowed_targets_text((), ("main",)) == "routes main"
    assert allowed_targets_text((), ()) == "any provider or route"


@pytest.mark.parametrize(
    "model",
    [
        "claude-sonnet-4-5",
        "claude-sonnet-4-5-20250929",
        "claude-haiku-4-5",
        "claude-opus-4-8",
        "Claude-sonnet-4-5",
        "claude-sonnet",
        "xclaude-sonnet-4-5",
        "claude-haiku-4-5\nclaude-opus",
        "",
    ],
)
def test_compiled_patterns_match_exactly_like_fnmatchcase(model: str) -> None:
    patterns = ("claude-sonnet-*", "claude-haiku-4-[45]", "claude-haiku-?-5")
    regex = compile_models(patterns)
    assert regex is not None
    expected = any(fnmatch.fnmatchcase(model, p) for p in patterns)
    assert (regex.match(model) is not None) is expected


def test_empty_model_list_compiles_to_none() -> None:
    assert compile_models(()) is None


def test_pattern_coverage() -> None:
    ws = ("claude-sonnet-*", "claude-haiku-4-5")
    assert pattern_covered("claude-sonnet-*", ws)  # identical
    assert pattern_covered("claude-sonnet-4-5*", ws)  # narrower
    assert pattern_covered("claude-haiku-4-5", ws)
    assert not pattern_covered("claude-*", ws)  # wider
    assert not pattern_covered("claude-opus-4-8", ws)
    assert uncovered_patterns(("claude-*", "claude-sonnet-4-5", "*"), ws) == ["claude-*", "*"]
    assert uncovered_patterns(("anything",), ()) == []


_GLOB = st.text(alphabet="ab-*?[]!.4", min_size=1, max_size=8)
_MODEL = st.text(alphabet="ab-.4[]!", max_size=8)


@given(patterns=st.lists(_GLOB, min_size=1, max_size=4), model=_MODEL)
def test_one_compiled_regex_agrees_with_fnmatchcase(patterns: list[str], model: str) -> None:
    """The data plane's precompiled matcher decides exactly as fnmatchcase over the list."""
    regex = compile_models(patterns)
    assert regex is not None
    expected = any(fnmatch.fnmatchcase(model, p) for p in patterns)
    assert (regex.match(model) is not None) is expected


@given(key=st.lists(_GLOB, max_size=3), workspace=st.lists(_GLOB, min_size=1, max_size=3))
def test_a_covered_key_pattern_without_wildcards_is_admitted_at_request_time(
    key: list[str], workspace: list[str]
) -> None:
    """A literal key pattern accepted by the admin check is a model the data plane serves."""
    regex = compile_models(workspace)
    assert regex is not None
    for pattern in key:
        literal = not any(c in pattern for c in "*?[")
        if literal and pattern not in uncovered_patterns([pattern], workspace):
            assert regex.match(pattern) is not None
