import pytest

from controlplane.domain import providers
from controlplane.domain.errors import InvalidArgument
from controlplane.domain.routing import RoutePolicy, Target, validate_policy


@pytest.mark.parametrize(
    ("url", "kind", "expected"),
    [
        ("", "anthropic", "https://api.anthropic.com"),
        ("", "bedrock", ""),
        ("https://api.anthropic.com/", "anthropic", "https://api.anthropic.com"),
        ("http://127.0.0.1:8099", "simulator", "http://127.0.0.1:8099"),
        ("https://proxy.internal/anthropic/", "anthropic", "https://proxy.internal/anthropic"),
    ],
)
def test_base_url_ok(url: str, kind: str, expected: str) -> None:
    assert providers.normalize_base_url(url, kind) == expected


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("https://api.anthropic.com/v1", "without /v1"),
        ("https://api.anthropic.com/v1/", "without /v1"),
        ("ftp://x", "http"),
        ("api.anthropic.com", "http"),
        ("https://user:pw@host", "credentials"),
        ("https://host/?a=1", "query"),
        ("https://host:99999", "port"),
    ],
)
def test_base_url_bad(url: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        providers.normalize_base_url(url, "anthropic")


def test_kind_env_options() -> None:
    assert providers.validate_kind("vertex") == "vertex"
    with pytest.raises(InvalidArgument, match="anthropic, simulator, bedrock, vertex"):
        providers.validate_kind("openai")
    assert providers.validate_api_key_env("ANTHROPIC_API_KEY") == "ANTHROPIC_API_KEY"
    assert providers.validate_api_key_env("") == ""
    with pytest.raises(InvalidArgument, match="never the key itself"):
        providers.validate_api_key_env("sk-ant-api03-abcdef")
    assert providers.validate_options(
        {"region": "us-east-1", "access_key_env": "AK", "secret_key_env": "SK"}, "bedrock"
    ) == {"access_key_env": "AK", "region": "us-east-1", "secret_key_env": "SK"}
    for bad in ({"api_key": "x"}, {"secret": "x"}, {"auth": "sk-ant-123"}, {"Bad Key": "1"}):
        with pytest.raises(InvalidArgument):
            providers.validate_options(bad, "anthropic")


def test_route_policy() -> None:
    p = validate_policy(
        RoutePolicy(mode="fallback", targets=(Target("a"), Target("b")), retry_on=(529, 429, 529))
    )
    assert p.retry_on == (429, 529)
    assert [t.provider for t in p.targets] == ["a", "b"]  # order is meaningful: kept


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        (RoutePolicy(mode="random", targets=(Target("a"),)), "unknown route mode"),
        (RoutePolicy(mode="fallback", targets=()), "at least one target"),
        (RoutePolicy(mode="loadbalance", targets=(Target("a"),)), "weight > 0"),
        (RoutePolicy(mode="fallback", targets=(Target("a", -1),)), "negative"),
        (RoutePolicy(mode="fallback", targets=(Target("a"), Target("a"))), "twice"),
        (RoutePolicy(mode="fallback", targets=(Target("a"),), retries=11), "retries"),
        (RoutePolicy(mode="fallback", targets=(Target("a"),), retry_on=(200,)), "400-599"),
        (RoutePolicy(mode="fallback", targets=(Target("a"),), timeout_idle_ms=-1), "timeout_idle"),
    ],
)
def test_route_policy_errors(policy: RoutePolicy, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        validate_policy(policy)
