"""Provider secrets on the data plane: parsed from the snapshot into memory only, preferred over
the environment, rotated without a restart, never written to the disk cache, and asked for again
after a restart from that cache."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc
import pytest

from dataplane.config.snapshot import ProviderConfig, Snapshot, SnapshotError
from dataplane.errors import GatewayError
from dataplane.policy.runtime import SnapshotHolder
from dataplane.providers.anthropic import AnthropicProvider
from dataplane.providers.base import UpstreamRequest
from dataplane.providers.bedrock import BedrockProvider
from dataplane.providers.registry import ProviderRegistry
from dataplane.providers.transport import Transport
from dataplane.sync.disk_cache import SNAPSHOT_FILE, load_cached, save_cached
from dataplane.sync.subscriber import Subscriber
from gwapi.v1 import common_pb2, discovery_pb2
from tests.dataplane import runtimes
from tests.dataplane.providers.test_bedrock import messages_request as bedrock_request
from tests.fakes.bedrock import FakeBedrock

SECRET = "sk-ant-api03-stored-0123456789"
ROTATED = "sk-ant-api03-rotated-9876543210"
ENV_KEY = "sk-ant-api03-from-env"


def _snapshot_pb(secret: str | None, version: str = "v1") -> discovery_pb2.Snapshot:
    msg = discovery_pb2.Snapshot(version=version, built_at_ms=1)
    msg.providers.append(
        common_pb2.Provider(
            name="anthropic",
            kind="anthropic",
            base_url="http://upstream.test",
            api_key_env="ANTHROPIC_API_KEY",
            has_secret=secret is not None,
        )
    )
    if secret:
        msg.secrets.append(
            discovery_pb2.ProviderSecret(provider="anthropic", api_key=secret, rotated_at_ms=5)
        )
    return msg


class RecordingTransport:
    def __init__(self) -> None:
        self.headers: list[list[tuple[bytes, bytes]]] = []

    async def request(self, method: str, url: str, headers: Any, *rest: Any) -> Any:
        self.headers.append(list(headers))
        return object()


def _request() -> UpstreamRequest:
    return UpstreamRequest(
        path="/v1/messages",
        query=b"",
        headers=((b"anthropic-version", b"2023-06-01"),),
        body=b"{}",
        model="claude-x",
        stream=False,
        request_id="gwreq_1",
        json={},
        betas=(),
    )


def _api_key(transport: RecordingTransport) -> bytes:
    return dict(transport.headers[-1])[b"x-api-key"]


def test_secrets_join_their_provider_and_never_show() -> None:
    snap = Snapshot.from_proto(_snapshot_pb(SECRET))
    config = snap.providers["anthropic"]
    assert config.api_key == SECRET and config.has_secret
    assert SECRET not in repr(config) and SECRET not in repr(snap)


def test_a_secret_for_an_unknown_provider_is_refused() -> None:
    msg = _snapshot_pb(SECRET)
    msg.secrets.append(discovery_pb2.ProviderSecret(provider="ghost", api_key="x"))
    with pytest.raises(SnapshotError, match="'ghost'") as info:
        Snapshot.from_proto(msg)
    assert "x" not in str(info.value).replace("ghost", "").replace("unknown", "")


async def test_the_stored_secret_wins_over_the_environment_and_rotates_live() -> None:
    transport = RecordingTransport()
    registry = ProviderRegistry(transport, env={"ANTHROPIC_API_KEY": ENV_KEY})  # type: ignore[arg-type]
    holder = SnapshotHolder(registry)

    runtime = holder.swap(Snapshot.from_proto(_snapshot_pb(None, "v0")))
    await runtime.adapters["anthropic"].send(_request())
    assert _api_key(transport) == ENV_KEY.encode()

    runtime = holder.swap(Snapshot.from_proto(_snapshot_pb(SECRET, "v1")))
    await runtime.adapters["anthropic"].send(_request())
    assert _api_key(transport) == SECRET.encode()

    runtime = holder.swap(Snapshot.from_proto(_snapshot_pb(ROTATED, "v2")))  # no restart
    await runtime.adapters["anthropic"].send(_request())
    assert _api_key(transport) == ROTATED.encode()


async def test_an_expected_secret_that_has_not_arrived_is_a_clear_503() -> None:
    transport = RecordingTransport()
    snap = Snapshot.from_proto(_snapshot_pb(SECRET))
    # What a restart from the disk cache looks like: has_secret, but no key.
    cached = Snapshot.from_proto(discovery_pb2.Snapshot.FromString(_stripped(_snapshot_pb(SECRET))))
    provider = AnthropicProvider(cached.providers["anthropic"], transport, env={})  # type: ignore[arg-type]
    with pytest.raises(GatewayError) as info:
        await provider.send(_request())
    assert info.value.status == 503
    assert "has not received it yet" in info.value.message
    assert transport.headers == []  # never upstream without the key
    assert snap.providers["anthropic"].api_key == SECRET


def _stripped(msg: discovery_pb2.Snapshot) -> bytes:
    clean = discovery_pb2.Snapshot()
    clean.CopyFrom(msg)
    clean.ClearField("secrets")
    return clean.SerializeToString()


def test_the_disk_cache_never_holds_secrets(tmp_path: Path) -> None:
    msg = _snapshot_pb(SECRET)
    save_cached(tmp_path, msg)
    raw = (tmp_path / SNAPSHOT_FILE).read_bytes()
    assert SECRET.encode() not in raw
    assert len(msg.secrets) == 1  # the caller's message is left alone
    cached = load_cached(tmp_path)
    assert cached is not None and cached.version == "v1"
    config = cached.providers["anthropic"]
    assert config.has_secret and config.api_key == ""


async def test_after_a_restart_from_the_cache_the_subscriber_asks_for_everything(
    tmp_path: Path,
) -> None:
    holder = runtimes.holder()
    channel = grpc.aio.insecure_channel("127.0.0.1:1")  # lazy: never connected here
    sub = Subscriber(channel, "t", holder, tmp_path, "dp-1", "127.0.0.1:1")
    assert sub.running_version() == ""
    save_cached(tmp_path, _snapshot_pb(SECRET))
    assert sub.load_cached()
    # The cache lacks the key: announce "" so the control plane resends the same version.
    assert sub.running_version() == ""
    holder.swap(Snapshot.from_proto(_snapshot_pb(SECRET)))
    assert sub.running_version() == "v1"
    holder.swap(Snapshot.from_proto(_snapshot_pb(None, "v2")))
    assert sub.running_version() == "v2"
    await channel.close()


# -- Bedrock: a stored AWS access-key pair ------------------------------------------------------


def _bedrock_config(base_url: str, api_key: str, has_secret: bool = True) -> ProviderConfig:
    # Options name environment credentials too: the stored pair must win over them.
    options = (("bearer_token_env", "NOPE"), ("region", "us-east-1"))
    return ProviderConfig("bdrk", "bedrock", base_url, "", options, has_secret, api_key)


async def test_bedrock_signs_with_the_stored_key_pair() -> None:
    fake = FakeBedrock(keys={"AKIDSTORED00000001": ("stored/secret+key", "the-session")})
    await fake.start()
    transport = Transport()
    try:
        pair = "AKIDSTORED00000001:stored/secret+key:the-session"
        provider = BedrockProvider(_bedrock_config(fake.base_url, pair), transport, env={})
        response = await provider.send(bedrock_request())
        await response.aclose()
        assert response.status == 200
        sent = fake.requests[0]
        assert (sent.header("authorization") or "").startswith(
            "AWS4-HMAC-SHA256 Credential=AKIDSTORED00000001/"
        )
        assert sent.header("x-amz-security-token") == "the-session"

        waiting = BedrockProvider(_bedrock_config(fake.base_url, "", True), transport, env={})
        with pytest.raises(GatewayError) as info:
            await waiting.send(bedrock_request())
        assert info.value.status == 503 and "has not received it yet" in info.value.message
        assert len(fake.requests) == 1
    finally:
        await transport.aclose()
        await fake.stop()
