"""A snapshot means the same in either form of the vocabulary: the typed fields a current control
plane sends, or only the text fields an older one sent (and an older data plane cached in
resources.pb): no cache format change is needed across the upgrade."""

from __future__ import annotations

from dataplane.config.snapshot import provider_from_pb, route_from_pb, workspace_from_pb
from gwapi import vocab
from gwapi.v1 import common_pb2 as pb


def both_and_each(msg: pb.Provider) -> tuple[pb.Provider, pb.Provider, pb.Provider]:
    text_only, typed_only = type(msg)(), type(msg)()
    text_only.CopyFrom(msg)
    typed_only.CopyFrom(msg)
    for name, text in vocab.TEXT_FIELDS.items():
        if name in msg.DESCRIPTOR.fields_by_name:
            text_only.ClearField(name)  # type: ignore[arg-type]
            typed_only.ClearField(text)  # type: ignore[arg-type]
    return msg, text_only, typed_only


def test_providers_read_the_same_from_either_form() -> None:
    msg = vocab.fill_provider(
        pb.Provider(name="br", base_url="https://x.example"),
        "bedrock",
        {"region": "eu-west-3", "model_map": '{"a":"b"}', "timeout_read_s": "2.5"},
    )
    configs = {provider_from_pb(m, "") for m in both_and_each(msg)}
    assert len(configs) == 1
    (config,) = configs
    assert config.kind == "bedrock" and config.option("timeout_read_s") == "2.5"


def test_routes_and_workspaces_read_the_same_from_either_form() -> None:
    providers = {
        "p": provider_from_pb(vocab.fill_provider(pb.Provider(name="p"), "simulator", {}), "")
    }
    route = vocab.fill_route(
        pb.Route(name="r", targets=[pb.RouteTarget(provider="p")]), "loadbalance"
    )
    assert {route_from_pb(m, providers).mode for m in both_and_each(route)} == {"loadbalance"}  # type: ignore[arg-type]
    ws = vocab.fill_workspace(pb.Workspace(name="w"), "open", "metadata")
    read = {(w.redis_failure, w.log_bodies) for w in map(workspace_from_pb, both_and_each(ws))}  # type: ignore[arg-type]
    assert read == {("open", "metadata")}
