"""Every Admin-API input field, property-based, through a real in-process grpc.aio control plane.

For each field hypothesis generates malformed values (empty, too long, control characters and
NUL, unicode confusables, negative and huge integers up to the proto's int32/int64 edges, URLs
with other schemes or credentials, bad globs, unknown enum words and update_mask paths) and each
must come back INVALID_ARGUMENT — never INTERNAL or UNKNOWN — with a short, printable message
that names the field and says what is expected, while a dump of every table is unchanged.
Generated *valid* values must be accepted and read back unchanged, so the validators are not
over-strict. SQLite for all of it; PostgreSQL (where NUL in a string is a driver error) for the
string fields in :func:`test_strings_with_nul_are_refused_on_every_backend`.

This module is long because it holds one strategy per Admin-API input field next to the RPC that
takes it, so that a new field without a strategy is visible in one file.
"""

from __future__ import annotations

import base64
import os
import re
import zoneinfo
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from google.protobuf.field_mask_pb2 import FieldMask
from hypothesis import Phase, given, settings
from hypothesis import strategies as st
from sqlalchemy import MetaData, select
from sqlalchemy.engine import Engine

from controlplane.server import Running, running
from controlplane.store.db import make_engine
from gwapi import vocab
from gwapi.v1 import admin_pb2 as apb
from gwapi.v1 import common_pb2 as pb
from tests.controlplane.conftest import make_settings

SQLITE_ONLY = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
# EXPLORE=1: no shrinking, to list every failing field quickly.
_PHASES = [Phase.explicit, Phase.generate] if os.environ.get("EXPLORE") else list(Phase)
BAD = settings(max_examples=15, deadline=None, phases=_PHASES)
GOOD = settings(max_examples=20, deadline=None, phases=_PHASES)
MAX_MESSAGE = 400  # characters: an error is read in a terminal, not scrolled through

MASTER_KEY = base64.b64encode(b"k" * 32).decode()
INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)
SLUG = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")
ENV = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")

# -- the world each test starts from --------------------------------------------------------


@pytest.fixture
async def cp(db_url: str) -> AsyncIterator[Running]:
    """The shared control plane, with a master key so provider secrets can be stored."""
    async with running(make_settings(db_url, master_key=MASTER_KEY)) as r:
        yield r


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    eng = make_engine(db_url)
    yield eng
    eng.dispose()


_TABLES: dict[int, MetaData] = {}


@pytest.fixture
async def world(admin: Any) -> dict[str, Any]:
    """A workspace ``ws``, a simulator provider ``sim``, a route ``rt`` and a key on ``ws``."""
    await admin.CreateWorkspace(apb.CreateWorkspaceRequest(workspace=pb.Workspace(name="ws")))
    await admin.CreateProvider(
        apb.CreateProviderRequest(provider=pb.Provider(name="sim", kind="simulator"))
    )
    await admin.CreateRoute(
        apb.CreateRouteRequest(route=pb.Route(name="rt", targets=[pb.RouteTarget(provider="sim")]))
    )
    await admin.CreateProvider(
        apb.CreateProviderRequest(provider=pb.Provider(name="anth", kind="anthropic"))
    )
    created = await admin.CreateKey(apb.CreateKeyRequest(workspace="ws", name="k", provider="sim"))
    return {"key_id": created.key.id}


def dump(engine: Engine) -> dict[str, list[str]]:
    """Every row of every table, order-independent."""
    meta = _TABLES.get(id(engine))
    if meta is None:  # reflect once per engine: the schema does not change under a test
        meta = _TABLES[id(engine)] = MetaData()
        meta.reflect(engine)
    with engine.connect() as conn:
        return {
            t.name: sorted(repr(tuple(r)) for r in conn.execute(select(t)).all())
            for t in meta.sorted_tables
        }


async def refused(admin: Any, engine: Engine, method: str, request: Any, *names: str) -> str:
    """Call; expect INVALID_ARGUMENT naming one of ``names``; the database must be untouched."""
    before = dump(engine)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await getattr(admin, method)(request)
    code, details = info.value.code(), info.value.details() or ""
    assert code == grpc.StatusCode.INVALID_ARGUMENT, (code, details, request)
    assert any(n.lower() in details.lower() for n in names), (details, names)
    assert len(details) <= MAX_MESSAGE, details
    assert details.isprintable(), details  # values are echoed repr()'d and cut short
    assert dump(engine) == before, "a refused request changed the database"
    return details


# -- strategies for malformed values --------------------------------------------------------

TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=24)
CONTROL = st.characters(categories=["Cc"])  # C0 incl. NUL, DEL, C1
PERIODS = [pb.PERIOD_DAY, pb.PERIOD_WEEK, pb.PERIOD_MONTH, pb.PERIOD_LIFETIME]  # 1..4
LINEBREAKS = st.sampled_from(["\u2028", "\u2029", "\u202e", "\u2066", "\u0085"])


def inside(base: str, chars: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """``base`` with one of ``chars`` put strictly inside it (strip() cannot remove it)."""
    return st.builds(lambda i, c: base[:i] + c + base[i:], st.integers(1, len(base) - 1), chars)


def long_text(min_len: int, max_len: int = 9000) -> st.SearchStrategy[str]:
    return st.builds(lambda c, n: c * n, st.sampled_from("aé世😀-0"), st.integers(min_len, max_len))


CONFUSABLES = st.sampled_from(
    [
        "t\u0435am",  # Cyrillic e
        "team\u2010a",  # hyphen look-alike
        "\uff54\uff45\uff41\uff4d",  # fullwidth
        "team\u200ba",  # zero-width space
        "te\u0301am",  # combining accent
        "Team-a",
        "team a",
        "team/a",
        "-team",
        ".team",
        "team\u00a0a",
    ]
)
BAD_SLUGS = st.one_of(
    st.just(""),
    TEXT.filter(lambda s: not SLUG.fullmatch(s)),
    inside("team-a", CONTROL),
    CONFUSABLES,
    st.text("abc-", min_size=64, max_size=80).map(lambda s: "a" + s),
    long_text(64),
)
BAD_LABELS = st.one_of(inside("label", CONTROL | LINEBREAKS), st.just("\0"))
BAD_URLS = st.one_of(
    st.sampled_from(
        [
            "ftp://hooks.example.com/x",
            "file:///etc/passwd",
            "javascript:alert(1)",
            "data:text/plain,hi",
            "gopher://h/",
            "https://user:pw@hooks.example.com/x",
            "https://user@hooks.example.com/x",
            "https://:pw@hooks.example.com/x",
            "http://",
            "https:///path",
            "http://h:99999/",
            "http://h:-1/",
            "http://h:port/",
            "http://[::1/",
            "//hooks.example.com/x",
            "hooks.example.com/x",
            "http://h x/",
        ]
    ),
    st.builds(
        lambda scheme, rest: f"{scheme}://{rest}",
        st.sampled_from(["file", "ftp", "ws", "ssh", "ldap", "dict", "HTTPX", "smb"]),
        TEXT,
    ),
    st.builds(
        lambda u, p: f"https://{u}:{p}@hooks.example.com/x",
        st.from_regex(r"[a-z]{1,8}", fullmatch=True),
        st.from_regex(r"[a-z0-9]{1,8}", fullmatch=True),
    ),
    inside("https://hooks.example.com/x", CONTROL | st.just(" ")),
    long_text(2100, 5000).map(lambda s: "https://hooks.example.com/" + s),
)
NEG32 = st.integers(INT32[0], -1)
NEG64 = st.integers(INT64[0], -1)


def above(limit: int, top: int = INT32[1]) -> st.SearchStrategy[int]:
    return st.integers(limit + 1, top)


def unknown_word(*known: str) -> st.SearchStrategy[str]:
    return st.one_of(TEXT, CONFUSABLES, long_text(50)).filter(
        lambda s: s.strip().lower() not in known
    )


# -- the cases: field -> (malformed values, request for a value, words the message must use) --


@dataclass(frozen=True)
class Case:
    values: st.SearchStrategy[Any]
    build: Callable[[Any, dict[str, Any]], tuple[str, Any]]
    names: tuple[str, ...]


def new_ws(**kw: Any) -> tuple[str, Any]:
    kw.setdefault("name", "new-ws")
    return "CreateWorkspace", apb.CreateWorkspaceRequest(workspace=pb.Workspace(**kw))


def upd_ws(path: str, **kw: Any) -> tuple[str, Any]:
    return "UpdateWorkspace", apb.UpdateWorkspaceRequest(
        workspace=pb.Workspace(name="ws", **kw), update_mask=FieldMask(paths=[path])
    )


def new_key(**kw: Any) -> tuple[str, Any]:
    kw.setdefault("workspace", "ws")
    kw.setdefault("name", "new-key")
    if "route" not in kw:
        kw.setdefault("provider", "sim")
    return "CreateKey", apb.CreateKeyRequest(**kw)


def upd_key(w: dict[str, Any], path: str, **kw: Any) -> tuple[str, Any]:
    return "UpdateKey", apb.UpdateKeyRequest(
        key=pb.VirtualKey(id=w["key_id"], **kw), update_mask=FieldMask(paths=[path])
    )


def new_prov(kind: str = "simulator", **kw: Any) -> tuple[str, Any]:
    kw.setdefault("name", "new-prov")
    return "CreateProvider", apb.CreateProviderRequest(provider=pb.Provider(kind=kind, **kw))


def new_route(**kw: Any) -> tuple[str, Any]:
    kw.setdefault("name", "new-rt")
    kw.setdefault("targets", [pb.RouteTarget(provider="sim")])
    return "CreateRoute", apb.CreateRouteRequest(route=pb.Route(**kw))


def upd_route(path: str, **kw: Any) -> tuple[str, Any]:
    kw.setdefault("targets", [pb.RouteTarget(provider="sim")])
    return "UpdateRoute", apb.UpdateRouteRequest(
        route=pb.Route(name="rt", **kw), update_mask=FieldMask(paths=[path])
    )


def limits_cases(prefix: str, build: Callable[[pb.Limits], tuple[str, Any]]) -> dict[str, Case]:
    periods = st.sampled_from(PERIODS)
    cases = {
        f"{prefix}.budget.amount": Case(
            st.integers(INT64[0], 0),
            lambda v, w: build(
                pb.Limits(budgets=[pb.Budget(amount_micros=v, period=pb.PERIOD_DAY)])
            ),
            ("budget must be greater than zero",),
        ),
        f"{prefix}.budget.period": Case(
            st.sampled_from([0, -1, 5, 99, 2**31 - 1, -(2**31)]),
            lambda v, w: build(pb.Limits(budgets=[pb.Budget(amount_micros=1, period=v)])),
            ("period (day, week, month, lifetime)",),
        ),
        f"{prefix}.budget.twice": Case(
            periods,
            lambda v, w: build(pb.Limits(budgets=[pb.Budget(amount_micros=1, period=v)] * 2)),
            ("at most one budget per period",),
        ),
    }
    for rate in ("rpm", "rph", "tpm", "max_parallel"):

        def with_rate(v: Any, w: dict[str, Any], rate: str = rate) -> tuple[str, Any]:
            return build(pb.Limits(**{rate: v}))

        cases[f"{prefix}.{rate}"] = Case(NEG32, with_rate, (f"{rate} must not be negative",))
    return cases


SLUG_WORDS = ("is required", "use 1-63 lowercase letters")
OPTION_VALUES: dict[tuple[str, str], st.SearchStrategy[str]] = {
    ("simulator", "latency_ms"): st.one_of(
        TEXT.filter(lambda s: not s.strip().isdigit()),
        st.just("600001"),
        st.just("-1"),
        st.just("1e3"),
        st.just("9" * 5000),
    ),
    ("anthropic", "auth"): unknown_word("key", "passthrough"),
    ("anthropic", "timeout_read_s"): st.sampled_from(
        ["0", "-1", "nan", "inf", "1e9", "86401", "x", "1,5", "9" * 400, "1.5.2", "\0"]
    ),
    ("bedrock", "region"): st.sampled_from(
        ["US-EAST-1", "us_east_1", "mars-north-1x", "us-east-1\0", "us-east-0", "../etc"]
    ),
    ("bedrock", "bearer_token_env"): st.sampled_from(
        ["sk-ant-api03-secret", "ABSK-not-a-name", "1VAR", "VAR-NAME", "A" * 200, "V\0AR"]
    ),
    ("simulator", "chunk_delay_ms"): st.sampled_from(["-5", "1.5", "x", "9" * 30, "600001"]),
    ("bedrock", "inference_profile"): unknown_word("us", "eu", "apac", "jp", "global", "none"),
    ("bedrock", "profile"): st.sampled_from(["has space", "-leading", "a/b", "p\0", "x" * 200]),
    ("bedrock", "ping_interval_s"): st.sampled_from(["0", "-1", "abc", "1e400", "86401"]),
    ("vertex", "project"): st.sampled_from(
        ["ab", "Has-Upper", "1starts-digit", "ends-hyphen-", "x" * 40, "my project"]
    ),
    ("vertex", "region"): st.sampled_from(["us_east5", "US-EAST5", "europe west1", "mars-1x"]),
    ("vertex", "credentials_file"): st.sampled_from(
        ["relative/path.json", '{"type": "service_account"}', "/etc/x\0.json", "/a\nb", "~/x"]
    ),
    ("vertex", "model_map"): st.sampled_from(
        [
            "not json",
            "[]",
            '{"a": 1}',
            '{"a": ""}',
            '{"a": "b c"}',
            '{"a": "b", "a": "c"}',
            '{"a": "b\\u0000"}',
            '{"' + "a" * 300 + '": "b"}',
        ]
    ),
}
BASE_OPTIONS = {"bedrock": {"region": "us-east-1"}, "vertex": {"project": "my-project-123"}}


def option_case(kind: str, key: str, values: st.SearchStrategy[str]) -> Case:
    def build(v: str, w: dict[str, Any]) -> tuple[str, Any]:
        return new_prov(kind, options={**BASE_OPTIONS.get(kind, {}), key: v})

    return Case(values, build, (f"option {key!r}", f"invalid {key}", key))


CASES: dict[str, Case] = {
    # workspaces
    "workspace.name": Case(BAD_SLUGS, lambda v, w: new_ws(name=v), ("workspace name",)),
    "workspace.description": Case(
        BAD_LABELS | long_text(1001), lambda v, w: new_ws(description=v), ("description",)
    ),
    "workspace.timezone": Case(
        st.one_of(TEXT, CONFUSABLES, inside("Europe/Paris", CONTROL), long_text(300)).filter(
            lambda s: s != "" and s not in zoneinfo.available_timezones()
        )
        | st.sampled_from(["../../etc/passwd", "/etc/localtime", "Europe/../UTC", "europe/paris"]),
        lambda v, w: new_ws(timezone=v),
        ("unknown time zone",),
    ),
    "workspace.redis_failure": Case(
        unknown_word("", "closed", "open"), lambda v, w: new_ws(redis_failure=v), ("redis_failure",)
    ),
    "workspace.alert_webhook": Case(
        BAD_URLS, lambda v, w: new_ws(alert_webhook=v), ("alert_webhook",)
    ),
    "workspace.min_client_version": Case(
        st.one_of(
            TEXT, st.sampled_from(["1.2.3.4.5", "v2", "2.x", "1..2", "1234567", "２.１"])
        ).filter(
            lambda s: s.strip() and not re.fullmatch(r"[0-9]{1,6}(\.[0-9]{1,6}){0,3}", s.strip())
        ),
        lambda v, w: new_ws(min_client_version=v),
        ("min_client_version",),
    ),
    "workspace.log_bodies": Case(
        unknown_word("", "none", "metadata", "full"),
        lambda v, w: new_ws(log_bodies=v),
        ("log_bodies",),
    ),
    "workspace.log_body_max_bytes": Case(
        NEG64 | above(16 * 1024 * 1024, INT64[1]),
        lambda v, w: new_ws(log_body_max_bytes=v),
        ("log_body_max_bytes",),
    ),
    "workspace.log_retention_days": Case(
        NEG32 | above(3650), lambda v, w: new_ws(log_retention_days=v), ("log_retention_days",)
    ),
    "workspace.update.description": Case(
        BAD_LABELS | long_text(1001),
        lambda v, w: upd_ws("description", description=v),
        ("description",),
    ),
    "workspace.update.alert_webhook": Case(
        BAD_URLS, lambda v, w: upd_ws("alert_webhook", alert_webhook=v), ("alert_webhook",)
    ),
    "workspace.update.timezone": Case(
        st.sampled_from(["Mars/Olympus", "\0", "UTC\0", "Europe/Paris "]),
        lambda v, w: upd_ws("timezone", timezone=v),
        ("unknown time zone",),
    ),
    "workspace.update_mask": Case(
        unknown_word().filter(lambda s: s not in _WS_PATHS),
        lambda v, w: upd_ws(v, description="x"),
        ("update_mask",),
    ),
    "workspace.update.name": Case(
        BAD_SLUGS,
        lambda v, w: (
            "UpdateWorkspace",
            apb.UpdateWorkspaceRequest(
                workspace=pb.Workspace(name=v, description="x"),
                update_mask=FieldMask(paths=["description"]),
            ),
        ),
        ("workspace name",),
    ),
    **limits_cases("workspace.limits", lambda lim: new_ws(limits=lim)),
    **limits_cases("workspace.update.limits", lambda lim: upd_ws("limits", limits=lim)),
    # keys
    "key.workspace": Case(BAD_SLUGS, lambda v, w: new_key(workspace=v), ("workspace name",)),
    "key.name": Case(BAD_LABELS | long_text(101), lambda v, w: new_key(name=v), ("key name",)),
    "key.provider": Case(
        BAD_SLUGS.filter(bool), lambda v, w: new_key(provider=v), ("provider name",)
    ),
    "key.route": Case(BAD_SLUGS.filter(bool), lambda v, w: new_key(route=v), ("route name",)),
    "key.provider_and_route": Case(
        st.just(None), lambda v, w: new_key(provider="sim", route="rt"), ("exactly one of",)
    ),
    "key.models": Case(
        st.lists(
            st.one_of(
                st.just(""),
                st.just("   "),
                inside("claude-*", CONTROL | st.sampled_from([" ", "\u2028", "é", "{", "|"])),
                long_text(201),
                CONFUSABLES.filter(lambda s: not re.fullmatch(r"[A-Za-z0-9._:@/*?\[\]-]+", s)),
            ),
            min_size=1,
            max_size=3,
        ).map(lambda bad: ["claude-*", *bad]),
        lambda v, w: new_key(models=v),
        ("model pattern",),
    ),
    "key.models.too_many": Case(
        st.integers(101, 300),
        lambda v, w: new_key(models=[f"m-{i}" for i in range(v)]),
        ("too many model patterns",),
    ),
    "key.ttl_seconds": Case(
        NEG64 | st.integers(10**12, INT64[1]),
        lambda v, w: new_key(ttl_seconds=v),
        ("ttl_seconds",),
    ),
    "key.update.name": Case(
        BAD_LABELS | long_text(101), lambda v, w: upd_key(w, "name", name=v), ("key name",)
    ),
    "key.update.models": Case(
        st.just(["ok-*", "bad pattern"]),
        lambda v, w: upd_key(w, "models", models=v),
        ("model pattern",),
    ),
    "key.update.expires_at_ms": Case(
        NEG64, lambda v, w: upd_key(w, "expires_at_ms", expires_at_ms=v), ("expires_at_ms",)
    ),
    "key.update_mask": Case(
        unknown_word().filter(lambda s: s not in _KEY_PATHS),
        lambda v, w: upd_key(w, v, name="x"),
        ("update_mask",),
    ),
    "key.update.id": Case(
        st.one_of(TEXT, long_text(30)).filter(lambda s: not re.fullmatch(r"key_[0-9a-f]{16}", s)),
        lambda v, w: (
            "UpdateKey",
            apb.UpdateKeyRequest(
                key=pb.VirtualKey(id=v, name="x"), update_mask=FieldMask(paths=["name"])
            ),
        ),
        ("key id",),
    ),
    **limits_cases("key.limits", lambda lim: new_key(limits=lim)),
    # providers
    "provider.name": Case(BAD_SLUGS, lambda v, w: new_prov(name=v), ("provider name",)),
    "provider.kind": Case(
        unknown_word("anthropic", "simulator", "bedrock", "vertex").filter(
            lambda s: s not in ("anthropic", "simulator", "bedrock", "vertex")
        ),
        lambda v, w: new_prov(kind=v),
        ("provider kind",),
    ),
    "provider.base_url": Case(
        BAD_URLS
        | inside("http://127.0.0.1:8099/api", CONTROL | st.sampled_from([" ", "\u2028"]))
        | st.sampled_from(
            ["http://127.0.0.1:8099/v1", "https://h/x?q=1", "https://h/x#frag", "https://@h/"]
        ),
        lambda v, w: new_prov(base_url=v),
        ("base_url",),
    ),
    "provider.base_url.vertex": Case(
        st.sampled_from(["https://h/", "https://h/v1/projects/p", "https://h/v2"]),
        lambda v, w: new_prov("vertex", base_url=v, options=BASE_OPTIONS["vertex"]),
        ("base_url",),
    ),
    "provider.api_key_env": Case(
        st.one_of(
            TEXT.filter(lambda s: s and not ENV.fullmatch(s)),
            st.sampled_from(["sk-ant-api03-abcdef", "MY KEY", "1ABC", "A" * 129, "KEY\0"]),
        ),
        lambda v, w: new_prov("anthropic", api_key_env=v),
        ("api_key_env",),
    ),
    "provider.option.name": Case(
        st.one_of(TEXT.filter(bool), CONFUSABLES, st.sampled_from(["LATENCY_MS", "latency ms"])),
        lambda v, w: new_prov(options={v: "1"}),
        ("option",),
    ),
    "provider.option.secret": Case(
        st.sampled_from(["api_key", "secret", "password", "token"]),
        lambda v, w: new_prov("anthropic", options={v: "abc"}),
        ("looks like a secret",),
    ),
    **{
        f"provider.option.{kind}.{key}": option_case(kind, key, values)
        for (kind, key), values in OPTION_VALUES.items()
    },
    "provider.update_mask": Case(
        unknown_word().filter(lambda s: s not in ("base_url", "api_key_env", "options")),
        lambda v, w: (
            "UpdateProvider",
            apb.UpdateProviderRequest(
                provider=pb.Provider(name="sim", base_url="http://127.0.0.1:1"),
                update_mask=FieldMask(paths=[v]),
            ),
        ),
        ("update_mask", "option"),
    ),
    # workspace access controls
    "workspace.allowed_providers": Case(
        st.lists(
            BAD_SLUGS.filter(lambda s: s.strip() != "" or s == ""), min_size=1, max_size=3
        ).filter(lambda xs: any(not SLUG.fullmatch(x.strip()) for x in xs)),
        lambda v, w: upd_ws("allowed_providers", allowed_providers=v),
        ("allowed provider name",),
    ),
    "workspace.allowed_routes": Case(
        st.lists(BAD_SLUGS, min_size=1, max_size=3).filter(
            lambda xs: any(not SLUG.fullmatch(x.strip()) for x in xs)
        ),
        lambda v, w: new_ws(allowed_routes=v),
        ("allowed route name",),
    ),
    "workspace.allowed_models": Case(
        st.sampled_from([["bad pattern"], ["x\0"], [""], ["a" * 201], ["claude-*", "é"]]),
        lambda v, w: upd_ws("allowed_models", allowed_models=v),
        ("model pattern",),
    ),
    # admin tokens
    "token.name": Case(
        BAD_LABELS | long_text(101) | st.just(""),
        lambda v, w: ("CreateToken", apb.CreateTokenRequest(name=v, role="viewer")),
        ("name",),
    ),
    "token.role": Case(
        unknown_word("admin", "workspace-admin", "workspace_admin", "viewer"),
        lambda v, w: ("CreateToken", apb.CreateTokenRequest(name="t", role=v)),
        ("role",),
    ),
    "token.workspaces": Case(
        BAD_SLUGS.filter(lambda s: not SLUG.fullmatch(s.strip())),
        lambda v, w: (
            "CreateToken",
            apb.CreateTokenRequest(name="t", role="workspace-admin", workspaces=["ws", v]),
        ),
        ("workspace name",),
    ),
    "token.ttl_seconds": Case(
        NEG64 | st.integers(10 * 365 * 86_400 + 1, INT64[1]),
        lambda v, w: (
            "CreateToken",
            apb.CreateTokenRequest(name="t", role="viewer", ttl_seconds=v),
        ),
        ("ttl",),
    ),
    # provider secrets
    "provider.api_key": Case(
        st.one_of(
            inside("sk-ant-api03-abc", CONTROL | st.sampled_from([" ", "é", "\u2028"])),
            long_text(5000, 9000),
        ),
        lambda v, w: (
            "CreateProvider",
            apb.CreateProviderRequest(
                provider=pb.Provider(name="new-prov", kind="anthropic"), api_key=v
            ),
        ),
        ("API key",),
    ),
    "provider.rotate.api_key": Case(
        inside("sk-ant-api03-abc", CONTROL | st.just(" ")),
        lambda v, w: (
            "RotateProviderSecret",
            apb.RotateProviderSecretRequest(name="anth", api_key=v),
        ),
        ("API key",),
    ),
    # routes
    "route.name": Case(BAD_SLUGS, lambda v, w: new_route(name=v), ("route name",)),
    "route.mode": Case(
        unknown_word("fallback", "loadbalance").filter(
            lambda s: s not in ("", "fallback", "loadbalance")
        ),
        lambda v, w: new_route(mode=v),
        ("route mode",),
    ),
    "route.targets.empty": Case(
        st.just([]), lambda v, w: new_route(targets=v), ("at least one target",)
    ),
    "route.targets.too_many": Case(
        st.integers(17, 40),
        lambda v, w: new_route(targets=[pb.RouteTarget(provider=f"p{i}") for i in range(v)]),
        ("too many targets",),
    ),
    "route.target.provider": Case(
        BAD_SLUGS,
        lambda v, w: new_route(targets=[pb.RouteTarget(provider=v)]),
        ("target provider",),
    ),
    "route.target.twice": Case(
        st.just("sim"),
        lambda v, w: new_route(targets=[pb.RouteTarget(provider=v)] * 2),
        ("listed twice",),
    ),
    "route.target.weight": Case(
        NEG32 | above(10_000),
        lambda v, w: new_route(targets=[pb.RouteTarget(provider="sim", weight=v)]),
        ("weight",),
    ),
    "route.target.model": Case(
        inside("claude-x", CONTROL | st.sampled_from([" ", "\u2028", "\u00a0"])) | long_text(201),
        lambda v, w: new_route(targets=[pb.RouteTarget(provider="sim", model=v)]),
        ("model id",),
    ),
    "route.retries": Case(NEG32 | above(10), lambda v, w: new_route(retries=v), ("retries",)),
    "route.retry_on": Case(
        st.lists(st.integers(*INT32).filter(lambda n: not 400 <= n <= 599), min_size=1),
        lambda v, w: new_route(retry_on=[429, *v]),
        ("retry_on",),
    ),
    "route.update_mask": Case(
        unknown_word().filter(lambda s: s not in _ROUTE_PATHS),
        lambda v, w: upd_route(v, retries=1),
        ("update_mask",),
    ),
    "route.update.retries": Case(
        NEG32 | above(10), lambda v, w: upd_route("retries", retries=v), ("retries",)
    ),
}
for _field, _upper in (
    ("timeout_connect_ms", 3_600_000),
    ("timeout_first_byte_ms", 3_600_000),
    ("timeout_idle_ms", 3_600_000),
    ("cache_ttl_s", 604_800),
    ("breaker_failures", 100),
    ("breaker_cooldown_s", 3_600),
):

    def _with_field(v: Any, w: dict[str, Any], f: str = _field) -> tuple[str, Any]:
        return new_route(**{f: v})

    CASES[f"route.{_field}"] = Case(NEG32 | above(_upper), _with_field, (_field,))


def _paths(module: str) -> tuple[str, ...]:
    import importlib

    return tuple(importlib.import_module(f"controlplane.catalog.{module}").UPDATE_PATHS)


_WS_PATHS: tuple[str, ...] = _paths("workspaces")
_KEY_PATHS: tuple[str, ...] = _paths("keys")
_ROUTE_PATHS: tuple[str, ...] = _paths("routes")


@SQLITE_ONLY
@pytest.mark.parametrize("field", sorted(CASES))
@BAD
@given(data=st.data())
async def test_malformed_field_is_refused_and_nothing_is_stored(
    field: str, admin: Any, world: dict[str, Any], engine: Engine, data: st.DataObject
) -> None:
    await check_field(field, admin, world, engine, data)


async def check_field(
    field: str, admin: Any, world: dict[str, Any], engine: Engine, data: st.DataObject
) -> None:
    case = CASES[field]
    value = data.draw(case.values, label=field)
    method, request = case.build(value, world)
    await refused(admin, engine, method, request, *case.names)


# PostgreSQL: the fields where its types differ from SQLite's (BIGINT overflow, NUL, enums).
PG_SUBSET = (
    "key.ttl_seconds",
    "key.limits.budget.period",
    "workspace.log_body_max_bytes",
    "workspace.description",
    "provider.base_url",
    "token.ttl_seconds",
    "route.retry_on",
)


@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
@pytest.mark.parametrize("field", PG_SUBSET)
@settings(max_examples=8, deadline=None, phases=_PHASES)
@given(data=st.data())
async def test_malformed_field_is_refused_on_postgresql(
    field: str, admin: Any, world: dict[str, Any], engine: Engine, data: st.DataObject
) -> None:
    await check_field(field, admin, world, engine, data)


# -- valid values are accepted and read back unchanged ---------------------------------------

LABELS = st.text(
    st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp"), blacklist_characters="\u202e"),
    max_size=100,
)
GOOD_URLS = st.builds(
    lambda scheme, host, port, path: f"{scheme}://{host}{port}{path}",
    st.sampled_from(["http", "https"]),
    st.from_regex(r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?(\.[a-z]{2,6}){0,2}", fullmatch=True),
    st.sampled_from(["", ":1", ":8443", ":65535"]),
    st.from_regex(r"(/[A-Za-z0-9._~%-]{1,12}){0,3}", fullmatch=True),
)


@st.composite
def limits(draw: st.DrawFn) -> pb.Limits:
    periods = draw(st.lists(st.sampled_from(PERIODS), unique=True, max_size=4))
    return pb.Limits(
        budgets=[
            pb.Budget(amount_micros=draw(st.integers(1, INT64[1])), period=p)
            for p in sorted(periods)
        ],
        rpm=draw(st.integers(0, INT32[1])),
        rph=draw(st.integers(0, INT32[1])),
        tpm=draw(st.integers(0, INT32[1])),
        max_parallel=draw(st.integers(0, INT32[1])),
    )


@SQLITE_ONLY
@GOOD
@given(
    name=st.from_regex(SLUG, fullmatch=True),
    description=st.text(
        st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp")), max_size=1000
    ).filter(lambda s: not set(s) & set("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")),
    timezone=st.sampled_from(["", "UTC", "Europe/Paris", "America/New_York", "Asia/Kolkata"]),
    redis_failure=st.sampled_from(["closed", "open"]),
    alert_webhook=st.just("") | GOOD_URLS,
    min_client_version=st.just("")
    | st.from_regex(r"[0-9]{1,6}(\.[0-9]{1,6}){0,3}", fullmatch=True),
    log_bodies=st.sampled_from(["none", "metadata", "full"]),
    log_body_max_bytes=st.integers(1, 16 * 1024 * 1024),
    log_retention_days=st.integers(1, 3650),
    lims=limits(),
)
async def test_valid_workspaces_round_trip(admin: Any, lims: pb.Limits, **fields: Any) -> None:
    sent = pb.Workspace(limits=lims, **fields)
    got = await admin.CreateWorkspace(apb.CreateWorkspaceRequest(workspace=sent))
    try:
        read = await admin.GetWorkspace(apb.GetWorkspaceRequest(name=sent.name))
        for msg in (got, read):
            for key, value in fields.items():
                assert getattr(msg, key) == value, key
            assert msg.limits == lims
    finally:
        await admin.DeleteWorkspace(apb.DeleteWorkspaceRequest(name=sent.name, force=True))


@SQLITE_ONLY
@GOOD
@given(
    name=LABELS,
    models=st.lists(
        st.from_regex(r"[A-Za-z0-9._:@/*?\[\]-]{1,60}", fullmatch=True), unique=True, max_size=5
    ),
    ttl=st.integers(0, 100 * 365 * 86_400),
    lims=limits(),
)
async def test_valid_keys_round_trip(
    admin: Any, world: dict[str, Any], name: str, models: list[str], ttl: int, lims: pb.Limits
) -> None:
    created = await admin.CreateKey(
        apb.CreateKeyRequest(
            workspace="ws", name=name, provider="sim", models=models, ttl_seconds=ttl, limits=lims
        )
    )
    try:
        read = await admin.GetKey(apb.GetKeyRequest(id=created.key.id))
        for key in (created.key, read):
            assert (key.name, list(key.models), key.limits) == (name, models, lims)
            assert (key.expires_at_ms == 0) == (ttl == 0)
            if ttl:
                assert key.expires_at_ms - key.created_at_ms == ttl * 1000
    finally:
        await admin.DeleteKey(apb.DeleteKeyRequest(id=created.key.id))


@SQLITE_ONLY
@GOOD
@given(
    name=st.from_regex(SLUG, fullmatch=True).filter(lambda n: n != "sim"),
    base_url=st.just("") | GOOD_URLS.filter(lambda u: not u.lower().rstrip("/").endswith("/v1")),
    latency=st.integers(0, 600_000),
    api_key_env=st.from_regex(ENV, fullmatch=True),
)
async def test_valid_providers_round_trip(
    admin: Any, world: dict[str, Any], name: str, base_url: str, latency: int, api_key_env: str
) -> None:
    sent = pb.Provider(
        name=name, kind="simulator", base_url=base_url, options={"latency_ms": str(latency)}
    )
    got = await admin.CreateProvider(apb.CreateProviderRequest(provider=sent))
    try:
        assert (got.base_url, dict(got.options)) == (base_url.rstrip("/"), dict(sent.options))
        assert await admin.GetProvider(apb.GetProviderRequest(name=name)) == got
    finally:
        await admin.DeleteProvider(apb.DeleteProviderRequest(name=name))
    anth = pb.Provider(name=name, kind="anthropic", api_key_env=api_key_env, base_url=base_url)
    got = await admin.CreateProvider(apb.CreateProviderRequest(provider=anth))
    try:
        assert got.api_key_env == api_key_env
        assert got.base_url == (base_url.rstrip("/") or "https://api.anthropic.com")
    finally:
        await admin.DeleteProvider(apb.DeleteProviderRequest(name=name))


@SQLITE_ONLY
@GOOD
@given(
    region=st.from_regex(r"(us|eu|ap)-(east|west|north|south)-[1-9]", fullmatch=True),
    profile=st.sampled_from(["us", "eu", "apac", "jp", "global", "none"]),
    ping=st.integers(1, 86_400).map(str),
    project=st.from_regex(r"[a-z][a-z0-9-]{4,28}[a-z0-9]", fullmatch=True),
    gcp_region=st.sampled_from(["global", "us-east5", "europe-west1"]),
    model_map=st.dictionaries(
        st.from_regex(r"claude-[a-z0-9.-]{1,20}", fullmatch=True),
        st.from_regex(r"[a-z0-9.:@-]{1,40}", fullmatch=True),
        max_size=3,
    ),
)
async def test_valid_cloud_provider_options_round_trip(
    admin: Any,
    world: dict[str, Any],
    region: str,
    profile: str,
    ping: str,
    project: str,
    gcp_region: str,
    model_map: dict[str, str],
) -> None:
    import json

    mapping = json.dumps(model_map, sort_keys=True, separators=(",", ":"))
    bedrock = {"region": region, "inference_profile": profile, "ping_interval_s": ping}
    vertex = {"project": project, "region": gcp_region}
    if model_map:
        bedrock["model_map"] = vertex["model_map"] = mapping
    for kind, options in (("bedrock", bedrock), ("vertex", vertex)):
        sent = pb.Provider(name=f"new-{kind}", kind=kind, options=options)
        got = await admin.CreateProvider(apb.CreateProviderRequest(provider=sent))
        try:
            assert dict(got.options) == options
            # The typed settings say the same, and are read back as the same options.
            assert got.WhichOneof("settings") == kind and vocab.provider_options(got) == options
        finally:
            await admin.DeleteProvider(apb.DeleteProviderRequest(name=sent.name))


@SQLITE_ONLY
@GOOD
@given(
    name=st.from_regex(SLUG, fullmatch=True).filter(lambda n: n != "rt"),
    mode=st.sampled_from(["fallback", "loadbalance"]),
    weight=st.integers(1, 10_000),
    model=st.just("") | st.from_regex(r"[A-Za-z0-9._:@/-]{1,80}", fullmatch=True),
    retries=st.integers(0, 10),
    retry_on=st.lists(st.integers(400, 599), unique=True, max_size=5).map(sorted),
    timeouts=st.tuples(*[st.integers(0, 3_600_000)] * 3),
    cache_ttl_s=st.integers(0, 604_800),
    breaker=st.tuples(st.integers(0, 100), st.integers(0, 3_600)),
)
async def test_valid_routes_round_trip(
    admin: Any,
    world: dict[str, Any],
    name: str,
    mode: str,
    weight: int,
    model: str,
    retries: int,
    retry_on: list[int],
    timeouts: tuple[int, int, int],
    cache_ttl_s: int,
    breaker: tuple[int, int],
) -> None:
    sent = pb.Route(
        name=name,
        mode=mode,
        targets=[pb.RouteTarget(provider="sim", weight=weight, model=model)],
        retries=retries,
        retry_on=retry_on,
        timeout_connect_ms=timeouts[0],
        timeout_first_byte_ms=timeouts[1],
        timeout_idle_ms=timeouts[2],
        cache_ttl_s=cache_ttl_s,
        breaker_failures=breaker[0],
        breaker_cooldown_s=breaker[1],
    )
    vocab.fill_route(sent, mode)  # the mode in both its forms, as every response carries it
    got = await admin.CreateRoute(apb.CreateRouteRequest(route=sent))
    try:
        got.ClearField("created_at_ms")
        got.ClearField("updated_at_ms")
        assert got == sent
    finally:
        await admin.DeleteRoute(apb.DeleteRouteRequest(name=name))


@SQLITE_ONLY
@GOOD
@given(
    name=LABELS.filter(lambda s: s.strip()),
    role=st.sampled_from(["admin", "workspace-admin", "viewer"]),
    ttl=st.integers(0, 10 * 365 * 86_400),
    models=st.lists(st.from_regex(r"[a-z0-9.*-]{1,30}", fullmatch=True), unique=True, max_size=4),
)
async def test_valid_tokens_and_allow_lists_round_trip(
    admin: Any, world: dict[str, Any], name: str, role: str, ttl: int, models: list[str]
) -> None:
    workspaces = ["ws"] if role == "workspace-admin" else []
    created = await admin.CreateToken(
        apb.CreateTokenRequest(name=name, role=role, workspaces=workspaces, ttl_seconds=ttl)
    )
    try:
        assert (created.token.name, created.token.role) == (name.strip(), role)
        assert list(created.token.workspaces) == workspaces
        assert (created.token.expires_at_ms == 0) == (ttl == 0)
    finally:
        await admin.RevokeToken(apb.RevokeTokenRequest(id=created.token.id))
    ws = await admin.UpdateWorkspace(
        apb.UpdateWorkspaceRequest(
            workspace=pb.Workspace(
                name="ws", allowed_providers=["sim"], allowed_routes=["rt"], allowed_models=models
            ),
            update_mask=FieldMask(paths=["allowed_providers", "allowed_routes", "allowed_models"]),
        )
    )
    assert (list(ws.allowed_providers), list(ws.allowed_routes)) == (["sim"], ["rt"])
    assert list(ws.allowed_models) == models


# -- PostgreSQL: NUL and friends must be refused before the driver sees them ------------------

NUL_CASES = {
    "workspace.name": lambda v: new_ws(name=v),
    "workspace.description": lambda v: new_ws(description=v),
    "workspace.timezone": lambda v: new_ws(timezone=v),
    "workspace.alert_webhook": lambda v: new_ws(alert_webhook="https://h.example.com/" + v),
    "workspace.min_client_version": lambda v: new_ws(min_client_version=v),
    "workspace.redis_failure": lambda v: new_ws(redis_failure=v),
    "workspace.log_bodies": lambda v: new_ws(log_bodies=v),
    "key.name": lambda v: new_key(name=v),
    "key.models": lambda v: new_key(models=[v]),
    "provider.base_url": lambda v: new_prov(base_url="http://127.0.0.1:8099/" + v),
    "provider.api_key_env": lambda v: new_prov("anthropic", api_key_env=v),
    "provider.option": lambda v: new_prov(options={"latency_ms": v}),
    "provider.option.name": lambda v: new_prov(options={v: "1"}),
    "route.mode": lambda v: new_route(mode=v),
    "route.target.model": lambda v: new_route(targets=[pb.RouteTarget(provider="sim", model=v)]),
}


@settings(max_examples=4, deadline=None)
@given(data=st.data())
async def test_strings_with_nul_are_refused_on_every_backend(
    admin: Any, world: dict[str, Any], engine: Engine, data: st.DataObject
) -> None:
    """``A string literal cannot contain NUL`` from PostgreSQL would be INTERNAL: every string
    field must refuse NUL itself, on both backends."""
    for field, build in NUL_CASES.items():
        value = data.draw(inside("x1y", st.just("\0")) | st.just("\0"), label=field)
        method, request = build(value)
        details = await refused(admin, engine, method, request, "")
        assert "\0" not in details
