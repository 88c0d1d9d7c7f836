"""``gwctl developers``, ``usage --by developer``, and the developer in ``logs``/``sessions``,
against a real control plane whose developers signed in through the real sign-in path (the
SignIn calls a data plane makes, the strict fake identity provider as the IdP). Usage enters
through Telemetry.ReportUsage with the data-plane token, as a data plane sends it.
"""

from __future__ import annotations

import io
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from gwapi.v1 import common_pb2, telemetry_pb2
from gwctl.main import main
from tests.gwctl import cli
from tests.gwctl.cli import DATAPLANE, fields, gw, gw_json, report
from tests.gwctl.signin_support import CLIENT_SECRET, MASTER_KEY, Login, sign_in, threaded_idp
from tests.gwctl.threaded_cp import threaded_control_plane

pytestmark = pytest.mark.e2e

ALICE = Login(sub="sub-alice", email="alice@example.com", name="Alice", groups=["platform-eng"])
BOB = Login(sub="sub-bob", email="bob@example.com", name="Bob", groups=["platform-eng", "x"])
CAROL = Login(sub="sub-carol", email="carol@example.com", name="Carol", groups=["platform-eng"])
ALICE_SESSION = "sess-alice-" + uuid.uuid4().hex[:8]


class Gateway:
    def __init__(self, address: str, db: Path) -> None:
        self.address = address
        self.db = db
        self.ids: dict[str, str] = {}  # email -> developer id


def run(*argv: str, stdin: str = "") -> tuple[int, str]:
    """gwctl outside a test (fixtures): exit code and stdout."""
    out, saved = io.StringIO(), (sys.stdin, sys.stdout)
    sys.stdin, sys.stdout = io.StringIO(stdin), out
    try:
        return main(list(argv)), out.getvalue()
    finally:
        sys.stdin, sys.stdout = saved


def usage_event(
    n: int, cost: int, *, developer: tuple[str, str] = ("", ""), key: str = "", session: str = ""
) -> telemetry_pb2.UsageEvent:
    return telemetry_pb2.UsageEvent(
        request_id=f"req_dev_{n}_{uuid.uuid4().hex[:6]}",
        time_ms=int(time.time() * 1000) - 5_000 + n,
        workspace="platform",
        key_id=key,
        key_name="ci-bot" if key else "",
        developer_id=developer[0],
        developer_email=developer[1],
        session_id=session or f"sess-{n}",
        model_requested="claude-sonnet-4-5",
        model_served="claude-sonnet-4-5",
        provider="sim",
        attempts=1,
        status=200,
        latency_ms=500,
        usage=common_pb2.Usage(input_tokens=1000, output_tokens=100, cost_micros=cost),
    )


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """Sign-in configured against the fake IdP; alice, bob and carol signed in to workspace
    platform (group platform-eng, $50/day and 120 rpm each, target sim); usage reported."""
    db = tmp_path_factory.mktemp("cp") / "tollgate.db"
    settings = cli.settings(f"sqlite:///{db}", master_key=MASTER_KEY)
    mp = pytest.MonkeyPatch()
    with threaded_control_plane(settings) as address, threaded_idp() as idp:
        cli.point_gwctl_at(mp, address)
        gw = Gateway(address, db)
        try:
            assert run("sso", "set", "--issuer", idp.issuer, "--client-id", idp.client_id,
                       "--client-secret-stdin", stdin=CLIENT_SECRET)[0] == 0  # fmt: skip
            assert run("providers", "create", "sim", "--kind", "simulator")[0] == 0
            assert run("workspaces", "create", "platform", "--sso-group", "platform-eng",
                       "--member-budget", "50/day", "--member-rpm", "120",
                       "--member-provider", "sim")[0] == 0  # fmt: skip
            for login in (ALICE, BOB, CAROL):
                sign_in(address, DATAPLANE, idp, login)
                code, out = run("developers", "show", login.email, "-o", "json")
                assert code == 0
                gw.ids[login.email] = orjson.loads(out)["id"]
            alice = (gw.ids[ALICE.email], ALICE.email)
            bob = (gw.ids[BOB.email], BOB.email)
            report(
                address,
                [
                    usage_event(1, 600_000, developer=alice, session=ALICE_SESSION),
                    usage_event(2, 400_000, developer=alice, session=ALICE_SESSION),
                    usage_event(3, 250_000, developer=bob),
                    usage_event(4, 100_000, key="key_ci"),
                ],
            )
            yield gw
        finally:
            mp.undo()


@pytest.fixture(autouse=True)
def env(gateway: Gateway, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    cli.point_gwctl_at(monkeypatch, gateway.address)
    capsys.readouterr()


def table(text: str) -> dict[str, list[str]]:
    """Rows of a table by their first cell, cells split on runs of two spaces."""
    rows = {}
    for line in text.splitlines()[1:]:
        cells = [c.strip() for c in line.split("  ") if c.strip()]
        if cells:
            rows[cells[0]] = cells
    return rows


def test_list_shows_who_signed_in_and_their_spend(
    gateway: Gateway, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = gw(capsys, "developers", "list", "-w", "platform")
    assert code == 0, err
    header = out.splitlines()[0].split()
    assert header[:4] == ["EMAIL", "NAME", "WORKSPACE", "LAST"]
    rows = table(out)
    alice = rows[ALICE.email]
    assert alice[1:3] == ["Alice", "platform"]
    assert alice[4] == "active"
    assert alice[5] == "$1.00 of $50.00/day (2.0 %)"
    assert alice[6] == "1" and alice[7] == gateway.ids[ALICE.email]
    assert rows[BOB.email][5] == "$0.25 of $50.00/day (0.5 %)"

    docs = {d["email"]: d for d in gw_json(capsys, "developers", "list", "-w", "platform")}
    assert set(docs) >= {ALICE.email, BOB.email}
    doc = docs[ALICE.email]
    assert doc["status"] == "active" and doc["active_sessions"] == 1
    assert doc["budgets"] == ["$50/day"] and doc["limits_source"] == "workspace member limits"
    assert doc["spend"][0]["spent_usd"] == "1.000000"
    assert doc["last_sign_in"] and doc["groups"] == ["platform-eng"]
    assert gw_json(capsys, "developers", "list", "-w", "other") == []


def test_show_by_email_or_id(gateway: Gateway, capsys: pytest.CaptureFixture[str]) -> None:
    dev_id = gateway.ids[BOB.email]
    for who in (BOB.email, dev_id, BOB.email.upper()):
        code, out, err = gw(capsys, "developers", "show", who)
        assert code == 0, err
        shown = fields(out)
        assert shown["id"] == dev_id and shown["email"] == BOB.email
        assert shown["groups"] == "platform-eng, x" and shown["subject"] == "sub-bob"
        assert shown["limits"] == "$50/day, rpm 120 (workspace member limits)"
        assert shown["spend/day"].startswith("$0.25 of $50.00/day")
        assert shown["active sessions"] == "1"
    code, _, err = gw(capsys, "developers", "show", "nobody@example.com")
    assert code == 1 and err == "error: developer 'nobody@example.com' not found\n"
    code, _, err = gw(capsys, "developers", "show", "not-an-id")
    assert code == 1 and "neither a developer id" in err


def test_update_sets_and_clears_a_developers_own_limits(
    gateway: Gateway, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = gw(capsys, "developers", "update", BOB.email, "--budget", "10/day",
                        "--rpm", "5")  # fmt: skip
    assert code == 0, err
    assert fields(out)["limits"] == "$10/day, rpm 5 (own)"
    doc = gw_json(capsys, "developers", "update", BOB.email, "--tpm", "1000")  # only that
    assert doc["has_limits"] is True and doc["limits_source"] == "own"
    assert doc["effective_limits"]["rpm"] == 5 and doc["effective_limits"]["tpm"] == 1000
    assert doc["budgets"] == ["$10/day"]

    doc = gw_json(capsys, "developers", "update", BOB.email, "--clear-limits")
    assert doc["has_limits"] is False and doc["limits_source"] == "workspace member limits"
    assert doc["effective_limits"]["rpm"] == 120 and doc["budgets"] == ["$50/day"]

    code, _, err = gw(capsys, "developers", "update", BOB.email)
    assert code == 2 and "nothing to update" in err
    code, _, err = gw(capsys, "developers", "update", BOB.email, "--clear-limits", "--rpm", "1")
    assert code == 2 and "give it alone" in err


def test_disable_offboards_and_enable_lets_them_back(
    gateway: Gateway, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = gw(capsys, "developers", "disable", CAROL.email)
    assert code == 2 and "--yes" in err  # stdin is not a terminal: never guesses
    code, out, err = gw(capsys, "developers", "disable", CAROL.email, "--yes")
    assert code == 0, err
    assert out.startswith(f"disabled developer {CAROL.email} ({gateway.ids[CAROL.email]}")
    listed = table(gw(capsys, "developers", "list", "-w", "platform")[1])
    assert CAROL.email not in listed and ALICE.email in listed
    everyone = table(gw(capsys, "developers", "list", "--include-disabled")[1])
    assert everyone[CAROL.email][4] == "disabled" and everyone[CAROL.email][6] == "0"
    assert fields(gw(capsys, "developers", "show", CAROL.email)[1])["disabled"] != "-"

    doc = gw_json(capsys, "developers", "enable", CAROL.email)
    assert doc["status"] == "active" and doc["disabled_at_ms"] == 0
    assert CAROL.email in table(gw(capsys, "developers", "list")[1])

    carol_id = gateway.ids[CAROL.email]
    events = gw_json(capsys, "audit", "--kind", "developer")
    mine = [e["action"] for e in events if e["resource"] == carol_id]
    assert mine[:3] == ["developer.enable", "developer.disable", "developer.sign_in"]
    sso = gw_json(capsys, "audit", "--kind", "sso")
    assert [e["action"] for e in sso] == ["sso.set"]


def test_usage_by_developer_metered(gateway: Gateway, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = gw(capsys, "usage", "--by", "developer", "--since", "1h")
    assert code == 0, err
    assert out.splitlines()[0].split()[:2] == ["DEVELOPER", "WORKSPACE"]
    rows = table(out)
    assert rows[ALICE.email][1:5] == ["platform", "2", "2,200", "1.000000"]
    assert rows["(virtual keys)"][4] == "0.100000"
    assert rows["TOTAL"][4] == "1.350000"

    doc = gw_json(capsys, "usage", "--by", "developer")
    by = {r["developer_email"] or r["group"]: r for r in doc["rows"]}
    alice = by[ALICE.email]
    assert alice["developer_email"] == ALICE.email and alice["workspace"] == "platform"
    assert alice["cost_usd"] == "1.000000" and alice["requests"] == 2
    for name in ("client_cost_micros", "lines_added", "lines_removed", "commits",
                 "pull_requests", "edits_accepted", "edits_rejected", "client_sessions"):  # fmt: skip
        assert name in alice  # every field, zeros included
    assert doc["total"]["developers_cost_usd"] == "1.250000"

    only = gw_json(capsys, "usage", "--by", "developer", "--developer", ALICE.email)
    assert [r["developer_email"] for r in only["rows"]] == [ALICE.email]
    total = gw_json(capsys, "usage", "--developer", gateway.ids[BOB.email])
    assert total["total"]["cost_usd"] == "0.250000"
    code, _, err = gw(capsys, "usage", "--developer", "nobody@example.com")
    assert code == 1 and "not found" in err


def _seed_activity(db: Path, ids: dict[str, str]) -> None:
    """What the data planes' ReportActivity would have stored for today (UTC)."""
    from sqlmodel import Session, create_engine

    from controlplane.store.models.usage import DeveloperActivityRow

    day = int(time.time() * 1000) // 86_400_000 * 86_400_000
    engine = create_engine(f"sqlite:///{db}")
    with Session(engine) as s:
        s.add(
            DeveloperActivityRow(
                developer_id=ids[ALICE.email], day_ms=day, workspace="platform",
                cost_micros=1_100_000, lines_added=250, lines_removed=40, commits=3,
                pull_requests=2, edits_accepted=12, edits_rejected=3, sessions=1,
            )
        )  # fmt: skip
        s.add(
            DeveloperActivityRow(
                developer_id=ids[BOB.email], day_ms=day, workspace="platform",
                cost_micros=251_000, edits_accepted=1,
            )
        )  # fmt: skip
        s.commit()
    engine.dispose()


def test_usage_by_developer_with_claude_codes_own_figures(
    gateway: Gateway, capsys: pytest.CaptureFixture[str]
) -> None:
    _seed_activity(gateway.db, gateway.ids)
    code, out, err = gw(capsys, "usage", "--by", "developer")
    assert code == 0, err
    rows = table(out)
    alice, bob = rows[ALICE.email], rows[BOB.email]
    assert alice[5] == "1.100000 !"  # 10 % off the metered $1.00
    assert alice[6:] == ["+250/-40", "3", "2", "12/3", "0.4000", "0.5000"]
    assert bob[5] == "0.251000"  # 0.4 % off: no marker
    assert bob[-2:] == ["—", "—"]
    assert f"! {ALICE.email}: Claude Code reported $1.1000, the gateway metered $1.0000" in out
    assert "more than 5 %" in out

    doc = gw_json(capsys, "usage", "--by", "developer")
    by = {r["developer_email"]: r for r in doc["rows"]}
    assert len(by) == len(doc["rows"])  # one row per developer: activity joined, not beside
    assert by[ALICE.email]["client_cost_usd"] == "1.100000"
    assert by[ALICE.email]["cost_mismatch"] is True and by[BOB.email]["cost_mismatch"] is False
    assert by[ALICE.email]["cost_per_100_lines_added_usd"] == "0.400000"
    assert by[ALICE.email]["cost_per_pull_request_usd"] == "0.500000"
    assert by[BOB.email]["cost_per_pull_request_usd"] is None


def test_logs_and_sessions_name_the_developer(
    gateway: Gateway, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = gw(capsys, "logs", "tail", "-w", "platform", "-n", "10")
    assert code == 0, err
    keys = [line.split()[3] for line in out.splitlines()[1:]]
    assert keys.count(ALICE.email) == 2 and BOB.email in keys and "ci-bot" in keys

    events = gw_json(capsys, "logs", "tail", "--developer", ALICE.email)
    assert len(events) == 2
    assert {e["developer_id"] for e in events} == {gateway.ids[ALICE.email]}
    code, out, err = gw(capsys, "logs", "show", events[0]["request_id"])
    assert code == 0, err
    assert fields(out)["developer"] == f"{ALICE.email} ({gateway.ids[ALICE.email]})"
    assert "key" not in fields(out)

    code, out, err = gw(capsys, "sessions", "list", "-w", "platform")
    assert code == 0, err
    assert table(out)[ALICE_SESSION][1] == ALICE.email
    doc = gw_json(capsys, "sessions", "list", "-w", "platform")
    mine = next(s for s in doc["sessions"] if s["session_id"] == ALICE_SESSION)
    assert mine["developer_email"] == ALICE.email and mine["key_id"] == ""
    code, out, err = gw(capsys, "sessions", "show", ALICE_SESSION)
    assert code == 0, err
    assert fields(out)["developer"] == f"{ALICE.email} ({gateway.ids[ALICE.email]})"
