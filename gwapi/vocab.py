"""The proto's vocabulary in the words people type, and the one reading of each field.

Hand-written (everything else in :mod:`gwapi` is generated). Two things live here:

* **Spellings.** An enum value is spelt as its name in lower case without the enum's prefix
  (``PROVIDER_KIND_BEDROCK`` ↔ ``"bedrock"``). :func:`choices` lists an enum's spellings in
  number order, so every list of choices, help text and validation message (gwctl's flags, the
  gateway file, the control plane's rules) follows the proto: a new value is a new word
  everywhere at once.
* **Readings.** Kinds, modes, policies and provider options travel twice for one release: as
  the enums and typed per-kind settings, and as the deprecated text fields older clients and
  data planes read. :func:`provider_kind`, :func:`provider_options`, :func:`route_mode`,
  :func:`redis_failure` and :func:`log_bodies` read a message the same way everywhere (the typed
  form when given, else the text), and :func:`fill_provider`, :func:`fill_route` and
  :func:`fill_workspace` write both forms from the text one. Provider options as text are a
  ``{field name: value}`` map, the form the control plane stores and the data plane's adapters
  read: the typed settings' field names ARE the option names.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from google.protobuf.descriptor import EnumDescriptor, FieldDescriptor
from google.protobuf.message import Message

from gwapi.v1 import common_pb2 as pb

# enum -> the prefix its value names carry
_PREFIXES: dict[str, str] = {}


def _prefix(enum: EnumDescriptor) -> str:
    prefix = _PREFIXES.get(enum.full_name)
    if prefix is None:
        unspecified = next(v.name for v in enum.values if v.number == 0)
        prefix = _PREFIXES[enum.full_name] = unspecified.removesuffix("UNSPECIFIED")
    return prefix


def choices(enum: EnumDescriptor) -> tuple[str, ...]:
    """Every spelling of ``enum`` but UNSPECIFIED, in number order: ``("fallback", "loadbalance")``."""
    prefix = _prefix(enum)
    values = sorted((v for v in enum.values if v.number != 0), key=lambda v: v.number)
    return tuple(v.name.removeprefix(prefix).lower() for v in values)


def spell(enum: EnumDescriptor, number: int) -> str:
    """``(RouteMode, 2)`` → ``"loadbalance"``; ``""`` for UNSPECIFIED or a number this code
    does not know (proto3 enums are open)."""
    value = enum.values_by_number.get(number)
    if value is None or number == 0:
        return ""
    return value.name.removeprefix(_prefix(enum)).lower()


def number(enum: EnumDescriptor, word: str) -> int:
    """``(RouteMode, "loadbalance")`` → 2; 0 (UNSPECIFIED) for ``""`` or an unknown word."""
    if not word or word != word.lower():
        return 0
    value = enum.values_by_name.get(_prefix(enum) + word.upper())
    return value.number if value is not None and value.number != 0 else 0


# The summable fields of a usage row (``telemetry.UsageRow``), in display order: ``gwctl usage``
# and ``gwctl report`` total them, and the ledger's hourly and daily rollups keep a column of each.
USAGE_COUNTERS = (
    "requests",
    "errors",
    "input_tokens",
    "output_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
    "cost_micros",
    "web_search_requests",
    "web_fetch_requests",
    "cost_saved_micros",
    "cache_hits",
)

KIND = pb.ProviderKind.DESCRIPTOR
MODE = pb.RouteMode.DESCRIPTOR
REDIS_FAILURE = pb.RedisFailure.DESCRIPTOR
LOG_BODIES = pb.LogBodies.DESCRIPTOR
AUTH = pb.AnthropicAuth.DESCRIPTOR
INFERENCE_PROFILE = pb.InferenceProfile.DESCRIPTOR

# The provider kind each typed settings message belongs to: the ``settings`` oneof's member
# names are the kinds' spellings.
_SETTINGS = pb.Provider.DESCRIPTOR.oneofs_by_name["settings"]
SETTINGS_FIELDS: dict[str, FieldDescriptor] = {f.name: f for f in _SETTINGS.fields}


def option_names(kind: str) -> tuple[str, ...]:
    """The options a kind has, in field-number order: its settings message's fields."""
    field = SETTINGS_FIELDS.get(kind)
    if field is None:
        return ()
    return tuple(f.name for f in sorted(field.message_type.fields, key=lambda f: f.number))


# -- readings -----------------------------------------------------------------------------------


def provider_kind(p: pb.Provider) -> str:
    """The provider's kind spelling: ``provider_kind``, else the member of ``settings`` set,
    else the deprecated ``kind`` text."""
    return spell(KIND, p.provider_kind) or (p.WhichOneof("settings") or "") or p.kind  # type: ignore[arg-type]


def _number_text(value: float | int) -> str:
    """How a typed number reads as option text: ``300.0`` → ``"300"``, ``2.5`` → ``"2.5"``."""
    if isinstance(value, float) and math.isfinite(value) and value == int(value):
        return str(int(value))
    return str(value)


def settings_to_options(settings: Message) -> dict[str, str]:
    """A typed settings message → ``{option name: text}`` (fields not given are left out)."""
    out: dict[str, str] = {}
    for field, value in settings.ListFields():
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            out[field.name] = json.dumps(
                dict(sorted(value.items())), separators=(",", ":"), ensure_ascii=False
            )
        elif field.enum_type is not None:
            word = spell(field.enum_type, value)
            if word:
                out[field.name] = word
        elif field.type in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
            out[field.name] = _number_text(float(value))
        elif field.type == FieldDescriptor.TYPE_STRING:
            if value:
                out[field.name] = value
        else:
            out[field.name] = _number_text(value)
    return dict(sorted(out.items()))


def provider_options(p: pb.Provider) -> dict[str, str]:
    """The provider's options as ``{name: text}``: from the typed settings when a member is
    set, else the deprecated ``options`` map."""
    member = p.WhichOneof("settings")
    if member is None:
        return dict(sorted(p.options.items()))
    return settings_to_options(getattr(p, member))


def route_mode(r: pb.Route) -> str:
    """``route_mode``'s spelling, else the deprecated ``mode`` text ("" when neither is given)."""
    return spell(MODE, r.route_mode) or r.mode


def redis_failure(w: pb.Workspace) -> str:
    return spell(REDIS_FAILURE, w.redis_failure_policy) or w.redis_failure


def log_bodies(w: pb.Workspace) -> str:
    return spell(LOG_BODIES, w.log_bodies_policy) or w.log_bodies


# -- writing both forms -------------------------------------------------------------------------


class OptionError(ValueError):
    """An option text that the kind's typed settings cannot hold (unknown name, not a number,
    unknown word): the message says which."""


def _typed_value(field: FieldDescriptor, name: str, text: str) -> Any:
    if field.enum_type is not None:
        value = number(field.enum_type, text)
        if not value:
            raise OptionError(
                f"invalid {name} {text[:40]!r}: use one of {', '.join(choices(field.enum_type))}"
            )
        return value
    if field.type in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        try:
            return float(text)
        except ValueError:
            raise OptionError(f"option {name!r} must be a number, got {text[:40]!r}") from None
    if field.type == FieldDescriptor.TYPE_STRING:
        return text
    try:
        return int(text)
    except ValueError:
        raise OptionError(f"option {name!r} must be a whole number, got {text[:40]!r}") from None


def options_to_settings(kind: str, options: Mapping[str, str]) -> Message | None:
    """``{name: text}`` → the kind's typed settings message (None for a kind without one).

    Raises :class:`OptionError` for a name the kind does not have or a value its field cannot
    hold; the control plane's rules (ranges, required options, credentials) are not applied.
    """
    member = SETTINGS_FIELDS.get(kind)
    if member is None:
        return None
    settings: Message = getattr(pb, member.message_type.name)()
    fields = member.message_type.fields_by_name
    for name, text in options.items():
        field = fields.get(name)
        if field is None:
            raise OptionError(f"unknown option {name!r} for a {kind} provider")
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            try:
                mapping = json.loads(text)
            except ValueError:
                raise OptionError(f"option {name!r} is not valid JSON") from None
            if not isinstance(mapping, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in mapping.items()
            ):
                raise OptionError(f"option {name!r} must be a JSON object of text to text")
            getattr(settings, name).update(mapping)
        else:
            setattr(settings, name, _typed_value(field, name, text))
    return settings


def fill_provider(p: pb.Provider, kind: str, options: Mapping[str, str]) -> pb.Provider:
    """Write ``kind`` and ``options`` into ``p`` in both forms; returns ``p``.

    Options the typed settings cannot hold (only possible for text stored by another version)
    are kept in the text form only.
    """
    p.kind = kind
    p.provider_kind = number(KIND, kind)  # type: ignore[assignment]
    p.options.clear()
    p.options.update(options)
    try:
        settings = options_to_settings(kind, options)
    except OptionError:
        settings = None
    if settings is not None:
        getattr(p, SETTINGS_FIELDS[kind].name).CopyFrom(settings)
    return p


def fill_route(r: pb.Route, mode: str) -> pb.Route:
    r.mode = mode
    r.route_mode = number(MODE, mode)  # type: ignore[assignment]
    return r


def fill_workspace(w: pb.Workspace, redis_failure: str, log_bodies: str) -> pb.Workspace:
    w.redis_failure = redis_failure
    w.redis_failure_policy = number(REDIS_FAILURE, redis_failure)  # type: ignore[assignment]
    w.log_bodies = log_bodies
    w.log_bodies_policy = number(LOG_BODIES, log_bodies)  # type: ignore[assignment]
    return w


# Each typed field → the deprecated text field it replaces (update masks may name either).
TEXT_FIELDS: dict[str, str] = {
    "provider_kind": "kind",
    **{name: "options" for name in SETTINGS_FIELDS},
    "route_mode": "mode",
    "redis_failure_policy": "redis_failure",
    "log_bodies_policy": "log_bodies",
}
