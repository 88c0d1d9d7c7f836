"""The control plane's pure parsers and validators, property-based: documented forms round-trip,
everything else is InvalidArgument (never another exception) with a bounded, printable message.
The same rules over gRPC, with the database checked, are in test_admin_fields_properties.py.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controlplane.domain.budgets import MAX_MICROS, Budget, Period, format_budget, parse_budget
from controlplane.domain.errors import MAX_MESSAGE_CHARS, InvalidArgument, shown
from controlplane.domain.keys import MAX_TTL_SECONDS, expires_at_ms
from controlplane.domain.names import validate_label, validate_slug
from controlplane.domain.providers import normalize_base_url

FAST = settings(max_examples=300, deadline=None)
ANY_TEXT = st.one_of(
    st.text(max_size=40),
    st.text("0123456789.,$/ dayweklimontsh-+_e²٣\0", max_size=30),
    st.builds(lambda n, u: "9" * n + u, st.integers(1, 6000), st.sampled_from(["", "d", "/day"])),
)


def invalid_or(fn: object, text: str) -> object:
    try:
        return fn(text)  # type: ignore[operator]
    except InvalidArgument as exc:
        message = str(exc)
        assert len(message) <= MAX_MESSAGE_CHARS and message.isprintable(), message
        return None


@FAST
@given(st.integers(1, MAX_MICROS), st.sampled_from(list(Period)))
def test_budgets_round_trip_through_their_display_form(micros: int, period: Period) -> None:
    budget = Budget(micros, period)
    assert parse_budget(format_budget(budget)) == budget


@FAST
@given(ANY_TEXT)
def test_any_budget_text_is_a_budget_in_range_or_invalid_argument(text: str) -> None:
    budget = invalid_or(parse_budget, text)
    if budget is not None:
        assert isinstance(budget, Budget) and 0 < budget.amount_micros <= MAX_MICROS


@FAST
@given(st.text(max_size=20000), st.integers(1, 200))
def test_shown_values_are_bounded_and_printable(value: str, limit: int) -> None:
    text = shown(value, limit)
    assert text.isprintable()
    assert len(text) <= len(repr(value[:limit])) + 30


@FAST
@given(st.text(min_size=MAX_MESSAGE_CHARS, max_size=20000))
def test_every_domain_message_fits_a_grpc_trailer(message: str) -> None:
    """gRPC sends details in a trailer (8 KiB by default); a longer one is RESOURCE_EXHAUSTED."""
    exc = InvalidArgument(message + " use dotted numbers")
    assert len(str(exc)) <= MAX_MESSAGE_CHARS
    assert str(exc).startswith(message[:100]) and str(exc).endswith("use dotted numbers")


@FAST
@given(st.text(max_size=120))
def test_labels_are_kept_exactly_or_refused_for_invisible_characters(value: str) -> None:
    invisible = {"\u2028", "\u2029", "\u202a", "\u202b", "\u202c", "\u202d", "\u202e"}
    invisible |= {"\u2066", "\u2067", "\u2068", "\u2069"}
    bad = len(value) > 100 or any(
        ord(c) < 32 or 127 <= ord(c) < 160 or c in invisible for c in value
    )
    if bad:
        with pytest.raises(InvalidArgument):
            validate_label(value, "key name")
    else:
        assert validate_label(value, "key name") == value


@FAST
@given(st.text(max_size=80))
def test_slugs_are_ascii_lowercase_or_refused(value: str) -> None:
    name = invalid_or(lambda v: validate_slug(v, "workspace name"), value)
    if name is not None:
        assert name == value and value.isascii() and value == value.lower() and len(value) <= 63


@FAST
@given(st.text(max_size=60))
def test_base_urls_are_clean_http_urls_or_refused(value: str) -> None:
    for kind in ("anthropic", "bedrock", "vertex", "simulator"):
        url = invalid_or(lambda v, k=kind: normalize_base_url(v, k), value)
        if url:
            assert isinstance(url, str) and url.startswith(("http://", "https://"))
            assert not any(c.isspace() or not c.isprintable() for c in url)
            assert "@" not in url.split("/")[2]


@FAST
@given(st.integers(-(2**63), 2**63 - 1))
def test_key_expiry_fits_int64_or_the_ttl_is_refused(ttl: int) -> None:
    now = 1_800_000_000_000
    if 0 <= ttl <= MAX_TTL_SECONDS:
        assert 0 <= expires_at_ms(now, ttl) < 2**63
    else:
        with pytest.raises(InvalidArgument, match="ttl_seconds"):
            expires_at_ms(now, ttl)
