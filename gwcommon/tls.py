"""Client-side TLS toward the control plane (gwctl, the console, data planes): stdlib only.

``read_ca(ca_file)`` returns the PEM bytes of a CA bundle to trust (``None`` for ``""``:
plaintext), or raises ``ValueError`` with a readable message when the file is missing or not PEM;
callers hand the bytes to ``grpc.ssl_channel_credentials(root_certificates=…)``.
:func:`describe_failure` turns a connection failure's gRPC details into advice about TLS, when
TLS is the likely cause (a plaintext client talking to a TLS server only sees "Socket closed").
"""

from __future__ import annotations

TLS_CA_ENV = "TOLLGATE_TLS_CA"

# What gRPC core says when a TLS handshake fails (wrong CA, wrong host name, plaintext server).
_HANDSHAKE_MARKERS = ("ssl", "handshake", "certificate", "tls", "x509")
_HANGUP_MARKERS = ("socket closed", "connection reset", "ssl", "tls")


def read_ca(ca_file: str) -> bytes | None:
    if not ca_file:
        return None
    try:
        with open(ca_file, "rb") as f:
            pem = f.read()
    except OSError as exc:
        raise ValueError(f"cannot read --tls-ca {ca_file}: {exc.strerror}") from None
    if b"-----BEGIN CERTIFICATE-----" not in pem:
        raise ValueError(f"--tls-ca {ca_file} holds no PEM certificate")
    return pem


def describe_failure(details: str, tls: bool) -> str:
    """Advice for a connection that failed (UNAVAILABLE) with gRPC ``details``; "" if none."""
    lowered = details.lower()
    if tls and any(m in lowered for m in _HANDSHAKE_MARKERS):
        return (
            "the TLS handshake failed: the server's certificate is not signed by the --tls-ca "
            "given, does not name this host, or the server does not speak TLS"
        )
    # The server took the connection and hung up at once: what a TLS server does to plaintext.
    if not tls and any(m in lowered for m in _HANGUP_MARKERS):
        return (
            "if the control plane serves TLS, pass --tls-ca with the CA that signed its "
            f"certificate (env {TLS_CA_ENV})"
        )
    return ""
