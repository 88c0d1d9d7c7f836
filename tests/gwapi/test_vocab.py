"""gwapi.vocab: the proto's enums in the words people type, and the typed settings ↔ options."""

from __future__ import annotations

import pytest
from google.protobuf.descriptor import FieldDescriptor

from gwapi import vocab
from gwapi.v1 import common_pb2 as pb
from gwapi.v1 import telemetry_pb2


def test_choices_follow_the_enums() -> None:
    assert vocab.choices(vocab.KIND) == ("anthropic", "simulator", "bedrock", "vertex")
    assert vocab.choices(vocab.MODE) == ("fallback", "loadbalance")
    assert vocab.choices(vocab.REDIS_FAILURE) == ("closed", "open")
    assert vocab.choices(vocab.LOG_BODIES) == ("none", "metadata", "full")
    assert vocab.choices(vocab.INFERENCE_PROFILE) == ("us", "eu", "apac", "jp", "global", "none")


@pytest.mark.parametrize("enum", [vocab.KIND, vocab.MODE, vocab.REDIS_FAILURE, vocab.LOG_BODIES])
def test_spellings_round_trip(enum: object) -> None:
    for word in vocab.choices(enum):  # type: ignore[arg-type]
        assert vocab.spell(enum, vocab.number(enum, word)) == word  # type: ignore[arg-type]
    assert vocab.number(enum, "") == 0 and vocab.number(enum, "Nope") == 0  # type: ignore[arg-type]
    assert vocab.spell(enum, 0) == "" and vocab.spell(enum, 99) == ""  # type: ignore[arg-type]


def test_option_names_are_the_settings_fields() -> None:
    assert vocab.option_names("anthropic") == ("auth", "timeout_connect_s", "timeout_read_s")
    assert vocab.option_names("simulator") == ("latency_ms", "chunk_delay_ms")
    assert vocab.option_names("openai") == ()


def test_options_and_typed_settings_are_one_reading() -> None:
    options = {
        "region": "eu-west-3",
        "inference_profile": "none",
        "model_map": '{"a":"é","b":"y"}',
        "timeout_read_s": "2.5",
        "ping_interval_s": "10",
    }
    settings = vocab.options_to_settings("bedrock", options)
    assert isinstance(settings, pb.BedrockOptions)
    assert settings.inference_profile == pb.INFERENCE_PROFILE_NONE
    assert settings.timeout_read_s == 2.5 and dict(settings.model_map) == {"a": "é", "b": "y"}
    assert vocab.settings_to_options(settings) == dict(sorted(options.items()))
    sim = vocab.options_to_settings("simulator", {"latency_ms": "0"})
    assert sim is not None
    assert vocab.settings_to_options(sim) == {"latency_ms": "0"}  # presence, not zero-is-unset


@pytest.mark.parametrize(
    ("kind", "options", "message"),
    [
        ("bedrock", {"regoin": "x"}, "unknown option 'regoin'"),
        ("simulator", {"latency_ms": "fast"}, "must be a whole number"),
        ("anthropic", {"auth": "oauth"}, "use one of key, passthrough"),
        ("vertex", {"model_map": "[]"}, "JSON object"),
    ],
)
def test_option_errors(kind: str, options: dict[str, str], message: str) -> None:
    with pytest.raises(vocab.OptionError, match=message):
        vocab.options_to_settings(kind, options)


def test_readings_prefer_the_typed_form_and_fall_back_to_the_text() -> None:
    old = pb.Provider(kind="simulator", options={"latency_ms": "5"})  # a cached snapshot's form
    assert (vocab.provider_kind(old), vocab.provider_options(old)) == (
        "simulator",
        {"latency_ms": "5"},
    )
    new = vocab.fill_provider(pb.Provider(), "vertex", {"project": "p-123456", "region": "global"})
    assert new.provider_kind == pb.PROVIDER_KIND_VERTEX and new.vertex.project == "p-123456"
    new.ClearField("options")
    new.ClearField("kind")
    assert vocab.provider_kind(new) == "vertex"
    assert vocab.provider_options(new) == {"project": "p-123456", "region": "global"}
    route = vocab.fill_route(pb.Route(), "loadbalance")
    route.ClearField("mode")
    assert vocab.route_mode(route) == "loadbalance" and vocab.route_mode(pb.Route(mode="x")) == "x"
    ws = vocab.fill_workspace(pb.Workspace(), "open", "full")
    assert (ws.redis_failure_policy, ws.log_bodies_policy) == (
        pb.REDIS_FAILURE_OPEN,
        pb.LOG_BODIES_FULL,
    )
    assert (vocab.redis_failure(pb.Workspace()), vocab.log_bodies(pb.Workspace())) == ("", "")


def test_the_usage_counters_are_usage_row_fields_that_add_up() -> None:
    # The ledger's rollups and gwctl's totals both add these: each must be an integer field of
    # the usage row, and none may be listed twice.
    fields = telemetry_pb2.UsageRow.DESCRIPTOR.fields_by_name
    assert len(set(vocab.USAGE_COUNTERS)) == len(vocab.USAGE_COUNTERS)
    for name in vocab.USAGE_COUNTERS:
        assert fields[name].type == FieldDescriptor.TYPE_INT64, name
