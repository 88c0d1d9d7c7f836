"""The SSO configuration as sign-in uses it: the stored row with defaults applied and the client
secret decrypted.

The client secret is encrypted under the master key, bound to the name :data:`SECRET_BINDING`
(a ciphertext copied into another row does not decrypt). :func:`load` raises
:class:`~controlplane.domain.errors.FailedPrecondition` with a readable message when the secret
cannot be decrypted (no master key, another master key, damaged).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from sqlmodel import Session

from controlplane.domain.errors import FailedPrecondition
from controlplane.domain.sso import DEFAULT_GROUPS_CLAIM, Ttls, effective_ttls
from controlplane.secrets import MasterKey, WrongMasterKey, envelope_key_id
from controlplane.store.models.signin import SsoConfigRow

SECRET_BINDING = "sso"
ROW_ID = 1
NOT_CONFIGURED = (
    "sign-in with Claude Code is not configured on this gateway: an admin sets it up with "
    "gwctl sso set --issuer … --client-id … --client-secret-stdin"
)


@dataclass(frozen=True)
class SsoSettings:
    issuer: str
    client_id: str
    client_secret: str = field(repr=False)
    scopes: tuple[str, ...]
    groups_claim: str
    allowed_email_domains: tuple[str, ...]
    ttls: Ttls
    default_provider: str
    default_route: str


def row(s: Session) -> SsoConfigRow | None:
    return s.get(SsoConfigRow, ROW_ID)


def ttls_of(r: SsoConfigRow) -> Ttls:
    return effective_ttls(r.access_token_ttl_s, r.refresh_idle_ttl_s, r.session_max_ttl_s)


def decrypt_secret(master: MasterKey | None, ciphertext: str) -> str:
    if master is None:
        raise FailedPrecondition(
            "this control plane has no master key, so it cannot read the stored SSO client "
            "secret: start it with the master key sign-in was configured with "
            "(TOLLGATE_MASTER_KEY or --master-key-file)"
        )
    try:
        return master.decrypt(SECRET_BINDING, ciphertext)
    except WrongMasterKey:
        raise FailedPrecondition(
            f"the stored SSO client secret was encrypted with master key id "
            f"{envelope_key_id(ciphertext)}; this control plane has {master.key_id}: start it "
            "with that master key, or store the secret again (gwctl sso set --client-secret-stdin)"
        ) from None
    except FailedPrecondition:
        raise FailedPrecondition(
            "the stored SSO client secret cannot be decrypted (damaged): store it again with "
            "gwctl sso set --client-secret-stdin"
        ) from None


def load(s: Session, master: MasterKey | None) -> SsoSettings | None:
    """The effective configuration, or ``None`` when sign-in is not configured."""
    r = row(s)
    if r is None:
        return None
    return SsoSettings(
        issuer=r.issuer,
        client_id=r.client_id,
        client_secret=decrypt_secret(master, r.client_secret_ciphertext),
        scopes=tuple(json.loads(r.scopes_json or "[]")),
        groups_claim=r.groups_claim or DEFAULT_GROUPS_CLAIM,
        allowed_email_domains=tuple(json.loads(r.allowed_email_domains_json or "[]")),
        ttls=ttls_of(r),
        default_provider=r.default_provider,
        default_route=r.default_route,
    )
