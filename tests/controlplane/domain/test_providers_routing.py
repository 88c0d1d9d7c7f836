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
    assert [t.weight for t in p.targets] == [1, 1]  # 0 = unset = the default weight


def test_route_policy_limits_accepted() -> None:
    p = validate_policy(
        RoutePolicy(
            mode="loadbalance",
            targets=(
                Target("a", 3, "claude-sonnet-4-5@20250929"),
                Target("b", 1, "arn:aws:bedrock:eu-west-3:123:inference-profile/eu.x-v1:0"),
            ),
            retries=10,
            retry_on=(400, 599),
            timeout_connect_ms=3_600_000,
            timeout_first_byte_ms=0,
            timeout_idle_ms=1,
            cache_ttl_s=7 * 86_400,
            cache_sampled=True,
            breaker_failures=100,
            breaker_cooldown_s=3600,
        )
    )
    assert [t.weight for t in p.targets] == [3, 1] and p.cache_sampled


def _fb(**kw: object) -> RoutePolicy:
    return RoutePolicy(mode="fallback", targets=(Target("a"),), **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        (RoutePolicy(mode="random", targets=(Target("a"),)), "unknown route mode"),
        (RoutePolicy(mode="fallback", targets=()), "at least one target"),
        (RoutePolicy(mode="fallback", targets=(Target("a", -1),)), "at least 1"),
        (RoutePolicy(mode="fallback", targets=(Target("a"), Target("a"))), "twice"),
        (
            RoutePolicy(mode="fallback", targets=(Target("a", 1, "x"), Target("a", 1, "y"))),
            "twice",
        ),
        (RoutePolicy(mode="fallback", targets=(Target("A b"),)), "target provider"),
        (RoutePolicy(mode="fallback", targets=(Target("a", 1, "claude x"),)), "whitespace"),
        (RoutePolicy(mode="fallback", targets=(Target("a", 1, "m\x00"),)), "control"),
        (RoutePolicy(mode="fallback", targets=(Target("a", 1, "m" * 201),)), "at most 200"),
        (_fb(retries=11), "retries must be between 0 and 10"),
        (_fb(retries=-1), "retries"),
        (_fb(retry_on=(200,)), "400-599"),
        (_fb(retry_on=(600,)), "400-599"),
        (_fb(timeout_idle_ms=-1), "timeout_idle_ms must not be negative"),
        (_fb(timeout_connect_ms=3_600_001), "timeout_connect_ms must be at most"),
        (_fb(timeout_first_byte_ms=3_600_001), "1 h"),
        (_fb(cache_ttl_s=7 * 86_400 + 1), "7 days"),
        (_fb(breaker_failures=101), "breaker_failures must be at most 100"),
        (_fb(breaker_cooldown_s=3601), "breaker_cooldown_s"),
        (_fb(breaker_cooldown_s=-1), "negative"),
    ],
)
def test_route_policy_errors(policy: RoutePolicy, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        validate_policy(policy)
