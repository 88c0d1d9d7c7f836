"""Files at rest under the data plane's state directory: directories 0700, files 0600.

The state directory holds the snapshot cache (key hashes, workspaces, routes), the node id and
the usage spool, which with ``--log-bodies full`` holds prompts and answers. Nothing there is
for other local users: directories are made (and, if they exist, set to) 0700 and files are
created 0600 whatever the umask. Blocking I/O: worker threads or start-up only.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

log = logging.getLogger("tollgate.files")

DIR_MODE = 0o700
FILE_MODE = 0o600


def private_dir(path: Path) -> None:
    """Create ``path`` (and parents) if needed and make it 0700."""
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    try:
        if path.stat().st_mode & 0o777 != DIR_MODE:
            os.chmod(path, DIR_MODE)
    except OSError as exc:  # not ours to change (e.g. a mount point): say so, keep serving
        log.warning("cannot make %s private (0700): %s", path, exc)


def make_private(path: Path) -> None:
    """Set an existing file to 0600 (files written by older versions, under another umask)."""
    with contextlib.suppress(OSError):
        if path.stat().st_mode & 0o777 != FILE_MODE:
            os.chmod(path, FILE_MODE)


def open_append(path: Path) -> int:
    """An fd appending to ``path``, created 0600 if it does not exist."""
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)


def write_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` (0600) in one step: readers see the old or the new file."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, FILE_MODE)
    with os.fdopen(fd, "wb") as f:
        os.fchmod(fd, FILE_MODE)  # a leftover .tmp from an older version may be wider
        f.write(data)
    os.replace(tmp, path)


def fsync_dir(path: Path) -> None:
    """Make a file created (or renamed) in ``path`` survive a crash: fsync the directory."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
