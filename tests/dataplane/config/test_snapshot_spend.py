"""The ledger's spend seeds in the snapshot: parsed, indexed, validated."""

from __future__ import annotations

import pytest

from dataplane.config.snapshot import Period, Snapshot, SnapshotError
from gwapi.v1 import common_pb2, discovery_pb2
from tests.dataplane.conftest import build_snapshot


def with_spend(*entries: discovery_pb2.Spend) -> discovery_pb2.Snapshot:
    msg = build_snapshot("http://127.0.0.1:1")
    msg.spend.extend(entries)
    return msg


def test_spend_is_indexed_by_scope_id_and_period() -> None:
    snap = Snapshot.from_proto(
        with_spend(
            discovery_pb2.Spend(
                scope="key",
                id="key_1",
                period=common_pb2.PERIOD_DAY,
                period_start_ms=1_000,
                spent_micros=5_000,
            ),
            discovery_pb2.Spend(
                scope="workspace",
                id="team-a",
                period=common_pb2.PERIOD_MONTH,
                period_start_ms=2_000,
                spent_micros=7_000,
            ),
            discovery_pb2.Spend(
                scope="workspace", id="team-a", period=common_pb2.PERIOD_LIFETIME, spent_micros=9
            ),
            # A duplicate: the later period wins.
            discovery_pb2.Spend(
                scope="key",
                id="key_1",
                period=common_pb2.PERIOD_DAY,
                period_start_ms=500,
                spent_micros=99_000,
            ),
        )
    )
    assert dict(snap.spend) == {
        ("key", "key_1", Period.DAY): (1_000, 5_000),
        ("workspace", "team-a", Period.MONTH): (2_000, 7_000),
        ("workspace", "team-a", Period.LIFETIME): (0, 9),
    }
    with pytest.raises(TypeError):
        snap.spend[("key", "x", Period.DAY)] = (0, 0)  # type: ignore[index]


def test_no_spend_is_empty() -> None:
    assert dict(Snapshot.from_proto(with_spend()).spend) == {}


@pytest.mark.parametrize(
    "entry",
    [
        discovery_pb2.Spend(scope="team", id="x", period=common_pb2.PERIOD_DAY),
        discovery_pb2.Spend(scope="key", id="x", period=common_pb2.PERIOD_DAY, spent_micros=-1),
        discovery_pb2.Spend(scope="key", id="x", period=common_pb2.PERIOD_UNSPECIFIED),
    ],
)
def test_bad_spend_is_refused(entry: discovery_pb2.Spend) -> None:
    with pytest.raises(SnapshotError):
        Snapshot.from_proto(with_spend(entry))
