"""The price table in the database: seeded from ``prices.json``, listed for operators."""

from __future__ import annotations

from collections.abc import Iterable

from sqlmodel import Session, col, select

from controlplane.catalog.convert import price_to_pb
from controlplane.domain.pricing import PriceEntry, ToolRates
from controlplane.store.models.config import PriceRow
from gwapi.v1 import common_pb2 as pb


def row_from_entry(e: PriceEntry, now: int) -> PriceRow:
    long = e.long_rates
    return PriceRow(
        model_prefix=e.model_prefix,
        family=e.family,
        family_default=e.family_default,
        input=e.rates.input,
        output=e.rates.output,
        cache_write_5m=e.rates.cache_write_5m,
        cache_write_1h=e.rates.cache_write_1h,
        cache_read=e.rates.cache_read,
        long_context_threshold=e.long_context_threshold,
        long_context_beta=e.long_context_beta,
        long_input=long.input if long else 0,
        long_output=long.output if long else 0,
        long_cache_write_5m=long.cache_write_5m if long else 0,
        long_cache_write_1h=long.cache_write_1h if long else 0,
        long_cache_read=long.cache_read if long else 0,
        web_search_per_1k=e.tools.web_search_per_1k,
        web_fetch_per_1k=e.tools.web_fetch_per_1k,
        updated_at_ms=now,
    )


def seed(
    s: Session, entries: Iterable[PriceEntry], now: int, tools: ToolRates | None = None
) -> list[str]:
    """Insert the entries whose prefix is not in the table yet; never overwrite a value (an
    operator may have edited it). Returns the prefixes inserted.

    Rows from before server-tool fees existed have them NULL: they get the shipped entry's fees
    (``tools``, the table-wide default, for a prefix the shipped table lacks). A value set is
    never changed, 0 included."""
    entries = list(entries)
    shipped = {e.model_prefix: e.tools for e in entries}
    added = []
    for row in s.exec(select(PriceRow)).all():
        fees = shipped.get(row.model_prefix, tools or ToolRates())
        if row.web_search_per_1k is None:
            row.web_search_per_1k = fees.web_search_per_1k
            s.add(row)
        if row.web_fetch_per_1k is None:
            row.web_fetch_per_1k = fees.web_fetch_per_1k
            s.add(row)
        shipped.pop(row.model_prefix, None)
    for e in entries:
        if e.model_prefix in shipped:
            s.add(row_from_entry(e, now))
            added.append(e.model_prefix)
    s.flush()
    return added


def list_all(s: Session) -> list[pb.Price]:
    rows = s.exec(select(PriceRow).order_by(col(PriceRow.model_prefix))).all()
    return [price_to_pb(r) for r in rows]
