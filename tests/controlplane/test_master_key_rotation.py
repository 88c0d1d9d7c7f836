"""Master-key rotation: previous keys decrypt only, and a control plane started with the new key
plus the old one re-encrypts every stored secret under the new key once, audited, on both
databases (in-process control planes restarted over the same database).
"""

from __future__ import annotations

import base64
import logging
from pathlib import Path

import grpc
import pytest
from sqlalchemy import text

from controlplane.secrets import MasterKey, WrongMasterKey, envelope_key_id, load_master_key
from controlplane.server import Running, main, running
from controlplane.settings import Settings
from gwapi.v1 import admin_pb2 as apb
from gwapi.v1 import common_pb2 as pb
from tests.controlplane.conftest import ADMIN_TOKEN, DATAPLANE_TOKEN, Clients, make_settings

RAW_A, RAW_B, RAW_C = b"A" * 32, b"B" * 32, b"C" * 32
KEY_A, KEY_B, KEY_C = (base64.b64encode(raw).decode() for raw in (RAW_A, RAW_B, RAW_C))
ID_A, ID_B, ID_C = (MasterKey(raw).key_id for raw in (RAW_A, RAW_B, RAW_C))
SECRET = "sk-ant-api03-first-secret-0123456789abcdef"
SECRET_2 = "sk-ant-api03-second-secret-fedcba9876543210"
PAIR = "AKIDEXAMPLE000000001:wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
PLAINTEXTS = {"anthropic": SECRET, "br": PAIR, "other": SECRET_2}


def _key_file(tmp_path: Path, name: str, value: str, mode: int = 0o600) -> str:
    path = tmp_path / name
    path.write_text(value + "\n")
    path.chmod(mode)
    return str(path)


def _stored(r: Running) -> dict[str, tuple[str, int]]:
    """name -> (secret_ciphertext, secret_rotated_at_ms), straight from the database."""

    def q(s):
        rows = s.execute(
            text("SELECT name, secret_ciphertext, secret_rotated_at_ms FROM provider")
        ).all()
        return {str(n): (str(c), int(t)) for n, c, t in rows}

    return r.state.db.read_sync(q)


def _secrets(r: Running) -> dict[str, str]:
    snap = r.state.cache.current
    assert snap is not None
    return {s.provider: s.api_key for s in snap.secrets}


async def _reencrypt_events(r: Running) -> list[apb.AuditEvent]:
    async with grpc.aio.insecure_channel(r.address) as ch:
        listed = await Clients(ch, ADMIN_TOKEN).admin.ListAudit(
            apb.ListAuditRequest(resource_kind="provider")
        )
    assert SECRET.encode() not in listed.SerializeToString()
    return [e for e in listed.events if e.action == "provider.reencrypt_secret"]


async def _store_under_a(db_url: str) -> dict[str, tuple[str, int]]:
    """Three providers with stored secrets (one bedrock pair) and one without, under key A."""
    async with running(make_settings(db_url, master_key=KEY_A)) as r:
        async with grpc.aio.insecure_channel(r.address) as ch:
            admin = Clients(ch, ADMIN_TOKEN).admin
            for name in ("anthropic", "other"):
                await admin.CreateProvider(
                    apb.CreateProviderRequest(
                        provider=pb.Provider(
                            name=name, kind="anthropic", base_url="http://127.0.0.1:9"
                        ),
                        api_key=PLAINTEXTS[name],
                    )
                )
            await admin.CreateProvider(
                apb.CreateProviderRequest(
                    provider=pb.Provider(
                        name="br", kind="bedrock", options={"region": "us-east-1"}
                    ),
                    api_key=PAIR,
                )
            )
            await admin.CreateProvider(
                apb.CreateProviderRequest(
                    provider=pb.Provider(name="sim", kind="simulator", base_url="http://x:1")
                )
            )
        stored = _stored(r)
    assert {n for n, (c, _) in stored.items() if envelope_key_id(c) == ID_A} == set(PLAINTEXTS)
    return stored


# -- the key ring -------------------------------------------------------------------------------


def test_previous_keys_decrypt_and_the_current_one_encrypts() -> None:
    old, other = MasterKey(RAW_A), MasterKey(RAW_C)
    ring = MasterKey(RAW_B, [old, other, MasterKey(RAW_B)])
    assert ring.previous_ids == (ID_A, ID_C)  # the current key among the previous is dropped
    env_a, env_b = old.encrypt("p", SECRET), ring.encrypt("p", SECRET_2)
    assert envelope_key_id(env_b) == ID_B and ring.decrypt("p", env_b) == SECRET_2
    assert ring.decrypt("p", env_a) == SECRET and ring.is_previous(env_a)
    assert not ring.is_previous(env_b)
    moved = ring.reencrypt("p", env_a)
    assert envelope_key_id(moved) == ID_B and MasterKey(RAW_B).decrypt("p", moved) == SECRET
    assert repr(ring) == f"MasterKey(id={ID_B}, previous={ID_A},{ID_C})"


def test_an_unknown_key_names_every_known_one() -> None:
    ring = MasterKey(RAW_B, [MasterKey(RAW_C)])
    with pytest.raises(WrongMasterKey) as info:
        ring.decrypt("anthropic", MasterKey(RAW_A).encrypt("anthropic", SECRET))
    message = str(info.value)
    assert f"master key id {ID_A}; this control plane has {ID_B} (previous keys: {ID_C})" in (
        message
    )
    assert "--previous-master-key-file" in message and SECRET not in message


def test_previous_keys_load_from_the_environment_and_files(tmp_path: Path) -> None:
    file_c = _key_file(tmp_path, "c.key", KEY_C)
    ring = load_master_key(KEY_B, "", KEY_A, [file_c])
    assert ring is not None and (ring.key_id, ring.previous_ids) == (ID_B, (ID_A, ID_C))
    with pytest.raises(ValueError, match="previous master keys are set but no current"):
        load_master_key("", "", KEY_A)
    with pytest.raises(ValueError, match="TOLLGATE_PREVIOUS_MASTER_KEY is not valid base64"):
        load_master_key(KEY_B, "", "nope!")
    with pytest.raises(ValueError, match="cannot read the previous master key file"):
        load_master_key(KEY_B, "", "", [str(tmp_path / "missing.key")])


def test_a_previous_key_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    file_a = _key_file(tmp_path, "old.key", KEY_A, mode=0o640)
    with pytest.raises(ValueError) as info:
        load_master_key(KEY_B, "", "", [file_a])
    assert str(info.value) == (
        f"the previous master key file {file_a} is readable by other users (mode 0640); "
        f"run `chmod 600 {file_a}`"
    )
    assert KEY_A not in str(info.value)


def test_settings_take_repeatable_previous_key_files() -> None:
    s = Settings.from_args(
        ["--previous-master-key-file", "/a", "--previous-master-key-file", "/c"],
        env={
            "TOLLGATE_ADMIN_TOKEN": "t",
            "TOLLGATE_PREVIOUS_MASTER_KEY": KEY_A,
            "TOLLGATE_PREVIOUS_MASTER_KEY_FILE": "/env",
        },
    )
    assert (s.previous_master_key, s.previous_master_key_files) == (KEY_A, ("/a", "/c"))
    assert KEY_A not in repr(s)
    only_env = Settings.from_args([], env={"TOLLGATE_PREVIOUS_MASTER_KEY_FILE": "/env"})
    assert only_env.previous_master_key_files == ("/env",)
    assert Settings.from_args([], env={}).previous_master_key_files == ()


# -- through restarts of a real control plane ---------------------------------------------------


async def test_rotation_reencrypts_every_secret_once(
    db_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="controlplane")
    before = await _store_under_a(db_url)
    old_key = _key_file(tmp_path, "old.key", KEY_A)
    rotate = make_settings(db_url, master_key=KEY_B, previous_master_key_files=(old_key,))

    async with running(rotate) as r:
        assert _secrets(r) == PLAINTEXTS and r.state.cache.secret_problems == ()
        after = _stored(r)
        for name, (ciphertext, rotated_at) in after.items():
            if name in PLAINTEXTS:
                assert envelope_key_id(ciphertext) == ID_B and ciphertext != before[name][0]
                assert PLAINTEXTS[name] not in ciphertext
                assert MasterKey(RAW_B).decrypt(name, ciphertext) == PLAINTEXTS[name]
            else:
                assert ciphertext == ""
            # The upstream credential did not change, so neither does its rotation time.
            assert rotated_at == before[name][1]
        events = await _reencrypt_events(r)
        assert sorted(e.resource for e in events) == sorted(PLAINTEXTS)
        assert {(e.actor, e.actor_role, e.resource_kind) for e in events} == {
            ("system", "admin", "provider")
        }
        assert all('"has_secret": true' in e.after_json for e in events)
    logged = caplog.text
    assert "re-encrypted 3 stored provider secret(s) under master key " + ID_B in logged
    for value in (*PLAINTEXTS.values(), KEY_A, KEY_B):
        assert value not in logged

    # Idempotent: a second start with the old key still given rewrites nothing.
    caplog.clear()
    async with running(rotate) as r:
        assert _stored(r) == after and _secrets(r) == PLAINTEXTS
        assert len(await _reencrypt_events(r)) == len(PLAINTEXTS)
    assert "no stored provider secret is under a previous master key" in caplog.text

    # The old key is no longer needed.
    async with running(make_settings(db_url, master_key=KEY_B)) as r:
        assert _secrets(r) == PLAINTEXTS and r.state.cache.secret_problems == ()
        assert _stored(r) == after


async def test_without_the_previous_key_nothing_is_rewritten(db_url: str, tmp_path: Path) -> None:
    before = await _store_under_a(db_url)
    unrelated = _key_file(tmp_path, "c.key", KEY_C)
    for settings in (
        make_settings(db_url, master_key=KEY_B),
        make_settings(db_url, master_key=KEY_B, previous_master_key_files=(unrelated,)),
    ):
        async with running(settings) as r:
            # The existing behaviour: never a wrong key upstream, and the reason is given.
            assert _secrets(r) == {}
            assert len(r.state.cache.secret_problems) == len(PLAINTEXTS)
            assert all(f"master key id {ID_A}" in p for p in r.state.cache.secret_problems)
            assert _stored(r) == before
            assert await _reencrypt_events(r) == []
    # Given the right previous key later, it still recovers.
    async with running(make_settings(db_url, master_key=KEY_B, previous_master_key=KEY_A)) as r:
        assert _secrets(r) == PLAINTEXTS


async def test_a_secret_stored_under_the_old_key_while_running_still_decrypts(
    sqlite_url: str,
) -> None:
    """A replica not yet restarted may still write under the old key: the snapshot reads it."""
    await _store_under_a(sqlite_url)
    async with running(make_settings(sqlite_url, master_key=KEY_B, previous_master_key=KEY_A)) as r:
        late = MasterKey(RAW_A).encrypt("other", SECRET)

        def write(s):
            s.execute(
                text("UPDATE provider SET secret_ciphertext = :c WHERE name = 'other'"),
                {"c": late},
            )

        r.state.db.run_sync(write)
        r.state.cache.rebuild_sync()
        assert _secrets(r)["other"] == SECRET


async def test_a_damaged_secret_under_the_old_key_does_not_stop_the_start(
    sqlite_url: str,
) -> None:
    await _store_under_a(sqlite_url)
    async with running(make_settings(sqlite_url, master_key=KEY_A)) as r:
        damaged = f"v1:{ID_A}:" + base64.b64encode(b"x" * 40).decode()

        def write(s):
            s.execute(
                text("UPDATE provider SET secret_ciphertext = :c WHERE name = 'other'"),
                {"c": damaged},
            )

        r.state.db.run_sync(write)
    async with running(make_settings(sqlite_url, master_key=KEY_B, previous_master_key=KEY_A)) as r:
        assert _secrets(r) == {"anthropic": SECRET, "br": PAIR}
        assert _stored(r)["other"][0] == damaged
        assert "'other' cannot be decrypted" in " ".join(r.state.cache.secret_problems)
        assert sorted(e.resource for e in await _reencrypt_events(r)) == ["anthropic", "br"]


def test_the_command_line_refuses_a_readable_previous_key_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOLLGATE_ADMIN_TOKEN", ADMIN_TOKEN)
    monkeypatch.setenv("TOLLGATE_DATAPLANE_TOKEN", DATAPLANE_TOKEN)
    new_key = _key_file(tmp_path, "new.key", KEY_B)
    old_key = _key_file(tmp_path, "old.key", KEY_A, mode=0o644)
    code = main(
        [
            "--listen=127.0.0.1:0",
            f"--db=sqlite:///{tmp_path / 'cp.db'}",
            f"--master-key-file={new_key}",
            f"--previous-master-key-file={old_key}",
        ]
    )
    err = capsys.readouterr().err
    assert code != 0
    assert f"the previous master key file {old_key} is readable by other users (mode 0644)" in err
    assert f"chmod 600 {old_key}" in err and "Traceback" not in err and KEY_A not in err
    assert not (tmp_path / "cp.db").exists()  # refused before touching the database
