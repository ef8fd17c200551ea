"""Drive a student's server through the hub's REST API, as the spawn page does, without a browser.

The student logs in with their password (the hub's login form), gets an API token, and then
starts, watches and stops their server; the spawn page's progress events carry the message a
student would read when a start fails.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import httpx


@dataclass
class Student:
    name: str
    hub: httpx.Client  # base_url = <hub>/hub/api, authorised with the student's token
    token: str
    url: str

    def server(self) -> dict | None:
        response = self.hub.get(f"/users/{self.name}")
        response.raise_for_status()
        return response.json()["servers"].get("")

    def start(self, profile: str, timeout: float = 180) -> dict:
        """Start the server; returns the last progress event (``ready`` or ``failed`` with its message)."""
        response = self.hub.post(f"/users/{self.name}/server", json={"user_options": {"profile": profile}})
        if response.status_code >= 400:
            return {"failed": True, "message": _detail(response)}
        last: dict = {}
        deadline = time.monotonic() + timeout
        with self.hub.stream("GET", f"/users/{self.name}/server/progress", timeout=timeout) as events:
            for line in events.iter_lines():  # the hub sends a keep-alive line every few seconds
                if time.monotonic() > deadline:
                    raise AssertionError(f"{self.name}'s server neither started nor failed within {timeout} s: {last}")
                if line.startswith("data:"):
                    last = json.loads(line[5:])
                    if last.get("ready") or last.get("failed"):
                        break
        if last.get("ready"):
            return last
        return {"failed": True, "message": last.get("message", "")}

    def stop(self, timeout: float = 90) -> None:
        response = self.hub.delete(f"/users/{self.name}/server")
        if response.status_code not in (202, 204, 400):
            response.raise_for_status()
        wait_for(lambda: self.server() is None, timeout, f"{self.name}'s server to stop")

    def contents(self) -> httpx.Client:
        """The student's own Jupyter server (contents API), through the proxy."""
        return httpx.Client(base_url=f"{self.url}/user/{self.name}/api/contents",
                            headers={"Authorization": f"token {self.token}"}, timeout=30)


# ``language``: what the hub and the spawner answer these clients in (Accept-Language; without it,
# the alliance's language, zh-CN in the demo); the tests read English unless they ask otherwise.
def log_in(stack, name: str, language: str = "en") -> Student:
    headers = {"Accept-Language": language}
    with httpx.Client(base_url=stack.url, timeout=30, headers=headers) as web:
        web.get("/hub/login")
        xsrf = web.cookies.get("_xsrf", "")
        response = web.post("/hub/login", data={"username": name, "password": stack.passwords[name], "_xsrf": xsrf})
        if response.status_code not in (200, 302):
            raise AssertionError(f"login of {name} failed: {response.status_code}")
        xsrf = [cookie.value for cookie in web.cookies.jar if cookie.name == "_xsrf"][-1]  # renewed at login
        response = web.post(f"/hub/api/users/{name}/tokens", json={"note": "test", "expires_in": 3600},
                            headers={"X-XSRFToken": xsrf})
        response.raise_for_status()
        token = response.json()["token"]
    hub = httpx.Client(base_url=f"{stack.url}/hub/api", headers={"Authorization": f"token {token}", **headers},
                       timeout=60)
    return Student(name=name, hub=hub, token=token, url=stack.url)


def run_in_terminal(student: Student, command: str, output: str, timeout: float = 60) -> str:
    """Type ``command`` into a new terminal of the student's JupyterLab, as the student would,
    and return the text the command wrote to ``output`` (a path in their home)."""
    import asyncio

    from tornado.httpclient import HTTPRequest
    from tornado.websocket import websocket_connect

    base = f"{student.url}/user/{student.name}"
    headers = {"Authorization": f"token {student.token}"}
    response = httpx.post(f"{base}/api/terminals", headers=headers, timeout=30)
    response.raise_for_status()
    terminal = response.json()["name"]

    async def type_it():
        socket = await websocket_connect(HTTPRequest(
            f"{base.replace('http://', 'ws://')}/terminals/websocket/{terminal}", headers=headers))
        socket.write_message(json.dumps(["stdin", command + "\r"]))
        await asyncio.sleep(1.0)
        socket.close()

    asyncio.run(type_it())
    with student.contents() as contents:
        found = wait_for(lambda: (answer := contents.get(output)).status_code == 200 and answer.json()["content"],
                         timeout, f"{output} in {student.name}'s home")
    return found


def try_login(stack, name: str, password: str, language: str = "en") -> httpx.Response:
    """One post of the hub's login form, as a browser sends it; the answer as it comes (302 on
    success, 403 for a wrong password, 429 while logins are refused), in ``language``."""
    with httpx.Client(base_url=stack.url, timeout=60, headers={"Accept-Language": language}) as web:
        web.get("/hub/login")
        xsrf = web.cookies.get("_xsrf", "")
        return web.post("/hub/login", data={"username": name, "password": password, "_xsrf": xsrf})


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def _detail(response: httpx.Response) -> str:
    try:
        return response.json().get("message", response.text)
    except ValueError:
        return response.text


def another_school_waits(stack, user: str = "c02-s1", school: str = "c02") -> None:
    """A student of another school, with less usage, waits for the only slice (through the
    quota API): a lease is then not renewed at its end (alone, a student keeps working)."""
    with stack.quota() as quota:
        waiting = quota.post("/api/leases", json={"user": user, "school": school, "profile": "gpu-slice"}).json()
    assert waiting["state"] == "queued", waiting
