"""Regenerate the README's console screenshots from the fake client's fixed data.

    .venv/bin/python -m tests.tui.make_screenshots

Writes docs/tui-overview.svg and docs/tui-logs.svg (80x24), docs/tui-developers.svg (150x10, wide
enough for every activity column); UTC and a fixed clock, so the files only change when the UI
does.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from gwapi.v1 import common_pb2, telemetry_pb2
from tests.fakes.admin_client import FakeAdminClient
from tests.tui.console_data import console_fake, log_event
from tui.screenshot import export_svg

DOCS = Path(__file__).resolve().parents[2] / "docs"
FIXED_NOW = 1_700_000_600.0


def event(
    n: int, usage: common_pb2.Usage | None = None, **fields: object
) -> telemetry_pb2.UsageEvent:
    made = log_event(n, **fields)
    if usage is not None:
        made.usage.CopyFrom(usage)
    return made


def readme_client() -> FakeAdminClient:
    """The fake control plane with a livelier log: a fallback, a refusal, a cache hit, Opus."""
    client = console_fake(initial_logs=0)
    fallback = [
        telemetry_pb2.Attempt(
            provider="anthropic", status=529, outcome="fell_back", error_type="overloaded_error"
        ),
        telemetry_pb2.Attempt(provider="bedrock", status=200, outcome="served"),
    ]
    client.initial_logs = [
        event(1),
        event(2, model_requested="claude-opus-4", model_served="claude-opus-4",
                  usage=common_pb2.Usage(input_tokens=24_000, output_tokens=1_800,
                                         cost_micros=495_000)),
        event(3, provider="bedrock", attempts=2, attempt_log=fallback),
        event(4, model_requested="claude-haiku-4", model_served="claude-haiku-4",
                  usage=common_pb2.Usage(input_tokens=3_200, output_tokens=150,
                                         cost_micros=3_950)),
        event(5, status=429, provider="", model_served="",
                  usage=common_pb2.Usage()),
        event(6, usage=common_pb2.Usage(input_tokens=850, cache_read_input_tokens=42_000,
                                            output_tokens=640, cost_micros=25_000)),
        event(7),
        event(8, status=502, provider="sim", model_served="claude-sonnet-4",
                  usage=common_pb2.Usage()),
        event(9, model_requested="claude-opus-4", model_served="claude-opus-4",
                  usage=common_pb2.Usage(input_tokens=61_000, output_tokens=3_100,
                                         cost_micros=1_147_500)),
        event(10),
    ]  # fmt: skip
    return client


async def main() -> None:
    os.environ["TZ"] = "UTC"  # the log view's time column is local time
    time.tzset()
    DOCS.mkdir(exist_ok=True)
    await export_svg(
        readme_client(), "overview", DOCS / "tui-overview.svg", clock=lambda: FIXED_NOW
    )
    client = readme_client()
    await export_svg(
        client, "logs", DOCS / "tui-logs.svg", clock=lambda: FIXED_NOW,
        min_rows=len(client.initial_logs),
    )  # fmt: skip
    client = readme_client()
    await export_svg(
        client, "developers", DOCS / "tui-developers.svg", clock=lambda: FIXED_NOW,
        min_rows=len(client.developers), size=(150, 10),  # wide: every activity column
    )  # fmt: skip
    print(f"wrote {DOCS / 'tui-overview.svg'}, {DOCS / 'tui-logs.svg'} and tui-developers.svg")


if __name__ == "__main__":
    asyncio.run(main())
