"""The kinds of resource the delta stream carries (``Resource.kind``): one list for the control
plane, which publishes them, and the data plane, which applies them (stdlib only).

The first three are the kinds that grow with the fleet (one resource per workspace, key or
developer); ``spend`` (budget seeds) has its own version and never changes the configuration's.
"""

BIG_KINDS = ("workspace", "key", "developer")
SMALL_KINDS = (
    "provider",
    "secret",
    "route",
    "price",
    "signing_key",
    "telemetry_destination",
    "sso",
)
CONFIG_KINDS = BIG_KINDS + SMALL_KINDS
SPEND_KIND = "spend"
KINDS = (*CONFIG_KINDS, SPEND_KIND)
# Held in memory only, never written to a data plane's disk cache.
SECRET_KINDS = frozenset({"secret", "signing_key"})
