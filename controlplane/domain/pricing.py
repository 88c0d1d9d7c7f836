"""The price table: data (``prices.json``), parsed into integer micro-dollars per MTok.

``prices.json`` holds decimal strings in USD per million tokens so a human can edit it; they are
converted with :class:`~decimal.Decimal` (``"0.08"`` → ``80_000``), never through a float.

Matching rule (applied by the data plane, whose ``dataplane/metering/pricing.py`` is authoritative;
:func:`resolve_price` is the reference for tests and tools): normalise the model id (drop
provider prefixes such as ``us.anthropic.`` and suffixes such as ``-v1:0``), then take the entry
with the longest ``model_prefix`` that matches *on a version boundary*: the rest of the id must be
empty, ``@…`` (Vertex), ``-YYYYMMDD…`` (a date) or ``-latest``. So ``claude-opus-4-20250514`` is
Opus 4, but ``claude-opus-4-9`` (newer than the table) is *not* Opus 4 and ``claude-opus-4-10`` is
not Opus 4.1. When nothing matches, use the ``family_default`` entry of the family named in the
id (``opus``/``sonnet``/``haiku``); each family in the table has exactly one, its newest model.

Server-tool fees (``server_tools``: USD per 1,000 requests of ``web_search`` and ``web_fetch``, as
the answer's ``usage.server_tool_use`` counts them) are given once at the top of ``prices.json``
and apply to every entry that does not give its own. Code execution is billed per container-hour,
which no answer reports, so it has no rate here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from importlib import resources
from typing import Any

from controlplane.domain.errors import InvalidArgument

# The value objects are shared with the data plane; they stay importable from here (explicitly
# re-exported) because this module is where the control plane's code looks for the price table.
from gwcommon.price_rates import RATE_FIELDS, TOOL_FIELDS
from gwcommon.price_rates import PriceEntry as PriceEntry
from gwcommon.price_rates import Rates as Rates
from gwcommon.price_rates import ToolRates as ToolRates

FAMILIES = ("opus", "sonnet", "haiku")
_BOUNDARY_RE = re.compile(r"^(?:$|@|-\d{8}(?:$|[-@:])|-latest$)")


def usd_per_mtok_to_micros(value: str | int) -> int:
    """``"0.08"`` → ``80_000``. Strings or ints only: a float has already lost precision."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise InvalidArgument(f"price {value!r} must be a decimal string such as '0.30'")
    try:
        micros = Decimal(str(value)) * 1_000_000
    except InvalidOperation as exc:
        raise InvalidArgument(f"invalid price {value!r}") from exc
    if micros < 0 or micros != micros.to_integral_value():
        raise InvalidArgument(f"invalid price {value!r}: non-negative, at most 6 decimals")
    return int(micros)


def _rates(doc: Mapping[str, Any], where: str) -> Rates:
    missing = [f for f in RATE_FIELDS if f not in doc]
    if missing:
        raise InvalidArgument(f"{where}: missing rates {', '.join(missing)}")
    return Rates(**{f: usd_per_mtok_to_micros(doc[f]) for f in RATE_FIELDS})


def _tool_rates(doc: Mapping[str, Any], where: str, base: ToolRates) -> ToolRates:
    """``{"web_search_per_1k": "10", …}`` (USD per 1,000 requests); fields not given keep ``base``."""
    unknown = sorted(set(doc) - set(TOOL_FIELDS))
    if unknown:
        raise InvalidArgument(
            f"{where}: unknown server-tool rate {unknown[0]!r}: use {', '.join(TOOL_FIELDS)}"
        )
    values = {
        f: usd_per_mtok_to_micros(doc[f]) if f in doc else getattr(base, f) for f in TOOL_FIELDS
    }
    return ToolRates(**values)


def default_tool_rates(doc: Mapping[str, Any]) -> ToolRates:
    """The table-wide server-tool fees of a ``prices.json`` document (zero when absent)."""
    return _tool_rates(doc.get("server_tools", {}), "server_tools", ToolRates())


def parse_price_table(doc: Mapping[str, Any]) -> tuple[PriceEntry, ...]:
    """Parse the ``prices.json`` document and validate it (see :func:`validate_price_table`)."""
    entries: list[PriceEntry] = []
    table_tools = default_tool_rates(doc)
    for item in doc.get("prices", []):
        prefix = str(item.get("model_prefix", ""))
        where = f"price {prefix or '?'}"
        long_doc = item.get("long_context")
        entries.append(
            PriceEntry(
                model_prefix=prefix,
                family=str(item.get("family", "")),
                family_default=bool(item.get("family_default", False)),
                rates=_rates(item.get("rates", {}), where),
                long_context_threshold=int(long_doc["threshold"]) if long_doc else 0,
                long_context_beta=str(long_doc["beta"]) if long_doc else "",
                long_rates=_rates(long_doc["rates"], where + " long_context") if long_doc else None,
                tools=_tool_rates(item.get("server_tools", {}), where, table_tools),
            )
        )
    return validate_price_table(entries)


def validate_price_table(entries: Iterable[PriceEntry]) -> tuple[PriceEntry, ...]:
    """Unique prefixes, known families, one default per family; returns entries sorted by prefix."""
    by_prefix: dict[str, PriceEntry] = {}
    defaults: dict[str, list[str]] = {}
    for e in entries:
        if not e.model_prefix:
            raise InvalidArgument("a price entry needs a model_prefix")
        if e.model_prefix in by_prefix:
            raise InvalidArgument(f"duplicate price entry {e.model_prefix!r}")
        if e.family not in FAMILIES:
            raise InvalidArgument(
                f"price {e.model_prefix}: family must be one of {', '.join(FAMILIES)}"
            )
        if (e.long_rates is None) != (e.long_context_threshold == 0):
            raise InvalidArgument(
                f"price {e.model_prefix}: long-context rates and threshold go together"
            )
        if e.long_rates is not None and not e.long_context_beta:
            raise InvalidArgument(f"price {e.model_prefix}: long-context tier needs its beta")
        by_prefix[e.model_prefix] = e
        if e.family_default:
            defaults.setdefault(e.family, []).append(e.model_prefix)
    for family in {e.family for e in by_prefix.values()}:
        marked = defaults.get(family, [])
        if len(marked) != 1:
            raise InvalidArgument(
                f"family {family!r} needs exactly one family_default entry, has {len(marked)}"
            )
    return tuple(by_prefix[p] for p in sorted(by_prefix))


def _default_doc() -> Mapping[str, Any]:
    text = resources.files("controlplane.domain").joinpath("prices.json").read_text("utf-8")
    doc: Mapping[str, Any] = json.loads(text)
    return doc


def load_default_prices() -> tuple[PriceEntry, ...]:
    """The table shipped with the control plane (``controlplane/domain/prices.json``)."""
    return parse_price_table(_default_doc())


def load_default_tool_rates() -> ToolRates:
    """The shipped table-wide server-tool fees (for entries an operator added by hand)."""
    return default_tool_rates(_default_doc())


def resolve_price(model: str, entries: Sequence[PriceEntry]) -> tuple[PriceEntry, str] | None:
    """The entry a model is billed at and how it was chosen (its prefix or ``"family:<f>"``).

    ``None`` only when neither a prefix nor a family matches: the caller must still meter the
    tokens and flag the request as unpriced rather than bill it at zero.
    """
    best: PriceEntry | None = None
    for e in entries:
        if (
            model.startswith(e.model_prefix)
            and _BOUNDARY_RE.match(model[len(e.model_prefix) :])
            and (best is None or len(e.model_prefix) > len(best.model_prefix))
        ):
            best = e
    if best is not None:
        return best, best.model_prefix
    for family in FAMILIES:
        if family in model:
            for e in entries:
                if e.family == family and e.family_default:
                    return e, f"family:{family}"
    return None
