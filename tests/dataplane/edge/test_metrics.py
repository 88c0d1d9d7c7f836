"""``GET /metrics``: scraped after real requests through a data plane, and format rules."""

from __future__ import annotations

import re

import orjson

from dataplane.edge.metrics import Metrics
from dataplane.metering.record import RequestRecord
from dataplane.process.server import DataPlane
from gwcommon.prometheus import escape_label
from tests.dataplane.conftest import REVOKED, SECRET, usage_events

HEADERS = {
    "authorization": f"Bearer {SECRET}",
    "anthropic-version": "2023-06-01",
    "user-agent": "claude-cli/2.1.197 (external, sdk-cli)",
    "content-type": "application/json",
}
BODY = orjson.dumps(
    {"model": "claude-haiku-4-5", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}
)
SAMPLE = re.compile(
    r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\\n]|\\[\\"n])*",?)*\})? '
    r"(-?[0-9.e+-]+|\+Inf|NaN)$"
)


def parse(text: str) -> dict[str, float]:
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


def assert_valid(text: str) -> None:
    """Every family has HELP then TYPE before its samples; every sample line is well formed."""
    typed: set[str] = set()
    help_seen: set[str] = set()
    assert text.endswith("\n")
    for line in text.splitlines():
        if line.startswith("# HELP "):
            help_seen.add(line.split()[2])
        elif line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            assert name in help_seen and name not in typed
            assert kind in ("counter", "gauge", "histogram")
            typed.add(name)
        else:
            assert SAMPLE.match(line), line
            name = re.split(r"[{ ]", line)[0]
            base = re.sub(r"_(bucket|sum|count)$", "", name)
            assert name in typed or base in typed, line


async def test_scrape_after_requests(client, upstream, dataplane: DataPlane) -> None:
    for _ in range(2):
        r = await client.post("/v1/messages", content=BODY, headers=HEADERS)
        assert r.status_code == 200
    refused = await client.post(
        "/v1/messages", content=BODY, headers={**HEADERS, "authorization": f"Bearer {REVOKED}"}
    )
    assert refused.status_code == 401
    await usage_events(dataplane, 2)

    r = await client.get("/metrics")  # no key: unauthenticated like /healthz
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert_valid(r.text)
    m = parse(r.text)
    ws = 'workspace="team-a",provider="anthropic"'
    assert m['tollgate_requests_total{workspace="team-a",provider="anthropic",status="2xx"}'] == 2
    assert m[f"tollgate_request_duration_seconds_count{{{ws}}}"] == 2
    assert m[f'tollgate_request_duration_seconds_bucket{{{ws},le="+Inf"}}'] == 2
    assert m[f"tollgate_time_to_first_byte_seconds_count{{{ws}}}"] == 2
    # The fake answers 12 input, 42 output, 18000 cache-read tokens; haiku costs 5522 µ$.
    assert m[f'tollgate_tokens_total{{{ws},type="output"}}'] == 84
    assert m[f'tollgate_tokens_total{{{ws},type="cache_read"}}'] == 36000
    assert m[f"tollgate_cost_micros_total{{{ws}}}"] == 2 * 5522
    assert m['tollgate_refusals_total{workspace="",reason="auth"}'] == 1
    assert m['tollgate_upstream_attempts_total{provider="anthropic"}'] == 2
    assert m['tollgate_snapshot_info{version="v1"}'] == 1
    assert m["tollgate_usage_backlog"] >= 2  # no control plane here: nothing is acknowledged


async def test_upstream_failures_and_breaker_gauge(client, upstream, dataplane: DataPlane) -> None:
    dataplane.breaker.record("anthropic", False)  # one failed attempt
    r = await client.get("/metrics")
    assert 'tollgate_breaker_state{target="anthropic"}' in r.text


def test_label_escaping_and_refusal_reasons() -> None:
    assert escape_label('a"b\\c\nd') == 'a\\"b\\\\c\\nd'
    metrics = Metrics(breaker_states=lambda: {'we"ird\n': "open"}, snapshot_version=lambda: "v\\9")
    rec = RequestRecord(request_id="r", dataplane_id="dp", path="/v1/messages")
    rec.workspace = 'ws "quoted"'
    rec.fail(429, "rate_limit_error", "Budget of $1.00/day for workspace x is spent")
    metrics.observe(rec)
    rec2 = RequestRecord(request_id="r2", dataplane_id="dp", path="/v1/messages")
    rec2.fail(429, "rate_limit_error", "Rate limit of 5 requests per minute reached")
    metrics.observe(rec2)
    text = metrics.render().decode()
    assert_valid(text)
    assert 'tollgate_refusals_total{workspace="ws \\"quoted\\"",reason="budget"} 1' in text
    assert 'tollgate_refusals_total{workspace="",reason="rate_limit"} 1' in text
    assert 'tollgate_breaker_state{target="we\\"ird\\n"} 2' in text
    assert 'tollgate_snapshot_info{version="v\\\\9"} 1' in text
    assert 'tollgate_requests_total{workspace="",provider="",status="4xx"} 1' in text
