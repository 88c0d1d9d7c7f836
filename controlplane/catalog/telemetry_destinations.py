"""Telemetry destinations: OTLP/HTTP collectors data planes forward Claude Code's telemetry to.

Header values (collector API keys) are stored encrypted under the master key as one JSON object
(:mod:`controlplane.secrets`, bound to ``telemetry:<name>`` so a ciphertext moved to another row
does not decrypt); only their names are ever returned or audited. Data planes receive them
decrypted in the snapshot (:func:`snapshot_entries`). Rules: :mod:`controlplane.domain.
telemetry_destinations`. Changes are audited (``telemetry_destination.add`` / ``.remove``).
"""

from __future__ import annotations

import json

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from controlplane.catalog.common import audit_change, reencrypt_column
from controlplane.domain import telemetry_destinations as rules
from controlplane.domain.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from controlplane.domain.names import validate_slug
from controlplane.secrets import HOW_TO_SET, MasterKey
from controlplane.store.models.config import TelemetryDestinationRow
from gwapi.v1 import admin_pb2 as apb
from gwapi.v1 import discovery_pb2 as dpb

RESOURCE_KIND = "telemetry_destination"


def _bound(name: str) -> str:
    """The associated data the header ciphertext is bound to."""
    return f"telemetry:{name}"


def to_pb(row: TelemetryDestinationRow) -> apb.TelemetryDestination:
    return apb.TelemetryDestination(
        name=row.name,
        url=row.url,
        header_names=json.loads(row.header_names_json or "[]"),
        signals=json.loads(row.signals_json or "[]"),
        created_at_ms=row.created_at_ms,
    )


def add(
    s: Session,
    msg: apb.TelemetryDestination,
    headers: dict[str, str],
    now: int,
    master: MasterKey | None,
) -> apb.TelemetryDestination:
    name = validate_slug(msg.name, "destination name")
    url = rules.validate_url(msg.url)
    signals = rules.validate_signals(msg.signals)
    clean = rules.validate_headers(headers)
    if msg.header_names:
        raise InvalidArgument("header_names is output only: send the headers in `headers`")
    ciphertext = ""
    if clean:
        if master is None:
            raise FailedPrecondition(
                "this control plane has no master key, so it cannot store the destination's "
                "header values (collector credentials): "
                + HOW_TO_SET
                + "; or add the destination without --header if the collector needs none"
            )
        ciphertext = master.encrypt(_bound(name), json.dumps(clean, sort_keys=True))
    if s.get(TelemetryDestinationRow, name) is not None:
        raise AlreadyExists(
            f"telemetry destination {name!r} already exists: remove it first to change it"
        )
    row = TelemetryDestinationRow(
        name=name,
        url=url,
        headers_ciphertext=ciphertext,
        header_names_json=json.dumps(sorted(clean)),
        signals_json=json.dumps(signals),
        created_at_ms=now,
    )
    s.add(row)
    try:
        s.flush()
    except IntegrityError:  # another replica added it meanwhile
        raise AlreadyExists(f"telemetry destination {name!r} already exists") from None
    created = to_pb(row)
    _audit(s, now, "telemetry_destination.add", None, created)
    return created


def list_all(s: Session) -> list[apb.TelemetryDestination]:
    rows = s.exec(select(TelemetryDestinationRow).order_by(col(TelemetryDestinationRow.name)))
    return [to_pb(r) for r in rows]


def remove(s: Session, name: str, now: int) -> None:
    validate_slug(name, "destination name")
    row = s.get(TelemetryDestinationRow, name)
    if row is None:
        raise NotFound(f"telemetry destination {name!r} not found")
    before = to_pb(row)
    s.delete(row)
    s.flush()
    _audit(s, now, "telemetry_destination.remove", before, None)


def snapshot_entries(
    s: Session, master: MasterKey | None, warnings: list[str] | None = None
) -> list[dpb.TelemetryDestinationConfig]:
    """Every destination with its header values decrypted, by name. One whose values cannot be
    decrypted (no master key, another master key, damaged) is left out and described in
    ``warnings``: sending to it without its credentials would only be refused."""
    out: list[dpb.TelemetryDestinationConfig] = []
    rows = s.exec(select(TelemetryDestinationRow).order_by(col(TelemetryDestinationRow.name)))
    for row in rows:
        headers: dict[str, str] = {}
        if row.headers_ciphertext:
            try:
                if master is None:
                    raise FailedPrecondition("no master key is configured")
                headers = json.loads(master.decrypt(_bound(row.name), row.headers_ciphertext))
            except (FailedPrecondition, ValueError) as exc:
                if warnings is not None:
                    reason = exc.message if isinstance(exc, FailedPrecondition) else "damaged"
                    warnings.append(f"telemetry destination {row.name!r}: {reason}")
                continue
        out.append(
            dpb.TelemetryDestinationConfig(
                name=row.name,
                url=row.url,
                headers=headers,
                signals=json.loads(row.signals_json or "[]"),
            )
        )
    return out


def reencrypt_secrets(s: Session, master: MasterKey, now: int) -> list[str]:
    """Master-key rotation: move header values under a previous key to the current one, as
    :func:`controlplane.catalog.providers.reencrypt_secrets` does for provider secrets (one
    audit row each, compare-and-set per row, idempotent)."""
    return reencrypt_column(
        s,
        master,
        now,
        TelemetryDestinationRow.headers_ciphertext,
        bound=_bound,
        shown=to_pb,
        action="telemetry_destination.reencrypt_secret",
        kind=RESOURCE_KIND,
    )


def _audit(
    s: Session,
    now: int,
    action: str,
    before: apb.TelemetryDestination | None,
    after: apb.TelemetryDestination | None,
) -> None:
    audit_change(s, now, action, RESOURCE_KIND, before, after)
