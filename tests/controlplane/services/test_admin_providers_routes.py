"""Admin providers, routes and prices over real gRPC, on SQLite and PostgreSQL."""

from google.protobuf.field_mask_pb2 import FieldMask
from grpc import StatusCode

from controlplane.domain.pricing import load_default_prices
from gwapi.v1 import admin_pb2 as apb
from gwapi.v1 import common_pb2 as pb
from tests.controlplane.conftest import expect_error, seed_basics


def prov(name: str = "anthropic", **kw: object) -> apb.CreateProviderRequest:
    kw.setdefault("kind", "anthropic")
    return apb.CreateProviderRequest(provider=pb.Provider(name=name, **kw))  # type: ignore[arg-type]


def route(name: str = "main", *providers: str, **kw: object) -> pb.Route:
    return pb.Route(name=name, targets=[pb.RouteTarget(provider=p) for p in providers], **kw)  # type: ignore[arg-type]


async def test_provider_crud(admin) -> None:
    p = await admin.CreateProvider(prov(api_key_env="ANTHROPIC_API_KEY"))
    assert p.base_url == "https://api.anthropic.com"  # the kind's default
    b = await admin.CreateProvider(
        prov("bedrock-us", kind="bedrock", options={"region": "us-east-1"})
    )
    assert dict(b.options) == {"region": "us-east-1"}
    s = await admin.CreateProvider(prov("sim", kind="simulator", base_url="http://127.0.0.1:8099/"))
    assert s.base_url == "http://127.0.0.1:8099"  # trailing slash stripped
    assert await admin.GetProvider(apb.GetProviderRequest(name="sim")) == s
    names = [x.name for x in (await admin.ListProviders(apb.ListProvidersRequest())).providers]
    assert names == ["anthropic", "bedrock-us", "sim"]

    upd = await admin.UpdateProvider(
        apb.UpdateProviderRequest(
            provider=pb.Provider(
                name="sim",
                base_url="http://127.0.0.1:9000",
                api_key_env="SIM_KEY",
                options={"latency_ms": "5"},
            ),
            update_mask=FieldMask(paths=["base_url", "options"]),
        )
    )
    assert upd.base_url == "http://127.0.0.1:9000" and upd.api_key_env == ""
    assert dict(upd.options) == {"latency_ms": "5"}
    await expect_error(
        admin.UpdateProvider(
            apb.UpdateProviderRequest(
                provider=pb.Provider(name="sim", kind="vertex"),
                update_mask=FieldMask(paths=["kind"]),
            )
        ),
        StatusCode.INVALID_ARGUMENT,
        "kind cannot change",
    )
    await expect_error(
        admin.UpdateProvider(
            apb.UpdateProviderRequest(
                provider=pb.Provider(name="sim", base_url="https://x/v1"),
                update_mask=FieldMask(paths=["base_url"]),
            )
        ),
        StatusCode.INVALID_ARGUMENT,
        "without /v1",
    )
    await expect_error(
        admin.UpdateProvider(
            apb.UpdateProviderRequest(
                provider=pb.Provider(name="ghost", base_url="https://x"),
                update_mask=FieldMask(paths=["base_url"]),
            )
        ),
        StatusCode.NOT_FOUND,
    )

    await admin.DeleteProvider(apb.DeleteProviderRequest(name="bedrock-us"))
    await expect_error(
        admin.GetProvider(apb.GetProviderRequest(name="bedrock-us")),
        StatusCode.NOT_FOUND,
        "provider 'bedrock-us' not found",
    )


async def test_provider_validation(admin) -> None:
    cases = [
        (prov(kind="openai"), "unknown provider kind 'openai'"),
        (prov(kind=""), "provider kind is required"),
        (prov("Bad Name"), "invalid provider name"),
        (prov(base_url="https://api.anthropic.com/v1"), "without /v1"),
        (prov(base_url="not a url"), "http(s) URL"),
        (prov(base_url="https://u:p@host"), "credentials"),
        (prov(api_key_env="sk-ant-api03-xyz"), "never the key itself"),
        (prov(options={"api_key": "sk-ant-1"}), "looks like a secret"),
    ]
    for req, text in cases:
        await expect_error(admin.CreateProvider(req), StatusCode.INVALID_ARGUMENT, text)
    await admin.CreateProvider(prov())
    await expect_error(
        admin.CreateProvider(prov()),
        StatusCode.ALREADY_EXISTS,
        "provider 'anthropic' already exists",
    )


async def test_provider_delete_refused_while_used(admin) -> None:
    seeded = await seed_basics(admin)
    await admin.CreateRoute(apb.CreateRouteRequest(route=route("main", "sim")))
    details = await expect_error(
        admin.DeleteProvider(apb.DeleteProviderRequest(name="sim")),
        StatusCode.FAILED_PRECONDITION,
        "still used by",
    )
    assert seeded["key"].id in details and "route 'main'" in details
    await expect_error(
        admin.DeleteProvider(apb.DeleteProviderRequest(name="ghost")), StatusCode.NOT_FOUND
    )


async def test_route_crud_and_validation(admin) -> None:
    await admin.CreateProvider(prov("a", kind="simulator", base_url="http://127.0.0.1:1"))
    await admin.CreateProvider(prov("b", kind="simulator", base_url="http://127.0.0.1:2"))
    r = await admin.CreateRoute(
        apb.CreateRouteRequest(
            route=pb.Route(
                name="main",
                targets=[
                    pb.RouteTarget(provider="b"),
                    pb.RouteTarget(provider="a", model="claude-x"),
                ],
                retries=2,
                retry_on=[529, 429],
                timeout_first_byte_ms=30_000,
            )
        )
    )
    assert r.mode == "fallback"  # the default mode
    assert [t.provider for t in r.targets] == ["b", "a"]  # fallback order kept
    assert list(r.retry_on) == [429, 529]
    assert await admin.GetRoute(apb.GetRouteRequest(name="main")) == r

    upd = await admin.UpdateRoute(
        apb.UpdateRouteRequest(
            route=pb.Route(
                name="main",
                mode="loadbalance",
                targets=[
                    pb.RouteTarget(provider="a", weight=1),
                    pb.RouteTarget(provider="b", weight=3),
                ],
            ),
            update_mask=FieldMask(paths=["mode", "targets"]),
        )
    )
    assert upd.mode == "loadbalance" and [t.weight for t in upd.targets] == [1, 3]
    assert upd.retries == 2  # untouched

    cases = [
        (route("r1"), StatusCode.INVALID_ARGUMENT, "at least one target"),
        (route("r1", "ghost"), StatusCode.NOT_FOUND, "ghost"),
        (route("r1", "a", mode="random"), StatusCode.INVALID_ARGUMENT, "unknown route mode"),
        (route("r1", "a", mode="loadbalance"), StatusCode.INVALID_ARGUMENT, "weight > 0"),
        (route("r1", "a", retry_on=[200]), StatusCode.INVALID_ARGUMENT, "400-599"),
        (route("R1", "a"), StatusCode.INVALID_ARGUMENT, "invalid route name"),
        (route("main", "a"), StatusCode.ALREADY_EXISTS, "route 'main' already exists"),
    ]
    for msg, code, text in cases:
        await expect_error(admin.CreateRoute(apb.CreateRouteRequest(route=msg)), code, text)
    await expect_error(
        admin.UpdateRoute(
            apb.UpdateRouteRequest(
                route=pb.Route(name="main"), update_mask=FieldMask(paths=["name"])
            )
        ),
        StatusCode.INVALID_ARGUMENT,
        "unknown update_mask path",
    )
    names = [x.name for x in (await admin.ListRoutes(apb.ListRoutesRequest())).routes]
    assert names == ["main"]


async def test_route_delete_refused_while_used(admin) -> None:
    await seed_basics(admin)
    await admin.CreateRoute(apb.CreateRouteRequest(route=route("main", "sim")))
    k = (await admin.CreateKey(apb.CreateKeyRequest(workspace="team-a", route="main"))).key
    details = await expect_error(
        admin.DeleteRoute(apb.DeleteRouteRequest(name="main")),
        StatusCode.FAILED_PRECONDITION,
        "still used by",
    )
    assert k.id in details
    await admin.RevokeKey(apb.RevokeKeyRequest(id=k.id))  # revoked keys do not block
    await admin.DeleteRoute(apb.DeleteRouteRequest(name="main"))
    await expect_error(admin.DeleteRoute(apb.DeleteRouteRequest(name="main")), StatusCode.NOT_FOUND)


async def test_list_prices_seeded_from_json(admin) -> None:
    prices = (await admin.ListPrices(apb.ListPricesRequest())).prices
    assert [p.model_prefix for p in prices] == sorted(e.model_prefix for e in load_default_prices())
    sonnet45 = next(p for p in prices if p.model_prefix == "claude-sonnet-4-5")
    assert sonnet45.rates.cache_read == 300_000 and sonnet45.long_rates.output == 22_500_000
    assert sonnet45.long_context_beta == "context-1m"
    assert sonnet45.long_context_threshold == 200_000
    haiku35 = next(p for p in prices if p.model_prefix == "claude-3-5-haiku")
    assert haiku35.rates.cache_read == 80_000 and not haiku35.HasField("long_rates")
