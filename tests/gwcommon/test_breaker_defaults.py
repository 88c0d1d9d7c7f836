"""The breaker's defaults, defined once (gwcommon.breaker_defaults), are what every part applies
and shows for a route that leaves them unset."""

from __future__ import annotations

from types import MappingProxyType

from dataplane.config.snapshot import ProviderConfig, route_from_pb
from gwapi.v1 import common_pb2
from gwcommon import breaker_defaults
from gwctl.routes import describe_breaker


def test_an_unset_route_gets_the_shared_defaults() -> None:
    route = common_pb2.Route(name="r", targets=[common_pb2.RouteTarget(provider="p")])
    provider = ProviderConfig("p", "simulator", "", "", ())
    parsed = route_from_pb(route, MappingProxyType({"p": provider}))
    assert parsed.breaker_failures == breaker_defaults.FAILURES == 5
    assert parsed.breaker_cooldown_s == breaker_defaults.COOLDOWN_S == 30
    assert describe_breaker(route) == "after 5 (default) failures, skip for 30s (default)"
    set_route = common_pb2.Route(breaker_failures=2, breaker_cooldown_s=7)
    assert describe_breaker(set_route) == "after 2 failures, skip for 7s"
