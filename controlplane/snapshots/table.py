"""The control plane's resource table: every resource a data plane receives, with its version.

* A resource's version is the first 16 hex of the SHA-256 of its deterministic serialisation,
  so identical content has the identical version on every replica.
* The **config version** is a digest of every configuration resource's (kind, name, version):
  the XOR of their 64-bit hashes, so one change updates it in O(1) and identical content still
  yields the identical version. The **spend version** is the same over the spend seeds (kind
  ``spend``), kept apart: spend never changes the config version.
* :meth:`ResourceTable.stage` turns a read (:class:`resources.Update`) into the exact set of
  changed resources without touching the table; :meth:`validate` checks it (referential
  integrity, the same rules and messages as :func:`builder.validate`), incrementally: changed
  keys, developers and routes are checked against the table; only a removed or renamed
  workspace, provider or route (rare) re-checks every key and developer. :meth:`commit` applies
  it and records it in a bounded history of publications, which delta streams replay.
* :meth:`snapshot` assembles the state-of-the-world message (for ``Watch`` and the property
  tests), in :func:`builder.read_snapshot`'s order.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from google.protobuf.message import Message

from controlplane.snapshots.resources import Update
from gwapi.v1 import discovery_pb2 as dpb
from gwcommon.resource_kinds import KINDS

Ref = tuple[str, str]  # (kind, name)
Entry = tuple[str, Message]  # (version, message)
Has = Callable[[str, str], bool]  # does (kind, name) exist?
HISTORY = 256  # publications kept for delta streams that are a little behind


def resource_version(msg: Message) -> str:
    return hashlib.sha256(msg.SerializeToString(deterministic=True)).hexdigest()[:16]


def _mix(kind: str, name: str, version: str) -> int:
    digest = hashlib.sha256(f"{kind}\0{name}\0{version}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


@dataclass
class Publication:
    number: int
    changed: frozenset[Ref]


class ResourceTable:
    def __init__(self) -> None:
        self.items: dict[str, dict[str, Entry]] = {k: {} for k in KINDS}
        self._config_mix = 0
        self._spend_mix = 0
        self._hash_owner: dict[str, str] = {}  # key secret hash -> key id
        self.publication = 0
        self.history: deque[Publication] = deque(maxlen=HISTORY)

    @property
    def config_version(self) -> str:
        return f"{self._config_mix:016x}"

    @property
    def spend_version(self) -> str:
        return f"{self._spend_mix:016x}"

    def get(self, kind: str, name: str) -> Message | None:
        entry = self.items[kind].get(name)
        return entry[1] if entry is not None else None

    def stage(self, up: Update) -> dict[Ref, Entry | None]:
        """The resources ``up`` changes: (kind, name) → new (version, message), None = removed."""
        staged: dict[Ref, Entry | None] = {}
        for kind, whole in up.whole.items():
            have = self.items[kind]
            for name, msg in whole.items():
                self._stage_one(staged, kind, name, msg)
            for name in have.keys() - whole.keys():
                staged[(kind, name)] = None
        for kind, named in up.named.items():
            for name, maybe in named.items():
                if maybe is None:
                    if name in self.items[kind]:
                        staged[(kind, name)] = None
                else:
                    self._stage_one(staged, kind, name, maybe)
        return staged

    def stage_spend(self, seeds: dict[str, Message | None]) -> dict[Ref, Entry | None]:
        staged: dict[Ref, Entry | None] = {}
        for name, msg in seeds.items():
            if msg is None:
                if name in self.items["spend"]:
                    staged[("spend", name)] = None
            else:
                self._stage_one(staged, "spend", name, msg)
        return staged

    def _stage_one(
        self, staged: dict[Ref, Entry | None], kind: str, name: str, msg: Message
    ) -> None:
        version = resource_version(msg)
        old = self.items[kind].get(name)
        if old is None or old[0] != version:
            staged[(kind, name)] = (version, msg)

    def commit(self, staged: dict[Ref, Entry | None]) -> None:
        if not staged:
            return
        for (kind, name), entry in staged.items():
            have = self.items[kind]
            old = have.pop(name, None)
            spend = kind == "spend"
            if old is not None:
                self._toggle(spend, kind, name, old[0])
                if kind == "key":
                    self._hash_owner.pop(old[1].secret_sha256, None)  # type: ignore[attr-defined]
            if entry is not None:
                have[name] = entry
                self._toggle(spend, kind, name, entry[0])
                if kind == "key":
                    self._hash_owner[entry[1].secret_sha256] = name  # type: ignore[attr-defined]
        self.publication += 1
        self.history.append(Publication(self.publication, frozenset(staged)))

    def _toggle(self, spend: bool, kind: str, name: str, version: str) -> None:
        if spend:
            self._spend_mix ^= _mix(kind, name, version)
        else:
            self._config_mix ^= _mix(kind, name, version)

    def changed_since(self, publication: int) -> frozenset[Ref] | None:
        """Every resource changed after ``publication``; None when the history no longer
        reaches back that far (the stream then gets the full state)."""
        if publication == self.publication:
            return frozenset()
        if not self.history or self.history[0].number > publication + 1:
            return None
        out: set[Ref] = set()
        for pub in self.history:
            if pub.number > publication:
                out |= pub.changed
        return frozenset(out)

    def refs(self) -> Iterator[tuple[Ref, str]]:
        for kind, entries in self.items.items():
            for name, (version, _) in entries.items():
                yield (kind, name), version

    # -- validation -----------------------------------------------------------------------

    def validate(self, staged: dict[Ref, Entry | None]) -> list[str]:
        """Referential problems the table would have with ``staged`` applied; empty = safe."""

        def has(kind: str, name: str) -> bool:
            if (kind, name) in staged:
                return staged[(kind, name)] is not None
            return name in self.items[kind]

        def current(kind: str) -> Iterator[tuple[str, Message]]:
            for name, (_, msg) in self.items[kind].items():
                if (kind, name) not in staged:
                    yield name, msg
            for (k, name), entry in staged.items():
                if k == kind and entry is not None:
                    yield name, entry[1]

        structural = any(
            entry is None and kind in ("workspace", "provider", "route")
            for (kind, _), entry in staged.items()
        )
        if structural:
            keys = list(current("key"))
            devs = list(current("developer"))
            routes = list(current("route"))
        else:
            keys = [(n, e[1]) for (k, n), e in staged.items() if k == "key" and e is not None]
            devs = [(n, e[1]) for (k, n), e in staged.items() if k == "developer" and e is not None]
            routes = [(n, e[1]) for (k, n), e in staged.items() if k == "route" and e is not None]
        problems: list[str] = []
        seen: dict[str, str] = {}
        for _, key in keys:
            problems += self._key_problems(key, has, staged, seen)  # type: ignore[arg-type]
        for _, dev in devs:
            problems += _developer_problems(dev, has)  # type: ignore[arg-type]
        for _, route in routes:
            if not route.targets:  # type: ignore[attr-defined]
                problems.append(f"route {route.name!r}: has no targets")  # type: ignore[attr-defined]
            for target in route.targets:  # type: ignore[attr-defined]
                if not has("provider", target.provider):
                    problems.append(
                        f"route {route.name!r}: provider {target.provider!r} does not exist"  # type: ignore[attr-defined]
                    )
        return problems

    def _key_problems(
        self,
        key: dpb.SnapshotKey,
        exists: Has,
        staged: dict[Ref, Entry | None],
        seen: dict[str, str],
    ) -> list[str]:
        problems: list[str] = []
        if not exists("workspace", key.workspace):
            problems.append(f"key {key.id}: workspace {key.workspace!r} does not exist")
        owner = seen.get(key.secret_sha256) or self._hash_owner.get(key.secret_sha256)
        if owner is not None and owner != key.id and ("key", owner) in staged:
            moved = staged[("key", owner)]
            if moved is None or moved[1].secret_sha256 != key.secret_sha256:  # type: ignore[attr-defined]
                owner = seen.get(key.secret_sha256)
        if len(key.secret_sha256) != 64 or (owner is not None and owner != key.id):
            problems.append(f"key {key.id}: missing or duplicate secret hash")
        seen[key.secret_sha256] = key.id
        if key.revoked:
            return problems
        if bool(key.provider) == bool(key.route):
            problems.append(f"key {key.id}: needs exactly one of provider or route")
        elif key.provider and not exists("provider", key.provider):
            problems.append(f"key {key.id}: provider {key.provider!r} does not exist")
        elif key.route and not exists("route", key.route):
            problems.append(f"key {key.id}: route {key.route!r} does not exist")
        return problems

    # -- the state of the world -------------------------------------------------------------

    def snapshot(self, built_at_ms: int) -> dpb.Snapshot:
        """Every resource as one ``Snapshot`` (version = the config version)."""

        def ordered(kind: str) -> list[Message]:
            return [self.items[kind][n][1] for n in sorted(self.items[kind])]

        snap = dpb.Snapshot(version=self.config_version, built_at_ms=built_at_ms)
        snap.workspaces.extend(ordered("workspace"))  # type: ignore[arg-type]
        snap.keys.extend(ordered("key"))  # type: ignore[arg-type]
        snap.providers.extend(ordered("provider"))  # type: ignore[arg-type]
        snap.routes.extend(ordered("route"))  # type: ignore[arg-type]
        snap.prices.extend(ordered("price"))  # type: ignore[arg-type]
        spend = sorted(
            (e[1] for e in self.items["spend"].values()),
            key=lambda m: (m.scope, m.id, m.period),  # type: ignore[attr-defined]
        )
        snap.spend.extend(spend)  # type: ignore[arg-type]
        snap.secrets.extend(ordered("secret"))  # type: ignore[arg-type]
        sso = self.get("sso", "sso")
        if sso is not None:
            snap.sso.CopyFrom(sso)  # type: ignore[arg-type]
        snap.developers.extend(ordered("developer"))  # type: ignore[arg-type]
        snap.signing_keys.extend(ordered("signing_key"))  # type: ignore[arg-type]
        snap.telemetry_destinations.extend(ordered("telemetry_destination"))  # type: ignore[arg-type]
        return snap


def _developer_problems(dev: dpb.SnapshotDeveloper, exists: Has) -> list[str]:
    problems: list[str] = []
    if not exists("workspace", dev.workspace):
        problems.append(f"developer {dev.id}: workspace {dev.workspace!r} does not exist")
    if dev.provider and not exists("provider", dev.provider):
        problems.append(f"developer {dev.id}: provider {dev.provider!r} does not exist")
    if dev.route and not exists("route", dev.route):
        problems.append(f"developer {dev.id}: route {dev.route!r} does not exist")
    return problems
