"""Alert webhooks cannot be pointed at the inside network (SSRF): by default every address a
webhook's host resolves to must be public, and the request goes to the address that was checked.

Real deliveries go to a sink on 127.0.0.1; refusals of addresses the test cannot listen on
(10/8, link-local, ULA…) use a fake resolver and a recording transport that proves that no
request was even attempted.
"""

from __future__ import annotations

import ipaddress

import httpx
import pytest

from controlplane.domain.destinations import internal_kind, literal_internal_kind
from controlplane.usage.webhooks import DELIVERED, REFUSED, new_client, post_webhook
from tests.fakes.webhook import WebhookSink

PAYLOAD = {"type": "budget_alert", "text": "Workspace 'team-a' reached 50 %"}


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("127.255.0.9", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "link-local"),  # cloud metadata services
        ("100.64.0.1", "shared (CGNAT)"),
        ("0.0.0.0", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("::1", "loopback"),
        ("::", "unspecified"),
        ("fd00::1", "private"),  # IPv6 unique-local
        ("fe80::1", "link-local"),
        ("fec0::1", "site-local"),
        ("::ffff:127.0.0.1", "loopback (inside an IPv6 address)"),
        ("::ffff:10.0.0.1", "private (inside an IPv6 address)"),
        ("::ffff:169.254.169.254", "link-local (inside an IPv6 address)"),
        ("64:ff9b::a00:1", "private (inside an IPv6 address)"),  # NAT64 of 10.0.0.1
        ("2002:a00:1::1", "private (inside an IPv6 address)"),  # 6to4 of 10.0.0.1
        ("93.184.216.34", None),
        ("8.8.8.8", None),
        ("2606:4700::1111", None),
        ("::ffff:8.8.8.8", None),
    ],
)
def test_internal_addresses(address: str, kind: str | None) -> None:
    assert internal_kind(ipaddress.ip_address(address)) == kind


def test_literal_hosts() -> None:
    assert literal_internal_kind("[::1]") == "loopback"
    assert literal_internal_kind("10.0.0.1") == "private"
    assert literal_internal_kind("hooks.example.com") is None  # names: checked when resolved
    assert literal_internal_kind("93.184.216.34") is None


class Recorder:
    """A transport that records every request it is asked to send and answers 204."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []

    def client(self) -> httpx.AsyncClient:
        def handle(request: httpx.Request) -> httpx.Response:
            self.requests.append(request)
            return httpx.Response(204)

        return httpx.AsyncClient(transport=httpx.MockTransport(handle), follow_redirects=False)


def resolver(*answers: list[str]):
    """A resolver giving each answer in turn (the last one repeats); records the names asked."""
    asked: list[tuple[str, int]] = []
    queue = list(answers)

    async def resolve(host: str, port: int) -> list[str]:
        asked.append((host, port))
        return queue.pop(0) if len(queue) > 1 else queue[0]

    resolve.asked = asked  # type: ignore[attr-defined]
    return resolve


async def deliver(client: httpx.AsyncClient, url: str, **kw: object) -> str:
    return await post_webhook(
        client,
        url,
        PAYLOAD,
        timeout_s=2.0,
        attempts=2,
        backoff_s=0.01,
        **kw,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(
    "host",
    ["127.0.0.1", "localhost", "[::ffff:127.0.0.1]"],
)
async def test_loopback_is_refused_by_default(host: str) -> None:
    """A real receiver on loopback, reached by address, by a name that resolves to it
    (``localhost``, via the system resolver) and by an IPv4-mapped IPv6 address: nothing is
    sent, and the status says only that the destination is not allowed."""
    with WebhookSink([200]) as sink:
        async with new_client() as client:
            status = await deliver(client, f"http://{host}:{sink.port}/hooks")
        assert status == REFUSED
        assert sink.bodies == []
    async with new_client() as client:  # and allowed when the operator says so
        with WebhookSink([200]) as sink:
            status = await deliver(client, sink.url, allow_internal=True)
            assert status == DELIVERED and sink.bodies == [PAYLOAD]


@pytest.mark.parametrize(
    "answer",
    [
        ["10.0.0.7"],
        ["192.168.0.10"],
        ["169.254.169.254"],
        ["fd12:3456::1"],
        ["fe80::1%eth0"],
        ["::ffff:172.16.5.4"],
        ["93.184.216.34", "10.0.0.7"],  # a public answer with a private one mixed in
        ["2606:4700::1111", "::1"],
    ],
)
async def test_names_resolving_to_internal_addresses_are_refused(
    answer: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    recorder = Recorder()
    resolve = resolver(answer)
    async with recorder.client() as client:
        status = await deliver(client, "https://hooks.example.com/t/123", resolve=resolve)
    assert status == REFUSED
    assert recorder.requests == []  # not even attempted
    assert resolve.asked == [("hooks.example.com", 443)]  # and not retried
    # The operator's log says why (the admin's status does not); never the URL's path.
    assert "--allow-internal-webhooks" in caplog.text and "/t/123" not in caplog.text


async def test_the_checked_address_is_the_one_connected_to() -> None:
    """One resolution per attempt, then the request goes to that address with the original name
    in Host and as TLS SNI: a DNS answer that changes after the check (rebinding) is never
    used."""
    recorder = Recorder()
    resolve = resolver(["93.184.216.34"], ["127.0.0.1"])  # a rebinding resolver
    async with recorder.client() as client:
        status = await deliver(client, "https://hooks.example.com:8443/t/1?x=2", resolve=resolve)
    assert status == DELIVERED
    assert resolve.asked == [("hooks.example.com", 8443)]
    (request,) = recorder.requests
    assert str(request.url) == "https://93.184.216.34:8443/t/1?x=2"
    assert request.headers["host"] == "hooks.example.com:8443"
    assert request.extensions["sni_hostname"] == "hooks.example.com"


async def test_each_retry_checks_again() -> None:
    """A name that turns internal between two attempts is refused on the second."""
    recorder = Recorder()
    resolve = resolver(["93.184.216.34"], ["10.0.0.1"])
    calls = 0

    def handle(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(503)

    async with httpx.AsyncClient(transport=httpx.MockTransport(handle)) as client:
        status = await deliver(client, "http://hooks.example.com/x", resolve=resolve)
    assert (status, calls, len(resolve.asked)) == (REFUSED, 1, 2)
    assert recorder.requests == []


async def test_a_real_delivery_keeps_the_name_in_the_host_header() -> None:
    """Over a real socket: the request reaches the resolved address, named as in the URL."""
    with WebhookSink([204]) as sink:
        resolve = resolver(["127.0.0.1"])
        async with new_client() as client:
            status = await deliver(
                client,
                f"http://hooks.example.test:{sink.port}/x",
                resolve=resolve,
                allow_internal=True,
            )
        assert status == DELIVERED
        assert sink.headers[0]["host"] == f"hooks.example.test:{sink.port}"
