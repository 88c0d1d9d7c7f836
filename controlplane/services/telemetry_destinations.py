"""Telemetry-destination RPCs of the Admin service (List/Add/RemoveTelemetryDestination), as a
mixin of :class:`~controlplane.services.admin.AdminService`.

Who may call them: :mod:`controlplane.rpc_policies` (add/remove: admin; list: every admin-API role,
like providers — it shows header names, never values). Add and remove rebuild the snapshot, so
data planes forward to the new set within a second.
"""

from __future__ import annotations

import logging
from typing import Any

from google.protobuf.empty_pb2 import Empty

from controlplane.catalog import telemetry_destinations as destinations
from controlplane.errors import grpc_errors
from controlplane.services.state import AppState
from gwapi.v1 import admin_pb2 as apb

log = logging.getLogger(__name__)
Ctx = Any  # grpc.aio.ServicerContext


@grpc_errors
class TelemetryDestinationRpcs:
    _s: AppState

    async def ListTelemetryDestinations(
        self, request: apb.ListTelemetryDestinationsRequest, context: Ctx
    ) -> apb.ListTelemetryDestinationsResponse:
        items = await self._s.db.read(destinations.list_all)
        return apb.ListTelemetryDestinationsResponse(destinations=items)

    async def AddTelemetryDestination(
        self, request: apb.AddTelemetryDestinationRequest, context: Ctx
    ) -> apb.TelemetryDestination:
        master = self._s.cache.master
        headers = dict(request.headers)
        created = await self._s.mutate(
            lambda s, now: destinations.add(s, request.destination, headers, now, master)
        )
        log.info(
            "telemetry destination %s added (%s; headers: %s)",
            created.name,
            ",".join(created.signals),
            ",".join(created.header_names) or "none",
        )  # never a header value
        return created

    async def RemoveTelemetryDestination(
        self, request: apb.RemoveTelemetryDestinationRequest, context: Ctx
    ) -> Empty:
        await self._s.mutate(lambda s, now: destinations.remove(s, request.name, now))
        log.info("telemetry destination %s removed", request.name)
        return Empty()
