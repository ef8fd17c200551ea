"""The hub's workspaces as the operators' page sees them: list every user's active server and
stop one, through the hub's REST API with the quota service's own token (role
``quota-service`` in hub/config.py: ``list:users``, ``read:users``, ``read:servers`` to list,
``delete:servers`` to stop). The listing is :func:`quota.reconcile.list_active_servers`, the one
the reconciliation uses.

:func:`hub_servers_for` gives None when the service does not run under a hub
(``JUPYTERHUB_API_URL`` unset); tests give a fake hub as an ``httpx`` transport.
"""

from __future__ import annotations

import os
from urllib.parse import quote

import httpx

from quota.reconcile import HubListing, list_active_servers


class HubUnavailable(RuntimeError):
    """The hub could not be asked (down, restarting, token refused); the English text is for logs."""


class HubServers:
    def __init__(self, api_url: str, token: str, timeout_s: float = 10.0,
                 transport: httpx.AsyncBaseTransport | None = None):
        self.api_url = api_url.rstrip("/")
        self._token = token
        self._timeout = timeout_s
        self.transport = transport  # None: the network

    def _client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.api_url, timeout=self._timeout, transport=self.transport,
                                 headers={"Authorization": f"token {self._token}"})

    async def active(self) -> HubListing:
        """Every user with a running or pending server; :class:`HubUnavailable` if the hub cannot say."""
        try:
            async with self._client() as client:
                return await list_active_servers(client)
        except (httpx.HTTPError, PermissionError, ValueError, KeyError) as exc:
            raise HubUnavailable(f"could not list the hub's servers at {self.api_url}: {exc}") from exc

    async def stop(self, user: str, server: str = "") -> bool:
        """Ask the hub to stop ``user``'s server (``""``: the default one). True when the hub took
        it (202 stopping, 204 stopped), False when there was no such server running (400, 404)."""
        path = f"/users/{quote(user, safe='')}/server" + (f"s/{quote(server, safe='')}" if server else "")
        try:
            async with self._client() as client:
                response = await client.delete(path)
        except httpx.HTTPError as exc:
            raise HubUnavailable(f"could not ask the hub at {self.api_url} to stop {user}'s server: {exc}") from exc
        if response.status_code in (202, 204):
            return True
        if response.status_code in (400, 404):
            return False
        raise HubUnavailable(f"the hub answered {response.status_code} to stopping {user}'s server "
                             "(the quota service's role 'quota-service' needs delete:servers, hub/config.py)")


def hub_servers_for(settings) -> HubServers | None:
    api_url = os.environ.get("JUPYTERHUB_API_URL", "")
    return HubServers(api_url, settings.api_token) if api_url else None
