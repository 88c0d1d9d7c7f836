"""The random values of a sign-in and how they are stored.

* ``device_code``, refresh tokens, the browser-binding secret, ``state``: 32 random bytes,
  base64url without padding (256 bits); only their SHA-256 hex is stored (:func:`digest`).
* ``user_code``: 8 characters of RFC 8628's base-20 alphabet (no vowels, so no words; no
  look-alike digits), shown ``XXXX-XXXX``. :func:`normalise_user_code` accepts what a person
  types (any case, with or without the dash or blanks); ``None`` when it cannot be a code.
* ``nonce`` and the PKCE verifier: 32 random bytes base64url (the verifier is 43 characters,
  within RFC 7636's 43-128).
* Ids: developers ``dev_`` + 16 hex, refresh-token families ``fam_`` + 16 hex, signing keys 16
  hex. Public, safe to log.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets

USER_CODE_ALPHABET = "BCDFGHJKLMNPQRSTVWXZ"
USER_CODE_LENGTH = 8
_USER_CODE_RE = re.compile(f"^[{USER_CODE_ALPHABET}]{{{USER_CODE_LENGTH}}}$")
DEVELOPER_ID_RE = re.compile(r"^dev_[0-9a-f]{16}$")
MAX_SECRET_CHARS = 512  # anything longer is not one of ours: refused without hashing


def random_secret() -> str:
    """32 random bytes, base64url without padding."""
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()


def digest(secret: str) -> str:
    """SHA-256 hex of a secret: the only form stored."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def same_digest(secret: str, stored_digest: str) -> bool:
    """Constant-time comparison of ``secret`` against a stored digest."""
    return bool(stored_digest) and hmac.compare_digest(digest(secret), stored_digest)


def new_user_code() -> str:
    """8 characters of the base-20 alphabet, normalised form (no dash)."""
    return "".join(secrets.choice(USER_CODE_ALPHABET) for _ in range(USER_CODE_LENGTH))


def format_user_code(code: str) -> str:
    """``WDJBMJHT`` → ``WDJB-MJHT``."""
    half = USER_CODE_LENGTH // 2
    return f"{code[:half]}-{code[half:]}"


def normalise_user_code(text: str) -> str | None:
    """What a person typed → the stored form, or ``None`` if it cannot be a user code."""
    if len(text) > 64:
        return None
    cleaned = "".join(ch for ch in text.upper() if ch not in "- \t")
    return cleaned if _USER_CODE_RE.fullmatch(cleaned) else None


def new_developer_id() -> str:
    return "dev_" + secrets.token_hex(8)


def new_family_id() -> str:
    return "fam_" + secrets.token_hex(8)


def new_kid() -> str:
    return secrets.token_hex(8)
