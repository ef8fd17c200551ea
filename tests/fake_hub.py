"""A stand-in for the hub's REST API as the quota service's workspaces page uses it
(quota/hub_servers.py): ``GET /users?state=active`` (one page, with servers) and
``DELETE /users/<name>/server``, both with the service's token.

``FakeHub(servers)`` holds ``{user: server dict}`` as the hub answers them; ``.stopped`` lists the
users whose server was stopped; ``.install(app)`` puts it behind the app's ``hub_servers``.
``.down = True`` makes every call fail as an unreachable hub does.
"""

from __future__ import annotations

import httpx

from quota.hub_servers import HubServers

API = "http://hub.test/hub/api"


def running(profile: str, started: str = "2026-09-01T07:50:00Z", last_activity: str = "2026-09-01T07:59:00Z",
            ready: bool = True) -> dict:
    return {"name": "", "ready": ready, "pending": None if ready else "spawn", "started": started,
            "last_activity": last_activity, "user_options": {"profile": profile}}


class FakeHub:
    def __init__(self, servers: dict[str, dict], token: str):
        self.servers = dict(servers)
        self.token = token
        self.stopped: list[str] = []
        self.down = False
        self.transport = httpx.MockTransport(self._answer)

    def install(self, app) -> "FakeHub":
        app.state.hub_servers = HubServers(API, self.token, transport=self.transport)
        return self

    def _answer(self, request: httpx.Request) -> httpx.Response:
        if self.down:
            raise httpx.ConnectError("the hub is down", request=request)
        if request.headers.get("authorization") != f"token {self.token}":
            return httpx.Response(403, json={"message": "wrong token"})
        path = request.url.path.removeprefix("/hub/api")
        if request.method == "GET" and path == "/users":
            assert request.url.params["state"] == "active"
            items = [{"name": user, "servers": {"": server}} for user, server in sorted(self.servers.items())]
            return httpx.Response(200, json={"items": items, "_pagination": {"next": None}})
        if request.method == "DELETE" and path.startswith("/users/") and path.endswith("/server"):
            user = path.split("/")[2]
            if user not in self.servers:
                return httpx.Response(400, json={"message": f"{user}'s server is not running"})
            del self.servers[user]
            self.stopped.append(user)
            return httpx.Response(204)
        return httpx.Response(404, json={"message": f"no route {request.method} {path}"})
