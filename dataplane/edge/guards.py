"""Guards in front of the routes: a deadline on request bodies, and refusals while draining.

* :class:`BodyDeadline` — a client that sends its body slowly (or stops half-way) holds a
  connection and a request task. Hypercorn bounds the *headers* (``keep_alive_timeout`` covers a
  connection until its request line and headers are complete) but not the body, and its
  ``read_timeout`` cannot be used: it would also cut a long answer whose client, rightly, sends
  nothing while it reads. So the body must be complete ``seconds`` after the request started;
  past that, reading it raises a 408 :class:`GatewayError`, which the handler answers like any
  refusal (and records), and Hypercorn then closes the connection whose body is unfinished.
* :class:`DrainGate` — once the replica is draining (SIGTERM), a new API request gets ``503
  overloaded_error`` with ``connection: close``: a load balancer (or the client's retry) sends it
  to another replica, while requests already in flight run to the end.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from dataplane.asgi import ASGIApp, Message, Receive, Scope, Send, send_error_body
from dataplane.edge.doors.base import Door
from dataplane.errors import BodyTimeout, Unavailable, new_request_id

DRAINING_MESSAGE = (
    "This gateway replica is shutting down; retry the request (it will reach another replica)."
)


class BodyDeadline:
    """Fail a body read that is still incomplete ``seconds`` after the request started."""

    def __init__(self, app: ASGIApp, seconds: float) -> None:
        self.app = app
        self.seconds = seconds

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        # A plain function returning the inner app's awaitable: no frame of its own in the
        # request's coroutine chain, which every streamed chunk resumes (docs/sizing.md).
        if scope["type"] != "http" or self.seconds <= 0:
            return self.app(scope, receive, send)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.seconds
        complete = False

        async def timed_receive() -> Message:
            nonlocal complete
            if complete:  # the body is in: later receives wait for a disconnect, unbounded
                return await receive()
            try:
                # asyncio.timeout_at: a timer handle, not a task per receive as wait_for makes.
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                raise BodyTimeout(
                    408,
                    f"The request body did not arrive within {self.seconds:g} s; "
                    "check the network and retry.",
                ) from None
            if message["type"] != "http.request" or not message.get("more_body", False):
                complete = True
            return message

        return self.app(scope, timed_receive, send)


class DrainGate:
    """While ``draining()`` is true, refuse new requests on protected paths with a 503:
    ``protects(path)`` is the door of a protected path (its refusals' format), None for an open
    one (as for :class:`dataplane.policy.auth.AuthMiddleware`)."""

    def __init__(
        self,
        app: ASGIApp,
        draining: Callable[[], bool],
        protects: Callable[[str], Door | None],
    ) -> None:
        self.app = app
        self.draining = draining
        self.protects = protects

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        # A plain function, as BodyDeadline's (Hypercorn serves it with mode="asgi").
        door = self.protects(scope["path"]) if scope["type"] == "http" and self.draining() else None
        if door is None:
            return self.app(scope, receive, send)
        return self._refuse(send, door)

    async def _refuse(self, send: Send, door: Door) -> None:
        request_id = new_request_id()
        err = Unavailable(503, DRAINING_MESSAGE)
        body, more = door.error_body(err.status, err.error_type, err.message, request_id)
        # connection: close — the client's next attempt opens a new connection, which the load
        # balancer gives to a healthy replica (this one's listener closes after the drain).
        headers = [(b"retry-after", b"1"), (b"connection", b"close"), *more]
        await send_error_body(send, err.status, body, headers, request_id)
