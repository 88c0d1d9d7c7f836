"""Admin.Validate (a dry run of provider, route and workspace writes) and the vocabulary's two
forms on the wire: the enums and typed settings, and the deprecated text fields."""

from google.protobuf.field_mask_pb2 import FieldMask
from grpc import StatusCode

from gwapi.v1 import admin_pb2 as apb
from gwapi.v1 import common_pb2 as pb
from tests.controlplane.conftest import expect_error


async def test_validate_checks_every_object_and_writes_nothing(admin) -> None:
    await admin.CreateProvider(
        apb.CreateProviderRequest(provider=pb.Provider(name="sim", kind="simulator"))
    )
    request = apb.ValidateRequest(
        providers=[
            pb.Provider(name="br", provider_kind=pb.PROVIDER_KIND_BEDROCK,
                        bedrock=pb.BedrockOptions(region="us-east-1")),
            pb.Provider(name="vx", provider_kind=pb.PROVIDER_KIND_VERTEX),
            pb.Provider(name="sim", kind="simulator", options={"latency_ms": "7"}),
        ],
        routes=[
            pb.Route(name="main", route_mode=pb.ROUTE_MODE_LOADBALANCE,
                     targets=[pb.RouteTarget(provider="br"), pb.RouteTarget(provider="sim")]),
            pb.Route(name="ghost", targets=[pb.RouteTarget(provider="nowhere")]),
        ],
        workspaces=[
            pb.Workspace(name="team", allowed_routes=["main"],
                         log_bodies_policy=pb.LOG_BODIES_FULL),
            pb.Workspace(name="odd", redis_failure="maybe"),
        ],
    )  # fmt: skip
    results = (await admin.Validate(request)).results
    assert [(r.kind, r.name) for r in results] == [
        ("provider", "br"),
        ("provider", "vx"),
        ("provider", "sim"),
        ("route", "main"),
        ("route", "ghost"),
        ("workspace", "team"),
        ("workspace", "odd"),
    ]
    br, vx, sim, main, ghost, team, odd = results
    assert br.error == "" and br.provider.kind == "bedrock"
    assert dict(br.provider.options) == {"region": "us-east-1"}
    assert "needs the option 'project'" in vx.error and not vx.HasField("provider")
    assert sim.error == "" and sim.provider.simulator.latency_ms == 7  # an update of "sim"
    assert main.error == "" and main.route.mode == "loadbalance"  # "br" counted as existing
    assert "nowhere" in ghost.error
    assert team.error == "" and team.workspace.log_bodies == "full"
    assert "invalid redis_failure 'maybe'" in odd.error
    # Nothing was written: the dry run's creates and its update are gone.
    listed = (await admin.ListProviders(apb.ListProvidersRequest())).providers
    assert [(p.name, dict(p.options)) for p in listed] == [("sim", {})]
    assert not (await admin.ListRoutes(apb.ListRoutesRequest())).routes


async def test_responses_carry_both_forms_and_requests_may_use_either(admin) -> None:
    typed = await admin.CreateProvider(
        apb.CreateProviderRequest(
            provider=pb.Provider(
                name="vx",
                provider_kind=pb.PROVIDER_KIND_VERTEX,
                base_url="https://vertex.example/v1",
                vertex=pb.VertexOptions(
                    project="my-project-1", model_map={"b": "y", "a": "x"}, timeout_read_s=2.5
                ),
            )
        )
    )
    assert typed.kind == "vertex" and typed.provider_kind == pb.PROVIDER_KIND_VERTEX
    assert dict(typed.options) == {
        "model_map": '{"a":"x","b":"y"}',
        "project": "my-project-1",
        "region": "global",
        "timeout_read_s": "2.5",
    }
    assert typed.vertex.region == "global" and dict(typed.vertex.model_map) == {"a": "x", "b": "y"}
    # Sent back as received (both forms), it is the same provider.
    again = await admin.UpdateProvider(apb.UpdateProviderRequest(provider=typed))
    assert dict(again.options) == dict(typed.options)
    # One option through the typed form, addressed as options.<name>.
    upd = await admin.UpdateProvider(
        apb.UpdateProviderRequest(
            provider=pb.Provider(name="vx", vertex=pb.VertexOptions(region="us-east5")),
            update_mask=FieldMask(paths=["options.region"]),
        )
    )
    assert upd.options["region"] == "us-east5" and upd.vertex.project == "my-project-1"
    await expect_error(
        admin.UpdateProvider(
            apb.UpdateProviderRequest(
                provider=pb.Provider(name="vx", bedrock=pb.BedrockOptions(region="us-east-1")),
                update_mask=FieldMask(paths=["options"]),
            )
        ),
        StatusCode.INVALID_ARGUMENT,
        "kind cannot change",
    )
    await expect_error(
        admin.CreateProvider(
            apb.CreateProviderRequest(
                provider=pb.Provider(name="x", kind="anthropic",
                                     provider_kind=pb.PROVIDER_KIND_SIMULATOR)
            )
        ),
        StatusCode.INVALID_ARGUMENT,
        "disagree",
    )  # fmt: skip
    await expect_error(
        admin.CreateProvider(
            apb.CreateProviderRequest(provider=pb.Provider(name="x", provider_kind=9))  # type: ignore[arg-type]
        ),
        StatusCode.INVALID_ARGUMENT,
        "unknown provider kind 9: use one of anthropic, simulator, bedrock, vertex",
    )
    route = await admin.CreateRoute(
        apb.CreateRouteRequest(route=pb.Route(name="r", targets=[pb.RouteTarget(provider="vx")]))
    )
    assert route.mode == "fallback" and route.route_mode == pb.ROUTE_MODE_FALLBACK
    route = await admin.UpdateRoute(
        apb.UpdateRouteRequest(
            route=pb.Route(name="r", route_mode=pb.ROUTE_MODE_LOADBALANCE),
            update_mask=FieldMask(paths=["route_mode"]),
        )
    )
    assert route.mode == "loadbalance"
    ws = await admin.CreateWorkspace(
        apb.CreateWorkspaceRequest(
            workspace=pb.Workspace(name="w", redis_failure_policy=pb.REDIS_FAILURE_OPEN)
        )
    )
    assert (ws.redis_failure, ws.log_bodies) == ("open", "none")
    assert (ws.redis_failure_policy, ws.log_bodies_policy) == (
        pb.REDIS_FAILURE_OPEN,
        pb.LOG_BODIES_NONE,
    )
    ws = await admin.UpdateWorkspace(
        apb.UpdateWorkspaceRequest(workspace=pb.Workspace(name="w", log_bodies="metadata"))
    )
    assert ws.log_bodies_policy == pb.LOG_BODIES_METADATA and ws.redis_failure == "open"
