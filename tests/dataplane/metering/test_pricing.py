"""PriceTable: exact integer costs, id normalisation, prefix matching, fallbacks, long context.

This module is long because prices are money: every rule of the table (normalisation, prefixes,
fallbacks, long context, cache reads and writes) gets its own exact-integer case."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from dataplane.metering import pricing
from dataplane.metering.meter import TokenUsage
from dataplane.metering.pricing import (
    DEFAULT_PRICES,
    Priced,
    PriceEntry,
    PriceTable,
    Rates,
    ToolRates,
    cost_micros,
    normalize_model,
)
from gwapi.v1 import common_pb2

TABLE = PriceTable(DEFAULT_PRICES)

# 1000 input, 2000 cache-write-5m, 500 cache-write-1h, 30000 cache read, 700 output.
MIXED = TokenUsage(
    input_tokens=1000,
    output_tokens=700,
    cache_creation_input_tokens=2500,
    cache_read_input_tokens=30000,
    cache_write_5m_tokens=2000,
    cache_write_1h_tokens=500,
)


@pytest.fixture(autouse=True)
def _fresh_warnings() -> Iterator[None]:
    pricing._warned.clear()
    yield
    pricing._warned.clear()


def test_rates_are_exact_micro_dollars_per_mtok() -> None:
    by_prefix = {e.model_prefix: e for e in DEFAULT_PRICES}
    assert by_prefix["claude-3-5-haiku"].rates == Rates(
        800_000, 4_000_000, 1_000_000, 1_600_000, 80_000
    )
    assert by_prefix["claude-opus-4-8"].rates == Rates(
        5_000_000, 25_000_000, 6_250_000, 10_000_000, 500_000
    )
    assert by_prefix["claude-sonnet-4-5"].long_rates == Rates(
        6_000_000, 22_500_000, 7_500_000, 12_000_000, 600_000
    )


# Expected figures by hand, in micro-dollars: tokens × $/MTok.
#   Opus 4.5–4.8: 1000×5 + 2000×6.25 + 500×10 + 30000×0.5 + 700×25
#               = 5000 + 12500 + 5000 + 15000 + 17500 = 55_000
#   Opus 4/4.1:   1000×15 + 2000×18.75 + 500×30 + 30000×1.5 + 700×75
#               = 15000 + 37500 + 15000 + 45000 + 52500 = 165_000
#   Sonnet 4.x:   1000×3 + 2000×3.75 + 500×6 + 30000×0.3 + 700×15
#               = 3000 + 7500 + 3000 + 9000 + 10500 = 33_000
#   Haiku 4.5:    1000×1 + 2000×1.25 + 500×2 + 30000×0.1 + 700×5
#               = 1000 + 2500 + 1000 + 3000 + 3500 = 11_000
#   Haiku 3.5:    1000×0.8 + 2000×1 + 500×1.6 + 30000×0.08 + 700×4
#               = 800 + 2000 + 800 + 2400 + 2800 = 8_800
@pytest.mark.parametrize(
    ("model", "expected", "priced_as"),
    [
        ("claude-opus-4-8", 55_000, "claude-opus-4-8"),
        ("claude-opus-4-7", 55_000, "claude-opus-4-7"),
        ("claude-opus-4-6", 55_000, "claude-opus-4-6"),
        ("claude-opus-4-5-20251101", 55_000, "claude-opus-4-5"),
        ("claude-opus-4-1-20250805", 165_000, "claude-opus-4-1"),
        ("claude-opus-4-20250514", 165_000, "claude-opus-4"),
        ("claude-sonnet-4-6", 33_000, "claude-sonnet-4-6"),
        ("claude-sonnet-4-5-20250929", 33_000, "claude-sonnet-4-5"),
        ("claude-sonnet-4-20250514", 33_000, "claude-sonnet-4"),
        ("claude-haiku-4-5-20251001", 11_000, "claude-haiku-4-5"),
        ("claude-3-5-haiku-20241022", 8_800, "claude-3-5-haiku"),
    ],
)
def test_exact_cost_per_family(model: str, expected: int, priced_as: str) -> None:
    assert TABLE.price(model, MIXED) == Priced(expected, priced_as, False)


def test_each_component_separately() -> None:
    r = Rates(
        input=3_000_000,
        output=15_000_000,
        cache_write_5m=3_750_000,
        cache_write_1h=6_000_000,
        cache_read=300_000,
    )
    assert cost_micros(TokenUsage(input_tokens=1_000_000), r) == 3_000_000
    assert cost_micros(TokenUsage(output_tokens=1_000_000), r) == 15_000_000
    assert (
        cost_micros(TokenUsage(cache_creation_input_tokens=10, cache_write_5m_tokens=10), r) == 38
    )  # 37.5
    assert (
        cost_micros(TokenUsage(cache_creation_input_tokens=10, cache_write_1h_tokens=10), r) == 60
    )
    assert cost_micros(TokenUsage(cache_read_input_tokens=10), r) == 3
    assert cost_micros(TokenUsage(), r) == 0


def test_rounding_is_half_up_and_happens_once() -> None:
    haiku = TABLE.lookup("claude-haiku-4-5")[0].rates  # read $0.10, write 5m $1.25
    # 4 reads = 0.4 µ$ and 1 write = 1.25 µ$: together 1.65 → 2 (rounding each part would give 1).
    u = TokenUsage(
        cache_read_input_tokens=4, cache_creation_input_tokens=1, cache_write_5m_tokens=1
    )
    assert cost_micros(u, haiku) == 2
    opus = TABLE.lookup("claude-opus-4-8")[0].rates  # read $0.50
    assert cost_micros(TokenUsage(cache_read_input_tokens=1), opus) == 1  # 0.5 → 1
    assert cost_micros(TokenUsage(cache_read_input_tokens=3), opus) == 2  # 1.5 → 2
    h35 = TABLE.lookup("claude-3-5-haiku")[0].rates  # read $0.08
    assert cost_micros(TokenUsage(cache_read_input_tokens=6), h35) == 0  # 0.48 → 0
    assert cost_micros(TokenUsage(cache_read_input_tokens=7), h35) == 1  # 0.56 → 1


def test_huge_counts_stay_exact() -> None:
    opus4 = TABLE.lookup("claude-opus-4")[0].rates
    u = TokenUsage(input_tokens=10**12 + 1, output_tokens=10**12 + 3)
    # (10^12+1)×15 + (10^12+3)×75 = 90×10^12 + 240 micro-dollars
    assert cost_micros(u, opus4) == 90 * 10**12 + 240


def test_unsplit_cache_writes_are_priced_as_5m() -> None:
    r = TABLE.lookup("claude-sonnet-4-6")[0].rates
    u = TokenUsage(cache_creation_input_tokens=1000)  # hand-built, no split
    assert cost_micros(u, r) == 3750


# --- model id normalisation -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("claude-sonnet-4-5-20250929", "claude-sonnet-4-5-20250929"),
        ("Claude-Opus-4-8 ", "claude-opus-4-8"),
        ("anthropic.claude-sonnet-4-5-20250929-v1:0", "claude-sonnet-4-5-20250929"),
        ("us.anthropic.claude-sonnet-4-5-20250929-v1:0", "claude-sonnet-4-5-20250929"),
        ("eu.anthropic.claude-haiku-4-5-20251001-v1:0", "claude-haiku-4-5-20251001"),
        ("apac.anthropic.claude-sonnet-4-20250514-v1:0", "claude-sonnet-4-20250514"),
        ("jp.anthropic.claude-sonnet-4-5-20250929-v1:0", "claude-sonnet-4-5-20250929"),
        ("global.anthropic.claude-opus-4-5-20251101-v1:0", "claude-opus-4-5-20251101"),
        ("us-gov.anthropic.claude-3-5-haiku-20241022-v1:0", "claude-3-5-haiku-20241022"),
        ("anthropic.claude-3-5-sonnet-20241022-v2:0", "claude-3-5-sonnet-20241022"),
        ("anthropic.claude-3-haiku-20240307-v1:0:48k", "claude-3-haiku-20240307"),
        ("anthropic.claude-sonnet-4-6", "claude-sonnet-4-6"),
        ("global.anthropic.claude-opus-4-8", "claude-opus-4-8"),
        (
            "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-opus-4-1-20250805-v1:0",
            "claude-opus-4-1-20250805",
        ),
        (
            "arn:aws:bedrock:us-west-2::foundation-model/anthropic.claude-sonnet-4-20250514-v1:0",
            "claude-sonnet-4-20250514",
        ),
        (
            "arn%3Aaws%3Abedrock%3Aus-east-1%3A1%3Ainference-profile%2Feu.anthropic.claude-haiku-4-5-20251001-v1%3A0",
            "claude-haiku-4-5-20251001",
        ),
        ("claude-sonnet-4-5@20250929", "claude-sonnet-4-5-20250929"),
        ("claude-haiku-4-5@20251001", "claude-haiku-4-5-20251001"),
        ("claude-3-5-sonnet-v2@20241022", "claude-3-5-sonnet-v2-20241022"),
        ("claude-opus-4-1@latest", "claude-opus-4-1"),
        (
            "projects/p/locations/global/publishers/anthropic/models/claude-opus-4-5@20251101:streamRawPredict",
            "claude-opus-4-5-20251101",
        ),
    ],
)
def test_normalize_model(raw: str, expected: str) -> None:
    assert normalize_model(raw) == expected


def test_bedrock_and_vertex_ids_price_like_anthropic_ids() -> None:
    expected = TABLE.price("claude-sonnet-4-5-20250929", MIXED)
    for model in (
        "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
        "global.anthropic.claude-sonnet-4-5-20250929-v1:0",
        "claude-sonnet-4-5@20250929",
    ):
        assert TABLE.price(model, MIXED) == expected


# --- matching -------------------------------------------------------------------------------------


def _entry(prefix: str, output: int, family: str = "opus", default: bool = False) -> PriceEntry:
    return PriceEntry(prefix, family, default, Rates(output // 5, output, 0, 0, 0))


def test_longest_prefix_wins() -> None:
    table = PriceTable([_entry("claude-opus-4", 75), _entry("claude-opus-4-5", 25)])
    assert table.lookup("claude-opus-4-5-20251101")[1:] == ("claude-opus-4-5", False)
    assert table.lookup("claude-opus-4-20250514")[1:] == ("claude-opus-4", False)
    assert table.lookup("claude-opus-4")[1:] == ("claude-opus-4", False)
    # Order of entries does not matter.
    table = PriceTable([_entry("claude-opus-4-5", 25), _entry("claude-opus-4", 75)])
    assert table.lookup("claude-opus-4-5-20251101")[1] == "claude-opus-4-5"


def test_prefix_must_end_at_a_boundary() -> None:
    table = PriceTable([_entry("claude-opus-4", 75), _entry("claude-opus-4-5", 25, default=True)])
    assert table.lookup("claude-opus-45")[1:] == ("family:opus", True)  # not a "-" boundary
    # A newer minor version is not a dated variant of Opus 4: it goes to the family default.
    assert table.lookup("claude-opus-4-9")[1:] == ("family:opus", True)
    assert table.lookup("claude-opus-4-10-20270101")[1:] == ("family:opus", True)
    assert table.lookup("claude-opus-4-latest")[1:] == ("claude-opus-4", False)


def test_claude_code_model_newer_than_table_uses_family_default() -> None:
    # The shipped table knows claude-opus-4-8 …
    assert TABLE.price("claude-opus-4-8", MIXED) == Priced(55_000, "claude-opus-4-8", False)
    # … a table that lacks it and has no opus family_default falls to the priciest opus entry.
    old = PriceTable([e for e in DEFAULT_PRICES if e.model_prefix != "claude-opus-4-8"])
    assert old.price("claude-opus-4-8", MIXED) == Priced(165_000, "family:opus", True)
    # With a family_default, newer models get the current family price.
    assert TABLE.price("claude-opus-5", MIXED) == Priced(55_000, "family:opus", True)
    assert TABLE.price("claude-sonnet-5-20270101", MIXED) == Priced(33_000, "family:sonnet", True)
    assert TABLE.price("claude-haiku-5", MIXED) == Priced(11_000, "family:haiku", True)
    assert TABLE.price("us.anthropic.claude-haiku-5-v1:0", MIXED) == Priced(
        11_000, "family:haiku", True
    )


def test_several_family_defaults_take_the_most_expensive() -> None:
    table = PriceTable(
        [
            _entry("a-opus", 10, default=True),
            _entry("b-opus", 30, default=True),
            _entry("c-opus", 99),
        ]
    )
    assert table.lookup("claude-opus-9")[0].model_prefix == "b-opus"


def test_unknown_family_and_no_family_fall_back_to_most_expensive() -> None:
    assert TABLE.price("gpt-4o", MIXED) == Priced(165_000, "fallback:most-expensive", True)
    assert TABLE.price("simulator", TokenUsage(output_tokens=1)).cost_micros == 75
    table = PriceTable([_entry("claude-opus-4", 75), _entry("claude-sonnet-4", 15, "sonnet", True)])
    assert table.lookup("claude-haiku-4-5")[1:] == ("fallback:most-expensive", True)
    assert table.lookup("claude-haiku-4-5")[0].model_prefix == "claude-opus-4"


def test_never_zero_for_unknown_models() -> None:
    for model in ("", "x", "claude-next", "anthropic.mystery-v1:0", "claude-sonnet"):
        assert TABLE.price(model, MIXED).cost_micros > 0
        assert TABLE.price(model, MIXED).fallback


def test_unknown_model_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="tollgate.pricing")
    for _ in range(3):
        TABLE.price("claude-opus-9", MIXED)
    TABLE.price("global.anthropic.claude-opus-9-v1:0", MIXED)  # same model, other spelling
    PriceTable(DEFAULT_PRICES).price("claude-opus-9", MIXED)  # a new snapshot's table
    TABLE.price("claude-sonnet-4-5", MIXED)  # known: no warning
    records = [r for r in caplog.records if r.name == "tollgate.pricing"]
    assert len(records) == 1
    assert "claude-opus-9" in records[0].getMessage() and "family:opus" in records[0].getMessage()
    TABLE.price("mystery", MIXED)
    assert len([r for r in caplog.records if r.name == "tollgate.pricing"]) == 2


# --- long context ---------------------------------------------------------------------------------

BETAS = ("claude-code-20250219", "context-1m-2025-08-07", "interleaved-thinking-2025-05-14")


def test_long_context_at_and_just_above_threshold() -> None:
    at = TokenUsage(
        input_tokens=1000,
        cache_creation_input_tokens=50_000,
        cache_write_5m_tokens=50_000,
        cache_read_input_tokens=149_000,
        output_tokens=1000,
    )
    assert at.prompt_tokens == 200_000
    # 1000×3 + 50000×3.75 + 149000×0.3 + 1000×15 = 3000 + 187500 + 44700 + 15000
    assert TABLE.price("claude-sonnet-4-5-20250929", at, BETAS) == Priced(
        250_200, "claude-sonnet-4-5", False
    )
    above = TokenUsage(
        input_tokens=1000,
        cache_creation_input_tokens=50_000,
        cache_write_5m_tokens=50_000,
        cache_read_input_tokens=149_001,
        output_tokens=1000,
    )
    # Whole request at long rates: 1000×6 + 50000×7.5 + 149001×0.6 + 1000×22.5
    #   = 6000 + 375000 + 89400.6 + 22500 = 492900.6 → 492901
    assert TABLE.price("claude-sonnet-4-5-20250929", above, BETAS) == Priced(
        492_901, "claude-sonnet-4-5+long-context", False
    )
    assert (
        TABLE.price("us.anthropic.claude-sonnet-4-20250514-v1:0", above, BETAS).cost_micros
        == 492_901
    )


def test_long_context_needs_the_beta() -> None:
    big = TokenUsage(input_tokens=300_000, output_tokens=10)
    normal = TABLE.price("claude-sonnet-4-5", big)
    assert normal == Priced(300_000 * 3 + 150, "claude-sonnet-4-5", False)
    assert TABLE.price("claude-sonnet-4-5", big, ("claude-code-20250219",)) == normal
    joined = ("claude-code-20250219,context-1m-2025-08-07",)  # one raw header value
    assert TABLE.price("claude-sonnet-4-5", big, joined).cost_micros == 300_000 * 6 + 225


def test_long_context_only_where_configured() -> None:
    big = TokenUsage(input_tokens=300_000)
    assert TABLE.price("claude-sonnet-4-6", big, BETAS) == Priced(
        900_000, "claude-sonnet-4-6", False
    )
    assert TABLE.price("claude-opus-4-8", big, BETAS).priced_as == "claude-opus-4-8"


def test_long_context_with_empty_beta_needs_no_beta() -> None:
    e = PriceEntry("m", "", False, Rates(1, 1, 1, 1, 1), 10, "", Rates(2, 2, 2, 2, 2))
    table = PriceTable([e])
    assert table.price("m", TokenUsage(input_tokens=1_000_000)).cost_micros == 2
    assert table.price("m", TokenUsage(input_tokens=10)).priced_as == "m"


# --- construction ---------------------------------------------------------------------------------


def test_from_proto() -> None:
    rates = common_pb2.PriceRates(
        input=3_000_000,
        output=15_000_000,
        cache_write_5m=3_750_000,
        cache_write_1h=6_000_000,
        cache_read=300_000,
    )
    long = common_pb2.PriceRates(
        input=6_000_000,
        output=22_500_000,
        cache_write_5m=7_500_000,
        cache_write_1h=12_000_000,
        cache_read=600_000,
    )
    msgs = [
        common_pb2.Price(
            model_prefix="claude-sonnet-4-5",
            family="sonnet",
            family_default=True,
            rates=rates,
            long_context_threshold=200_000,
            long_context_beta="context-1m",
            long_rates=long,
        ),
        common_pb2.Price(
            model_prefix="Claude-Haiku-4-5",
            family="Haiku",
            rates=common_pb2.PriceRates(input=1_000_000, output=5_000_000),
        ),
    ]
    table = PriceTable.from_proto(msgs)
    by_prefix = {e.model_prefix: e for e in table.entries}
    assert by_prefix["claude-sonnet-4-5"] == PriceEntry(
        "claude-sonnet-4-5",
        "sonnet",
        True,
        Rates(3_000_000, 15_000_000, 3_750_000, 6_000_000, 300_000),
        200_000,
        "context-1m",
        Rates(6_000_000, 22_500_000, 7_500_000, 12_000_000, 600_000),
    )
    assert by_prefix["claude-haiku-4-5"].long_rates is None
    assert by_prefix["claude-haiku-4-5"].family == "haiku"
    assert table.price("claude-sonnet-4-5", MIXED) == Priced(33_000, "claude-sonnet-4-5", False)


# --- server tools -------------------------------------------------------------------------------


def test_server_tool_fees_are_priced_from_the_entry() -> None:
    # Defaults: $10 per 1,000 web searches (10,000 µ$ each), web fetch free.
    searches = TokenUsage(input_tokens=1000, output_tokens=700, web_search_requests=3)
    # Opus 4.8: 1000×5 + 700×25 = 22_500 µ$ of tokens, + 3 × 10_000
    assert TABLE.price("claude-opus-4-8", searches) == Priced(52_500, "claude-opus-4-8", False)
    fetches = TokenUsage(web_fetch_requests=5)
    assert TABLE.price("claude-opus-4-8", fetches).cost_micros == 0
    # Every entry carries them, fallbacks included: a search is never free by accident.
    assert TABLE.price("claude-opus-9", TokenUsage(web_search_requests=1)).cost_micros == 10_000
    # Long context changes the token rates, not the tool fees.
    long = TokenUsage(input_tokens=200_001, web_search_requests=2)
    priced = TABLE.price("claude-sonnet-4-5", long, ["context-1m-2025-08-07"])
    assert priced == Priced(200_001 * 6 + 20_000, "claude-sonnet-4-5+long-context", False)


def test_server_tool_fees_round_once_with_the_tokens() -> None:
    rates = Rates(0, 0, 0, 0, 80_000)  # $0.08/MTok reads: 1 read = 0.08 µ$
    tools = ToolRates(web_search_per_1k=1_500, web_fetch_per_1k=1)  # 1.5 µ$ and 0.001 µ$ each
    assert cost_micros(TokenUsage(web_search_requests=1), rates, tools) == 2  # 1.5 → 2
    u = TokenUsage(cache_read_input_tokens=5, web_fetch_requests=100)  # 0.4 + 0.1 = 0.5 → 1
    assert cost_micros(u, rates, tools) == 1


def test_server_tool_fees_from_proto() -> None:
    table = PriceTable.from_proto(
        [
            common_pb2.Price(
                model_prefix="claude-haiku-4-5",
                family="haiku",
                rates=common_pb2.PriceRates(input=1_000_000, output=5_000_000),
                web_search_per_1k=10_000_000,
                web_fetch_per_1k=2_000_000,
            )
        ]
    )
    (entry,) = table.entries
    assert entry.tools == ToolRates(10_000_000, 2_000_000)
    u = TokenUsage(web_search_requests=2, web_fetch_requests=3)
    assert table.price("claude-haiku-4-5", u).cost_micros == 26_000
    with pytest.raises(ValueError, match="non-negative"):
        ToolRates(web_search_per_1k=-1)


def test_invalid_entries_are_rejected() -> None:
    with pytest.raises(ValueError, match="non-negative"):
        Rates(-1, 0, 0, 0, 0)
    with pytest.raises(ValueError, match="duplicate"):
        PriceTable([_entry("claude-opus-4", 1), _entry("Claude-Opus-4", 2)])
    with pytest.raises(ValueError, match="model_prefix"):
        PriceTable([_entry(" ", 1)])
    with pytest.raises(ValueError, match="non-negative"):
        PriceTable.from_proto(
            [common_pb2.Price(model_prefix="x", rates=common_pb2.PriceRates(input=-5))]
        )


def test_empty_table_uses_defaults_not_zero(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="tollgate.pricing")
    table = PriceTable.from_proto([])
    assert table.price("claude-opus-4-8", MIXED) == Priced(55_000, "claude-opus-4-8", False)
    PriceTable([])
    assert len([r for r in caplog.records if "empty" in r.getMessage()]) == 1


def test_lookup_cache_is_bounded() -> None:
    table = PriceTable(DEFAULT_PRICES)
    for i in range(PriceTable._CACHE_MAX + 10):
        table.lookup(f"claude-sonnet-4-5-{i:08d}")
    assert len(table._cache) <= PriceTable._CACHE_MAX


def test_huge_distinct_model_ids_do_not_grow_memory(caplog: pytest.LogCaptureFixture) -> None:
    """P2 finding 3: the lookup cache and the warned-once set used to keep every distinct raw
    id, whatever its size (a few hundred 30 MB names killed the process). Both are bounded by
    key length as well as count now; huge ids are priced, just not remembered."""
    import tracemalloc

    table = PriceTable(DEFAULT_PRICES)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(40):
            model = f"claude-opus-zz{i}-" + "x" * (1024 * 1024)  # 1 MiB each, all distinct
            assert table.price(model, MIXED).priced_as == "family:opus"
        retained = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert retained < 2 * 1024 * 1024, f"{retained} bytes retained for 40 MiB of ids"
    assert all(len(k) <= pricing.KEY_CHARS for k in table._cache)
    assert all(len(k) <= pricing.KEY_CHARS for k in pricing._warned)
    assert max(len(r.getMessage()) for r in caplog.records) < 1000  # the log quotes ids cut
