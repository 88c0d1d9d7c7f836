"""Settings precedence, and the single domain-error → gRPC status table."""

from pathlib import Path

import grpc
import pytest
from sqlalchemy.exc import OperationalError

from controlplane.domain import errors as d
from controlplane.errors import INTERNAL_MESSAGE, STATUS_BY_ERROR, status_for
from controlplane.settings import Settings


def test_settings_from_env_and_args(tmp_path: Path) -> None:
    env = {"TOLLGATE_ADMIN_TOKEN": "adm", "TOLLGATE_DB": "sqlite:///x.db"}
    s = Settings.from_args([], env)
    assert (s.listen, s.db_url, s.admin_token, s.dataplane_token) == (
        "127.0.0.1:50051",
        "sqlite:///x.db",
        "adm",
        "",  # no longer the admin token: validate() refuses to start without one
    )
    admin_file, dp_file = tmp_path / "admin", tmp_path / "dp"
    for path, token in ((admin_file, "a2"), (dp_file, "dp")):
        path.write_text(token + "\n")
        path.chmod(0o600)
    s = Settings.from_args(
        [
            "--listen",
            "127.0.0.1:1",
            "--db",
            "postgresql://p@127.0.0.1/x",
            "--admin-token-file",
            str(admin_file),
            "--dataplane-token-file",
            str(dp_file),
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
    from_env_files = Settings.from_args(
        [],
        {
            "TOLLGATE_ADMIN_TOKEN_FILE": str(admin_file),
            "TOLLGATE_DATAPLANE_TOKEN_FILE": str(dp_file),
        },
    )
    assert (from_env_files.admin_token, from_env_files.dataplane_token) == ("a2", "dp")
    assert "adm" not in repr(
        Settings(admin_token="adm", dataplane_token="dpx")
    ) and "dpx" not in repr(Settings(admin_token="adm", dataplane_token="dpx"))
    assert Settings().db_url == "sqlite:///.tollgate/tollgate.db"


@pytest.mark.parametrize(
    ("flag", "env_name", "file_flag"),
    [
        ("--admin-token", "TOLLGATE_ADMIN_TOKEN", "--admin-token-file"),
        ("--dataplane-token", "TOLLGATE_DATAPLANE_TOKEN", "--dataplane-token-file"),
    ],
)
def test_token_values_on_the_command_line_are_refused(
    flag: str, env_name: str, file_flag: str
) -> None:
    """A flag's value shows in `ps` and shell history: the token must come from env or a file."""
    for argv in ([flag, "secret-value-123"], [f"{flag}=secret-value-123"]):
        with pytest.raises(ValueError) as caught:
            Settings.from_args(argv, {})
        message = str(caught.value)
        assert f"set {env_name} or pass {file_flag} PATH" in message
        assert "secret-value-123" not in message


def test_token_files_must_be_private_and_readable(tmp_path: Path) -> None:
    loose = tmp_path / "loose"
    loose.write_text("tok")
    loose.chmod(0o644)
    with pytest.raises(ValueError, match=r"readable by other users \(mode 0644\); run `chmod 600"):
        Settings.from_args(["--admin-token-file", str(loose)], {})
    empty = tmp_path / "empty"
    empty.write_text("\n")
    empty.chmod(0o600)
    with pytest.raises(ValueError, match=r"data-plane token file .* is empty"):
        Settings.from_args(["--dataplane-token-file", str(empty)], {})
    with pytest.raises(ValueError, match=r"cannot read the admin token file .*missing"):
        Settings.from_args(["--admin-token-file", str(tmp_path / "missing")], {})


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
        Settings(admin_token="x", dataplane_token="y", listen="nope").validate()
    Settings(admin_token="x", dataplane_token="y").validate()


def test_the_dataplane_token_never_defaults_to_the_admin_token() -> None:
    """A data plane holding the admin token could administer the whole gateway."""
    with pytest.raises(
        ValueError, match=r"a data-plane token is required .*TOLLGATE_DATAPLANE_TOKEN"
    ):
        Settings(admin_token="x").validate()
    with pytest.raises(ValueError, match="must differ from the admin token"):
        Settings(admin_token="same", dataplane_token="same").validate()


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


@pytest.mark.parametrize("retry", [0.0, -1.0, 61.0])
def test_leader_retry_must_be_a_sane_delay(retry: float) -> None:
    s = Settings(admin_token="a", dataplane_token="d", leader_retry_s=retry)
    with pytest.raises(ValueError, match="leader_retry_s must be between 0 and 60"):
        s.validate()
    Settings(admin_token="a", dataplane_token="d", leader_retry_s=0.1).validate()
