"""What ``gwctl doctor`` checks: the gateway URL, the credential and the model, read the way
Claude Code reads them.

* **URL**: ``--url``; else, in Claude Code's order, ``ANTHROPIC_BEDROCK_BASE_URL`` (with
  ``CLAUDE_CODE_USE_BEDROCK``; it must end in ``/bedrock``), ``ANTHROPIC_VERTEX_BASE_URL`` (with
  ``CLAUDE_CODE_USE_VERTEX``; ``/vertex/v1``), ``ANTHROPIC_BASE_URL`` (no ``/v1``); else the
  gateway of a Claude Code sign-in. The data plane's root is what is checked.
* **Credential**: ``--key``/``--key-file``; else ``x-tollgate-key`` in
  ``ANTHROPIC_CUSTOM_HEADERS``; else ``ANTHROPIC_AUTH_TOKEN`` / ``ANTHROPIC_API_KEY`` with the
  data plane's own preference (a ``gw-`` key wins, then an access token, then the first); else
  the sign-in Claude Code stored (``$CLAUDE_CONFIG_DIR`` or ``~/.claude``, ``.credentials.json``,
  ``enterpriseGateway``: ``url``, ``jwt``, ``expiresAt``). A secret is only ever shown as a
  prefix (:attr:`Credential.shown`).
* **Model**: ``--model``; else ``ANTHROPIC_MODEL``; else ``model`` in Claude Code's
  ``settings.json``; else :data:`DEFAULT_MODEL`, Claude Code's default. Aliases (``opus``,
  ``sonnet``, ``haiku``) resolve through ``ANTHROPIC_DEFAULT_*_MODEL`` like Claude Code does;
  through the Bedrock or Vertex door a cloud id (``us.anthropic.…-v1:0``, ``…@2025…``) is read
  as the gateway reads it, as the Anthropic id inside.

Problems found here (a provider key where a virtual key belongs, a URL ending in ``/v1``) are
returned as :class:`Finding` s for the report; nothing here touches the network.
"""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

Status = Literal["OK", "WARN", "FAIL", "SKIP"]

# Claude Code 2.1.197's model when nothing chooses one (what tests/e2e/test_claude_code.py sees).
DEFAULT_MODEL = "claude-opus-4-8"
ALIASES = {
    "opus": ("ANTHROPIC_DEFAULT_OPUS_MODEL", "claude-opus-4-8"),
    "opusplan": ("ANTHROPIC_DEFAULT_OPUS_MODEL", "claude-opus-4-8"),
    "sonnet": ("ANTHROPIC_DEFAULT_SONNET_MODEL", "claude-sonnet-4-6"),
    "haiku": ("ANTHROPIC_DEFAULT_HAIKU_MODEL", "claude-haiku-4-5"),
}
SHOWN_CHARS = 7  # of a secret, in any output


@dataclass(frozen=True)
class Finding:
    """One line of the report: ``status``, what was found, and the fix when it is not OK."""

    name: str
    status: Status
    detail: str
    fix: str = ""


@dataclass(frozen=True)
class Credential:
    secret: str = field(repr=False)
    source: str  # "ANTHROPIC_AUTH_TOKEN", "--key", "Claude Code sign-in (…/.credentials.json)"
    header: Literal["authorization", "x-api-key", "x-tollgate-key"]
    # Signed in with /login: when the stored access token expires (ms) and whether Claude Code
    # holds a refresh token to renew it.
    expires_at_ms: int = 0
    refreshable: bool = False

    @property
    def kind(self) -> str:
        return kind_of(self.secret)

    @property
    def shown(self) -> str:
        return shown(self.secret)

    def headers(self) -> dict[str, str]:
        if self.header == "authorization":
            return {"authorization": f"Bearer {self.secret}"}
        return {self.header: self.secret}


@dataclass(frozen=True)
class Setup:
    url: str  # the data plane's root, no trailing slash ("" = none found)
    url_source: str
    credential: Credential | None
    model: str
    model_source: str
    findings: tuple[Finding, ...]  # about the environment, before any request


def kind_of(secret: str) -> str:
    if secret.startswith("gw-"):
        return "virtual key"
    if looks_like_jwt(secret):
        return "access token"
    if secret.startswith("sk-ant-oat"):
        return "Claude subscription token"
    if secret.startswith("sk-"):
        return "provider key"
    return "unknown credential"


def looks_like_jwt(secret: str) -> bool:
    """As the data plane decides (dataplane.policy.tokens.looks_like_jwt)."""
    return secret.startswith("eyJ") and secret.count(".") == 2


def shown(secret: str) -> str:
    """A secret as doctor prints it: its first characters only."""
    return secret[:SHOWN_CHARS] + "…"


def claude_config_dir(env: Mapping[str, str]) -> Path:
    configured = env.get("CLAUDE_CONFIG_DIR")
    return Path(configured) if configured else Path(env.get("HOME") or Path.home()) / ".claude"


def _read_json(path: Path) -> dict[str, object] | None:
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def signed_in(env: Mapping[str, str]) -> tuple[str, Credential] | None:
    """The gateway URL and access token Claude Code stored at ``/login``, if any."""
    path = claude_config_dir(env) / ".credentials.json"
    doc = _read_json(path)
    gateway = doc.get("enterpriseGateway") if doc else None
    if not isinstance(gateway, dict):
        return None
    url, jwt, expires = gateway.get("url"), gateway.get("jwt"), gateway.get("expiresAt")
    if not isinstance(url, str) or not isinstance(jwt, str) or not jwt:
        return None
    return url.rstrip("/"), Credential(
        jwt,
        f"Claude Code sign-in ({path})",
        "authorization",
        int(expires) if isinstance(expires, int | float) else 0,
        bool(gateway.get("idpRefreshToken")),
    )


def token_expiry_ms(secret: str) -> int:
    """An access token's ``exp`` (ms), read without verifying; 0 when unreadable."""
    try:
        payload = secret.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return int(claims["exp"]) * 1000
    except (IndexError, ValueError, KeyError, TypeError):
        return 0


def _custom_header_key(value: str) -> str:
    for line in value.splitlines():
        name, _, rest = line.partition(":")
        if name.strip().lower() == "x-tollgate-key" and rest.strip():
            return rest.strip()
    return ""


def _env_credential(env: Mapping[str, str]) -> tuple[Credential | None, list[Finding]]:
    findings: list[Finding] = []
    dedicated = _custom_header_key(env.get("ANTHROPIC_CUSTOM_HEADERS", ""))
    if dedicated:
        return Credential(
            dedicated, "ANTHROPIC_CUSTOM_HEADERS (x-tollgate-key)", "x-tollgate-key"
        ), []
    candidates: list[Credential] = []
    if env.get("ANTHROPIC_API_KEY", "").strip():
        candidates.append(
            Credential(env["ANTHROPIC_API_KEY"].strip(), "ANTHROPIC_API_KEY", "x-api-key")
        )
    if env.get("ANTHROPIC_AUTH_TOKEN", "").strip():
        token = env["ANTHROPIC_AUTH_TOKEN"].strip()
        candidates.append(Credential(token, "ANTHROPIC_AUTH_TOKEN", "authorization"))
    if not candidates:
        return None, findings
    chosen = (
        next((c for c in candidates if c.secret.startswith("gw-")), None)
        or next((c for c in candidates if looks_like_jwt(c.secret)), None)
        or candidates[0]
    )
    for other in candidates:
        if other is not chosen and other.kind == "provider key":
            findings.append(
                Finding(
                    "environment",
                    "WARN",
                    f"{other.source} holds a provider key ({other.shown}); Claude Code sends it to "
                    f"the gateway too, which uses {chosen.source} instead",
                    f"unset {other.source}: a provider key never belongs on a laptop",
                )
            )
    return chosen, findings


def _gateway_url(
    args_url: str, env: Mapping[str, str], login: tuple[str, Credential] | None
) -> tuple[str, str, list[Finding]]:
    """(data plane root, where it came from, findings about the variable's shape)."""
    findings: list[Finding] = []
    if args_url:
        return _strip_doors(args_url.strip().rstrip("/")), "--url", findings
    doors = (
        (
            "CLAUDE_CODE_USE_BEDROCK",
            "ANTHROPIC_BEDROCK_BASE_URL",
            "/bedrock",
            "CLAUDE_CODE_SKIP_BEDROCK_AUTH",
        ),
        (
            "CLAUDE_CODE_USE_VERTEX",
            "ANTHROPIC_VERTEX_BASE_URL",
            "/vertex/v1",
            "CLAUDE_CODE_SKIP_VERTEX_AUTH",
        ),
    )
    for switch, var, suffix, skip in doors:
        if not _truthy(env.get(switch, "")):
            continue
        raw = env.get(var, "").strip().rstrip("/")
        if not raw:
            findings.append(
                Finding(
                    "url",
                    "FAIL",
                    f"{switch} is set but {var} is not",
                    f"export {var}=https://HOST{suffix} (your gateway's URL + {suffix})",
                )
            )
            break
        if not raw.endswith(suffix):
            root = _strip_doors(raw)
            findings.append(
                Finding(
                    "url",
                    "FAIL",
                    f"{var} does not end in {suffix}: Claude Code's requests miss the gateway's door",
                    f"export {var}={root}{suffix}",
                )
            )
        if not _truthy(env.get(skip, "")):
            findings.append(
                Finding(
                    "environment",
                    "FAIL",
                    f"{skip} is not set: Claude Code signs with cloud "
                    "credentials instead of sending your gateway key",
                    f"export {skip}=1",
                )
            )
        return _strip_doors(raw), var, findings
    raw = env.get("ANTHROPIC_BASE_URL", "").strip().rstrip("/")
    if raw:
        if raw.endswith("/v1"):
            findings.append(
                Finding(
                    "url",
                    "FAIL",
                    "ANTHROPIC_BASE_URL ends in /v1: Claude Code then calls .../v1/v1/messages",
                    f"export ANTHROPIC_BASE_URL={raw[:-3]}",
                )
            )
            raw = raw[:-3]
        return raw, "ANTHROPIC_BASE_URL", findings
    if login is not None:
        return login[0], login[1].source, findings
    return "", "", findings


def _strip_doors(url: str) -> str:
    """``url`` without a trailing door path (``/vertex/v1``, ``/vertex``, ``/bedrock``, ``/v1``)."""
    for suffix in ("/vertex/v1", "/vertex", "/bedrock", "/v1"):
        if url.endswith(suffix):
            return url[: -len(suffix)]
    return url


def _truthy(value: str) -> bool:
    return value.strip().lower() in ("1", "true", "yes", "on")


def _model(args_model: str, env: Mapping[str, str]) -> tuple[str, str]:
    if args_model:
        model, source = args_model, "--model"
    elif env.get("ANTHROPIC_MODEL", "").strip():
        model, source = env["ANTHROPIC_MODEL"].strip(), "ANTHROPIC_MODEL"
    else:
        settings = _read_json(claude_config_dir(env) / "settings.json") or {}
        chosen = settings.get("model")
        if isinstance(chosen, str) and chosen.strip():
            model, source = chosen.strip(), "Claude Code settings.json"
        else:
            return DEFAULT_MODEL, "Claude Code's default"
    base = model.removesuffix("[1m]")
    alias = ALIASES.get(base.lower())
    if alias is not None:
        var, default = alias
        return env.get(var, "").strip() or default, f"{source} ({base})"
    return base, source


def discover(
    env: Mapping[str, str],
    *,
    url: str = "",
    key: str = "",
    key_source: str = "--key",
    model: str = "",
) -> Setup:
    """Read the setup (see the module docstring); ``key`` is what ``--key``/``--key-file`` gave."""
    login = signed_in(env)
    findings: list[Finding] = []
    if key:
        credential: Credential | None = Credential(key.strip(), key_source, "authorization")
    else:
        credential, found = _env_credential(env)
        findings += found
        if credential is None and login is not None:
            credential = login[1]
        elif credential is not None and login is not None:
            findings.append(
                Finding(
                    "environment",
                    "OK",
                    f"a Claude Code sign-in to {login[0]} is stored too; "
                    f"doctor checks {credential.source} (unset it to check the sign-in)",
                )
            )
    root, source, found = _gateway_url(url, env, login)
    findings += found
    chosen, model_source = _model(model, env)
    if source in ("ANTHROPIC_BEDROCK_BASE_URL", "ANTHROPIC_VERTEX_BASE_URL"):
        # Through the Bedrock or Vertex door the gateway reads the Anthropic id in a cloud id,
        # with this very function (imported here only: gwctl starts without the servers' code).
        from dataplane.metering.pricing import normalize_model

        plain = normalize_model(chosen)
        if plain != chosen:
            chosen, model_source = plain, f"{model_source}: {chosen}"
    if (
        credential is not None
        and credential.expires_at_ms == 0
        and credential.kind == "access token"
    ):
        credential = Credential(
            credential.secret,
            credential.source,
            credential.header,
            token_expiry_ms(credential.secret),
        )
    return Setup(root, source, credential, chosen, model_source, tuple(findings))


def is_loopback(url: str) -> bool:
    host = (urlsplit(url).hostname or "").lower()
    return host in ("localhost", "::1") or host.startswith("127.")


def now_ms() -> int:
    return int(time.time() * 1000)


def environ() -> Mapping[str, str]:
    return os.environ
