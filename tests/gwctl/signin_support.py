"""Sign-in for the gwctl tests: the strict fake identity provider in a background thread, and a
real sign-in through the control plane's SignIn service (the calls a data plane makes, with the
data-plane token), so that developers exist exactly as they do in production.

``gwctl.main.main`` owns its event loop on the test thread and the control plane runs in its own
thread (:mod:`tests.gwctl.threaded_cp`); the identity provider gets a third one, because the
control plane calls it (discovery, token exchange) while the test waits on a SignIn call.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import grpc

from gwapi.v1 import signin_pb2 as spb
from gwapi.v1 import signin_pb2_grpc
from tests.fakes.oidc import CLIENT_ID, CLIENT_SECRET, FakeOidc, Login

__all__ = ["CLIENT_ID", "CLIENT_SECRET", "MASTER_KEY", "PUBLIC", "Login", "sign_in", "threaded_idp"]

MASTER_KEY = base64.b64encode(b"g" * 32).decode()
PUBLIC = "https://gw.example.test"
CALLBACK = PUBLIC + "/oauth/callback"


@contextlib.contextmanager
def threaded_idp() -> Iterator[FakeOidc]:
    """A running :class:`FakeOidc` (redirect URI of :data:`PUBLIC` registered); stopped, and
    checked to have refused nothing, on exit."""
    idp = FakeOidc()
    idp.register_redirect_uri(CALLBACK)
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    stop = threading.Event()
    box: dict[str, Any] = {}

    async def serve() -> None:
        try:
            await idp.start()
        except BaseException as exc:
            box["error"] = exc
            ready.set()
            raise
        ready.set()
        while not stop.is_set():
            await asyncio.sleep(0.02)
        await idp.stop()

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    assert ready.wait(15), "fake identity provider did not start"
    if "error" in box:
        raise box["error"]
    try:
        yield idp
    finally:
        stop.set()
        thread.join(10)
        loop.close()


def sign_in(address: str, dataplane_token: str, idp: FakeOidc, login: Login) -> str:
    """A whole sign-in of ``login`` (device grant, browser at the IdP, poll); returns the
    access token. Raises AssertionError with the refusal when the gateway refuses."""

    async def flow() -> str:
        metadata = (("authorization", f"Bearer {dataplane_token}"),)
        async with grpc.aio.insecure_channel(address) as channel:
            stub = signin_pb2_grpc.SignInStub(channel)
            start = await stub.StartDevice(
                spb.StartDeviceRequest(public_url=PUBLIC, client_ip="192.0.2.7"),
                metadata=metadata,
                timeout=10,
            )
            assert start.user_code, start
            begin = await stub.BeginBrowser(
                spb.BeginBrowserRequest(
                    user_code=start.user_code, public_url=PUBLIC, client_ip="192.0.2.8"
                ),
                metadata=metadata,
                timeout=10,
            )
            assert begin.authorization_url, begin
            idp.next_login(login)
            callback = await idp.authorize(begin.authorization_url)
            done = await stub.CompleteBrowser(
                spb.CompleteBrowserRequest(
                    state=callback.get("state", ""),
                    code=callback.get("code", ""),
                    iss=callback.get("iss", ""),
                    browser_secret=begin.browser_secret,
                    client_ip="192.0.2.8",
                    public_url=PUBLIC,
                ),
                metadata=metadata,
                timeout=10,
            )
            assert done.ok, done
            tokens = await stub.PollDevice(
                spb.PollDeviceRequest(device_code=start.device_code, client_ip="192.0.2.7"),
                metadata=metadata,
                timeout=10,
            )
            assert tokens.access_token and not tokens.HasField("error"), tokens
            return tokens.access_token

    return asyncio.run(flow())
