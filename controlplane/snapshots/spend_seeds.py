"""Spend seeds as their own resources (kind ``spend``), refreshed apart from the configuration.

:class:`SpendScopes` follows the resource table: which keys, workspaces and developers have
budgets, and in which time zone their periods run (a key's and a developer's follow their
workspace's). A configuration change marks the scopes it touched dirty (a new key with a budget,
a workspace whose time zone moved its keys' periods), so their seeds are computed with the
change that made them needed. Usage ingest marks scopes dirty by id (or all of them); the
periodic sweep marks all of them (period rollovers, other replicas' ingest).

:meth:`SpendScopes.seeds` asks :func:`controlplane.usage.spend.current_spend` (the one place spend
is computed) for the dirty scopes only and returns the seed resources by name
``"<scope>/<id>/<period>"``: a message, or None for a seed that no longer exists (a budget
removed, a key revoked). The resource table then keeps only those whose content changed, so only
scopes whose spend changed travel to data planes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from google.protobuf.message import Message
from sqlmodel import Session

from controlplane.catalog.convert import limits_from_pb
from controlplane.domain.errors import InvalidArgument
from controlplane.snapshots.table import Entry, Ref, ResourceTable
from controlplane.usage.spend import BudgetSpend, Scope, current_spend, seed_pb
from gwapi.v1.telemetry_pb2 import UsageEvent

ScopeRef = tuple[str, str]  # ("key" | "workspace" | "developer", id)


def spend_scopes(events: Iterable[UsageEvent]) -> set[ScopeRef]:
    """The scopes whose spend ``events`` can have changed (their workspace, key, developer)."""
    scopes: set[ScopeRef] = set()
    for e in events:
        scopes.add(("workspace", e.workspace))
        if e.key_id:
            scopes.add(("key", e.key_id))
        if e.developer_id:
            scopes.add(("developer", e.developer_id))
    return scopes


def _budgets(msg: Message) -> tuple:  # type: ignore[type-arg]
    try:
        return limits_from_pb(msg.limits).budgets  # type: ignore[attr-defined]
    except InvalidArgument:  # refused by the catalog; never seeds a counter
        return ()


class SpendScopes:
    def __init__(self) -> None:
        self.scopes: dict[ScopeRef, Scope] = {}
        self.dirty: set[ScopeRef] = set()
        self._members: dict[str, set[ScopeRef]] = {}  # workspace -> its keys' and developers'
        self._seeds: dict[ScopeRef, set[str]] = {}  # scope -> names of its seeds

    def follow(self, table: ResourceTable, staged: dict[Ref, Entry | None]) -> None:
        """Update the scopes after ``staged`` was committed to ``table``."""
        for (kind, name), _ in staged.items():
            if kind == "workspace":
                self._set(("workspace", name), table)
                for member in list(self._members.get(name, ())):
                    self._set(member, table)
            elif kind in ("key", "developer"):
                self._set((kind, name), table)

    def _set(self, ref: ScopeRef, table: ResourceTable) -> None:
        kind, ident = ref
        msg = table.get(kind, ident)
        old = self.scopes.pop(ref, None)
        if old is not None and kind != "workspace":
            self._members.get(old.workspace, set()).discard(ref)
        self.dirty.add(ref)
        if msg is None or getattr(msg, "revoked", False) or getattr(msg, "disabled", False):
            return
        name = ident
        if kind == "workspace":
            ws_name, tz = ident, msg.timezone  # type: ignore[attr-defined]
        else:
            # What an alert calls the scope: the key's name, the developer's email.
            name = getattr(msg, "email" if kind == "developer" else "name", "") or ident
            ws_name = msg.workspace  # type: ignore[attr-defined]
            ws = table.get("workspace", ws_name)
            tz = ws.timezone if ws is not None else ""  # type: ignore[attr-defined]
            self._members.setdefault(ws_name, set()).add(ref)
        self.scopes[ref] = Scope(kind, ident, name, ws_name, _budgets(msg), tz)

    def mark(self, refs: Iterable[ScopeRef] | None) -> None:
        """Mark scopes whose spend may have changed (None: every scope)."""
        if refs is None:
            self.dirty |= self.scopes.keys()
        else:
            self.dirty |= {r for r in refs if r in self.scopes}

    def seeds(
        self,
        s: Session,
        now_ms: int,
        held: Callable[[str], Message | None] = lambda _name: None,
        spent: list[BudgetSpend] | None = None,
    ) -> dict[str, Message | None]:
        """The dirty scopes' seeds (and None for their seeds that are gone); clears ``dirty``.
        ``held(name)``: the seed the resource table holds now; a seed equal to it is left out
        (the table would keep it anyway), so a sweep over 20,000 idle keys builds no messages.
        ``spent`` receives every budget's spend computed (each budget, not one per period)."""
        dirty, self.dirty = self.dirty, set()
        out: dict[str, Message | None] = {}
        for ref in dirty:
            for name in self._seeds.pop(ref, ()):
                out[name] = None
        wanted = [self.scopes[r] for r in sorted(dirty) if r in self.scopes]
        best: dict[str, BudgetSpend] = {}
        computed = current_spend(s, [sc for sc in wanted if sc.budgets], now_ms)
        if spent is not None:
            spent.extend(computed)
        for spend in computed:
            name = f"{spend.scope.kind}/{spend.scope.id}/{int(spend.budget.period)}"
            prev = best.get(name)
            if prev is not None and (prev.window.start_ms, prev.spent_micros) >= (
                spend.window.start_ms,
                spend.spent_micros,
            ):
                continue  # two budgets of one period: the data plane keeps the higher seed
            best[name] = spend
        for name, spend in best.items():
            self._seeds.setdefault((spend.scope.kind, spend.scope.id), set()).add(name)
            have = held(name)
            if have is not None and (have.period_start_ms, have.spent_micros) == (  # type: ignore[attr-defined]
                spend.window.start_ms,
                spend.spent_micros,
            ):
                out.pop(name, None)  # unchanged: nothing to stage
                continue
            out[name] = seed_pb(spend)
        return out
