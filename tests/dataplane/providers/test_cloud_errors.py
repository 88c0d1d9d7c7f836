"""What the client is told of a Bedrock/Vertex error: the code, never the cloud's free text,
except Anthropic's own validation messages that Claude Code acts on."""

from __future__ import annotations

import logging
import re

import pytest

from dataplane.providers.cloud_errors import client_message, log_original, safe_detail

CONTEXT = (
    "input length and `max_tokens` exceed context limit: 180000 + 32000 > 200000,"
    " decrease input length or `max_tokens` and try again"
)


@pytest.mark.parametrize(
    "message",
    [
        "prompt is too long: 201234 tokens > 200000 maximum",
        CONTEXT,
        "Input is too long for requested model.",
        "messages.3.content.0: unexpected `tool_use_id` found in `tool_result` blocks: toolu_01A."
        " Each `tool_result` block must have a corresponding `tool_use` block in the previous"
        " message.",
        "messages.0.content.1.image.source.base64: image exceeds 5 MB maximum: 7340032 bytes >"
        " 5242880 bytes",
        "max_tokens: 64000 > 32000, which is the maximum allowed number of output tokens for"
        " claude-x",
    ],
)
def test_anthropic_validation_messages_are_kept(message: str) -> None:
    assert safe_detail(message) == message


@pytest.mark.parametrize(
    "message",
    [
        "User: arn:aws:sts::123456789012:assumed-role/R/s is not authorized to perform: x",
        "Rate exceeded for account 123456789012",
        "Model use case details have not been submitted for this account.",
        "Permission 'aiplatform.endpoints.predict' denied on resource '//aiplatform.googleapis.com"
        "/projects/acme/locations/us-east5/…'",
        "Vertex AI API has not been used in project 4711 before or it is disabled.",
        # A field path is not enough when the rest looks like an account.
        "model: arn:aws:bedrock:us-east-1:123456789012:inference-profile/x is not valid",
        "messages.0: sa@acme.iam.gserviceaccount.com may not",
        "messages.0: see projects/acme-prod",
        "prompt is too long: 201234 tokens > 200000 maximum\nUser: arn:aws:iam::1:user/x",
        "",
    ],
)
def test_everything_else_is_dropped(message: str) -> None:
    assert safe_detail(message) == ""


def test_the_message_claude_code_parses_still_parses() -> None:
    told = client_message("bedrock", "b", "gwreq_1", 400, "ValidationException", CONTEXT)
    # Claude Code's own pattern (lowers max_tokens and retries).
    found = re.search(
        r"input length and `max_tokens` exceed context limit: (\d+) \+ (\d+) > (\d+)", told
    )
    assert found is not None and found.groups() == ("180000", "32000", "200000")
    assert told.startswith(
        "Amazon Bedrock (provider 'b') refused the request: ValidationException:"
    )


def test_codes_that_are_not_bare_names_are_replaced_by_the_status() -> None:
    told = client_message("vertex", "v", "gwreq_2", 502, "<html> arn:aws", "boom")
    assert told.startswith("Vertex AI (provider 'v') failed: HTTP 502. ")
    assert "arn" not in told and "boom" not in told and "gwreq_2" in told


def test_the_original_is_logged_on_one_line(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    log_original("bedrock", "b", "gwreq_3", 403, "AccessDeniedException", "a\nb", "aws-1")
    (record,) = caplog.records
    assert record.name == "tollgate.providers.bedrock" and record.levelno == logging.WARNING
    assert record.getMessage() == (
        "provider b: upstream error 403 AccessDeniedException for request gwreq_3"
        " (upstream request id aws-1): 'a\\nb'"
    )
