"""Open an OPC UA session as configured (security, login) and turn failures into clear errors.

Shared by the connector and ``gateway browse``. asyncua's own reconnect is off: a lost
session is reported (``connection_lost_callback``) and the device supervisor reconnects with a
fresh session, so there is exactly one reconnect policy in the gateway.
"""

from __future__ import annotations

import asyncio
import logging

from asyncua import ua
from asyncua.client.client import Client
from asyncua.crypto import security_policies
from asyncua.ua.attribute_ids import AttributeIds
from asyncua.ua.object_ids import ObjectIds
from asyncua.ua.uaerrors import UaError, UaStatusCodeError

from connectors.opcua.config import OpcUaEndpointConfig
from connectors.opcua.nodes import make_node_id
from connectors.opcua.security import APPLICATION_NAME, ClientPki, application_uri
from connectors.opcua.values import status_name
from gateway.errors import ConnectorError

__all__ = ["close_client", "describe_error", "open_client", "read_operation_limits"]

log = logging.getLogger(__name__)

_MODES = {
    "None": ua.MessageSecurityMode.None_,
    "Sign": ua.MessageSecurityMode.Sign,
    "SignAndEncrypt": ua.MessageSecurityMode.SignAndEncrypt,
}
_HINTS = {
    "BadUserAccessDenied": "login refused: wrong username or password",
    "BadIdentityTokenInvalid": "login refused: wrong username or password",
    "BadIdentityTokenRejected": "the server does not accept this kind of login"
    " (anonymous or username/password)",
    "BadSecurityPolicyRejected": "the server refused the security policy",
    "BadCertificateUntrusted": "the server does not trust the gateway's certificate:"
    " trust it on the server",
    "BadSecurityChecksFailed": "security checks failed: does the server trust the gateway's"
    " certificate?",
    "BadTooManySessions": "the server has too many sessions",
}


def describe_error(exc: BaseException, config: OpcUaEndpointConfig) -> str:
    """One line saying what went wrong talking to the server, for ``last_error`` and the log."""
    endpoint = config.endpoint
    if isinstance(exc, UaStatusCodeError):
        name = status_name(exc.code)
        hint = _HINTS.get(name)
        if hint and name in ("BadUserAccessDenied", "BadIdentityTokenInvalid"):
            hint = f"{hint} (user {config.username!r})" if config.username else hint
        return f"{endpoint}: {hint} ({name})" if hint else f"{endpoint}: {name}"
    if isinstance(exc, UaError) and str(exc).startswith("No matching endpoints"):
        security = config.security
        return (
            f"{endpoint}: the server has no endpoint with security policy {security.policy}"
            f" mode {security.effective_mode}: check the device's security settings"
        )
    if isinstance(exc, ConnectionRefusedError):
        return f"cannot connect to {endpoint}: connection refused"
    if isinstance(exc, TimeoutError):
        return f"no answer from {endpoint} within {config.timeout:g} s"
    if isinstance(exc, OSError):
        return f"cannot connect to {endpoint}: {exc.strerror or exc}"
    return f"{endpoint}: {exc or type(exc).__name__}"


async def open_client(config: OpcUaEndpointConfig, pki: ClientPki, name: str) -> Client:
    """A connected, activated session; raises ConnectorError with a readable reason."""
    client = Client(config.endpoint, timeout=config.timeout, watchdog_intervall=config.keepalive)
    client.name = client.description = f"{APPLICATION_NAME} {name}"
    client.application_uri = application_uri()
    client.product_uri = f"urn:{APPLICATION_NAME}"
    client.session_timeout = int(config.session_timeout * 1000)
    if config.username is not None and config.password is not None:
        client.set_user(config.username)
        client.set_password(config.password.get_secret_value())
    try:
        async with asyncio.timeout(config.timeout * 4):
            if config.security.policy != "None":
                await _secure(client, config, pki, name)
            await client.connect(auto_reconnect=False)
    except ConnectorError:
        await close_client(client, config.timeout)
        raise
    except (OSError, TimeoutError, UaError) as exc:
        await close_client(client, config.timeout)
        raise ConnectorError(describe_error(exc, config)) from exc
    return client


async def _secure(client: Client, config: OpcUaEndpointConfig, pki: ClientPki, name: str) -> None:
    security = config.security
    mode = _MODES[security.effective_mode]
    policy = security_policies.SecurityPolicyBasic256Sha256
    certificate, key = await pki.client_certificate(client, security)
    endpoints = await client.connect_and_get_server_endpoints()
    try:
        endpoint = Client.find_endpoint(endpoints, mode, policy.URI)
    except UaError:
        offered = sorted(
            {f"{e.SecurityPolicyUri.rsplit('#', 1)[-1]}/{e.SecurityMode.name}" for e in endpoints}
        )
        raise ConnectorError(
            f"{config.endpoint}: no endpoint with {security.policy} {security.effective_mode}"
            f" (offered: {', '.join(offered)})"
        ) from None
    pki.check_server_certificate(endpoint.ServerCertificate, security, name)
    await client.set_security(
        policy,
        certificate,
        key,
        server_certificate=endpoint.ServerCertificate,
        mode=mode,
    )


async def close_client(client: Client, wait: float) -> None:
    """Close the session if the server still answers within ``wait`` s; never raises."""
    client.connection_lost_callback = None
    try:
        async with asyncio.timeout(wait):
            await client.disconnect()
    except (OSError, TimeoutError, UaError) as exc:
        log.debug("closing the session of %s: %r", client, exc)
        client.disconnect_socket()


async def read_operation_limits(client: Client) -> tuple[int, int]:
    """The server's (MaxNodesPerRead, MaxMonitoredItemsPerCall); 0 is "no limit"."""
    ids = (
        ObjectIds.Server_ServerCapabilities_OperationLimits_MaxNodesPerRead,
        ObjectIds.Server_ServerCapabilities_OperationLimits_MaxMonitoredItemsPerCall,
    )
    values = await client.uaclient.read_attributes(
        [make_node_id(i) for i in ids], AttributeIds.Value
    )
    limits = []
    for data in values:
        value = data.Value.Value if data.Value is not None else None
        good = data.StatusCode is None or data.StatusCode.is_good()
        limits.append(int(value) if good and isinstance(value, int) and value > 0 else 0)
    return limits[0], limits[1]
