"""ReportUsage against both databases (P2 finding 1): one odd event never fails a batch.

On PostgreSQL a NUL in any text column made the whole batch fail (DataError -> INTERNAL), and a
session id past the B-tree entry limit failed it as UNAVAILABLE: either way the data plane
resent the same batch for ever. Ingest now stores such events cleaned and cut, names an event
whose request id cannot be stored, and turns a database refusal of the data into
INVALID_ARGUMENT naming the event, so the data plane can set that one event aside.
"""

from __future__ import annotations

import pytest
from grpc import StatusCode

from controlplane.usage import ingest
from gwapi.v1 import telemetry_pb2 as tpb
from tests.controlplane.conftest import Clients, expect_error
from tests.controlplane.services.test_telemetry import event, report, totals


async def test_nul_and_overlong_text_are_stored_cleaned(
    dataplane: Clients, admin_clients: Clients
) -> None:
    bad = event(
        "odd-1", model="claude-sonnet-4-5\x00evil", session="s" * 10_000, meta={"team": "a\x00b"}
    )
    bad.user_agent = "claude-cli/2.1.197 \x00"
    bad.path = "/v1/" + "p" * 5000
    bad.error_message = "e\x00" * 5000
    bad.usage.priced_as = "x\x00"
    resp = await report(dataplane, [event("before"), bad, event("after")], seq=3)
    assert (resp.accepted, resp.acked_seq) == (3, 3)
    stored = await admin_clients.telemetry.GetLog(tpb.GetLogRequest(request_id="odd-1"))
    assert stored.model_requested == "claude-sonnet-4-5\ufffdevil"
    assert len(stored.session_id) == 256 and stored.session_id.endswith("…")
    assert dict(stored.metadata) == {"team": "a\ufffdb"}
    assert stored.user_agent == "claude-cli/2.1.197 \ufffd"
    assert len(stored.path) == 1024 and len(stored.error_message) == 1000
    assert stored.usage.priced_as == "x\ufffd"
    later = await report(dataplane, [event("later")], seq=4)  # nothing is stuck behind it
    assert later.accepted == 1
    assert (await totals(admin_clients)).requests == 4


async def test_a_request_id_with_nul_is_refused_naming_the_event(
    dataplane: Clients, admin_clients: Clients
) -> None:
    await expect_error(
        report(dataplane, [event("fine"), event("r\x00x")], seq=2),
        StatusCode.INVALID_ARGUMENT,
        "event #1: request_id 'r\\x00x' contains NUL",
    )


@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
async def test_a_database_refusal_names_the_event_instead_of_internal(
    dataplane: Clients, admin_clients: Clients, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Belt and braces for refusals ingest does not foresee: without sanitize, PostgreSQL
    refuses the NUL; the caller gets INVALID_ARGUMENT it can act on, not INTERNAL."""
    monkeypatch.setattr(ingest, "sanitize", lambda ev: False)
    await expect_error(
        report(dataplane, [event("good"), event("nul", model="m\x00")], seq=2),
        StatusCode.INVALID_ARGUMENT,
        "the database refused one of the 2 usage events of this batch",
    )
    await expect_error(
        report(dataplane, [event("nul", model="m\x00")], seq=2),
        StatusCode.INVALID_ARGUMENT,
        "usage event 'nul' was refused by the database",
    )
    assert (await report(dataplane, [event("good")], seq=3)).accepted == 1
