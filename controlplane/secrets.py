"""Provider secrets at rest: AES-256-GCM under the control plane's master key.

Contract:

* The master key is 32 random bytes, given base64-encoded in ``TOLLGATE_MASTER_KEY`` or in a
  file (``--master-key-file`` / ``TOLLGATE_MASTER_KEY_FILE``) that must not be readable by group
  or others. :func:`load_master_key` returns ``None`` when neither is configured (then providers
  can only use data-plane environment variables) and raises ``ValueError`` with an actionable
  message when the configuration is unusable.
* :meth:`MasterKey.encrypt` returns an envelope ``v1:<key id>:<base64(nonce || ciphertext)>``:
  a fresh random 96-bit nonce per encryption; the provider name is the associated data, so a
  ciphertext copied to another provider's row fails to decrypt instead of leaking a key to the
  wrong upstream. The key id is the first 8 hex of SHA-256 over a label and the key: it names
  the key without revealing it, so a wrong master key is reported as such
  (:class:`WrongMasterKey`) rather than as corruption.
* Previous master keys (``--previous-master-key-file``, repeatable, or
  ``TOLLGATE_PREVIOUS_MASTER_KEY``; same rules as the master key) are decrypt-only:
  :meth:`MasterKey.decrypt` picks the key the envelope names among the current and previous
  ones, :meth:`MasterKey.encrypt` always uses the current one, and :meth:`MasterKey.reencrypt`
  moves an envelope from a previous key to the current one (the control plane does so for every
  stored secret at start, see :func:`controlplane.catalog.providers.reencrypt_secrets`).
* Neither the key nor any plaintext appears in a ``repr``, a log line or an error message.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
import stat
from collections.abc import Iterable, Sequence
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from controlplane.domain.errors import FailedPrecondition, InvalidArgument

ENVELOPE_VERSION = "v1"
KEY_BYTES = 32
NONCE_BYTES = 12
MAX_SECRET_CHARS = 4096
_KEY_ID_LABEL = b"tollgate master key id\x00"
_AAD_PREFIX = b"tollgate provider secret\x00"
# Kinds that take a stored secret: anthropic an API key, bedrock an AWS access-key pair.
SECRET_KINDS = ("anthropic", "bedrock")
_AWS_ACCESS_KEY_ID = re.compile(r"^[A-Z0-9]{16,128}$")
HOW_TO_SET = (
    "set TOLLGATE_MASTER_KEY (base64 of 32 random bytes, e.g. "
    '`python -c "import base64,os; print(base64.b64encode(os.urandom(32)).decode())"`) or '
    "--master-key-file / TOLLGATE_MASTER_KEY_FILE (a file of mode 0600 holding that value) on "
    "the control plane; `gwctl up` creates .tollgate/master.key for you"
)


class WrongMasterKey(FailedPrecondition):
    """A stored secret was encrypted under another master key."""


class CorruptSecret(FailedPrecondition):
    """A stored envelope does not decrypt (tampered, truncated or moved to another provider)."""


def key_id(key: bytes) -> str:
    return hashlib.sha256(_KEY_ID_LABEL + key).hexdigest()[:8]


def _aad(provider: str) -> bytes:
    return _AAD_PREFIX + provider.encode()


class MasterKey:
    """The loaded master key, plus any previous (decrypt-only) keys. ``repr`` shows key ids only."""

    __slots__ = ("_aead", "_previous", "key_id")

    def __init__(self, key: bytes, previous: Iterable[MasterKey] = ()) -> None:
        if len(key) != KEY_BYTES:
            raise ValueError(f"the master key must be {KEY_BYTES} bytes, got {len(key)}")
        self._aead = AESGCM(key)
        self.key_id = key_id(key)
        # key id -> AEAD; the current key among the previous ones is simply dropped.
        self._previous: dict[str, AESGCM] = {
            p.key_id: p._aead for p in previous if p.key_id != self.key_id
        }

    def __repr__(self) -> str:
        if self._previous:
            return f"MasterKey(id={self.key_id}, previous={','.join(self.previous_ids)})"
        return f"MasterKey(id={self.key_id})"

    @property
    def previous_ids(self) -> tuple[str, ...]:
        """The ids of the decrypt-only previous keys, in configuration order."""
        return tuple(self._previous)

    def is_previous(self, envelope: str) -> bool:
        """Whether ``envelope`` is under one of the previous keys (so :meth:`reencrypt` applies)."""
        return envelope_key_id(envelope) in self._previous

    @classmethod
    def generate_text(cls) -> str:
        """A new master key in its configuration form (base64 text)."""
        return base64.b64encode(os.urandom(KEY_BYTES)).decode()

    def encrypt(self, provider: str, plaintext: str) -> str:
        nonce = os.urandom(NONCE_BYTES)
        ct = self._aead.encrypt(nonce, plaintext.encode(), _aad(provider))
        body = base64.b64encode(nonce + ct).decode()
        return f"{ENVELOPE_VERSION}:{self.key_id}:{body}"

    def decrypt(self, provider: str, envelope: str) -> str:
        """The plaintext, under whichever known key (current or previous) the envelope names;
        :class:`WrongMasterKey` or :class:`CorruptSecret` otherwise."""
        _version, stored_id, raw = _split(provider, envelope)
        aead = self._aead if stored_id == self.key_id else self._previous.get(stored_id)
        if aead is None:
            previous = f" (previous keys: {', '.join(self._previous)})" if self._previous else ""
            raise WrongMasterKey(
                f"the stored secret of provider {provider!r} was encrypted with master key id "
                f"{stored_id}; this control plane has {self.key_id}{previous}: set "
                "TOLLGATE_MASTER_KEY (or --master-key-file) to the key it was stored with, or "
                "pass that key with --previous-master-key-file to re-encrypt it, or store the "
                f"secret again with `gwctl providers rotate {provider} --api-key-stdin`"
            )
        try:
            return aead.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], _aad(provider)).decode()
        except (InvalidTag, UnicodeDecodeError):
            raise CorruptSecret(_corrupt(provider)) from None

    def reencrypt(self, provider: str, envelope: str) -> str:
        """``envelope``'s secret encrypted under the current key (fresh nonce); raises as
        :meth:`decrypt` does. The plaintext never leaves this call."""
        return self.encrypt(provider, self.decrypt(provider, envelope))


def envelope_key_id(envelope: str) -> str:
    """The key id an envelope names ("" when it is not an envelope)."""
    parts = envelope.split(":", 2)
    return parts[1] if len(parts) == 3 else ""


def _split(provider: str, envelope: str) -> tuple[str, str, bytes]:
    parts = envelope.split(":", 2)
    if len(parts) != 3 or parts[0] != ENVELOPE_VERSION:
        raise CorruptSecret(_corrupt(provider))
    try:
        raw = base64.b64decode(parts[2], validate=True)
    except (binascii.Error, ValueError):
        raise CorruptSecret(_corrupt(provider)) from None
    if len(raw) <= NONCE_BYTES + 16:
        raise CorruptSecret(_corrupt(provider))
    return parts[0], parts[1], raw


def _corrupt(provider: str) -> str:
    return (
        f"the stored secret of provider {provider!r} cannot be decrypted (damaged, or copied "
        f"from another provider): store it again with `gwctl providers rotate {provider} "
        "--api-key-stdin`"
    )


def validate_secret(kind: str, provider: str, api_key: str, options: dict[str, str]) -> str:
    """The secret to store, or :class:`InvalidArgument` saying why this provider cannot take it.

    Never echoes the value. ``anthropic`` takes an API key; ``bedrock`` an AWS access-key pair
    ``ACCESS_KEY_ID:SECRET_ACCESS_KEY[:SESSION_TOKEN]`` (it then wins over the provider's
    ``*_env``/``profile`` options); Vertex authenticates with Google credentials the data plane
    holds.
    """
    if kind not in SECRET_KINDS:
        if kind == "vertex":
            raise InvalidArgument(
                f"provider {provider!r} is a vertex provider: it authenticates with the data "
                "plane's Google credentials (option credentials_file, or Application Default "
                "Credentials), not a stored API key"
            )
        raise InvalidArgument(f"a {kind} provider needs no credential: store no secret")
    if options.get("auth") == "passthrough":
        raise InvalidArgument(
            f"provider {provider!r} uses auth=passthrough (each client's own Claude login goes "
            "upstream), so it has no key to store"
        )
    value = api_key.strip()
    if not value:
        raise InvalidArgument("the API key is empty")
    if len(value) > MAX_SECRET_CHARS:
        raise InvalidArgument(f"the API key is longer than {MAX_SECRET_CHARS} characters")
    if any(not (0x21 <= ord(ch) <= 0x7E) for ch in value):
        raise InvalidArgument(
            "the API key contains spaces, control characters or non-ASCII characters; "
            "paste exactly the key (it is sent as an HTTP header)"
        )
    if kind == "bedrock":
        parts = value.split(":")
        if len(parts) not in (2, 3) or not all(parts) or not _AWS_ACCESS_KEY_ID.match(parts[0]):
            raise InvalidArgument(
                f"provider {provider!r} is a bedrock provider: its stored secret is an AWS "
                "access-key pair, ACCESS_KEY_ID:SECRET_ACCESS_KEY (or "
                "ACCESS_KEY_ID:SECRET_ACCESS_KEY:SESSION_TOKEN)"
            )
    return value


def require(master: MasterKey | None) -> MasterKey:
    """The master key, or FAILED_PRECONDITION explaining how to configure one."""
    if master is None:
        raise FailedPrecondition(
            "this control plane has no master key, so it cannot store provider secrets: "
            + HOW_TO_SET
            + "; or keep the secret on the data plane and name its variable with --api-key-env"
        )
    return master


def _decode_key(text: str, source: str) -> bytes:
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{source} is not valid base64; {HOW_TO_SET}") from None
    if len(raw) != KEY_BYTES:
        raise ValueError(
            f"{source} decodes to {len(raw)} bytes; the master key must be {KEY_BYTES} random "
            f"bytes, base64-encoded; {HOW_TO_SET}"
        )
    return raw


def _read_key_file(file: str, what: str) -> bytes:
    path = Path(file)
    try:
        mode = path.stat().st_mode
        text = path.read_text()
    except OSError as exc:
        raise ValueError(f"cannot read the {what} file {path}: {exc.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ValueError(
            f"the {what} file {path} is readable by other users (mode "
            f"{stat.S_IMODE(mode):04o}); run `chmod 600 {path}`"
        )
    return _decode_key(text, f"the {what} file {path}")


def load_master_key(
    value: str = "",
    file: str = "",
    previous_value: str = "",
    previous_files: Sequence[str] = (),
) -> MasterKey | None:
    """The configured master key: ``value`` (base64) or ``file``; ``None`` when neither is set.

    ``previous_value`` (base64) and ``previous_files`` are decrypt-only previous keys, loaded
    under the same rules and attached to the returned key.

    Raises ``ValueError`` when both ``value`` and ``file`` are set, a value is not 32
    base64-encoded bytes, a file is missing or readable by group/others, or previous keys are
    given without a current one.
    """
    if value and file:
        raise ValueError(
            "both TOLLGATE_MASTER_KEY and a master key file are set; configure exactly one"
        )
    previous: list[bytes] = []
    if previous_value:
        previous.append(_decode_key(previous_value, "TOLLGATE_PREVIOUS_MASTER_KEY"))
    previous += [_read_key_file(f, "previous master key") for f in previous_files]
    if value:
        current = _decode_key(value, "TOLLGATE_MASTER_KEY")
    elif file:
        current = _read_key_file(file, "master key")
    elif previous:
        raise ValueError(
            "previous master keys are set but no current master key: they only decrypt, so "
            "stored secrets need a new key to be re-encrypted under; " + HOW_TO_SET
        )
    else:
        return None
    return MasterKey(current, [MasterKey(raw) for raw in previous])
