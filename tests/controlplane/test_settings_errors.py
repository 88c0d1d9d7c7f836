"""Settings precedence, and the single domain-error → gRPC status table."""

import grpc
import pytest
from sqlalchemy.exc import OperationalError

from controlplane.domain import errors as d
from controlplane.errors import INTERNAL_MESSAGE, STATUS_BY_ERROR, status_for
from controlplane.settings import Settings


def test_settings_from_env_and_args() -> None:
    env = {"TOLLGATE_ADMIN_TOKEN": "adm", "TOLLGATE_DB": "sqlite:///x.db"}
    s = Settings.from_args([], env)
    assert (s.listen, s.db_url, s.admin_token, s.dataplane_token) == (
        "127.0.0.1:50051",
        "sqlite:///x.db",
        "adm",
        "adm",
    )
    s = Settings.from_args(
        [
            "--listen",
            "127.0.0.1:1",
            "--db",
            "postgresql://p@127.0.0.1/x",
            "--admin-token",
            "a2",
            "--dataplane-token",
            "dp",
        ],
        {**env, "TOLLGATE_DATAPLANE_TOKEN": "env-dp"},
    )
    assert (s.listen, s.db_url, s.admin_token, s.dataplane_token) == (
        "127.0.0.1:1",
        "postgresql://p@127.0.0.1/x",
        "a2",
        "dp",
    )
    assert (
        Settings.from_args([], {**env, "TOLLGATE_DATAPLANE_TOKEN": "env-dp"}).dataplane_token
        == "env-dp"
    )
    assert "adm" not in repr(
        Settings(admin_token="adm", dataplane_token="dpx")
    ) and "dpx" not in repr(Settings(admin_token="adm", dataplane_token="dpx"))
    assert Settings().db_url == "sqlite:///.tollgate/tollgate.db"


def test_allow_internal_webhooks_from_flag_and_env() -> None:
    base = {"TOLLGATE_ADMIN_TOKEN": "a"}
    assert Settings.from_args([], base).allow_internal_webhooks is False
    assert Settings.from_args(["--allow-internal-webhooks"], base).allow_internal_webhooks
    for text, expected in (("1", True), ("true", True), ("0", False), ("no", False)):
        env = {**base, "TOLLGATE_ALLOW_INTERNAL_WEBHOOKS": text}
        assert Settings.from_args([], env).allow_internal_webhooks is expected
    with pytest.raises(ValueError, match="TOLLGATE_ALLOW_INTERNAL_WEBHOOKS"):
        Settings.from_args([], {**base, "TOLLGATE_ALLOW_INTERNAL_WEBHOOKS": "maybe"})


def test_settings_validate() -> None:
    with pytest.raises(ValueError, match="TOLLGATE_ADMIN_TOKEN"):
        Settings().validate()
    with pytest.raises(ValueError, match="HOST:PORT"):
        Settings(admin_token="x", listen="nope").validate()
    Settings(admin_token="x").validate()


def test_status_table() -> None:
    assert status_for(d.InvalidArgument("bad x")) == (grpc.StatusCode.INVALID_ARGUMENT, "bad x")
    assert status_for(d.NotFound("n"))[0] == grpc.StatusCode.NOT_FOUND
    assert status_for(d.AlreadyExists("a"))[0] == grpc.StatusCode.ALREADY_EXISTS
    assert status_for(d.FailedPrecondition("f"))[0] == grpc.StatusCode.FAILED_PRECONDITION
    assert status_for(d.PermissionDenied("p"))[0] == grpc.StatusCode.PERMISSION_DENIED
    assert status_for(d.Unauthenticated("u"))[0] == grpc.StatusCode.UNAUTHENTICATED
    assert status_for(RuntimeError("secret detail")) == (grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE)
    code, msg = status_for(OperationalError("select", {}, Exception("password=x")))
    assert code == grpc.StatusCode.UNAVAILABLE and "password" not in msg
    assert set(STATUS_BY_ERROR) == set(d.DomainError.__subclasses__())
