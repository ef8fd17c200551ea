"""Calls to the quota service that many tests make, as its clients make them.

- ``ask(client, user, profile, school, key)``: the hub's lease request (school from the account's prefix);
- ``leases_of(stack, user)``: a student's leases, read with the hub's quota token;
- ``servers_of(stack, user)``: a student's servers as the hub reports them, with the same token;
- ``granted_lease(stack, user)``: waits for the student's granted lease (the spawner asks for it
  before it starts the workspace) and returns it.
"""

from __future__ import annotations

from tests.hub_client import wait_for


def ask(client, user, profile="gpu-slice", school=None, key=None):
    body = {"user": user, "school": school or user.split("-")[0], "profile": profile}
    if key:
        body["idempotency_key"] = key
    return client.post("/api/leases", json=body)


def leases_of(stack, user: str) -> list[dict]:
    with stack.quota() as quota:
        response = quota.get("/api/leases", params={"user": user})
        response.raise_for_status()
        return response.json()


def servers_of(stack, user: str) -> dict:
    with stack.hub_api(stack.quota_token) as hub:
        response = hub.get(f"/users/{user}")
        response.raise_for_status()
        return response.json()["servers"]


def granted_lease(stack, user: str, timeout: float = 120) -> dict:
    found = wait_for(lambda: [lease for lease in leases_of(stack, user) if lease["state"] == "granted"],
                     timeout, f"{user}'s lease to be granted")
    return found[0]
