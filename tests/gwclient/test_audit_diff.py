"""What an audit event changed, as gwctl audit and the console's Audit view show it."""

from __future__ import annotations

import json

from gwapi.v1 import admin_pb2
from gwclient import audit_diff


def event(
    before: dict[str, object] | None, after: dict[str, object] | None
) -> admin_pb2.AuditEvent:
    return admin_pb2.AuditEvent(
        action="workspace.update",
        before_json=json.dumps(before) if before is not None else "",
        after_json=json.dumps(after) if after is not None else "",
    )


def test_update_lists_changed_fields_flattened_without_bookkeeping() -> None:
    ev = event(
        {"name": "a", "description": "x", "limits": {"rpm": 5}, "updated_at_ms": "1"},
        {"name": "a", "description": "y", "limits": {"rpm": 5, "tpm": 9}, "updated_at_ms": "2"},
    )
    assert audit_diff.summary(ev) == "description, limits.tpm"
    assert audit_diff.diff_lines(ev) == [
        ("-", 'description: "x"'),
        ("+", 'description: "y"'),
        ("+", "limits.tpm: 9"),
        ("-", 'updated_at_ms: "1"'),
        ("+", 'updated_at_ms: "2"'),
    ]


def test_create_and_delete_have_no_summary_but_a_full_diff() -> None:
    created = event(None, {"name": "a", "models": ["x"]})
    assert audit_diff.summary(created) == ""
    assert audit_diff.diff_lines(created) == [("+", 'models: ["x"]'), ("+", 'name: "a"')]
    deleted = event({"name": "a"}, None)
    assert audit_diff.diff_lines(deleted) == [("-", 'name: "a"')]


def test_update_that_changed_nothing_says_so() -> None:
    same = event({"name": "a", "updated_at_ms": "1"}, {"name": "a", "updated_at_ms": "2"})
    assert audit_diff.summary(same) == "(no field changed)"


def test_unreadable_json_is_treated_as_empty() -> None:
    ev = admin_pb2.AuditEvent(before_json="{oops", after_json='["not", "an", "object"]')
    assert audit_diff.changes(ev) == []


def test_peer_and_actor_text() -> None:
    assert audit_diff.peer_text("ipv4:127.0.0.1:5123") == "127.0.0.1:5123"
    assert audit_diff.peer_text("ipv6:%5B::1%5D:5123") == "[::1]:5123"
    assert audit_diff.peer_text("") == "-"
    ev = admin_pb2.AuditEvent(actor="tok_1", actor_name="ci", actor_role="viewer")
    assert audit_diff.actor_text(ev) == "ci (viewer)"
    assert audit_diff.actor_text(admin_pb2.AuditEvent(actor="tok_2")) == "tok_2"
