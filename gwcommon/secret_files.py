"""Reading a secret (a bearer token) from a file instead of a command-line flag.

A flag's value is visible to every local user in ``ps`` and stays in shell history; an
environment variable or a file readable only by its owner is not. Stdlib only, shared by the
control plane, the data plane and gwctl.
"""

from __future__ import annotations

import os
import stat


def read_secret_file(path: str, what: str) -> str:
    """The secret in ``path``, surrounding whitespace removed.

    ``ValueError`` with a readable message when the file cannot be read, is not UTF-8, is empty,
    or is readable or writable by group or others (``chmod 600`` fixes that).
    """
    try:
        mode = os.stat(path).st_mode
        with open(path, encoding="utf-8") as f:
            secret = f.read().strip()
    except OSError as exc:
        raise ValueError(f"cannot read the {what} file {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ValueError(f"cannot read the {what} file {path}: not UTF-8 text") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ValueError(
            f"the {what} file {path} is readable by other users (mode "
            f"{stat.S_IMODE(mode):04o}); run `chmod 600 {path}`"
        )
    if not secret:
        raise ValueError(f"the {what} file {path} is empty")
    return secret
