import json
from importlib import resources

import pytest

from controlplane.domain.errors import InvalidArgument
from controlplane.domain.pricing import (
    PriceEntry,
    Rates,
    ToolRates,
    load_default_prices,
    parse_price_table,
    resolve_price,
    usd_per_mtok_to_micros,
)


def by_prefix() -> dict[str, PriceEntry]:
    return {e.model_prefix: e for e in load_default_prices()}


def test_default_table_matches_wire_md() -> None:
    t = by_prefix()
    new_opus = Rates(
        input=5_000_000,
        output=25_000_000,
        cache_write_5m=6_250_000,
        cache_write_1h=10_000_000,
        cache_read=500_000,
    )
    old_opus = Rates(
        input=15_000_000,
        output=75_000_000,
        cache_write_5m=18_750_000,
        cache_write_1h=30_000_000,
        cache_read=1_500_000,
    )
    sonnet = Rates(
        input=3_000_000,
        output=15_000_000,
        cache_write_5m=3_750_000,
        cache_write_1h=6_000_000,
        cache_read=300_000,
    )
    for v in ("4-5", "4-6", "4-7", "4-8"):
        assert t[f"claude-opus-{v}"].rates == new_opus
    assert t["claude-opus-4-1"].rates == old_opus
    assert t["claude-opus-4"].rates == old_opus
    for v in ("4", "4-5", "4-6"):
        assert t[f"claude-sonnet-{v}"].rates == sonnet
    assert t["claude-haiku-4-5"].rates == Rates(1_000_000, 5_000_000, 1_250_000, 2_000_000, 100_000)
    assert t["claude-3-5-haiku"].rates == Rates(800_000, 4_000_000, 1_000_000, 1_600_000, 80_000)
    assert len(t) == 11


def test_long_context_tier_only_on_sonnet_4_and_4_5() -> None:
    t = by_prefix()
    long = Rates(
        input=6_000_000,
        output=22_500_000,
        cache_write_5m=7_500_000,
        cache_write_1h=12_000_000,
        cache_read=600_000,
    )
    for prefix in ("claude-sonnet-4", "claude-sonnet-4-5"):
        e = t[prefix]
        assert (e.long_context_beta, e.long_context_threshold, e.long_rates) == (
            "context-1m",
            200_000,
            long,
        )
    others = [e for p, e in t.items() if p not in ("claude-sonnet-4", "claude-sonnet-4-5")]
    assert all(e.long_rates is None and e.long_context_threshold == 0 for e in others)


def test_family_defaults_are_the_newest() -> None:
    defaults = {e.family: e.model_prefix for e in load_default_prices() if e.family_default}
    assert defaults == {
        "opus": "claude-opus-4-8",
        "sonnet": "claude-sonnet-4-6",
        "haiku": "claude-haiku-4-5",
    }


def test_prices_json_uses_decimal_strings_not_floats() -> None:
    doc = json.loads(
        resources.files("controlplane.domain").joinpath("prices.json").read_text("utf-8"),
        parse_float=lambda s: pytest.fail(f"float {s} in prices.json"),
    )
    assert doc["prices"]


def test_usd_conversion() -> None:
    assert usd_per_mtok_to_micros("0.08") == 80_000
    assert usd_per_mtok_to_micros("22.50") == 22_500_000
    assert usd_per_mtok_to_micros(3) == 3_000_000
    for bad in (0.3, "-1", "0.0000001", "abc", True):
        with pytest.raises(InvalidArgument):
            usd_per_mtok_to_micros(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("model", "priced_as"),
    [
        ("claude-opus-4-8", "claude-opus-4-8"),
        ("claude-opus-4-5-20251101", "claude-opus-4-5"),
        ("claude-opus-4-20250514", "claude-opus-4"),
        ("claude-opus-4-1-20250805", "claude-opus-4-1"),
        ("claude-sonnet-4-5@20250929", "claude-sonnet-4-5"),
        ("claude-3-5-haiku-latest", "claude-3-5-haiku"),
        # Newer than the table: the family default, never the older "claude-opus-4" row.
        ("claude-opus-4-9", "family:opus"),
        ("claude-opus-4-10", "family:opus"),
        ("claude-sonnet-5", "family:sonnet"),
    ],
)
def test_resolve_price(model: str, priced_as: str) -> None:
    found = resolve_price(model, load_default_prices())
    assert found is not None and found[1] == priced_as


def test_resolve_unknown_family() -> None:
    assert resolve_price("gpt-4o", load_default_prices()) is None


def test_table_validation() -> None:
    rates = {
        "input": "1",
        "output": "1",
        "cache_write_5m": "1",
        "cache_write_1h": "1",
        "cache_read": "1",
    }
    with pytest.raises(InvalidArgument, match="exactly one family_default"):
        parse_price_table({"prices": [{"model_prefix": "a", "family": "opus", "rates": rates}]})
    with pytest.raises(InvalidArgument, match="duplicate"):
        parse_price_table(
            {
                "prices": [
                    {"model_prefix": "a", "family": "opus", "family_default": True, "rates": rates},
                    {"model_prefix": "a", "family": "opus", "rates": rates},
                ]
            }
        )
    with pytest.raises(InvalidArgument, match="family must be"):
        parse_price_table({"prices": [{"model_prefix": "a", "family": "gpt", "rates": rates}]})
    with pytest.raises(InvalidArgument, match="missing rates"):
        parse_price_table({"prices": [{"model_prefix": "a", "family": "opus", "rates": {}}]})


def test_server_tool_fees_apply_to_every_entry_unless_it_has_its_own() -> None:
    # Anthropic: $10 per 1,000 web searches; web fetch costs only its tokens.
    assert {e.tools for e in load_default_prices()} == {ToolRates(10_000_000, 0)}
    rates = {f: "1" for f in ("input", "output", "cache_write_5m", "cache_write_1h", "cache_read")}
    doc = {
        "server_tools": {"web_search_per_1k": "10"},
        "prices": [
            {"model_prefix": "claude-opus-4-8", "family": "opus", "family_default": True,
             "rates": rates},
            {"model_prefix": "claude-haiku-4-5", "family": "haiku", "family_default": True,
             "rates": rates, "server_tools": {"web_fetch_per_1k": "0.5"}},
        ],
    }  # fmt: skip
    table = {e.model_prefix: e.tools for e in parse_price_table(doc)}
    assert table == {
        "claude-opus-4-8": ToolRates(10_000_000, 0),
        "claude-haiku-4-5": ToolRates(10_000_000, 500_000),
    }
    doc["server_tools"] = {"code_execution_per_1k": "1"}
    with pytest.raises(InvalidArgument, match="unknown server-tool rate 'code_execution_per_1k'"):
        parse_price_table(doc)
