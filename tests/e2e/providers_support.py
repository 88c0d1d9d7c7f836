"""Providers and routes the end-to-end tests configure: the cloud providers against the Bedrock
and Vertex fakes, and a breaker route whose first target is dead."""

from __future__ import annotations

from pathlib import Path

from gwapi.v1 import common_pb2


def bedrock_at(
    base_url: str,
    name: str = "bedrock",
    access_key_env: str = "FAKE_AK",
    secret_key_env: str = "FAKE_SK",
) -> common_pb2.Provider:
    """A Bedrock provider in ``us-east-1`` at ``base_url``, signing with the AWS key pair the
    data plane reads from ``access_key_env`` and ``secret_key_env``."""
    return common_pb2.Provider(
        name=name,
        kind="bedrock",
        base_url=base_url,
        options={
            "region": "us-east-1",
            "access_key_env": access_key_env,
            "secret_key_env": secret_key_env,
        },
    )


def vertex_at(
    base_url: str, project: str, credentials_file: Path, name: str = "vertex"
) -> common_pb2.Provider:
    """A Vertex provider in ``us-east5`` at ``base_url`` for ``project``, authenticating with
    the service-account file ``credentials_file``."""
    return common_pb2.Provider(
        name=name,
        kind="vertex",
        base_url=base_url,
        options={
            "project": project,
            "region": "us-east5",
            "credentials_file": str(credentials_file),
        },
    )


DEAD_URL = "http://127.0.0.1:9"  # the discard port: nothing listens, every call fails to connect


def dead_then(provider: str) -> common_pb2.Route:
    """Route ``main``: provider ``dead`` (an anthropic provider at :data:`DEAD_URL`, configured by
    the test) first, then ``provider``; the breaker opens after 2 failures for 10 minutes."""
    return common_pb2.Route(
        name="main",
        mode="fallback",
        targets=[
            common_pb2.RouteTarget(provider="dead"),
            common_pb2.RouteTarget(provider=provider),
        ],
        breaker_failures=2,
        breaker_cooldown_s=600,
    )
