"""What one worker of ``gwctl dataplane serve --workers N`` is, and how a listener is bound.

The supervisor (:mod:`dataplane.process.workers`) starts each worker with a :class:`WorkerRole`: its
index, the worker count, the run's id (naming the workers' metrics sockets), the node id it
reports under (the data plane's own, suffixed ``-w<index>``) and the listening socket: an
inherited file descriptor (``listen_fd`` >= 0), or, with ``listen_fd`` = -1, a socket of its own
bound with ``SO_REUSEPORT`` to the port the supervisor holds. Stdlib only.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

BACKLOG = 1024


@dataclass(frozen=True)
class WorkerRole:
    index: int
    count: int
    run_id: str  # random per supervisor run: the metrics sockets' names cannot collide
    base_node_id: str
    listen_fd: int = -1  # -1: bind our own socket with SO_REUSEPORT

    @property
    def node_id(self) -> str:
        return f"{self.base_node_id}-w{self.index}"

    def metrics_address(self, index: int) -> str:
        """Worker ``index``'s metrics socket: a Linux abstract Unix socket (no file, no path
        length limit, gone with the process)."""
        return f"\0tollgate-metrics-{self.run_id}-{index}"


def bind_listener(
    listen: str, *, reuse_port: bool = False, listen_now: bool = True
) -> socket.socket:
    """A TCP socket bound to ``HOST:PORT`` (``[v6]:PORT`` too), inheritable, listening unless
    ``listen_now`` is false (the supervisor's port-holding socket in SO_REUSEPORT mode must
    not listen: a listening socket in the group gets its share of connections)."""
    host, _, port = listen.rpartition(":")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host.strip("[]"), int(port)))
    if listen_now:
        sock.listen(BACKLOG)
    sock.set_inheritable(True)
    return sock
