"""Request cost in integer micro-dollars, from token usage and a per-model price table.

Contract:

* Rates are integer micro-dollars per **million** tokens ($0.08/MTok = 80_000). A request's cost is
  ``round_half_up(Σ tokens_i × rate_i / 1_000_000)``, computed in integers once at the end, so it
  is exact to the micro-dollar; floats never appear.
* Model ids are normalised first (``normalize_model``): Bedrock ids and ARNs, Vertex ``@date`` ids
  and plain Anthropic ids all map to the lower-cased Anthropic id.
* Matching: the longest ``model_prefix`` the normalised id starts with, where the prefix must end
  at a *boundary*: the end of the id, or a ``-`` that does not start a 1–2 digit version segment.
  So ``claude-opus-4`` matches ``claude-opus-4`` and ``claude-opus-4-20250514`` (a date) but not
  ``claude-opus-4-5-…`` nor a future ``claude-opus-4-9`` (a newer minor version, which must not
  inherit Opus 4's old price; it falls through to the family rule below).
* Fallback for ids no prefix matches — never silently zero, and logged (``tollgate.pricing``,
  warning) once per normalised id:

  1. the id names a family (``opus``, ``sonnet`` or ``haiku``, checked in that order) → that
     family's ``family_default`` entry (the most expensive one if several are marked; the most
     expensive entry of the family if none is) — ``priced_as="family:<family>"``, ``fallback=True``;
  2. otherwise, or when the table has no entry of that family → the most expensive entry (highest
     output rate, then input rate) — ``priced_as="fallback:most-expensive"``, ``fallback=True``.

* Long context: when an entry has ``long_rates``, the prompt (input + cache writes + cache reads)
  exceeds ``long_context_threshold`` and some beta starts with ``long_context_beta`` (an empty
  ``long_context_beta`` requires no beta), the **whole** request is billed at ``long_rates``, and
  ``priced_as`` gets a ``+long-context`` suffix.
* Server tools: each entry's ``tools`` (:class:`ToolRates`, micro-dollars per 1,000 requests)
  prices ``web_search_requests`` and ``web_fetch_requests``; the fee is added to the token cost
  before the one rounding, whatever the long-context tier.
* An empty table prices by ``DEFAULT_PRICES`` (WIRE.md's list) rather than at zero.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import unquote

from dataplane.metering.meter import TokenUsage
from gwapi.v1 import common_pb2
from gwcommon.price_rates import NO_TOOL_FEES, PriceEntry, Rates, ToolRates

__all__ = [
    "DEFAULT_PRICES",
    "PriceEntry",
    "PriceTable",
    "Priced",
    "Rates",
    "ToolRates",
    "cost_micros",
    "normalize_model",
]

log = logging.getLogger("tollgate.pricing")

_PER = 1_000_000  # rates are per million tokens
FAMILIES = ("opus", "sonnet", "haiku")
MOST_EXPENSIVE = "fallback:most-expensive"
LONG_CONTEXT_SUFFIX = "+long-context"


@dataclass(frozen=True, slots=True)
class Priced:
    cost_micros: int
    priced_as: str
    fallback: bool


def cost_micros(usage: TokenUsage, rates: Rates, tools: ToolRates = NO_TOOL_FEES) -> int:
    """Exact cost of ``usage`` at ``rates`` (tokens) and ``tools`` (server-tool requests),
    rounded half up to the micro-dollar."""
    # Cache writes the 5m/1h split does not explain are billed as 5m (see dataplane.metering.meter).
    unsplit = (
        usage.cache_creation_input_tokens
        - usage.cache_write_5m_tokens
        - usage.cache_write_1h_tokens
    )
    total = (
        usage.input_tokens * rates.input
        + usage.output_tokens * rates.output
        + (usage.cache_write_5m_tokens + max(0, unsplit)) * rates.cache_write_5m
        + usage.cache_write_1h_tokens * rates.cache_write_1h
        + usage.cache_read_input_tokens * rates.cache_read
        # per 1,000 requests, scaled to the same unit (micro-dollars × 1e6): × 1e6 / 1e3
        + (
            usage.web_search_requests * tools.web_search_per_1k
            + usage.web_fetch_requests * tools.web_fetch_per_1k
        )
        * (_PER // 1000)
    )
    return (total + _PER // 2) // _PER


# --- model id normalisation -----------------------------------------------------------------------

# Bedrock: optional inference-profile region ("us.", "global.", "us-gov.", …) then "anthropic.".
_BEDROCK_PREFIX = re.compile(
    r"^(?:[a-z][a-z-]*\.)?anthropic\.|^(?:us|eu|apac|jp|au|ca|global|us-gov)\.(?=claude)"
)
# Bedrock version suffix: "-v1:0", "-v2:0", and the old context variants ("-v1:0:200k").
_BEDROCK_SUFFIX = re.compile(r"-v\d+:\d+(?::\d+k)?$")
# Vertex: "claude-sonnet-4-5@20250929"; "@latest"-style aliases carry no date and are dropped.
_VERTEX_VERSION = re.compile(r"@(\d{8})?[^@]*$")
_VERTEX_METHOD = re.compile(r":(?:stream)?rawpredict$")


def normalize_model(model: str) -> str:
    """Plain lower-case Anthropic model id from an Anthropic, Bedrock or Vertex id (or ARN/path)."""
    m = model.strip().lower()
    if "%" in m:  # URL-quoted ids straight from a path (ARNs quote "/" and ":")
        m = unquote(m)
    if "/" in m:  # ARN (…:inference-profile/us.anthropic.…) or a Vertex resource path
        m = m.rsplit("/", 1)[1]
    m = _VERTEX_METHOD.sub("", m)
    if "@" in m:
        m = _VERTEX_VERSION.sub(lambda g: f"-{g.group(1)}" if g.group(1) else "", m)
    if "." in m:
        m = _BEDROCK_PREFIX.sub("", m)
    if ":" in m:
        m = _BEDROCK_SUFFIX.sub("", m)
    return m


def _at_boundary(model: str, end: int) -> bool:
    if end == len(model):
        return True
    if model[end] != "-":
        return False
    segment = model[end + 1 :].split("-", 1)[0]
    # "-5" / "-10" is a newer minor version, not a variant of the prefix's model.
    return not (segment.isdigit() and len(segment) <= 2)


def _expense(e: PriceEntry) -> tuple[int, int, str]:
    return (e.rates.output, e.rates.input, e.model_prefix)


def _family_of(model: str) -> str | None:
    for family in FAMILIES:
        if family in model:
            return family
    return None


# Model ids already warned about, process-wide: snapshots (and so tables) are rebuilt often.
# Model ids come from clients (and upstreams), so both this set and each table's lookup cache
# are bounded in count and in key length: at most _WARNED_MAX / _CACHE_MAX keys of at most
# KEY_CHARS characters each (~1 MiB apiece), however many distinct or huge ids arrive. An id
# longer than that is priced without being cached, and warned about by its first KEY_CHARS.
KEY_CHARS = 256
_warned: set[str] = set()
_WARNED_MAX = 4096


def _warn_once(model: str, normalised: str, priced_as: str, entry: PriceEntry | None) -> None:
    key = normalised[:KEY_CHARS]
    if key in _warned:
        return
    if len(_warned) >= _WARNED_MAX:
        _warned.clear()
    _warned.add(key)
    if entry is None:
        log.warning("the price table is empty; pricing by %s", priced_as)
        return
    log.warning(
        "model %r is not in the price table; pricing it as %s (entry %r)",
        model[:KEY_CHARS],
        priced_as,
        entry.model_prefix,
    )


class PriceTable:
    """An immutable price table; ``price`` and ``lookup`` are pure apart from the warning log."""

    __slots__ = ("_by_length", "_cache", "_families", "_most_expensive", "entries")

    _CACHE_MAX = 4096

    def __init__(self, entries: Sequence[PriceEntry]) -> None:
        if not entries:
            _warn_once("", "", "the built-in DEFAULT_PRICES", None)
            entries = DEFAULT_PRICES
        seen: set[str] = set()
        normalised: list[PriceEntry] = []
        for e in entries:
            prefix, family = e.model_prefix.strip().lower(), e.family.strip().lower()
            if not prefix:
                raise ValueError("a price entry needs a model_prefix")
            if prefix in seen:
                raise ValueError(f"duplicate price entry for model prefix {prefix!r}")
            if e.long_context_threshold < 0:
                raise ValueError(f"{prefix}: long_context_threshold must not be negative")
            seen.add(prefix)
            if (prefix, family) != (e.model_prefix, e.family):
                e = PriceEntry(
                    prefix,
                    family,
                    e.family_default,
                    e.rates,
                    e.long_context_threshold,
                    e.long_context_beta,
                    e.long_rates,
                    e.tools,
                )
            normalised.append(e)
        self.entries: tuple[PriceEntry, ...] = tuple(normalised)
        self._by_length = sorted(self.entries, key=lambda e: -len(e.model_prefix))
        self._most_expensive = max(self.entries, key=_expense)
        self._families: dict[str, PriceEntry] = {}
        for family in FAMILIES:
            members = [e for e in self.entries if e.family == family]
            defaults = [e for e in members if e.family_default] or members
            if defaults:
                self._families[family] = max(defaults, key=_expense)
        self._cache: dict[str, tuple[PriceEntry, str, bool]] = {}

    @classmethod
    def from_proto(cls, prices: Iterable[common_pb2.Price]) -> PriceTable:
        """Build from snapshot ``Price`` messages. Raises ValueError on an invalid entry."""
        entries = [
            PriceEntry(
                model_prefix=p.model_prefix,
                family=p.family,
                family_default=p.family_default,
                rates=_rates_from_proto(p.rates),
                long_context_threshold=p.long_context_threshold,
                long_context_beta=p.long_context_beta,
                long_rates=_rates_from_proto(p.long_rates) if p.HasField("long_rates") else None,
                tools=ToolRates(p.web_search_per_1k, p.web_fetch_per_1k),
            )
            for p in prices
        ]
        return cls(entries)

    def lookup(self, model: str) -> tuple[PriceEntry, str, bool]:
        """``(entry, priced_as, fallback)`` for ``model``, by the rules in the module docstring."""
        hit = self._cache.get(model)
        if hit is not None:
            return hit
        m = normalize_model(model)
        for e in self._by_length:
            if m.startswith(e.model_prefix) and _at_boundary(m, len(e.model_prefix)):
                hit = (e, e.model_prefix, False)
                break
        else:
            family = _family_of(m)
            entry = self._families.get(family) if family else None
            if entry is not None:
                hit = (entry, f"family:{family}", True)
            else:
                hit = (self._most_expensive, MOST_EXPENSIVE, True)
            _warn_once(model, m, hit[1], hit[0])
        if len(model) <= KEY_CHARS:  # see _warned: bounded in count and key length
            if len(self._cache) >= self._CACHE_MAX:
                self._cache.clear()
            self._cache[model] = hit
        return hit

    def price(self, model: str, usage: TokenUsage, betas: Collection[str] = ()) -> Priced:
        """Cost of one request. ``betas`` are anthropic-beta values (comma-joined ones are split)."""
        entry, priced_as, fallback = self.lookup(model)
        rates = entry.rates
        if (
            entry.long_rates is not None
            and usage.prompt_tokens > entry.long_context_threshold
            and _has_beta(betas, entry.long_context_beta)
        ):
            rates = entry.long_rates
            priced_as += LONG_CONTEXT_SUFFIX
        return Priced(cost_micros(usage, rates, entry.tools), priced_as, fallback)


def _has_beta(betas: Collection[str], wanted: str) -> bool:
    if not wanted:
        return True
    return any(b.strip().startswith(wanted) for item in betas for b in item.split(","))


def _rates_from_proto(r: common_pb2.PriceRates) -> Rates:
    return Rates(r.input, r.output, r.cache_write_5m, r.cache_write_1h, r.cache_read)


def _usd(*per_mtok: str) -> Rates:
    """Rates from dollar strings per MTok, converted exactly (no float ever)."""
    micros = []
    for s in per_mtok:
        whole, _, frac = s.partition(".")
        micros.append(int(whole) * _PER + int((frac + "000000")[:6]))
    return Rates(*micros)


# USD per MTok in the order input, output, cache write 5m, cache write 1h, cache read (WIRE.md).
_OPUS_45 = _usd("5", "25", "6.25", "10", "0.50")
_OPUS_4 = _usd("15", "75", "18.75", "30", "1.50")
_SONNET_4 = _usd("3", "15", "3.75", "6", "0.30")
_SONNET_4_LONG = _usd("6", "22.50", "7.50", "12", "0.60")
_HAIKU_45 = _usd("1", "5", "1.25", "2", "0.10")
_HAIKU_35 = _usd("0.80", "4", "1.00", "1.60", "0.08")
_TOOLS = ToolRates(web_search_per_1k=10 * _PER)  # $10 per 1,000 searches; web fetch is free

# The shipped defaults; the control plane's table (in the snapshot) normally replaces them.
DEFAULT_PRICES: tuple[PriceEntry, ...] = (
    PriceEntry("claude-opus-4-8", "opus", True, _OPUS_45, tools=_TOOLS),
    PriceEntry("claude-opus-4-7", "opus", False, _OPUS_45, tools=_TOOLS),
    PriceEntry("claude-opus-4-6", "opus", False, _OPUS_45, tools=_TOOLS),
    PriceEntry("claude-opus-4-5", "opus", False, _OPUS_45, tools=_TOOLS),
    PriceEntry("claude-opus-4-1", "opus", False, _OPUS_4, tools=_TOOLS),
    PriceEntry("claude-opus-4", "opus", False, _OPUS_4, tools=_TOOLS),
    PriceEntry("claude-sonnet-4-6", "sonnet", True, _SONNET_4, tools=_TOOLS),
    PriceEntry(
        "claude-sonnet-4-5",
        "sonnet",
        False,
        _SONNET_4,
        200_000,
        "context-1m",
        _SONNET_4_LONG,
        _TOOLS,
    ),
    PriceEntry(
        "claude-sonnet-4", "sonnet", False, _SONNET_4, 200_000, "context-1m", _SONNET_4_LONG, _TOOLS
    ),
    PriceEntry("claude-haiku-4-5", "haiku", True, _HAIKU_45, tools=_TOOLS),
    PriceEntry("claude-3-5-haiku", "haiku", False, _HAIKU_35, tools=_TOOLS),
)
