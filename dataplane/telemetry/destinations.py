"""Telemetry destinations as a snapshot carries them: OTLP/HTTP collectors to forward to.

Contract of :func:`destinations_from_proto`:

* A destination takes the signals it lists (``metrics``, ``logs``, ``traces``; none = all);
  signals this data plane does not know are ignored (a newer control plane may add some).
* Its URL must be ``http(s)://host[:port][/path]``; exports go to ``{url}/v1/{signal}``.
* A destination that is unusable (no name, a bad URL, a duplicate name) is left out with a
  warning: it never makes the snapshot fail, since refusing a snapshot would also hold back
  key revocations.
* Header values are secrets (collector API keys): kept in memory, never in a ``repr`` or a log,
  never in the disk cache (:func:`strip_secrets`, used by the subscriber). A destination read
  back from the cache has its header names but empty values (``headers_missing``): nothing is
  sent to it until the control plane's stream delivers the values.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from dataplane.telemetry.otlp import SIGNALS, Signal
from gwapi.v1 import discovery_pb2

log = logging.getLogger("tollgate.telemetry")


@dataclass(frozen=True, slots=True)
class Destination:
    name: str
    url: str  # base URL without a trailing slash
    signals: frozenset[Signal]
    headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    headers_missing: bool = False  # values not received yet (started from the disk cache)

    def endpoint(self, signal: Signal) -> str:
        return f"{self.url}/v1/{signal}"

    def takes(self, signal: Signal) -> bool:
        return signal in self.signals


def destinations_from_proto(
    entries: Iterable[discovery_pb2.TelemetryDestinationConfig],
) -> tuple[Destination, ...]:
    out: list[Destination] = []
    seen: set[str] = set()
    for d in entries:
        problem = _problem(d, seen)
        if problem:
            log.warning("ignoring telemetry destination %r: %s", d.name[:63], problem)
            continue
        seen.add(d.name)
        known = [s for s in SIGNALS if s in set(d.signals)]
        signals = frozenset(known if d.signals else SIGNALS)
        headers = tuple(sorted(d.headers.items()))
        out.append(
            Destination(
                name=d.name,
                url=d.url.rstrip("/"),
                signals=signals,
                headers=headers,
                headers_missing=any(not value for _, value in headers),
            )
        )
    return tuple(out)


def _problem(d: discovery_pb2.TelemetryDestinationConfig, seen: set[str]) -> str:
    if not d.name:
        return "no name"
    if d.name in seen:
        return "a second destination with this name"
    try:
        parts = urlsplit(d.url)
    except ValueError:
        return "its URL does not parse"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "its URL is not http(s)://host…"
    if parts.query or parts.fragment:
        return "its URL has a query or fragment"
    return ""


def strip_secrets(snapshot: discovery_pb2.Snapshot) -> None:
    """In place: every destination header value becomes "" (the names stay, so a data plane
    started from the disk cache knows values are missing and asks the control plane again)."""
    for d in snapshot.telemetry_destinations:
        for name in list(d.headers):
            d.headers[name] = ""
