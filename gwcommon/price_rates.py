"""The price table's value objects, one definition for both planes.

The control plane parses ``prices.json`` into these (``controlplane.domain.pricing``) and the data
plane prices requests with them (``dataplane.metering.pricing``); both must agree on what a rate
is. Every amount is integer micro-dollars: per **million** tokens for :class:`Rates`, per 1,000
requests for :class:`ToolRates`. A negative or non-integer amount is refused at construction
(``ValueError``), so no table can price below zero or through a float.
"""

from __future__ import annotations

from dataclasses import dataclass

RATE_FIELDS = ("input", "output", "cache_write_5m", "cache_write_1h", "cache_read")
TOOL_FIELDS = ("web_search_per_1k", "web_fetch_per_1k")


def _check_amounts(obj: object, fields: tuple[str, ...]) -> None:
    for name in fields:
        value = getattr(obj, name)
        if type(value) is not int or value < 0:
            raise ValueError(f"rate {name} must be a non-negative integer, got {value!r}")


@dataclass(frozen=True, slots=True)
class Rates:
    """Integer micro-dollars per million tokens ($3.00/MTok = 3_000_000)."""

    input: int
    output: int
    cache_write_5m: int
    cache_write_1h: int
    cache_read: int

    def __post_init__(self) -> None:
        _check_amounts(self, RATE_FIELDS)


@dataclass(frozen=True, slots=True)
class ToolRates:
    """Server-tool fees: integer micro-dollars per 1,000 requests ($10 per 1,000 = 10_000_000)."""

    web_search_per_1k: int = 0
    web_fetch_per_1k: int = 0

    def __post_init__(self) -> None:
        _check_amounts(self, TOOL_FIELDS)


NO_TOOL_FEES = ToolRates()


@dataclass(frozen=True, slots=True)
class PriceEntry:
    """One row of the table: the ids it prices (``model_prefix``, see each plane's matching
    rule), its family and whether it is that family's default, its rates, and an optional
    long-context tier (``long_rates`` above ``long_context_threshold`` prompt tokens, under the
    beta ``long_context_beta``)."""

    model_prefix: str
    family: str
    family_default: bool
    rates: Rates
    long_context_threshold: int = 0
    long_context_beta: str = ""
    long_rates: Rates | None = None
    tools: ToolRates = NO_TOOL_FEES
