"""Client-supplied text on its way into a usage event: validated at the edge, cleaned, cut.

Every string a client controls (the model, the path, the session id, the user agent, metadata)
ends up in a usage event, so in the spool, the control plane's ledger, logs and alerts. One bad
string must neither stop usage reporting (PostgreSQL refuses NUL in text) nor grow memory (a
30 MB model name). Contract:

* :func:`check_model` accepts a model id of 1 to ``MODEL_CHARS`` (256) printable ASCII characters
  without spaces — every Anthropic, Bedrock (ARNs included) and Vertex id is one — and otherwise
  raises :class:`BadModel`: ``400 invalid_request_error`` saying what is wrong, carrying a cleaned,
  cut copy of the value so that the refused request is still recorded, visibly.
* :func:`clean` replaces control characters (C0 with NUL, DEL, C1) by U+FFFD and cuts to a length
  (:func:`gwcommon.usage_limits.cut`). It returns its argument unchanged in the common case, at
  the cost of one regex search, so it is cheap enough for every event.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from dataplane.errors import BadRequest
from gwcommon.usage_limits import MODEL_CHARS, cut

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_MODEL = re.compile(r"[\x21-\x7e]+")
_EXAMPLE = "Name the model to use, e.g. claude-sonnet-4-5."
_SHOWN = 60  # characters of a refused value quoted back in a message


@dataclass(frozen=True, slots=True)
class BadModel(BadRequest):
    """A refused ``model``; ``model`` is the value cleaned and cut, for the usage event."""

    model: str = ""


def clean(text: str, limit: int) -> str:
    """``text`` with control characters replaced by U+FFFD, cut to ``limit`` characters."""
    if len(text) > limit:
        text = cut(text, limit)
    # isprintable() is False for every control character (and for a few harmless ones, such
    # as NBSP, which the regex then keeps): the fast path for the common case.
    if text.isprintable() or _CONTROL.search(text) is None:
        return text
    return _CONTROL.sub("\ufffd", text)


def shown(text: str) -> str:
    """A refused value quoted in a message: escaped (repr), cut to a few dozen characters."""
    if len(text) <= _SHOWN:
        return repr(text)
    return f"{text[:_SHOWN]!r}…"


def check_model(value: object, what: str = "model") -> str:
    """``value`` if it is a usable model id; raises :class:`BadModel` (400) otherwise."""
    if not isinstance(value, str) or not value:
        raise BadModel(400, f"{what}: Field required. {_EXAMPLE}")
    if len(value) > MODEL_CHARS:
        raise BadModel(
            400,
            f"{what}: a model id has at most {MODEL_CHARS} characters; this one has "
            f"{len(value):,} ({shown(value)}). {_EXAMPLE}",
            model=clean(value, MODEL_CHARS),
        )
    if _MODEL.fullmatch(value) is None:
        raise BadModel(
            400,
            f"{what}: {shown(value)} is not a model id: use printable ASCII characters only, "
            f"without spaces or control characters. {_EXAMPLE}",
            model=clean(value, MODEL_CHARS),
        )
    return value
