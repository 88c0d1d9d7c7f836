"""What ``gwctl up`` converges the local control plane to: workspace ``default``, a provider
(``anthropic`` when ANTHROPIC_API_KEY is set, else the simulator), the key ``make-up`` (its
secret kept in the state directory), and with ``--dev-idp`` sign-in through the development
IdP; and the hints it prints about them. Each step creates only what is missing, so ``up`` may
run any number of times. Starting and stopping the servers is :mod:`gwctl.up`'s."""

from __future__ import annotations

import json

import grpc

from gwapi.v1 import admin_pb2, common_pb2
from gwclient.client import GatewayClient
from gwclient.errors import ClientError
from gwctl import output as out
from gwctl.procs import Layout, read_text, write_private

WORKSPACE = "default"
KEY_NAME = "make-up"
DEV_IDP_CLIENT = "tollgate"


async def ensure_workspace(client: GatewayClient) -> None:
    try:
        await client.get_workspace(WORKSPACE)
        return
    except ClientError as exc:
        if exc.code != grpc.StatusCode.NOT_FOUND:
            raise
    await client.create_workspace(
        common_pb2.Workspace(name=WORKSPACE, description="created by gwctl up")
    )
    out.info(f"workspace: created {WORKSPACE!r}")


async def ensure_provider(client: GatewayClient, has_api_key: bool) -> str:
    if has_api_key:
        wanted = common_pb2.Provider(
            name="anthropic",
            kind="anthropic",
            base_url="https://api.anthropic.com",
            api_key_env="ANTHROPIC_API_KEY",
        )
    else:
        wanted = common_pb2.Provider(name="simulator", kind="simulator")
    try:
        await client.get_provider(wanted.name)
        return wanted.name
    except ClientError as exc:
        if exc.code != grpc.StatusCode.NOT_FOUND:
            raise
    await client.create_provider(wanted)
    out.info(f"provider: created {wanted.name!r} (kind {wanted.kind})")
    return wanted.name


async def ensure_key(client: GatewayClient, layout: Layout, provider: str) -> str:
    """The stored "make-up" secret while its key is active, else a new key's (stored 0600)."""
    secret, key_id = read_text(layout.virtual_key), read_text(layout.virtual_key_id)
    if secret and key_id:
        try:
            key = await client.get_key(key_id)
        except ClientError as exc:
            if exc.code != grpc.StatusCode.NOT_FOUND:
                raise
        else:
            if out.key_status(key) == "active" and secret.startswith(key.prefix):
                if key.provider != provider or key.route:
                    # Converge: ANTHROPIC_API_KEY appeared or vanished since the key was made.
                    await client.update_key(
                        common_pb2.VirtualKey(id=key.id, provider=provider), ["provider", "route"]
                    )
                    out.info(f"key: {KEY_NAME} now targets provider {provider!r}")
                return secret
    response = await client.create_key(
        admin_pb2.CreateKeyRequest(workspace=WORKSPACE, name=KEY_NAME, provider=provider)
    )
    write_private(layout.virtual_key, response.secret + "\n")
    write_private(layout.virtual_key_id, response.key.id + "\n")
    out.info(f"key: created {KEY_NAME!r} ({response.key.id}) in workspace {WORKSPACE!r}")
    return response.secret


async def ensure_dev_sign_in(
    client: GatewayClient, issuer: str, secret: str, provider: str
) -> None:
    """Sign-in pointed at the development IdP ``issuer``, with workspace ``default`` taking every
    signed-in developer ("*") onto ``provider``."""
    current = await client.get_sso()
    if not (current.configured and current.issuer == issuer):
        await client.set_sso(
            admin_pb2.SsoConfig(issuer=issuer, client_id=DEV_IDP_CLIENT), client_secret=secret
        )
        out.info(f"sso: sign-in goes to the development identity provider {issuer}")
    ws = await client.get_workspace(WORKSPACE)
    if "*" not in ws.sso_groups or not (ws.member_provider or ws.member_route):
        await client.update_workspace(
            common_pb2.Workspace(name=WORKSPACE, sso_groups=["*"], member_provider=provider),
            ["sso_groups", "member_provider", "member_route"],
        )
        out.info(f"workspace: {WORKSPACE!r} takes every signed-in developer (provider {provider})")


def sign_in_hint(http_port: int, idp_port: int) -> None:
    """How to try sign-in with Claude Code (``/login`` → Cloud gateway) on this machine."""
    gateway = f"http://127.0.0.1:{http_port}"
    if not idp_port:
        out.info(
            "sign-in with Claude Code (no key on the laptop): try it locally with "
            "`gwctl up --dev-idp` (make up-signin), or use your company's IdP: `gwctl sso set`"
        )
        return
    settings = json.dumps({"forceLoginMethod": "gateway", "forceLoginGatewayUrl": gateway})
    out.info(
        f"sign-in with Claude Code, against the DEVELOPMENT identity provider on "
        f"http://127.0.0.1:{idp_port} (it signs in whoever you type: for trying the flow only, "
        "never for production):\n"
        "  1. point Claude Code at the gateway (managed settings, an admin-only file):\n"
        "       sudo mkdir -p /etc/claude-code && echo "
        f"'{settings}' | sudo tee /etc/claude-code/managed-settings.json\n"
        "  2. run `claude`, type /login, trust the gateway, confirm the code in the browser and "
        "sign in as anyone@example.com\n"
        "  3. gwctl developers list  ·  gwctl usage --by developer  ·  make down\n"
        "  (remove the managed-settings file afterwards to use Claude Code as before)"
    )
