"""The exception tree: the drawing in dataplane/errors.py's docstring is the class hierarchy, and a
kind never changes what the client reads."""

from __future__ import annotations

import re

import orjson

from dataplane import errors
from dataplane.clienttext import BadModel
from dataplane.errors import GatewayError


def _drawn() -> dict[str, str]:
    """class name -> its parent's, read from the module docstring's tree."""
    assert errors.__doc__ is not None
    parents: dict[str, str] = {}
    stack: list[tuple[int, str]] = []
    for line in errors.__doc__.splitlines():
        match = re.search(r"[A-Z]\w+", line)
        if (
            match is None
            or not line.startswith("    ")
            or set(line[: match.start()]) - set(" │├└─")
        ):
            continue
        depth, name = match.start(), match.group()
        while stack and stack[-1][0] >= depth:
            stack.pop()
        parents[name] = stack[-1][1] if stack else ""
        stack.append((depth, name))
    return parents


def test_the_drawn_tree_is_the_class_hierarchy() -> None:
    drawn = _drawn()
    classes = {
        name: cls
        for name, cls in vars(errors).items()
        if isinstance(cls, type) and issubclass(cls, GatewayError)
    }
    classes["BadModel"] = BadModel
    assert set(drawn) == set(classes)  # every class is drawn, and nothing else
    for name, parent in drawn.items():
        (base,) = classes[name].__bases__
        assert base.__name__ == (parent or "Exception"), name


def test_a_kind_renders_as_its_status_says() -> None:
    """Subclasses change nothing on the wire: the same status, type and body as before."""
    cases = [
        (errors.bad_request("x"), errors.BadRequest, 400, "invalid_request_error"),
        (errors.unauthenticated("x"), errors.Unauthenticated, 401, "authentication_error"),
        (errors.forbidden("x"), errors.Forbidden, 403, "permission_error"),
        (errors.not_found("x"), errors.NotFound, 404, "not_found_error"),
        (errors.too_large(2 * 1024 * 1024), errors.RequestTooLarge, 413, "request_too_large"),
        (errors.LimitError(429, "x"), errors.LimitError, 429, "rate_limit_error"),
        (errors.Unavailable(503, "x"), errors.Unavailable, 503, "overloaded_error"),
        (errors.UpstreamTimeout(504, "x"), errors.UpstreamError, 504, "timeout_error"),
    ]
    for err, kind, status, etype in cases:
        assert isinstance(err, kind) and err.status == status and err.error_type == etype
        body = orjson.loads(errors.error_response_body(err.error_type, err.message, "gwreq_1"))
        assert body == {
            "type": "error",
            "error": {"type": etype, "message": err.message},
            "request_id": "gwreq_1",
        }


def test_a_failed_answer_is_a_timeout_only_when_the_provider_went_silent() -> None:
    silent = errors.answer_failed(errors.UpstreamTimeout(504, "slow"), "failed; please retry.")
    assert type(silent) is errors.UpstreamTimeout and silent.status == 504
    for cause in (errors.UpstreamProtocolError(502, "cut"), ValueError("a bug")):
        other = errors.answer_failed(cause, "failed; please retry.")
        assert type(other) is errors.UpstreamProtocolError and other.status == 502
        assert other.message == "failed; please retry."
