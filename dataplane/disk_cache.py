"""The data plane's configuration on disk, so a restart serves at once even with the control
plane down: ``<state-dir>/snapshot.pb`` (the last good state-of-the-world snapshot) or
``<state-dir>/resources.pb`` (the incremental stream's resources), whichever came last; writing
one removes the other. Neither holds a secret: provider keys, access-token signing keys and
telemetry collectors' header values live in memory only. An unreadable file is ignored (the
control plane resends). :mod:`dataplane.subscriber` reads and writes them."""

from __future__ import annotations

import logging
from pathlib import Path

from dataplane import delta
from dataplane.delta import DeltaState
from dataplane.private import private_dir, write_atomic
from dataplane.snapshot import Snapshot
from dataplane.telemetry.destinations import strip_secrets as strip_destination_secrets
from gwapi.v1 import discovery_pb2

log = logging.getLogger("tollgate.subscriber")

SNAPSHOT_FILE = "snapshot.pb"
RESOURCES_FILE = "resources.pb"


def load_cached(state_dir: Path) -> Snapshot | None:
    path = state_dir / SNAPSHOT_FILE
    try:
        msg = discovery_pb2.Snapshot.FromString(path.read_bytes())
        return Snapshot.from_proto(msg)
    except FileNotFoundError:
        return None
    except Exception as exc:  # a corrupt cache is not fatal: the control plane will resend
        log.warning("ignoring unreadable cached snapshot %s: %s", path, exc)
        return None


def save_cached(state_dir: Path, msg: discovery_pb2.Snapshot) -> None:
    """Write the snapshot WITHOUT its provider secrets and access-token signing keys: they live
    in memory only, so a stolen state directory yields no upstream key and cannot mint a
    developer's token. After a restart, providers whose key is stored on the control plane
    answer 503 until the stream delivers it (``ProviderConfig.has_secret``), and so do signed-in
    developers' requests until the signing keys arrive (``Snapshot.signing_keys_missing``)."""
    private_dir(state_dir)
    clean = discovery_pb2.Snapshot()
    clean.CopyFrom(msg)
    clean.ClearField("secrets")
    clean.ClearField("signing_keys")
    strip_destination_secrets(clean)  # telemetry collectors' header values: names kept, no value
    write_atomic(state_dir / SNAPSHOT_FILE, clean.SerializeToString())
    (state_dir / RESOURCES_FILE).unlink(missing_ok=True)  # the delta cache is now older


def load_resources(state_dir: Path) -> DeltaState | None:
    path = state_dir / RESOURCES_FILE
    try:
        return delta.from_cache(discovery_pb2.ResourceCache.FromString(path.read_bytes()))
    except FileNotFoundError:
        return None
    except Exception as exc:  # a corrupt cache is not fatal: the control plane will resend
        log.warning("ignoring unreadable cached resources %s: %s", path, exc)
        return None


def save_resources(state_dir: Path, state: DeltaState) -> None:
    """Write the delta state without secrets (see :func:`dataplane.delta.to_cache`)."""
    private_dir(state_dir)
    write_atomic(state_dir / RESOURCES_FILE, delta.to_cache(state).SerializeToString())
    (state_dir / SNAPSHOT_FILE).unlink(missing_ok=True)  # the state-of-the-world cache is older


def saved_at(state_dir: Path) -> float:
    """When the configuration in ``state_dir`` was saved (mtime of the newer file); -1: none."""
    files = (state_dir / RESOURCES_FILE, state_dir / SNAPSHOT_FILE)
    return max((f.stat().st_mtime for f in files if f.is_file()), default=-1.0)
