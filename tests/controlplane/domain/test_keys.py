import hashlib
import re

import pytest

from controlplane.domain import keys
from controlplane.domain.errors import InvalidArgument


def test_generate_key_shape_and_hash() -> None:
    k = keys.generate_key()
    assert k.secret.startswith("gw-") and len(k.secret) == 3 + 43
    assert re.fullmatch(r"key_[0-9a-f]{16}", k.id)
    assert k.prefix == k.secret[:10]
    assert k.secret_sha256 == hashlib.sha256(k.secret.encode()).hexdigest()
    assert k.secret not in repr(k)
    other = keys.generate_key()
    assert other.secret != k.secret and other.id != k.id


def test_validate_key_id() -> None:
    assert keys.validate_key_id("key_0123456789abcdef") == "key_0123456789abcdef"
    for bad in ("", "key_123", "KEY_0123456789abcdef", "gw-secret"):
        with pytest.raises(InvalidArgument):
            keys.validate_key_id(bad)


def test_models_normalised() -> None:
    assert keys.validate_models([" claude-sonnet-* ", "claude-opus-4-8", "claude-sonnet-*"]) == (
        "claude-sonnet-*",
        "claude-opus-4-8",
    )
    with pytest.raises(InvalidArgument, match="model pattern"):
        keys.validate_models(["has space"])
    with pytest.raises(InvalidArgument, match="model pattern"):
        keys.validate_models([""])


def test_target_rule() -> None:
    keys.validate_target("sim", "")
    keys.validate_target("", "main")
    with pytest.raises(InvalidArgument, match="exactly one"):
        keys.validate_target("", "")
    with pytest.raises(InvalidArgument, match="both"):
        keys.validate_target("sim", "main")


def test_expiry() -> None:
    assert keys.expires_at_ms(1_000, 0) == 0
    assert keys.expires_at_ms(1_000, 60) == 61_000
    with pytest.raises(InvalidArgument, match="negative"):
        keys.expires_at_ms(1_000, -1)
