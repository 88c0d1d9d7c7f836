"""The sign-in parts of a snapshot: developers, signing keys, managed settings — parsed, indexed,
validated (NACK when inconsistent) — and the disk cache that never holds a signing key."""

from __future__ import annotations

from pathlib import Path

import grpc
import orjson
import pytest

from dataplane.config.members import ManagedSettings
from dataplane.config.snapshot import Period, Snapshot, SnapshotError
from dataplane.sync.disk_cache import SNAPSHOT_FILE, load_cached, save_cached
from dataplane.sync.subscriber import Subscriber
from gwapi.v1 import common_pb2, discovery_pb2
from tests.dataplane import runtimes
from tests.fakes.signin import DEVELOPER_ID, KID, SIGNING_KEY, sso_snapshot

POLICY = '{"env": {"CLAUDE_CODE_ENABLE_GATEWAY_MODEL_DISCOVERY": "1"}, "permissions": {}}'


def proto(**kw: object) -> discovery_pb2.Snapshot:
    return sso_snapshot("http://127.0.0.1:1", **kw)  # type: ignore[arg-type]


def test_developers_keys_and_sso_are_parsed() -> None:
    msg = proto(member_limits=common_pb2.Limits(rpm=7))
    msg.spend.append(
        discovery_pb2.Spend(
            scope="developer", id=DEVELOPER_ID, period=common_pb2.PERIOD_DAY, spent_micros=5
        )
    )
    snap = Snapshot.from_proto(msg)
    assert snap.sso.enabled and snap.sso.issuer == "https://idp.example.test"
    dev = snap.developers[DEVELOPER_ID]
    assert (dev.workspace, dev.email, dev.provider, dev.limits.rpm) == (
        "team-a",
        "alice@example.com",
        "anthropic",
        7,
    )
    assert dev.counter == "d:" + DEVELOPER_ID and dev.label == "developer 'alice@example.com'"
    assert snap.signing_keys[KID].key == SIGNING_KEY and not snap.signing_keys_missing
    assert snap.spend[("developer", DEVELOPER_ID, Period.DAY)] == (0, 5)
    # Secret: never in a repr.
    assert SIGNING_KEY.hex() not in repr(snap) and repr(SIGNING_KEY) not in repr(snap)
    assert str(SIGNING_KEY) not in repr(snap.signing_keys[KID])


def test_signing_keys_missing() -> None:
    assert Snapshot.from_proto(proto(keys=False)).signing_keys_missing
    assert not Snapshot.from_proto(proto(keys=False, enabled=False)).signing_keys_missing


def _mutations() -> list[tuple[str, object]]:
    def unknown_ws(m: discovery_pb2.Snapshot) -> None:
        m.developers[0].workspace = "nowhere"

    def twice(m: discovery_pb2.Snapshot) -> None:
        m.developers.append(m.developers[0])

    def both_targets(m: discovery_pb2.Snapshot) -> None:
        m.developers[0].route = "main"

    def unknown_provider(m: discovery_pb2.Snapshot) -> None:
        m.developers[0].provider = "ghost"

    def no_id(m: discovery_pb2.Snapshot) -> None:
        m.developers[0].id = ""

    def short_key(m: discovery_pb2.Snapshot) -> None:
        m.signing_keys[0].key = b"short"

    def no_kid(m: discovery_pb2.Snapshot) -> None:
        m.signing_keys[0].kid = ""

    def two_kids(m: discovery_pb2.Snapshot) -> None:
        m.signing_keys.append(discovery_pb2.SigningKey(kid=KID, key=b"k" * 32))

    def settings_not_json(m: discovery_pb2.Snapshot) -> None:
        m.workspaces[0].managed_settings_json = "{nope"

    def settings_not_object(m: discovery_pb2.Snapshot) -> None:
        m.workspaces[0].managed_settings_json = "[1, 2]"

    def bad_checksum(m: discovery_pb2.Snapshot) -> None:
        m.workspaces[0].managed_settings_json = "{}"
        m.workspaces[0].managed_settings_checksum = 'a"b'

    return [
        ("unknown workspace 'nowhere'", unknown_ws),
        ("appears twice", twice),
        ("both a provider and a route", both_targets),
        ("unknown provider 'ghost'", unknown_provider),
        ("developer without an id", no_id),
        ("is malformed (5 bytes", short_key),
        ("signing key without a kid", no_kid),
        ("two signing keys", two_kids),
        ("not valid JSON", settings_not_json),
        ("not a JSON object", settings_not_object),
        ("checksum is not a plain token", bad_checksum),
    ]


@pytest.mark.parametrize(("words", "mutate"), _mutations())
def test_inconsistent_input_is_refused(words: str, mutate: object) -> None:
    msg = proto()
    mutate(msg)  # type: ignore[operator]
    with pytest.raises(SnapshotError, match=words.replace("(", r"\(")) as info:
        Snapshot.from_proto(msg)
    assert "short" not in str(info.value)  # a key's bytes never appear in the error


def test_a_disabled_developer_may_keep_a_stale_target() -> None:
    msg = proto(disabled=True)
    msg.developers[0].provider = "deleted-provider"
    assert Snapshot.from_proto(msg).developers[DEVELOPER_ID].disabled


def test_managed_settings_are_rendered_once() -> None:
    snap = Snapshot.from_proto(proto(managed_settings=POLICY))
    settings = snap.workspaces["team-a"].managed_settings
    assert settings is not None
    body = orjson.loads(settings.body)
    assert body["settings"] == orjson.loads(POLICY)
    assert body["checksum"] == settings.checksum and body["uuid"] == settings.uuid
    assert settings.etag == b'"' + settings.checksum.encode() + b'"'
    again = Snapshot.from_proto(proto(managed_settings=POLICY, version="s2"))
    assert again.workspaces["team-a"].managed_settings == settings  # stable uuid
    other = ManagedSettings.build("team-b", POLICY, settings.checksum)
    assert other.uuid != settings.uuid
    assert Snapshot.from_proto(proto()).workspaces["team-a"].managed_settings is None
    empty = ManagedSettings.build("team-a", "{}", "")  # no checksum: the text's SHA-256
    assert len(empty.checksum) == 64 and orjson.loads(empty.body)["settings"] == {}


def test_if_none_match() -> None:
    s = ManagedSettings.build("w", "{}", "abc123")
    for value in (b'"abc123"', b"abc123", b'W/"abc123"', b'"x", "abc123"', b"*"):
        assert s.matches(value), value
    for other in (b'"abc12"', b"", None, b'"ABC123"'):
        assert not s.matches(other), other


def test_the_disk_cache_never_holds_signing_keys(tmp_path: Path) -> None:
    msg = proto()
    save_cached(tmp_path, msg)
    raw = (tmp_path / SNAPSHOT_FILE).read_bytes()
    assert SIGNING_KEY not in raw
    assert len(msg.signing_keys) == 1  # the caller's message is left alone
    cached = load_cached(tmp_path)
    assert cached is not None and cached.developers[DEVELOPER_ID].email == "alice@example.com"
    assert cached.signing_keys == {} and cached.signing_keys_missing


async def test_a_start_from_the_cache_asks_for_everything_again(tmp_path: Path) -> None:
    save_cached(tmp_path, proto())
    holder = runtimes.holder()
    channel = grpc.aio.insecure_channel("127.0.0.1:1")
    subscriber = Subscriber(channel, "t", holder, tmp_path, "dp-1", "127.0.0.1:0")
    await channel.close()
    assert subscriber.load_cached()
    assert subscriber.running_version() == ""  # keys missing: "" makes the control plane resend
    holder.swap(Snapshot.from_proto(proto()))
    assert subscriber.running_version() == "s1"
