"""Workspace settings: Redis failure mode and alert webhook URL."""

from __future__ import annotations

import pytest

from controlplane.domain.errors import InvalidArgument
from controlplane.domain.workspaces import validate_alert_webhook, validate_redis_failure


@pytest.mark.parametrize(
    ("given", "stored"),
    [("", "closed"), ("closed", "closed"), ("open", "open"), (" Open ", "open")],
)
def test_redis_failure(given: str, stored: str) -> None:
    assert validate_redis_failure(given) == stored


def test_redis_failure_refuses_other_words() -> None:
    with pytest.raises(InvalidArgument, match=r"use 'closed'.*or 'open'"):
        validate_redis_failure("fail-open")


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.example.com/services/T000/B000/XXXX",
        "http://93.184.216.34:8080/alerts?token=abc",
        "https://[2606:4700::1111]:8443/x",
        "http://localhost:8099/x",  # a name: checked when a delivery resolves it
    ],
)
def test_webhook_accepted(url: str) -> None:
    assert validate_alert_webhook(url) == url
    assert validate_alert_webhook(f"  {url} ") == url


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("http://127.0.0.1:8099/alerts?token=abc", "loopback"),
        ("https://[::1]:8443/x", "loopback"),
        ("http://10.20.30.40/x", "private"),
        ("http://172.31.255.1/x", "private"),
        ("http://192.168.0.1/x", "private"),
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://[fe80::1]/x", "link-local"),
        ("http://[fd00:ec2::254]/x", "private"),
        ("http://[::ffff:127.0.0.1]/x", "loopback (inside an IPv6 address)"),
        ("http://0.0.0.0:9/x", "unspecified"),
    ],
)
def test_internal_ip_literals_refused_unless_allowed(url: str, kind: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        validate_alert_webhook(url)
    message = str(info.value)
    assert f"is a {kind} address" in message
    assert "public addresses only" in message and "--allow-internal-webhooks" in message
    assert validate_alert_webhook(url, allow_internal=True) == url


def test_webhook_empty_means_none() -> None:
    assert validate_alert_webhook("") == ""


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://example.com/x", "http:// or https://"),
        ("hooks.example.com/x", "http:// or https://"),
        ("https:///path-only", "http:// or https://"),
        ("https://example.com/a b", "spaces"),
        ("https://example.com:99999/", "not a URL"),
        ("https://example.com:0/", "port 0"),
        ("https://" + "a" * 2100 + ".com/", "too long"),
    ],
)
def test_webhook_refused(url: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        validate_alert_webhook(url)


@pytest.mark.parametrize(
    "url",
    ["https://user:hunter2@example.com/hook", "https://token@example.com/", "ftp://u:hunter2@x/"],
)
def test_webhook_with_credentials_refused_without_echoing_them(url: str) -> None:
    with pytest.raises(InvalidArgument, match="credentials") as info:
        validate_alert_webhook(url)
    assert "hunter2" not in str(info.value) and "token@" not in str(info.value)
