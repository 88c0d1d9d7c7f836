"""``deploy/grafana/tollgate.json`` reads only what the planes really export.

A real control plane (``gwctl controlplane serve --metrics-listen``) and a real data plane
(``gwctl dataplane serve``), both subprocesses, serve some traffic through the simulator: a
route whose first target is unreachable (upstream errors, an open breaker, a fallback), a
spent budget, an unknown key and a signed-in-looking token. Both ``/metrics`` are scraped and
parsed with ``prometheus_client``'s parser, and every query of every panel and variable is
held against that scrape: each metric exists and has samples, each label it matches or groups
by is one the metric carries, a literal ``label="value"`` matches a value the planes produced,
counters are read through ``rate()``/``increase()`` and quantiles over ``_bucket`` by ``le``.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gwapi.v1 import admin_pb2, common_pb2
from gwclient.client import GatewayClient
from tests.deploy.promql import PromQLError, Series, check, exported_series, read
from tests.e2e.providers_support import DEAD_URL, dead_then
from tests.e2e.test_gateway import ADMIN, DP_TOKEN, ROOT, ControlPlaneProcess, body, free_port

pytestmark = pytest.mark.e2e

DASHBOARD = ROOT / "deploy" / "grafana" / "tollgate.json"
UPSTREAM_KEY = "unused-upstream-key"
JWT_LOOKING = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJub2JvZHkifQ.c2lnbmF0dXJl"


@dataclass(frozen=True)
class Scrape:
    dataplane: str
    controlplane: str

    @property
    def series(self) -> dict[str, Series]:
        families = [
            *text_string_to_metric_families(self.dataplane),
            *text_string_to_metric_families(self.controlplane),
        ]
        return exported_series(families)


def _post(client: httpx.Client, secret: str, *, stream: bool, bearer: bool = False) -> int:
    auth = {"authorization": f"Bearer {secret}"} if bearer else {"x-api-key": secret}
    r = client.post(
        "/v1/messages",
        content=body("how much did this cost?", stream=stream),
        headers={**auth, "anthropic-version": "2023-06-01", "content-type": "application/json"},
    )
    r.read()
    return r.status_code


async def _configure(cp: ControlPlaneProcess) -> dict[str, str]:
    async with GatewayClient(cp.address, ADMIN) as admin:
        for ws in ("team-a", "team-b"):
            await admin.create_workspace(common_pb2.Workspace(name=ws))
        await admin.create_provider(common_pb2.Provider(name="sim", kind="simulator"))
        await admin.create_provider(
            common_pb2.Provider(name="dead", kind="anthropic", base_url=DEAD_URL, api_key_env="UK")
        )
        await admin.create_route(dead_then("sim"))
        spent = common_pb2.Limits(
            budgets=[common_pb2.Budget(amount_micros=1, period=common_pb2.PERIOD_DAY)]
        )
        secrets = {}
        for name, ws, route, provider, limits in (
            ("alice", "team-a", "main", "", None),
            ("bob", "team-b", "", "sim", None),
            ("broke", "team-b", "", "sim", spent),
        ):
            created = await admin.create_key(
                admin_pb2.CreateKeyRequest(
                    workspace=ws, name=name, limits=limits, route=route, provider=provider
                )
            )
            secrets[name] = created.secret
        return secrets


def _wait(what: str, predicate: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if predicate():
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not reached in {timeout} s")
        time.sleep(0.1)


@pytest.fixture(scope="module")
def scrape(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scrape]:
    tmp = tmp_path_factory.mktemp("dashboard")
    metrics_port = free_port()
    cp = ControlPlaneProcess(
        f"sqlite:///{tmp / 'cp.db'}",
        tmp / "cp.log",
        extra_args=("--metrics-listen", f"127.0.0.1:{metrics_port}"),
    )
    asyncio.run(cp.start())
    dp_port = free_port()
    dp_log = open(tmp / "dp.log", "ab")  # closed in the finally below
    dp: subprocess.Popen[bytes] | None = None
    try:
        secrets = asyncio.run(_configure(cp))
        env = {**os.environ, "TOLLGATE_DATAPLANE_TOKEN": DP_TOKEN, "UK": UPSTREAM_KEY}
        dp = subprocess.Popen(
            [
                sys.executable, "-m", "gwctl.main", "dataplane", "serve",
                "--listen", f"127.0.0.1:{dp_port}", "--control-plane", cp.address,
                "--state-dir", str(tmp / "dp"),
            ],
            cwd=ROOT, env=env, stdout=dp_log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        base = f"http://127.0.0.1:{dp_port}"
        with httpx.Client(base_url=base, timeout=30) as client:
            _wait("data plane healthy", lambda: client.get("/healthz").status_code == 200)
            for stream in (True, False, True):  # "dead" fails twice, its breaker opens
                assert _post(client, secrets["alice"], stream=stream) == 200
            for stream in (True, False):
                assert _post(client, secrets["bob"], stream=stream) == 200
            # The budget's last micro-dollar lets one request through (the tail), then it is spent.
            assert _post(client, secrets["broke"], stream=True) == 200
            assert _post(client, secrets["broke"], stream=True) == 429
            assert _post(client, "gw-not-a-key", stream=False) == 401
            assert _post(client, JWT_LOOKING, stream=False, bearer=True) == 401

            def total(text: str, family: str, **labels: str) -> float:
                (fam,) = [f for f in text_string_to_metric_families(text) if f.name == family]
                return sum(
                    s.value
                    for s in fam.samples
                    if all(s.labels.get(k) == v for k, v in labels.items())
                )

            def ingested() -> bool:
                # every request the data plane recorded is in the control plane's ledger
                served = total(client.get("/metrics").text, "tollgate_requests")
                cp_text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics").text
                return total(cp_text, "tollgate_cp_ingest_events", result="accepted") == served

            _wait("usage ingested by the control plane", ingested)
            dp_text = client.get("/metrics").text
        cp_text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics").text
        yield Scrape(dp_text, cp_text)
    finally:
        if dp is not None:
            dp.terminate()
            try:
                dp.wait(15)
            except subprocess.TimeoutExpired:
                dp.kill()
        dp_log.close()
        cp.stop()


def _dashboard() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return doc


def _panels(doc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in doc["panels"]:
        yield panel
        yield from panel.get("panels", [])  # a collapsed row keeps its panels inside


def _queries(doc: dict[str, Any]) -> Iterator[tuple[str, str, bool]]:
    """(where, expr, is a variable's query) for every query of the dashboard."""
    for panel in _panels(doc):
        for target in panel.get("targets", []):
            yield f"panel {panel['title']!r} {target['refId']}", target["expr"], False
    for var in doc["templating"]["list"]:
        if var["type"] == "query":
            query = var["query"]
            expr = query["query"] if isinstance(query, dict) else query
            yield f"variable ${var['name']}", expr, True


def _variables(doc: dict[str, Any]) -> frozenset[str]:
    return frozenset(v["name"] for v in doc["templating"]["list"])


def test_every_query_reads_metrics_the_planes_export(scrape: Scrape) -> None:
    doc = _dashboard()
    series = scrape.series
    problems = []
    read_names = set()
    for where, expr, is_variable in _queries(doc):
        try:
            query = read(expr)
        except PromQLError as exc:
            problems.append(f"{where}: {exc}")
            continue
        assert query.selectors, f"{where}: reads no metric: {expr}"
        read_names |= {s.name for s in query.selectors}
        problems += [
            f"{where}: {p}" for p in check(query, series, _variables(doc), variable=is_variable)
        ]
    assert not problems, "\n".join(problems)
    # What the issue asks the dashboard to show, by the metric that shows it.
    for name in (
        "tollgate_cost_micros_total",  # spend by workspace
        "tollgate_requests_total",  # req/s, errors by status class
        "tollgate_request_duration_seconds_bucket",  # p50/p95 latency
        "tollgate_time_to_first_byte_seconds_bucket",  # p50/p95 TTFB
        "tollgate_refusals_total",  # errors by type, budget refusals
        "tollgate_upstream_errors_total",
        "tollgate_breaker_state",
        "tollgate_usage_backlog",
        "tollgate_cp_ingest_events_total",
    ):
        assert name in read_names, name


def test_the_scrape_has_what_the_panels_show(scrape: Scrape) -> None:
    """The traffic really produced the states the panels are about (else the label checks above
    would check nothing)."""
    series = scrape.series
    assert series["tollgate_breaker_state"].values["target"] == {"dead"}
    assert "budget" in series["tollgate_refusals_total"].values["reason"]
    assert "auth" in series["tollgate_refusals_total"].values["reason"]
    assert series["tollgate_cost_micros_total"].values["workspace"] == {"team-a", "team-b"}
    assert series["tollgate_upstream_errors_total"].values["provider"] == {"dead"}
    assert series["tollgate_bearer_refusals_total"].sampled
    assert series["tollgate_cp_ingest_lag_seconds_bucket"].sampled


def test_the_checker_catches_what_would_be_an_empty_panel(scrape: Scrape) -> None:
    series = scrape.series
    variables = frozenset({"workspace"})

    def problems(expr: str) -> list[str]:
        return check(read(expr), series, variables)

    assert (
        problems(
            'sum by (workspace) (rate(tollgate_cost_micros_total{workspace=~"$workspace"}[5m]))'
        )
        == []
    )
    # a made-up metric name (a typo of a real one)
    assert problems("sum(rate(tollgate_request_total[5m]))") == [
        "tollgate_request_total is not exported by the data plane or the control plane"
    ]
    # a label the metric does not carry, in by () and in a matcher
    (p,) = problems("sum by (model) (rate(tollgate_requests_total[5m]))")
    assert "by (model)" in p
    (p,) = problems('rate(tollgate_refusals_total{provider="sim"}[5m])')
    assert "no label 'provider'" in p
    # a label value the planes never produce
    (p,) = problems('rate(tollgate_refusals_total{reason="budgets"}[5m])')
    assert "matches nothing" in p and "'budget'" in p
    # counters read raw, gauges through rate()
    (p,) = problems("sum(tollgate_requests_total)")
    assert "read it with rate()" in p
    (p,) = problems("rate(tollgate_usage_backlog[5m])")
    assert "gauge" in p
    # a quantile without le, or over something else than buckets
    (p,) = problems(
        "histogram_quantile(0.9, sum by (provider) (rate(tollgate_time_to_first_byte_seconds_bucket[5m])))"
    )
    assert "without le" in p
    (p,) = problems("histogram_quantile(0.9, rate(tollgate_time_to_first_byte_seconds_sum[5m]))")
    assert "not a _bucket series" in p
    # an undefined dashboard variable
    (p,) = problems('rate(tollgate_requests_total{provider=~"$provder"}[5m])')
    assert "$provder" in p
    # a typo in a function is not taken for a metric
    with pytest.raises(PromQLError, match="unknown function"):
        read("histogram_quantle(0.5, tollgate_time_to_first_byte_seconds_bucket)")
    with pytest.raises(PromQLError, match="unclosed"):
        read("sum(rate(tollgate_requests_total[5m])")
    with pytest.raises(PromQLError, match="unbalanced"):
        read("sum(rate(tollgate_requests_total[5m)))")


def test_the_reader_classifies_identifiers() -> None:
    q = read(
        'histogram_quantile(0.95, sum by (le, provider) (rate(tollgate_request_duration_seconds_bucket{workspace=~"$workspace", provider!="x"}[$__rate_interval]))) * 1e3'
    )
    (sel,) = q.selectors
    assert sel.name == "tollgate_request_duration_seconds_bucket"
    assert sel.matchers == (("workspace", "=~", "$workspace"), ("provider", "!=", "x"))
    assert sel.counter_function == "rate" and sel.in_histogram_quantile
    (use,) = q.label_uses
    assert use.labels == ("le", "provider") and use.metrics == (sel.name,)
    assert q.variables == {"workspace", "__rate_interval"}
    q = read("sum(rate(a_total[5m])) by (x) / on (y) group_left (z) max(b) offset 1h")
    assert [s.name for s in q.selectors] == ["a_total", "b"]
    assert [(u.keyword, u.labels, u.metrics) for u in q.label_uses] == [
        ("by", ("x",), ("a_total",)),
        ("on", ("y",), ("a_total", "b")),
        ("group_left", ("z",), ("a_total", "b")),
    ]
    q = read('label_values(tollgate_requests_total{workspace=~"$workspace"}, provider)')
    assert [s.name for s in q.selectors] == ["tollgate_requests_total"]
    assert q.label_uses[0].labels == ("provider",)


GRID_WIDTH = 24


def test_dashboard_is_an_importable_grafana_dashboard() -> None:
    doc = _dashboard()
    assert doc["uid"] and doc["title"] == "Tollgate"
    assert isinstance(doc["schemaVersion"], int) and doc["schemaVersion"] >= 36
    (ds,) = [v for v in doc["templating"]["list"] if v["type"] == "datasource"]
    assert ds["name"] == "datasource" and ds["query"] == "prometheus"
    datasource = {"type": "prometheus", "uid": "${datasource}"}
    panels = list(_panels(doc))
    assert len(panels) > 15
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    taken: set[tuple[int, int]] = set()
    for panel in panels:
        grid = panel["gridPos"]
        assert all(isinstance(grid[k], int) for k in ("h", "w", "x", "y")), panel["title"]
        assert 0 <= grid["x"] and grid["x"] + grid["w"] <= GRID_WIDTH, panel["title"]
        cells = {
            (grid["x"] + dx, grid["y"] + dy) for dx in range(grid["w"]) for dy in range(grid["h"])
        }
        assert not cells & taken, f"{panel['title']!r} overlaps another panel"
        taken |= cells
        if panel["type"] == "row":
            continue
        assert panel["type"] in {"timeseries", "stat", "bargauge", "state-timeline"}
        assert panel["title"] and panel.get("description"), panel
        assert panel["datasource"] == datasource, panel["title"]
        assert panel["targets"], panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip() and target["datasource"] == datasource
    for var in doc["templating"]["list"]:
        if var["type"] == "query":
            assert var["datasource"] == datasource
