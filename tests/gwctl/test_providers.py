"""``gwctl providers``: flag parsing, flags → options and update masks, readable display."""

from __future__ import annotations

import argparse
import json

import grpc
import pytest

from gwapi.v1 import common_pb2
from gwclient.errors import ClientError
from gwctl import main as gwctl_main
from gwctl import provider_display, provider_flags
from gwctl.cli import UsageError
from tests.fakes.admin_client import FakeAdminClient
from tests.gwctl.cli import gw

# gwctl's client is this test's fresh fake control plane (the ``fake_cp`` fixture).
pytestmark = pytest.mark.usefixtures("fake_cp")


def created(
    capsys: pytest.CaptureFixture[str], fake_cp: FakeAdminClient, *argv: str
) -> common_pb2.Provider:
    code, _, err = gw(capsys, "providers", "create", *argv)
    assert code == 0, err
    name, (provider, _) = fake_cp.calls[-1]
    assert name == "create_provider"
    return provider


def update_args(*argv: str) -> argparse.Namespace:
    return gwctl_main.build_parser().parse_args(["providers", "update", "p", *argv])


# -- parsers ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "value"), [("10", "10"), ("2.5", "2.5"), (" 30s ", "30")])
def test_parse_seconds(text: str, value: str) -> None:
    assert provider_flags.parse_seconds(text) == value


@pytest.mark.parametrize("text", ["0", "-1", "abc", "1e3", "", "inf"])
def test_parse_seconds_refused(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="positive number"):
        provider_flags.parse_seconds(text)


def test_parse_model_mapping() -> None:
    arn = "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/abc"
    assert provider_flags.parse_model_mapping(f"claude-x={arn}") == ("claude-x", arn)
    assert provider_flags.parse_model_mapping(" a = b@1 ") == ("a", "b@1")
    for bad in ("claude-x", "=x", "x=", " = "):
        with pytest.raises(argparse.ArgumentTypeError, match="FROM=TO"):
            provider_flags.parse_model_mapping(bad)


def test_model_map_json() -> None:
    assert (
        provider_flags.model_map_json([("b", "2"), ("a", "1"), ("a", "1")]) == '{"a":"1","b":"2"}'
    )
    with pytest.raises(UsageError, match="mapped twice"):
        provider_flags.model_map_json([("a", "1"), ("a", "2")])


# -- create -------------------------------------------------------------------------------------


def test_create_bedrock_flags_become_options(
    capsys: pytest.CaptureFixture[str], fake_cp: FakeAdminClient
) -> None:
    p = created(capsys, fake_cp, "br", "--kind", "bedrock", "--region", "us-east-1",
                "--access-key-env", "AK", "--secret-key-env", "SK", "--session-token-env", "ST",
                "--inference-profile", "global", "--model-map", "claude-x=us.anthropic.x-v1:0",
                "--model-map", "claude-y=anthropic.y", "--timeout-connect", "5",
                "--timeout-read", "300", "--base-url", "http://gw:8080/bedrock")  # fmt: skip
    assert p.kind == "bedrock" and p.base_url == "http://gw:8080/bedrock"
    options = dict(p.options)
    assert json.loads(options.pop("model_map")) == {
        "claude-x": "us.anthropic.x-v1:0",
        "claude-y": "anthropic.y",
    }
    assert options == {
        "region": "us-east-1",
        "access_key_env": "AK",
        "secret_key_env": "SK",
        "session_token_env": "ST",
        "inference_profile": "global",
        "timeout_connect_s": "5",
        "timeout_read_s": "300",
    }


def test_create_vertex_and_anthropic(
    capsys: pytest.CaptureFixture[str], fake_cp: FakeAdminClient
) -> None:
    p = created(capsys, fake_cp, "vx", "--kind", "vertex", "--project", "my-proj", "--region", "us-east5",
                "--credentials-file", "/etc/sa.json")  # fmt: skip
    assert dict(p.options) == {
        "project": "my-proj",
        "region": "us-east5",
        "credentials_file": "/etc/sa.json",
    }
    p = created(capsys, fake_cp, "max", "--kind", "anthropic", "--auth", "passthrough")
    assert dict(p.options) == {"auth": "passthrough"} and p.api_key_env == ""


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--kind", "anthropic", "--region", "us-east-1"], "--region only applies to --kind bedrock or vertex"),
        (["--kind", "vertex", "--project", "p", "--profile", "x"], "--profile only applies to --kind bedrock"),
        (["--kind", "anthropic", "--model-map", "a=b"], "--model-map only applies"),
        (["--kind", "simulator", "--timeout-read", "5"], "--timeout-read only applies"),
        (["--kind", "bedrock", "--region", "us-east-1", "--profile", "p", "--bearer-token-env", "B"], "exclusive"),
        (["--kind", "bedrock", "--region", "us-east-1", "--profile", "p", "--access-key-env", "A",
          "--secret-key-env", "S"], "exclusive"),
        (["--kind", "bedrock", "--region", "us-east-1", "--option", "region=eu-west-1"], "both set region"),
        (["--kind", "bedrock", "--inference-profile", "mars"], "invalid choice"),
        (["--kind", "anthropic", "--auth", "oauth"], "invalid choice"),
        (["--kind", "bedrock", "--model-map", "nope"], "FROM=TO"),
        (["--kind", "bedrock", "--option", "region="], "has no value"),
    ],
)  # fmt: skip
def test_create_usage_errors(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str, fake_cp: FakeAdminClient
) -> None:
    code, _, err = gw(capsys, "providers", "create", "p", *argv)
    assert code == 2 and message in err, err
    assert not any(c[0] == "create_provider" for c in fake_cp.calls)


# -- update -------------------------------------------------------------------------------------


def test_update_sends_one_mask_path_per_option() -> None:
    provider, paths = provider_flags.update_request(update_args("--region", "eu-west-3",
                                                           "--timeout-read", "60"))  # fmt: skip
    assert paths == ["options.region", "options.timeout_read_s"]
    assert dict(provider.options) == {"region": "eu-west-3", "timeout_read_s": "60"}


def test_update_choosing_a_bedrock_credential_clears_the_others() -> None:
    provider, paths = provider_flags.update_request(update_args("--bearer-token-env", "BR"))
    assert dict(provider.options) == {"bearer_token_env": "BR"}
    assert sorted(paths) == sorted(f"options.{n}" for n in (
        "profile", "access_key_env", "secret_key_env", "session_token_env", "bearer_token_env"
    ))  # fmt: skip
    provider, paths = provider_flags.update_request(update_args("--profile", "prod"))
    assert dict(provider.options) == {"profile": "prod"}
    assert "options.bearer_token_env" in paths and "options.access_key_env" in paths
    # Within the access-key way only the given flags change.
    provider, paths = provider_flags.update_request(update_args("--session-token-env", "ST"))
    assert "options.access_key_env" not in paths and "options.profile" in paths


def test_update_removals_and_model_map() -> None:
    provider, paths = provider_flags.update_request(update_args("--option", "profile=",
                                                           "--clear-model-map"))  # fmt: skip
    assert paths == ["options.model_map", "options.profile"] and not provider.options
    provider, paths = provider_flags.update_request(update_args("--model-map", "a=b"))
    assert paths == ["options.model_map"] and provider.options["model_map"] == '{"a":"b"}'


def test_update_passthrough_clears_the_api_key_env() -> None:
    provider, paths = provider_flags.update_request(update_args("--auth", "passthrough"))
    assert paths == ["api_key_env", "options.auth"] and provider.api_key_env == ""
    provider, paths = provider_flags.update_request(
        update_args("--auth", "key", "--api-key-env", "K")
    )
    assert paths == ["api_key_env", "options.auth"] and provider.api_key_env == "K"


def test_update_base_url_and_nothing_to_do(capsys: pytest.CaptureFixture[str]) -> None:
    provider, paths = provider_flags.update_request(update_args("--base-url", ""))
    assert paths == ["base_url"] and provider.base_url == ""
    code, _, err = gw(capsys, "providers", "update", "p")
    assert code == 2 and "nothing to update" in err
    code, _, err = gw(capsys, "providers", "update", "p", "--model-map", "a=b",
                       "--clear-model-map")  # fmt: skip
    assert code == 2 and "not both" in err


# -- display ------------------------------------------------------------------------------------


def prov(kind: str, **options: str) -> common_pb2.Provider:
    return common_pb2.Provider(name="p", kind=kind, options=options)


def test_display_bedrock() -> None:
    p = prov("bedrock", region="eu-west-3", profile="prod",
             model_map='{"a":"eu.anthropic.a-v1:0","b":"c"}', ping_interval_s="5")  # fmt: skip
    assert (
        provider_display.base_url_text(p)
        == "https://bedrock-runtime.eu-west-3.amazonaws.com (default)"
    )
    rows = dict(provider_display.settings_rows(p))
    assert rows["region"] == "eu-west-3"
    assert rows["inference profile"] == "default for the region"
    assert rows["credentials"] == "AWS profile prod"
    assert rows["model map"] == "2 entries: a → eu.anthropic.a-v1:0, b → c"
    assert rows["other options"] == "ping_interval_s=5"
    assert provider_display.settings_summary(p) == "region=eu-west-3 profile=prod model-map=2"
    assert provider_display.credentials_summary(p) == "profile prod"
    keys = prov("bedrock", region="us-east-1", access_key_env="AK", secret_key_env="SK")
    assert provider_display.credentials_text(keys) == "access keys from $AK / $SK"
    assert provider_display.credentials_summary(prov("bedrock", region="us-east-1")) == "aws chain"


def test_display_vertex_and_anthropic() -> None:
    v = prov("vertex", project="my-proj", region="global")
    assert provider_display.base_url_text(v) == "https://aiplatform.googleapis.com/v1 (default)"
    v.options["region"] = "us-east5"
    assert provider_display.default_base_url(v) == "https://us-east5-aiplatform.googleapis.com/v1"
    rows = dict(provider_display.settings_rows(v))
    assert rows["project"] == "my-proj" and rows["model map"] == "none"
    assert rows["credentials"] == "application default credentials"
    a = common_pb2.Provider(name="a", kind="anthropic", base_url="https://api.anthropic.com",
                            api_key_env="ANTHROPIC_API_KEY")  # fmt: skip
    assert dict(provider_display.settings_rows(a)) == {
        "auth": "key",
        "credentials": "API key from $ANTHROPIC_API_KEY",
    }
    a = prov("anthropic", auth="passthrough", timeout_read_s="60")
    rows = dict(provider_display.settings_rows(a))
    assert rows["credentials"].startswith("passthrough") and rows["timeouts"] == "read 60s"


# -- breakers -----------------------------------------------------------------------------------


def test_breakers_text() -> None:
    assert provider_display.breakers_text({}, 3) == "-"
    assert provider_display.breakers_text({"dp-1a2b": "open"}, 3) == "open on dp-1a2b"
    assert (
        provider_display.breakers_text({"a": "half_open", "b": "half_open"}, 3)
        == "half_open on 2 of 3"
    )
    mixed = {"a": "half_open", "b": "open", "c": "open"}
    assert provider_display.breakers_text(mixed, 3) == "open on 2 of 3; half_open on a"


def test_list_shows_breakers_of_connected_dataplanes(capsys: pytest.CaptureFixture[str]) -> None:
    code, stdout, err = gw(capsys, "providers", "list")
    assert code == 0, err
    lines = stdout.splitlines()
    assert lines[0].split()[-1] == "BREAKERS"
    rows = {line.split()[0]: line for line in lines[1:]}
    assert rows["anthropic"].endswith("open on dp-1")
    assert rows["sim"].endswith("half_open on 2 of 2")
    assert rows["bedrock"].rstrip().endswith("-")  # only the disconnected dp-2 reported it


def test_list_json_has_breakers_per_node(capsys: pytest.CaptureFixture[str]) -> None:
    code, stdout, err = gw(capsys, "providers", "list", "-o", "json")
    assert code == 0, err
    doc = {p["name"]: p for p in json.loads(stdout)}
    assert doc["anthropic"]["breakers"] == {"dp-1": "open"}
    assert doc["sim"]["breakers"] == {"dp-1": "half_open", "dp-3": "half_open"}
    assert doc["bedrock"]["breakers"] == {}


def test_list_without_dataplane_status(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, fake_cp: FakeAdminClient
) -> None:
    async def refused() -> None:
        raise ClientError(grpc.StatusCode.PERMISSION_DENIED, "no")

    monkeypatch.setattr(fake_cp, "list_dataplanes", refused)
    code, stdout, err = gw(capsys, "providers", "list")
    assert code == 0, err
    assert all(line.rstrip().endswith("?") for line in stdout.splitlines()[1:])
    code, stdout, _ = gw(capsys, "providers", "list", "-o", "json")
    assert all(p["breakers"] is None for p in json.loads(stdout))
