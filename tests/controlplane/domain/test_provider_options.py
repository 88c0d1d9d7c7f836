"""Per-kind provider rules: base URLs, known options and their values, credentials."""

from __future__ import annotations

import json

import pytest

from controlplane.domain import provider_options
from controlplane.domain import providers as rules
from controlplane.domain.errors import InvalidArgument

BEDROCK = {"region": "us-east-1"}
VERTEX = {"project": "my-project-123"}


def refused(message: str, kind: str, options: dict[str, str], **kw: str) -> str:
    with pytest.raises(InvalidArgument, match=message) as info:
        rules.validate_provider(kind, kw.get("base_url", ""), kw.get("api_key_env", ""), options)
    return info.value.message


def test_every_known_option_has_a_validator() -> None:
    for kind in rules.KINDS:
        for name in rules.known_options(kind):
            assert name in provider_options.VALIDATORS, (kind, name)


# -- base URLs ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "kind", "expected"),
    [
        ("", "vertex", ""),  # the data plane derives it from the region
        ("https://us-east5-aiplatform.googleapis.com/v1", "vertex", None),
        ("https://aiplatform.googleapis.com/v1/", "vertex", "https://aiplatform.googleapis.com/v1"),
        ("http://gw.internal:8080/vertex/v1", "vertex", None),
        ("https://bedrock-runtime.eu-west-3.amazonaws.com/", "bedrock", None),
        ("http://gw.internal:8080/bedrock", "bedrock", None),  # another gateway's Bedrock door
        ("https://proxy.internal/anthropic", "anthropic", None),
    ],
)
def test_base_url_per_kind_ok(url: str, kind: str, expected: str | None) -> None:
    assert rules.normalize_base_url(url, kind) == (expected or url.rstrip("/"))


@pytest.mark.parametrize(
    ("url", "kind", "message"),
    [
        (
            "https://us-east5-aiplatform.googleapis.com",
            "vertex",
            r"ends in /v1.*e\.g\. https://us-east5-aiplatform\.googleapis\.com/v1\)",
        ),
        (
            "http://gw:8080/vertex/",
            "vertex",
            r"e\.g\. http://gw:8080/vertex/v1\)",
        ),
        (
            "https://aiplatform.googleapis.com/v1/projects/p/locations/global",
            "vertex",
            r"without /projects/.*e\.g\. https://aiplatform\.googleapis\.com/v1\)",
        ),
        ("https://bedrock-runtime.us-east-1.amazonaws.com/v1", "bedrock", "without /v1"),
        (
            "https://bedrock-runtime.us-east-1.amazonaws.com/model/x/invoke",
            "bedrock",
            r"without /model/.*e\.g\. https://bedrock-runtime\.us-east-1\.amazonaws\.com\)",
        ),
        ("http://gw:8080/bedrock/model", "bedrock", r"e\.g\. http://gw:8080/bedrock\)"),
        ("https://api.anthropic.com/v1", "anthropic", "without /v1"),
        ("http://127.0.0.1:8099/v1", "simulator", "without /v1"),
        ("bedrock-runtime.us-east-1.amazonaws.com", "bedrock", "bedrock-runtime.us-east-1"),
    ],
)
def test_base_url_per_kind_refused(url: str, kind: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        rules.normalize_base_url(url, kind)


# -- option names -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "options", "message"),
    [
        ("bedrock", {**BEDROCK, "regoin": "us-east-1"}, r"unknown option 'regoin'.*'region'\?"),
        ("vertex", {**VERTEX, "profile": "x"}, "for a vertex provider"),
        ("anthropic", {"region": "us-east-1"}, "for an anthropic provider"),
        ("simulator", {"seed": "1"}, "latency_ms, chunk_delay_ms"),
        ("anthropic", {"timeout": "5"}, "did you mean"),
    ],
)
def test_unknown_options_are_refused_with_the_known_ones(
    kind: str, options: dict[str, str], message: str
) -> None:
    text = refused(message, kind, options)
    assert "known options are" in text
    assert all(name in text for name in rules.known_options(kind))


def test_empty_and_secret_looking_values() -> None:
    refused("option 'profile' is empty", "bedrock", {**BEDROCK, "profile": " "})
    refused("looks like it holds a credential", "bedrock", {**BEDROCK, "profile": "AKIA123"})
    refused("looks like a secret", "anthropic", {"api_key": "x"})


# -- anthropic ----------------------------------------------------------------------------------


def test_anthropic_auth() -> None:
    ok = rules.validate_provider("anthropic", "", "", {"auth": "passthrough"})
    assert ok.options == {"auth": "passthrough"}
    assert ok.base_url == "https://api.anthropic.com"
    key = rules.validate_provider("anthropic", "", "ANTHROPIC_API_KEY", {"auth": "key"})
    assert key.api_key_env == "ANTHROPIC_API_KEY"
    refused("use one of key, passthrough", "anthropic", {"auth": "oauth"})
    refused(
        "auth=passthrough.*leave api_key_env empty",
        "anthropic",
        {"auth": "passthrough"},
        api_key_env="ANTHROPIC_API_KEY",
    )


@pytest.mark.parametrize(
    ("kind", "options", "message"),
    [
        ("bedrock", BEDROCK, "bearer_token_env"),
        ("vertex", VERTEX, "credentials_file"),
        ("simulator", {}, "needs no credential"),
    ],
)
def test_api_key_env_only_for_anthropic(kind: str, options: dict[str, str], message: str) -> None:
    refused(message, kind, options, api_key_env="SOME_KEY")


# -- bedrock ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "region",
    ["us-east-1", "eu-west-3", "ap-northeast-1", "us-gov-west-1", "cn-northwest-1", "ca-central-1"],
)
def test_bedrock_regions_ok(region: str) -> None:
    assert rules.validate_options({"region": region}, "bedrock") == {"region": region}


@pytest.mark.parametrize("region", ["us-east", "US-EAST-1", "useast1", "us-east-1a", "global"])
def test_bedrock_regions_refused(region: str) -> None:
    refused("AWS region such as us-east-1", "bedrock", {"region": region})


def test_bedrock_region_is_required() -> None:
    refused("needs the option 'region'", "bedrock", {"inference_profile": "us"})


def test_bedrock_inference_profile() -> None:
    for profile in provider_options.INFERENCE_PROFILES:
        rules.validate_options({**BEDROCK, "inference_profile": profile}, "bedrock")
    refused(
        "us, eu, apac, jp, global, none",
        "bedrock",
        {**BEDROCK, "inference_profile": "usa"},
    )


def test_bedrock_credentials_ok() -> None:
    for creds in (
        {},
        {"profile": "bedrock-prod"},
        {"access_key_env": "AWS_ACCESS_KEY_ID", "secret_key_env": "AWS_SECRET_ACCESS_KEY"},
        {"access_key_env": "AK", "secret_key_env": "SK", "session_token_env": "ST"},
        {"bearer_token_env": "AWS_BEARER_TOKEN_BEDROCK"},
    ):
        assert rules.validate_options({**BEDROCK, **creds}, "bedrock") == {**BEDROCK, **creds}


@pytest.mark.parametrize(
    ("creds", "message"),
    [
        ({"access_key_env": "AK"}, "go together"),
        ({"secret_key_env": "SK"}, "go together"),
        ({"session_token_env": "ST"}, "needs access_key_env and secret_key_env"),
        ({"bearer_token_env": "B", "profile": "p"}, "bearer_token_env and profile"),
        (
            {"bearer_token_env": "B", "access_key_env": "AK", "secret_key_env": "SK"},
            "one way",
        ),
        ({"profile": "p", "access_key_env": "AK", "secret_key_env": "SK"}, "one way"),
        ({"profile": "my profile"}, "name of an AWS profile"),
        ({"profile": "[default]"}, "name of an AWS profile"),
    ],
)
def test_bedrock_credentials_refused(creds: dict[str, str], message: str) -> None:
    refused(message, "bedrock", {**BEDROCK, **creds})


@pytest.mark.parametrize(
    "option", ["access_key_env", "secret_key_env", "session_token_env", "bearer_token_env"]
)
def test_bedrock_credential_options_are_env_names_and_never_echoed(option: str) -> None:
    secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    creds = {"access_key_env": "AK", "secret_key_env": "SK", option: secret}
    if option == "bearer_token_env":
        creds = {option: secret}
    text = refused("NAME of an environment variable", "bedrock", {**BEDROCK, **creds})
    assert secret not in text and "wJalr" not in text


# -- vertex -------------------------------------------------------------------------------------


def test_vertex_region_defaults_to_global_and_is_stored() -> None:
    assert rules.validate_options(VERTEX, "vertex") == {**VERTEX, "region": "global"}
    stored = rules.validate_options({**VERTEX, "region": "us-east5"}, "vertex")
    assert stored["region"] == "us-east5"
    rules.validate_options({**VERTEX, "region": "europe-west1"}, "vertex")
    rules.validate_options({**VERTEX, "region": "northamerica-northeast1"}, "vertex")


@pytest.mark.parametrize("region", ["us-east-1", "Global", "us_east5", "europe"])
def test_vertex_regions_refused(region: str) -> None:
    refused("Google Cloud region such as us-east5", "vertex", {**VERTEX, "region": region})


@pytest.mark.parametrize(
    "project", ["my-project-123", "abcdef", "a" * 30, "example.com:my-project"]
)
def test_vertex_projects_ok(project: str) -> None:
    assert rules.validate_options({"project": project}, "vertex")["project"] == project


@pytest.mark.parametrize(
    "project", ["abcde", "a" * 31, "1project", "My-Project", "my_project", "my-project-"]
)
def test_vertex_projects_refused(project: str) -> None:
    refused("6-30 lowercase letters", "vertex", {"project": project})


def test_vertex_project_is_required() -> None:
    refused("needs the option 'project'", "vertex", {"region": "us-east5"})


def test_vertex_credentials_file() -> None:
    ok = rules.validate_options({**VERTEX, "credentials_file": "/etc/tollgate/sa.json"}, "vertex")
    assert ok["credentials_file"] == "/etc/tollgate/sa.json"
    refused("absolute path", "vertex", {**VERTEX, "credentials_file": "sa.json"})
    refused("absolute path", "vertex", {**VERTEX, "credentials_file": "~/sa.json"})
    text = refused(
        "not its content", "vertex", {**VERTEX, "credentials_file": '{"type": "service_account"}'}
    )
    assert "service_account" not in text
    refused("credential", "vertex", {**VERTEX, "credentials_file": "-----BEGIN PRIVATE KEY"})


# -- model maps ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "base"), [("bedrock", BEDROCK), ("vertex", VERTEX)])
def test_model_map_is_stored_compact_and_sorted(kind: str, base: dict[str, str]) -> None:
    raw = '{ "b": "arn:aws:bedrock:us-east-1:123:application-inference-profile/x",  "a": "z@1" }'
    stored = rules.validate_options({**base, "model_map": raw}, kind)["model_map"]
    assert stored == (
        '{"a":"z@1","b":"arn:aws:bedrock:us-east-1:123:application-inference-profile/x"}'
    )
    assert json.loads(stored) == json.loads(raw)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("claude=x", "not valid JSON"),
        ('["a", "b"]', "must be a JSON object"),
        ('{"a": ""}', "non-empty string"),
        ('{"": "x"}', "non-empty string"),
        ('{"a": 1}', "non-empty string"),
        ('{"a": {"b": "c"}}', "non-empty string"),
        ('{"a": "x y"}', "without spaces"),
        ('{"a": "x", "a": "y"}', "lists 'a' twice"),
        (json.dumps({f"m{i}": "x" for i in range(101)}), "101 entries, at most 100"),
        (json.dumps({"a": "x" * 257}), "at most 256"),
    ],
)
def test_model_map_refused(raw: str, message: str) -> None:
    refused(message, "bedrock", {**BEDROCK, "model_map": raw})


def test_model_map_of_100_entries_fits() -> None:
    raw = json.dumps(
        {f"claude-model-{i:03d}-20250101": f"us.anthropic.m{i}-v1:0" for i in range(100)}
    )
    assert len(raw) > rules.MAX_OPTION_CHARS  # longer than an ordinary option may be
    rules.validate_options({**BEDROCK, "model_map": raw}, "bedrock")


def test_model_map_not_for_anthropic() -> None:
    refused("unknown option 'model_map'", "anthropic", {"model_map": '{"a": "b"}'})


# -- numbers ------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["10", "2.5", "0.1", ".5", "86400"])
@pytest.mark.parametrize(
    ("kind", "option"),
    [
        ("anthropic", "timeout_connect_s"),
        ("anthropic", "timeout_read_s"),
        ("bedrock", "ping_interval_s"),
        ("vertex", "timeout_read_s"),
    ],
)
def test_seconds_ok(kind: str, option: str, value: str) -> None:
    base = {"anthropic": {}, "bedrock": BEDROCK, "vertex": VERTEX}[kind]
    assert rules.validate_options({**base, option: value}, kind)[option] == value


@pytest.mark.parametrize("value", ["0", "-1", "abc", "inf", "nan", "1e3", "86401", "5s"])
def test_seconds_refused(value: str) -> None:
    refused("positive number of seconds", "bedrock", {**BEDROCK, "timeout_read_s": value})


def test_simulator_milliseconds() -> None:
    assert rules.validate_options({"latency_ms": "25", "chunk_delay_ms": "0"}, "simulator") == {
        "chunk_delay_ms": "0",
        "latency_ms": "25",
    }
    for bad in ("-1", "2.5", "x", "600001"):
        refused("whole number of milliseconds", "simulator", {"latency_ms": bad})
