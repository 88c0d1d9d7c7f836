"""Who is calling: the authenticated principal of the current admin RPC.

The auth interceptor resolves the bearer token to a :class:`Principal` and sets
:data:`current` for the duration of the call (in the task that runs the handler), so the
service layer (scoping, audit) reads it without threading it through every signature.
"""

from __future__ import annotations

import contextvars
import enum
from dataclasses import dataclass, field


class TokenRole(enum.Enum):
    ADMIN = "admin"
    WORKSPACE_ADMIN = "workspace-admin"
    VIEWER = "viewer"
    DATAPLANE = "dataplane"


@dataclass(frozen=True)
class Principal:
    """An authenticated caller. ``workspaces`` empty means "every workspace" (admin, viewer)."""

    id: str  # "tok_…", "bootstrap" (the env admin token) or "dataplane"
    name: str
    role: TokenRole
    workspaces: frozenset[str] = field(default_factory=frozenset)
    peer: str = ""

    def sees(self, workspace: str) -> bool:
        """Whether this principal may read objects of ``workspace``."""
        return not self.workspaces or workspace in self.workspaces


# The bootstrap admin (TOLLGATE_ADMIN_TOKEN): what in-process callers without a token act as.
BOOTSTRAP = Principal(id="bootstrap", name="bootstrap admin token", role=TokenRole.ADMIN)

current: contextvars.ContextVar[Principal] = contextvars.ContextVar(
    "tollgate_principal", default=BOOTSTRAP
)


def principal() -> Principal:
    """The principal of the RPC being served (``BOOTSTRAP`` outside of one)."""
    return current.get()


# The short name of the RPC being served ("CreateKey"), for the audit log; "" outside of one.
current_method: contextvars.ContextVar[str] = contextvars.ContextVar("tollgate_method", default="")
