"""Admin providers, routes and prices over real gRPC, on SQLite and PostgreSQL.

This module is long because providers, routes and prices refer to one another, so their create,
update, delete and validation rules are tested on one fleet, on both databases."""

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
        (route("r1", "a", "a"), StatusCode.INVALID_ARGUMENT, "listed twice"),
        (route("r1", "a", retries=11), StatusCode.INVALID_ARGUMENT, "between 0 and 10"),
        (route("r1", "a", cache_ttl_s=10**7), StatusCode.INVALID_ARGUMENT, "7 days"),
        (route("r1", "a", breaker_failures=101), StatusCode.INVALID_ARGUMENT, "at most 100"),
        (route("r1", "a", breaker_cooldown_s=-1), StatusCode.INVALID_ARGUMENT, "negative"),
        (route("r1", "a", timeout_idle_ms=3_600_001), StatusCode.INVALID_ARGUMENT, "1 h"),
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


async def test_route_new_settings_and_every_update_path(admin) -> None:
    await admin.CreateProvider(prov("a", kind="simulator", base_url="http://127.0.0.1:1"))
    await admin.CreateProvider(prov("b", kind="simulator", base_url="http://127.0.0.1:2"))
    r = await admin.CreateRoute(
        apb.CreateRouteRequest(
            route=pb.Route(
                name="lb",
                mode="loadbalance",
                targets=[pb.RouteTarget(provider="a"), pb.RouteTarget(provider="b", weight=3)],
                cache_ttl_s=300,
                cache_sampled=True,
                breaker_failures=3,
                breaker_cooldown_s=60,
            )
        )
    )
    assert [t.weight for t in r.targets] == [1, 3]  # an unset weight is stored as 1
    assert (r.cache_ttl_s, r.cache_sampled, r.breaker_failures, r.breaker_cooldown_s) == (
        300,
        True,
        3,
        60,
    )
    changes: list[tuple[str, object]] = [
        ("mode", "fallback"),
        ("retries", 4),
        ("retry_on", [503, 429]),
        ("timeout_connect_ms", 2_000),
        ("timeout_first_byte_ms", 30_000),
        ("timeout_idle_ms", 60_000),
        ("cache_ttl_s", 0),
        ("cache_sampled", False),
        ("breaker_failures", 10),
        ("breaker_cooldown_s", 0),
    ]
    before = r
    for path, value in changes:
        msg = pb.Route(name="lb")
        if isinstance(value, list):
            getattr(msg, path).extend(value)
        else:
            setattr(msg, path, value)
        after = await admin.UpdateRoute(
            apb.UpdateRouteRequest(route=msg, update_mask=FieldMask(paths=[path]))
        )
        expected = sorted(value) if isinstance(value, list) else value
        got = list(getattr(after, path)) if isinstance(value, list) else getattr(after, path)
        assert got == expected, path
        # Every other setting is untouched.
        for other, _ in changes:
            if other != path:
                assert getattr(after, other) == getattr(before, other), (path, other)
        assert list(after.targets) == list(before.targets)
        before = after
    after = await admin.UpdateRoute(
        apb.UpdateRouteRequest(
            route=pb.Route(
                name="lb", targets=[pb.RouteTarget(provider="b", model="claude-x@2025")]
            ),
            update_mask=FieldMask(paths=["targets"]),
        )
    )
    assert [(t.provider, t.weight, t.model) for t in after.targets] == [("b", 1, "claude-x@2025")]
    assert await admin.GetRoute(apb.GetRouteRequest(name="lb")) == after
    # A refused update changes nothing.
    await expect_error(
        admin.UpdateRoute(
            apb.UpdateRouteRequest(
                route=pb.Route(name="lb", breaker_cooldown_s=7200),
                update_mask=FieldMask(paths=["breaker_cooldown_s"]),
            )
        ),
        StatusCode.INVALID_ARGUMENT,
        "breaker_cooldown_s must be at most 3600",
    )
    await expect_error(
        admin.UpdateRoute(
            apb.UpdateRouteRequest(
                route=pb.Route(name="lb", targets=[pb.RouteTarget(provider="b", model="a b")]),
                update_mask=FieldMask(paths=["targets"]),
            )
        ),
        StatusCode.INVALID_ARGUMENT,
        "whitespace",
    )
    assert await admin.GetRoute(apb.GetRouteRequest(name="lb")) == after


async def test_provider_delete_names_the_route(admin) -> None:
    await admin.CreateProvider(prov("a", kind="simulator", base_url="http://127.0.0.1:1"))
    await admin.CreateProvider(prov("b", kind="simulator", base_url="http://127.0.0.1:2"))
    await admin.CreateRoute(apb.CreateRouteRequest(route=route("primary", "a", "b")))
    await expect_error(
        admin.DeleteProvider(apb.DeleteProviderRequest(name="b")),
        StatusCode.FAILED_PRECONDITION,
        "provider 'b' is still used by route 'primary'",
    )
    await admin.DeleteRoute(apb.DeleteRouteRequest(name="primary"))
    await admin.DeleteProvider(apb.DeleteProviderRequest(name="b"))


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


def upd(name: str, paths: list[str], **kw: object) -> apb.UpdateProviderRequest:
    return apb.UpdateProviderRequest(
        provider=pb.Provider(name=name, **kw),  # type: ignore[arg-type]
        update_mask=FieldMask(paths=paths),
    )


async def get_prov(admin, name: str) -> pb.Provider:
    return await admin.GetProvider(apb.GetProviderRequest(name=name))


async def test_bedrock_vertex_and_passthrough_providers(admin) -> None:
    b = await admin.CreateProvider(
        prov(
            "bedrock",
            kind="bedrock",
            base_url="http://gw.internal:8080/bedrock/",
            options={
                "region": "eu-west-3",
                "profile": "bedrock-prod",
                "inference_profile": "eu",
                "model_map": '{"claude-x": "eu.anthropic.x-v1:0"}',
                "timeout_read_s": "300",
            },
        )
    )
    assert b.base_url == "http://gw.internal:8080/bedrock"
    assert dict(b.options)["model_map"] == '{"claude-x":"eu.anthropic.x-v1:0"}'
    v = await admin.CreateProvider(
        prov(
            "vertex",
            kind="vertex",
            base_url="https://europe-west1-aiplatform.googleapis.com/v1/",
            options={"project": "my-project-123", "credentials_file": "/etc/sa.json"},
        )
    )
    assert v.base_url == "https://europe-west1-aiplatform.googleapis.com/v1"  # /v1 kept
    assert dict(v.options) == {
        "project": "my-project-123",
        "credentials_file": "/etc/sa.json",
        "region": "global",  # the default, stored explicitly
    }
    p = await admin.CreateProvider(prov("max", options={"auth": "passthrough"}))
    assert dict(p.options) == {"auth": "passthrough"} and p.api_key_env == ""
    assert await get_prov(admin, "vertex") == v


async def test_provider_kind_rules_refused_and_nothing_stored(admin) -> None:
    cases = [
        (prov("b", kind="bedrock"), "needs the option 'region'"),
        (prov("b", kind="bedrock", options={"region": "useast1"}), "AWS region"),
        (prov("b", kind="bedrock", options={"region": "us-east-1", "regoin": "x"}), "regoin"),
        (
            prov("b", kind="bedrock", options={"region": "us-east-1", "access_key_env": "AK"}),
            "go together",
        ),
        (
            prov(
                "b",
                kind="bedrock",
                options={"region": "us-east-1", "bearer_token_env": "B", "profile": "p"},
            ),
            "one way",
        ),
        (
            prov(
                "b",
                kind="bedrock",
                options={"region": "us-east-1", "inference_profile": "mars"},
            ),
            "us, eu, apac, jp, global, none",
        ),
        (
            prov(
                "b",
                kind="bedrock",
                base_url="https://bedrock-runtime.us-east-1.amazonaws.com/model/x",
                options={"region": "us-east-1"},
            ),
            "without /model",
        ),
        (
            prov("b", kind="bedrock", options={"region": "us-east-1"}, api_key_env="K"),
            "does not apply",
        ),
        (prov("v", kind="vertex", options={"region": "us-east5"}), "needs the option 'project'"),
        (prov("v", kind="vertex", options={"project": "P"}), "6-30 lowercase"),
        (
            prov(
                "v",
                kind="vertex",
                base_url="https://us-east5-aiplatform.googleapis.com",
                options={"project": "my-project-123"},
            ),
            "https://us-east5-aiplatform.googleapis.com/v1",
        ),
        (
            prov("v", kind="vertex", options={"project": "my-project", "credentials_file": "a"}),
            "absolute path",
        ),
        (
            prov("v", kind="vertex", options={"project": "my-project", "model_map": "{"}),
            "not valid JSON",
        ),
        (prov(options={"auth": "sso"}), "key, passthrough"),
        (
            prov(options={"auth": "passthrough"}, api_key_env="ANTHROPIC_API_KEY"),
            "passthrough",
        ),
        (prov(options={"timeout_read_s": "0"}), "positive number"),
        (prov("s", kind="simulator", options={"seed": "1"}), "unknown option 'seed'"),
    ]
    for req, text in cases:
        await expect_error(admin.CreateProvider(req), StatusCode.INVALID_ARGUMENT, text)
    assert not (await admin.ListProviders(apb.ListProvidersRequest())).providers


async def test_update_single_options_merges(admin) -> None:
    await admin.CreateProvider(
        prov("b", kind="bedrock", options={"region": "us-east-1", "profile": "dev"})
    )
    # One option set, another removed; the rest kept; no read-modify-write on the client.
    b = await admin.UpdateProvider(
        upd(
            "b",
            ["options.bearer_token_env", "options.profile", "options.timeout_read_s"],
            options={"bearer_token_env": "AWS_BEARER_TOKEN_BEDROCK", "timeout_read_s": "60"},
        )
    )
    assert dict(b.options) == {
        "region": "us-east-1",
        "bearer_token_env": "AWS_BEARER_TOKEN_BEDROCK",
        "timeout_read_s": "60",
    }
    # The rules hold for the provider as it would be after the update: refused, nothing changed.
    await expect_error(
        admin.UpdateProvider(upd("b", ["options.profile"], options={"profile": "dev"})),
        StatusCode.INVALID_ARGUMENT,
        "one way",
    )
    await expect_error(
        admin.UpdateProvider(upd("b", ["options.region"])),
        StatusCode.INVALID_ARGUMENT,
        "needs the option 'region'",
    )
    await expect_error(
        admin.UpdateProvider(upd("b", ["options.regoin"])),
        StatusCode.INVALID_ARGUMENT,
        "unknown update_mask path 'options.regoin'",
    )
    await expect_error(
        admin.UpdateProvider(upd("b", ["options.regoin"], options={"regoin": "eu-west-1"})),
        StatusCode.INVALID_ARGUMENT,
        "did you mean 'region'",
    )
    assert dict((await get_prov(admin, "b")).options) == dict(b.options)

    # "options" (the whole map) still replaces everything.
    whole = await admin.UpdateProvider(upd("b", ["options"], options={"region": "eu-west-3"}))
    assert dict(whole.options) == {"region": "eu-west-3"}


async def test_update_checks_fields_against_each_other(admin) -> None:
    await admin.CreateProvider(prov("a", api_key_env="ANTHROPIC_API_KEY"))
    await expect_error(
        admin.UpdateProvider(upd("a", ["options.auth"], options={"auth": "passthrough"})),
        StatusCode.INVALID_ARGUMENT,
        "leave api_key_env empty",
    )
    a = await admin.UpdateProvider(
        upd("a", ["options.auth", "api_key_env"], options={"auth": "passthrough"})
    )
    assert a.api_key_env == "" and dict(a.options) == {"auth": "passthrough"}

    await admin.CreateProvider(prov("v", kind="vertex", options={"project": "my-project"}))
    await expect_error(
        admin.UpdateProvider(upd("v", ["base_url"], base_url="https://x.example/vertex")),
        StatusCode.INVALID_ARGUMENT,
        "https://x.example/vertex/v1",
    )
    v = await admin.UpdateProvider(
        upd(
            "v",
            ["base_url", "options.region"],
            base_url="https://x.example/vertex/v1/",
            options={"region": "us-east5"},
        )
    )
    assert v.base_url == "https://x.example/vertex/v1"
    assert dict(v.options) == {"project": "my-project", "region": "us-east5"}
    v = await admin.UpdateProvider(upd("v", ["options.region"]))  # removed: back to the default
    assert dict(v.options)["region"] == "global"
