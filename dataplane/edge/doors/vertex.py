"""The Vertex door: clients configured for Google Vertex AI (``CLAUDE_CODE_USE_VERTEX=1``)::

    POST /vertex/v1/projects/{p}/locations/{r}/publishers/anthropic/models/{model}:streamRawPredict
    POST /vertex/v1/projects/{p}/locations/{r}/publishers/anthropic/models/{model}:rawPredict
    POST /vertex/v1/projects/{p}/locations/{r}/publishers/anthropic/models/count-tokens:rawPredict

Vertex's Claude API answers in Anthropic's own format (SSE and JSON), so only the request is
rewritten (``anthropic_version`` dropped, ``model`` taken from the path); the answer passes
through untouched. The project and region in the path are the client's view and are ignored: the
key's provider decides where the request really goes.
"""

from __future__ import annotations

import re

from dataplane.asgi import Header, Scope
from dataplane.clienttext import check_model
from dataplane.edge.doors.anthropic import rewritten
from dataplane.edge.doors.base import AnthropicErrors, Prepared, StreamEncoder
from dataplane.edge.doors.body import parse_object
from dataplane.errors import not_found
from dataplane.metering.pricing import normalize_model

_PATH = re.compile(
    r"^/vertex/v1/projects/[^/]+/locations/[^/]+/publishers/anthropic/models/"
    r"(?P<model>[^/:]+):(?P<verb>rawPredict|streamRawPredict)$"
)


class VertexDoor(AnthropicErrors):
    name = "vertex"
    forwards_query = False

    def prepare(self, scope: Scope, body: bytes, headers: tuple[Header, ...]) -> Prepared:
        match = _PATH.match(scope["path"])
        if match is None:
            raise not_found(
                f"Not found: {scope['path']}. Vertex clients use /vertex/v1/projects/P/locations/R/"
                "publishers/anthropic/models/MODEL:streamRawPredict (or :rawPredict)."
            )
        obj = parse_object(body)
        obj.pop("anthropic_version", None)
        count_only = match["model"] == "count-tokens"
        raw_model = check_model(obj.get("model") if count_only else match["model"])
        model = normalize_model(raw_model)
        if not model.startswith("claude-"):
            raise not_found(f"Model '{raw_model}' is not a Claude model this gateway can route.")
        obj["model"] = model
        stream = obj.get("stream") is True and not count_only
        return rewritten(obj, model, stream, count_only, headers)

    def encoder(self) -> StreamEncoder | None:
        return None
