"""The gateway file, the apply plan and its execution order (pure, fake client); routes CLI
parsing. The real control plane is exercised in test_apply_e2e.py.

This module is long because the gateway file's parsing, the plan and its execution order are one
pipeline, checked case by case against one fake client."""

from __future__ import annotations

import argparse
import io
import sys
from typing import Any

import grpc
import orjson
import pytest

from gwapi.v1 import common_pb2
from gwclient.errors import ClientError
from gwctl import apply_execute, config_file, parse
from gwctl.apply_plan import Plan, State, plan, render_plan
from gwctl.cli import CommandError
from gwctl.config_file import loads
from gwctl.config_model import ConfigError
from tests.fakes.admin_client import FakeAdminClient
from tests.gwctl.cli import gw
from tests.gwctl.cli_data import SECRET, use_fake

# gwctl's client is this test's fresh fake control plane (the ``fake_cp`` fixture).
pytestmark = pytest.mark.usefixtures("fake_cp")

BASE = """
providers:
  - {name: anthropic, kind: anthropic, api_key_env: ANTHROPIC_API_KEY}
  - name: bedrock
    kind: bedrock
    options: {region: eu-west-3, model_map: {claude-x: eu.x-v1:0}}
routes:
  - name: main
    targets: [anthropic, {provider: bedrock, model: eu.x-v1:0}]
    retries: 2
    retry_on: "529,429"
    timeout_first_byte: 30
workspaces:
  - name: team
    limits: {budgets: ["1000/month", "50/day"], rpm: 60}
keys:
  - {workspace: team, name: bot, route: main, limits: {budgets: 10/day}}
"""


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        loads(text)
    return info.value.problems


# -- the file -----------------------------------------------------------------------------------


def test_file_is_normalised_to_the_stored_form() -> None:
    c = loads(BASE)
    assert c.sections == {"providers", "routes", "workspaces", "keys"}
    anthropic, bedrock = c.providers
    assert anthropic.base_url == ""  # the kind's default is the control plane's to fill in
    # (test_apply_e2e.py: test_the_control_plane_fills_in_its_defaults)
    assert dict(bedrock.options)["model_map"] == '{"claude-x":"eu.x-v1:0"}'
    (route,) = c.routes
    assert route.mode == "fallback"
    assert [(t.provider, t.weight, t.model) for t in route.targets] == [
        ("anthropic", 1, ""),
        ("bedrock", 1, "eu.x-v1:0"),
    ]
    assert list(route.retry_on) == [429, 529] and route.timeout_first_byte_ms == 30_000
    (ws,) = c.workspaces
    assert [b.period for b in ws.limits.budgets] == [common_pb2.PERIOD_DAY, common_pb2.PERIOD_MONTH]
    assert ws.redis_failure == "closed"
    (key,) = c.keys
    assert key.ident == "team/bot" and key.limits.budgets[0].amount_micros == 10_000_000


def test_vertex_region_default_and_option_numbers() -> None:
    c = loads(
        "providers:\n  - name: v\n    kind: vertex\n    base_url: https://x.example/v1/\n"
        "    options: {project: my-project, timeout_read_s: 300}\n"
    )
    (v,) = c.providers
    # Numbers are written as text; the region's default and the URL's form are the control
    # plane's (test_apply_e2e.py: test_the_control_plane_fills_in_its_defaults).
    assert dict(v.options) == {"project": "my-project", "timeout_read_s": "300"}
    assert v.base_url == "https://x.example/v1/"


def test_route_times_in_seconds_with_units() -> None:
    c = loads(
        "routes:\n  - name: r\n    targets: [a]\n    timeout_connect: 2.5\n"
        "    timeout_idle: 500ms\n    cache_ttl: 5m\n    breaker_cooldown: 1h\n"
        "    cache_sampled: true\n    mode: loadbalance\n"
    )
    (r,) = c.routes
    assert (r.timeout_connect_ms, r.timeout_idle_ms, r.cache_ttl_s, r.breaker_cooldown_s) == (
        2500,
        500,
        300,
        3600,
    )
    assert r.cache_sampled and r.mode == "loadbalance"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("routes:\n  - {name: a, targets: [x]}\n  - {name: b, targts: [x]}\n",
         "routes[1].targts: unknown field; did you mean targets?"),
        ("workspace:\n  - {name: a}\n", "workspace: unknown field; did you mean workspaces?"),
        ("workspaces:\n  - {name: a, limits: {budget: 5/day}}\n",
         "workspaces[0].limits.budget: unknown field; did you mean budgets?"),
        ("workspaces:\n  - {name: a, limits: {budgets: [5/fortnight]}}\n",
         "workspaces[0].limits.budgets[0]: invalid budget '5/fortnight'"),
        ("workspaces:\n  - {name: a, limits: {budgets: [5/day, 6/day]}}\n", "a second day budget"),
        ("workspaces:\n  - {name: a, limits: {rpm: fast}}\n",
         "workspaces[0].limits.rpm: expected a whole number, got text"),
        ("workspaces:\n  - {name: a, redis_failure: maybe}\n", "'maybe' is not one of closed, open"),
        ("workspaces:\n  - {name: a, alert_format: teams}\n",
         "workspaces[0].alert_format: 'teams' is not one of generic, slack"),
        ("workspaces:\n  - {name: a}\n  - {name: a}\n", "workspaces: 'a' is listed twice"),
        ("workspaces:\n  - {description: x}\n", "workspaces[0].name: required"),
        ("workspaces: {name: a}\n", "workspaces: expected a list, got a mapping"),
        ("providers:\n  - {name: p}\n", "providers[0].kind: required"),
        ("providers:\n  - {name: p, kind: openai}\n", "'openai' is not one of anthropic"),
        ("providers:\n  - {name: p, kind: vertex, options: {model_map: '{'}}\n",
         "options.model_map: model_map is not valid JSON"),
        ("providers:\n  - {name: p, kind: bedrock, options: {region: ''}}\n",
         "options.region: empty"),
        ("routes:\n  - {name: r}\n", "routes[0].targets: required"),
        ("routes:\n  - {name: r, targets: [{provider: a, wieght: 2}]}\n",
         "routes[0].targets[0].wieght: unknown field; did you mean weight?"),
        ("routes:\n  - {name: r, targets: [a], retry_on: [200]}\n", "out of range (400..599)"),
        ("routes:\n  - {name: r, targets: [a], timeout_idle: soon}\n", "invalid time 'soon'"),
        ("routes:\n  - {name: r, targets: [a], cache_sampled: 'yes'}\n", "expected true or false"),
        ("keys:\n  - {workspace: w, name: k}\n", "keys[0]: give exactly one of provider or route"),
        ("keys:\n  - {workspace: w, name: k, route: r, provider: p}\n", "exactly one"),
        ("keys:\n  - {workspace: w, name: k, route: r}\n  - {workspace: w, name: k, route: r}\n",
         "keys: 'w/k' is listed twice"),
        ("version: 2\n", "version: 2 is not supported"),
        ("", "the file is empty"),
        ("- a\n- b\n", "expected a mapping at the top, got a list"),
        ("keys: []\nkeys: []\n", "duplicate key 'keys'"),
        ("routes: [\n", "invalid YAML: line 2, column 1"),
    ],
)  # fmt: skip
def test_file_problems_have_paths(text: str, expected: str) -> None:
    found = problems(text)
    assert any(expected in p for p in found), found


def test_every_problem_is_reported_at_once() -> None:
    found = problems(
        "routes:\n  - {name: r, targts: [a], retries: x}\nkeys:\n  - {workspace: w, name: k}\n"
    )
    assert len(found) == 4, found


def test_the_example_file_loads() -> None:
    from tests.gwctl.test_apply_e2e import EXAMPLE

    c = config_file.load(str(EXAMPLE))
    assert [p.kind for p in c.providers] == ["anthropic", "bedrock", "vertex"]
    assert len(c.workspaces) == 2 and all(k.limits.budgets for k in c.keys)
    fallback = next(r for r in c.routes if r.mode == "fallback")
    assert [t.provider for t in fallback.targets] == ["anthropic", "bedrock-eu"]
    assert fallback.targets[1].model


# -- the plan -----------------------------------------------------------------------------------


def stored(text: str = BASE) -> State:
    """What the control plane would hold after applying ``text`` (keys get ids)."""
    c = loads(text)
    keys = [
        common_pb2.VirtualKey(
            id=f"key_{i}",
            workspace=k.workspace,
            name=k.name,
            provider=k.provider,
            route=k.route,
            models=list(k.models),
            limits=k.limits,
        )
        for i, k in enumerate(c.keys)
    ]
    return State(list(c.providers), list(c.routes), list(c.workspaces), keys)


def titles(p: Plan) -> list[str]:
    return [c.title for c in p.changes]


def test_plan_from_nothing_creates_in_dependency_order() -> None:
    p = plan(loads(BASE), State())
    assert titles(p) == [
        "+ provider anthropic",
        "+ provider bedrock",
        "+ route main",
        "+ workspace team",
        "+ key team/bot",
    ]
    text = render_plan(p, prune=False)
    assert "    targets: anthropic → bedrock (eu.x-v1:0)" in text
    assert "    limits.budgets: $50/day, $1,000/month" in text
    assert text.endswith("Plan: 5 to create, 0 to update, 0 to delete.")


def test_same_state_plans_nothing() -> None:
    p = plan(loads(BASE), stored())
    assert p.changes == [] and render_plan(p, prune=True) == "No changes."


def test_field_level_updates_and_their_masks() -> None:
    changed = (
        BASE.replace("retries: 2", "retries: 3")
        .replace('"50/day"', '"80/day"')
        .replace("region: eu-west-3", "region: eu-west-1")
        .replace("route: main,", "provider: anthropic,")
    )
    p = plan(loads(changed), stored())
    assert titles(p) == [
        "~ provider bedrock",
        "~ route main",
        "~ workspace team",
        "~ key team/bot (key_0)",
    ]
    prov, route, ws, key = p.changes
    assert prov.fields == [("options.region", "eu-west-3", "eu-west-1")] and prov.paths == [
        "options"
    ]
    assert route.fields == [("retries", "2", "3")] and route.paths == ["retries"]
    assert ws.fields == [
        ("limits.budgets", "$50/day, $1,000/month", "$80/day, $1,000/month")
    ] and ws.paths == ["limits.budgets"]
    assert key.paths == ["provider", "route"] and key.message.id == "key_0"
    assert "    retries: 2 → 3" in render_plan(p, prune=False)


def test_alert_format_is_planned_like_any_setting() -> None:
    slack = BASE.replace(
        '    limits: {budgets: ["1000/month", "50/day"], rpm: 60}\n',
        '    limits: {budgets: ["1000/month", "50/day"], rpm: 60}\n'
        "    alert_webhook: https://hooks.slack.com/services/T/B/x\n    alert_format: slack\n",
    )
    assert loads(BASE).workspaces[0].alert_format == "generic"  # left out: the default
    (change,) = plan(loads(slack), stored()).changes
    assert change.fields == [
        ("alert_webhook", '""', "https://hooks.slack.com/services/T/B/x"),
        ("alert_format", "generic", "slack"),
    ]
    assert change.paths == ["alert_webhook", "alert_format"]
    assert plan(loads(slack), stored(slack)).changes == []
    (back,) = plan(loads(BASE), stored(slack)).changes  # the line removed: generic again
    assert ("alert_format", "slack", "generic") in back.fields


def test_removed_line_resets_the_setting() -> None:
    p = plan(loads(BASE.replace("    timeout_first_byte: 30\n", "")), stored())
    (change,) = p.changes
    assert change.fields == [("timeout_first_byte", "30s", "default")]
    assert change.paths == ["timeout_first_byte_ms"] and change.message.timeout_first_byte_ms == 0


def test_prune_deletes_in_reverse_order_and_otherwise_notes() -> None:
    extra = stored(
        BASE + "  - {workspace: team, name: old, route: old}\n".replace("route: old", "route: main")
    )
    extra.routes.append(
        common_pb2.Route(name="old", targets=[common_pb2.RouteTarget(provider="x")])
    )
    extra.providers.append(common_pb2.Provider(name="x", kind="simulator"))
    extra.workspaces.append(common_pb2.Workspace(name="gone"))
    p = plan(loads(BASE), extra)
    assert p.changes == []
    assert p.unmanaged == ["provider x", "route old", "workspace gone", "key team/old (key_1)"]
    assert "--prune deletes them" in render_plan(p, prune=False)
    p = plan(loads(BASE), extra, prune=True)
    assert titles(p) == [
        "- key team/old (key_1)",
        "- workspace gone",
        "- route old",
        "- provider x",
    ]


def test_creates_and_updates_come_before_deletes() -> None:
    state = stored()
    state.routes.append(common_pb2.Route(name="legacy"))
    text = BASE.replace("route: main,", "route: next,").replace(
        "routes:\n", "routes:\n  - {name: next, targets: [anthropic]}\n"
    )
    p = plan(loads(text), state, prune=True)
    assert titles(p) == ["+ route next", "~ key team/bot (key_0)", "- route legacy"]


def test_revoked_keys_are_ignored_and_duplicates_refused() -> None:
    state = stored()
    state.keys.append(
        common_pb2.VirtualKey(id="key_r", workspace="team", name="bot", revoked_at_ms=1)
    )
    assert plan(loads(BASE), state, prune=True).changes == []
    state.keys.append(common_pb2.VirtualKey(id="key_d", workspace="team", name="bot"))
    with pytest.raises(CommandError, match="2 active keys have this name"):
        plan(loads(BASE), state)


def test_provider_kind_change_is_refused() -> None:
    state = stored()
    state.providers[0] = common_pb2.Provider(name="anthropic", kind="simulator")
    with pytest.raises(CommandError, match="kind cannot change"):
        plan(loads(BASE), state)


def test_moving_a_provider_with_a_stored_key_is_refused() -> None:
    """apply must not send a stored key to the host a file names: the plan stops, saying how."""
    state = stored()
    state.providers[0].has_secret = True
    state.providers[0].base_url = "https://api.anthropic.com"  # the kind's default, as stored
    moved = BASE.replace(
        "kind: anthropic, api_key_env", "kind: anthropic, base_url: https://x.example, api_key_env"
    )
    assert moved != BASE
    with pytest.raises(CommandError) as info:
        plan(loads(moved), state)
    message = str(info.value)
    assert "provider 'anthropic' has a key stored on the control plane" in message
    assert "https://api.anthropic.com → https://x.example" in message
    assert "gwctl providers update anthropic --base-url URL --api-key-stdin" in message
    state.providers[0].has_secret = False  # a provider reading its key from env moves freely
    assert titles(plan(loads(moved), state)) == ["~ provider anthropic"]


def test_references_inside_managed_sections_are_checked() -> None:
    with pytest.raises(CommandError) as info:
        plan(loads(BASE.replace("route: main", "route: mian")), State())
    assert "key team/bot: route 'mian' is not in the file's routes" in str(info.value)
    # A section the file does not have is the control plane's business.
    c = loads("keys:\n  - {workspace: elsewhere, name: k, route: r}\n")
    assert titles(plan(c, State())) == ["+ key elsewhere/k"]


# -- execution against a fake client ------------------------------------------------------------


def recording_client(
    refuse: str = "", code: grpc.StatusCode = grpc.StatusCode.FAILED_PRECONDITION, **data: Any
) -> FakeAdminClient:
    """An empty gateway that records every call; ``refuse`` names a method that fails."""
    client = FakeAdminClient(new_key_secret=SECRET, **data)
    if refuse:
        client.refuse[refuse] = ClientError(code, "no, because reasons")
    return client


async def test_execute_in_order_and_report_new_secrets() -> None:
    client = recording_client()
    seen: list[str] = []
    created = await apply_execute.execute(
        client,  # type: ignore[arg-type]
        plan(loads(BASE), State()),
        on_done=lambda c, k: seen.append(c.title + (f" {k.secret}" if k else "")),
    )
    assert [c[0] for c in client.calls] == [
        "create_provider",
        "create_provider",
        "create_route",
        "create_workspace",
        "create_keys",
    ]
    assert seen[-1] == f"+ key team/bot {SECRET}"
    assert [(k.workspace, k.name, k.id) for k in created] == [("team", "bot", "key_bot")]


async def test_new_keys_go_in_batches_per_workspace_and_fall_back_to_one_call_each() -> None:
    doc = BASE + "".join(
        f"  - {{workspace: team, name: k{i}, provider: anthropic}}\n" for i in range(1200)
    )
    client = recording_client()
    seen: list[str] = []
    created = await apply_execute.execute(
        client,  # type: ignore[arg-type]
        plan(loads(doc), State()),
        on_done=lambda c, k: seen.append(c.name),
    )
    sizes = [len(args[1]) for name, args in client.calls if name == "create_keys"]
    assert sorted(sizes) == [201, 500, 500]  # bot + 1,200, KEYS_PER_CALL per call
    assert (
        len(created) == 1201
        and seen[-1201:] == [c.name for c in plan(loads(doc), State()).changes][-1201:]
    )

    # A control plane of the previous version has no CreateKeys: one CreateKey per key.
    old = recording_client("create_keys", grpc.StatusCode.UNIMPLEMENTED, new_key_id="key_new")
    created = await apply_execute.execute(old, plan(loads(BASE), State()))  # type: ignore[arg-type]
    assert [c[0] for c in old.calls][-2:] == ["create_keys", "create_key"]
    assert [k.id for k in created] == ["key_new"]


async def test_execute_stops_at_a_refusal_and_says_how_far() -> None:
    client = recording_client("create_workspace")
    with pytest.raises(CommandError) as info:
        await apply_execute.execute(client, plan(loads(BASE), State()))  # type: ignore[arg-type]
    assert "create workspace team was refused: no, because reasons" in str(info.value)
    assert "(3 of 5 change(s) applied" in str(info.value)
    assert client.calls[-1][0] == "create_workspace"


# -- the command line ---------------------------------------------------------------------------


def routes_fake() -> FakeAdminClient:
    """An empty gateway but for the load-balanced route ``main`` (a: 3, b: 1 with its model)."""
    main = common_pb2.Route(
        name="main",
        mode="loadbalance",
        targets=[
            common_pb2.RouteTarget(provider="a", weight=3),
            common_pb2.RouteTarget(provider="b", weight=1, model="claude-x@1"),
        ],
    )
    return FakeAdminClient(routes=[main], new_key_secret=SECRET)


@pytest.fixture
def fake_cp(monkeypatch: pytest.MonkeyPatch) -> FakeAdminClient:
    """This module's fake holds :func:`routes_fake`; stdin is not a TTY, so confirmations refuse."""
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    return use_fake(monkeypatch, routes_fake())


def last_call(fake_cp: FakeAdminClient, name: str) -> tuple[Any, ...]:
    calls = [args for method, args in fake_cp.calls if method == name]
    assert calls, fake_cp.calls
    return calls[-1]


def test_routes_create_every_flag(
    capsys: pytest.CaptureFixture[str], fake_cp: FakeAdminClient
) -> None:
    code, _, err = gw(capsys, "routes", "create", "r", "--mode", "fallback",
                       "--targets", "anthropic,bedrock", "--retries", "3",
                       "--retry-on", "429,500,502,503,504,529", "--timeout-connect", "5",
                       "--timeout-first-byte", "2.5", "--timeout-idle", "500ms",
                       "--cache-ttl", "1h", "--cache-sampled", "--breaker-failures", "7",
                       "--breaker-cooldown", "90",
                       "--target-model", "bedrock=eu.anthropic.claude-x-v1:0")  # fmt: skip
    assert code == 0, err
    (route,) = last_call(fake_cp, "create_route")
    assert [(t.provider, t.weight, t.model) for t in route.targets] == [
        ("anthropic", 1, ""),
        ("bedrock", 1, "eu.anthropic.claude-x-v1:0"),
    ]
    assert list(route.retry_on) == [429, 500, 502, 503, 504, 529] and route.retries == 3
    assert (route.timeout_connect_ms, route.timeout_first_byte_ms, route.timeout_idle_ms) == (
        5000,
        2500,
        500,
    )
    assert (route.cache_ttl_s, route.cache_sampled) == (3600, True)
    assert (route.breaker_failures, route.breaker_cooldown_s) == (7, 90)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--targets", "a,b", "--weights", "3"], "one each"),
        (["--targets", "a,a"], "twice"),
        (["--targets", "a", "--target-model", "b=m"], "'b' is not a target"),
        (["--targets", "a", "--target-model", "a"], "PROVIDER=MODEL"),
        (["--targets", "a", "--retry-on", "200"], "400-599"),
        (["--targets", "a", "--timeout-idle", "soon"], "invalid time"),
        (["--targets", "a", "--cache-ttl", "1.5"], "whole seconds"),
        (["--targets", "a", "--weights", "0"], "positive"),
    ],
)
def test_routes_create_usage_errors(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str, fake_cp: FakeAdminClient
) -> None:
    code, _, err = gw(capsys, "routes", "create", "r", "--mode", "loadbalance", *argv)
    assert code == 2 and message in err, err
    assert not any(m == "create_route" for m, _ in fake_cp.calls)


def test_routes_update_masks(capsys: pytest.CaptureFixture[str], fake_cp: FakeAdminClient) -> None:
    code, _, err = gw(capsys, "routes", "update", "main", "--retries", "1",
                       "--timeout-idle", "0", "--no-cache-sampled")  # fmt: skip
    assert code == 0, err
    route, paths = last_call(fake_cp, "update_route")
    assert paths == ["retries", "timeout_idle_ms", "cache_sampled"]
    assert route.retries == 1 and not route.cache_sampled
    assert not any(m == "get_route" for m, _ in fake_cp.calls)

    # --weights without --targets: read, re-weight, keep the model overrides.
    code, _, err = gw(capsys, "routes", "update", "main", "--weights", "1,4")
    assert code == 0, err
    route, paths = last_call(fake_cp, "update_route")
    assert paths == ["targets"]
    assert [(t.provider, t.weight, t.model) for t in route.targets] == [
        ("a", 1, ""),
        ("b", 4, "claude-x@1"),
    ]
    code, _, _ = gw(capsys, "routes", "update", "main", "--target-model", "a=m2",
                     "--target-model", "b=")  # fmt: skip
    route, _ = last_call(fake_cp, "update_route")
    assert [(t.provider, t.weight, t.model) for t in route.targets] == [
        ("a", 3, "m2"),
        ("b", 1, ""),
    ]

    code, _, err = gw(capsys, "routes", "update", "main")
    assert code == 2 and "nothing to update" in err


def test_apply_command_dry_run_and_confirmation(
    capsys: pytest.CaptureFixture[str], tmp_path: Any, fake_cp: FakeAdminClient
) -> None:
    fake_cp.routes.clear()  # an empty gateway: every change of the file is a create
    path = tmp_path / "g.yaml"
    path.write_text(BASE)
    code, stdout, err = gw(capsys, "apply", "-f", str(path), "--dry-run")
    assert code == 0 and "Plan: 5 to create" in stdout and "dry run" in err
    assert not any(m.startswith("create_") for m, _ in fake_cp.calls)
    code, _, err = gw(capsys, "apply", "-f", str(path))
    assert code == 2 and "--yes" in err
    code, stdout, _ = gw(capsys, "apply", "-f", str(path), "--yes", "-o", "json")
    doc = orjson.loads(stdout)
    assert doc["applied"] and doc["created_keys"][0]["key"] == SECRET
    assert [c["action"] for c in doc["changes"]] == ["create"] * 5
    code, _, err = gw(capsys, "apply")
    assert code == 2 and "-f" in err


def test_parsers() -> None:
    assert parse.parse_seconds_ms("1h") == 3_600_000
    assert parse.parse_seconds_ms("0") == 0
    with pytest.raises(argparse.ArgumentTypeError, match="millisecond"):
        parse.parse_seconds_ms("0.0001")
    assert parse.parse_whole_seconds("7d") == 604_800
    assert parse.parse_statuses("429, 529") == [429, 529]
    assert parse.parse_target_model("v=claude-x@2025") == ("v", "claude-x@2025")
    assert parse.format_seconds_ms(30_000) == "30s" and parse.format_seconds_ms(1050) == "1.05s"
