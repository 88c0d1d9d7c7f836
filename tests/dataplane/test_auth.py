"""Virtual-key lookup: where the key comes from and what each refusal says."""

from __future__ import annotations

import pytest

from dataplane.auth import authenticate, extract_secret
from dataplane.errors import GatewayError
from dataplane.snapshot import Snapshot
from tests.dataplane.conftest import EXPIRED, REVOKED, SECRET, build_snapshot


def scope(*headers: tuple[bytes, bytes]) -> dict[str, object]:
    return {"headers": list(headers)}


def test_secret_from_x_api_key_or_bearer() -> None:
    assert extract_secret(scope((b"x-api-key", b"gw-a"))) == "gw-a"
    assert extract_secret(scope((b"authorization", b"Bearer gw-b"))) == "gw-b"
    assert extract_secret(scope((b"authorization", b"bearer  gw-c "))) == "gw-c"
    assert extract_secret(scope((b"authorization", b"Basic Zm9v"))) is None
    assert extract_secret(scope()) is None
    # A real provider key in the shell next to the virtual key: the virtual key wins.
    both = scope((b"x-api-key", b"sk-ant-real"), (b"authorization", b"Bearer gw-d"))
    assert extract_secret(both) == "gw-d"


def test_authenticate() -> None:
    snap = Snapshot.from_proto(build_snapshot("http://127.0.0.1:1"))
    p = authenticate(snap, SECRET, 0)
    assert p.member.id == "key_alice" and p.workspace.name == "team-a" and p.snapshot is snap
    for secret, words in ((REVOKED, "revoked"), (EXPIRED, "expired"), ("gw-x", "not a valid")):
        with pytest.raises(GatewayError) as err:
            authenticate(snap, secret, 10**13)
        assert err.value.status == 401 and words in err.value.message
        assert secret not in err.value.message
