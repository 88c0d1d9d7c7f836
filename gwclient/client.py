"""The admin client: :class:`GatewayClient`, an async gRPC facade over the control plane's Admin,
Discovery and Telemetry services, used by gwctl, the console (``gwctl tui``), bench and the
tests. It imports neither Textual nor any server package.

Contract (the details are in :mod:`gwclient.channel`):

* ``GatewayClient(target, token)`` opens a lazy channel; use it as ``async with``.
* Methods take plain values or protobuf messages and return protobuf messages.
* Every RPC failure is raised as :class:`~gwclient.errors.ClientError`, readable as is;
  ``grpc.aio.AioRpcError`` never escapes. The token never appears in an error or a ``repr``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gwclient.catalog import CatalogCalls
from gwclient.identities import IdentityCalls
from gwclient.observability import ObservabilityCalls

if TYPE_CHECKING:
    from gwclient.api import AdminAPI

__all__ = ["GatewayClient"]


class GatewayClient(CatalogCalls, IdentityCalls, ObservabilityCalls):
    """One channel to one control plane, with every call of :mod:`gwclient.catalog`,
    :mod:`gwclient.identities` and :mod:`gwclient.observability`."""


if TYPE_CHECKING:

    def _satisfies(client: GatewayClient) -> AdminAPI:
        return client  # mypy: the real client has every method of the protocol tests fake
