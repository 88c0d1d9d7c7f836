"""`gwctl logs tail --status/--model`: which requests are shown."""

from __future__ import annotations

import argparse
import asyncio

import pytest

from gwapi.v1 import telemetry_pb2
from gwctl import logs
from tests.fakes.admin_client import FakeAdminClient


def ev(i: int, status: int, model: str) -> telemetry_pb2.UsageEvent:
    return telemetry_pb2.UsageEvent(request_id=f"r{i}", status=status, model_served=model)


EVENTS = [
    ev(1, 200, "claude-opus-4-8"),
    ev(2, 429, "claude-sonnet-4-5"),
    ev(3, 529, "claude-opus-4-8"),
    ev(4, 404, "claude-opus-4-8"),
    ev(5, 200, "claude-haiku-4-5"),
]


def args(**kw: object) -> argparse.Namespace:
    base = {
        "follow": False,
        "lines": 20,
        "workspace": "",
        "key": "",
        "status": "",
        "model": "",
        "output": "json",
    }
    return argparse.Namespace(**{**base, **kw})


def shown(capsys: pytest.CaptureFixture[str], **kw: object) -> list[str]:
    import orjson

    client = FakeAdminClient(logs=EVENTS)
    assert asyncio.run(logs.tail(client, args(**kw))) == 0  # type: ignore[arg-type]
    return [e["request_id"] for e in orjson.loads(capsys.readouterr().out)]


def test_status_class_code_and_model_glob(capsys: pytest.CaptureFixture[str]) -> None:
    assert shown(capsys, status="4xx") == ["r2", "r4"]
    assert shown(capsys, status="529") == ["r3"]
    assert shown(capsys, model="*opus*") == ["r1", "r3", "r4"]
    assert shown(capsys, status="2xx", model="*haiku*") == ["r5"]
    assert shown(capsys, model="*opus*", lines=1) == ["r4"]  # the last N that match
    assert shown(capsys) == ["r1", "r2", "r3", "r4", "r5"]


def test_bad_status_is_a_usage_error() -> None:
    assert logs.status_filter("4XX") == "4xx"
    for bad in ("4x", "abc", "6xx", "40"):
        with pytest.raises(argparse.ArgumentTypeError, match="like 429"):
            logs.status_filter(bad)
