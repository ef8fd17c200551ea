"""Helpers of the API's route x role matrix (tests/test_quota_route_matrix.py).

- :data:`ROLES`: each role the matrix asks as, and the token it sends (``None``: no token);
- :func:`every_route`: ``(method, path)`` of every route of the app, as FastAPI lists them
  (``app.routes``; newer FastAPI keeps included routers there, walked with
  ``fastapi.routing.iter_route_contexts``), HEAD left out (it answers as GET does);
- :func:`sample`: the things a route's path names, made in the app first as the hub and staff
  would (a granted lease of ``c01-s1``, a booking of c01's class tomorrow, a class ``made-here``
  created with a new teacher ``c01-t-made`` as on the classes page), and :func:`concrete` puts
  them into a path.
"""

from __future__ import annotations

from datetime import timedelta

from tests.quota_fixtures import TOKEN

ROLES = {
    "anonymous": None, "student": "tok-c01-s1", "teacher": "tok-c01-teacher", "other_teacher": "tok-u01-teacher",
    "school_admin": "tok-c01-admin", "staff": "tok-staff-admin", "operator": "tok-it-ops", "hub": TOKEN,
}


def every_route(app) -> set[tuple[str, str]]:
    try:
        from fastapi.routing import iter_route_contexts
        routes = list(iter_route_contexts(app.routes))
    except ImportError:  # FastAPI before included routers: app.routes holds the routes themselves
        routes = list(app.routes)
    found = set()
    for route in routes:
        for method in getattr(route, "methods", None) or ():
            if method != "HEAD":
                found.add((method, route.path))
    return found


def sample(client, clock) -> dict[str, str]:
    """Make what the paths name, once per app; ``client`` asks with the hub's token."""
    made = getattr(client.app.state, "route_matrix_sample", None)
    if made is not None:
        return made
    lease = client.post("/api/leases", json={"user": "c01-s1", "school": "c01", "profile": "cpu"})
    assert lease.status_code == 201 or lease.status_code == 200, lease.text
    start = clock() + timedelta(days=1)
    booking = client.post("/api/reservations", json={
        "pool": "uni-a", "school": "c01", "class_id": "ai-club", "units": 1, "starts_at": start.isoformat(),
        "ends_at": (start + timedelta(hours=1)).isoformat()},
        headers={"Authorization": "token tok-staff-admin"})
    assert booking.status_code in (200, 201), booking.text
    from quota.roster_classes import NewClass, create_class
    from quota.roster_store import hash_one_time

    create_class(client.app.state.book, NewClass(school="c01", class_id="made-here", name="Made here",
                                                 teacher="c01-t-made", teacher_last_name="Made"),
                 hash_one_time("made-here-slip"), "staff-admin")
    made = client.app.state.route_matrix_sample = {"lease_id": lease.json()["id"], "reservation_id": booking.json()["id"], "idempotency_key": "no-such-key",
            "school_id": "c01", "tier_id": "county", "pool_id": "uni-a", "user": "c01-s1", "account": "c01-s1",
            "created_class": "made-here", "created_teacher": "c01-t-made"}
    return made


def concrete(path: str, names: dict[str, str]) -> str:
    for name, value in names.items():
        if isinstance(value, str):
            path = path.replace("{" + name + "}", value)
    assert "{" not in path, f"no sample for a parameter of {path}"
    return path


def statuses(default: int, anonymous: int = 401, **roles: int) -> dict[str, int]:
    """A row's expected status per role: ``default`` for every role not named, ``anonymous``
    for a caller without a token (401 unless said)."""
    row = {role: roles.get(role, default) for role in ROLES}
    row["anonymous"] = roles.get("anonymous", anonymous)
    return row


def fresh_app(folder, alliance_text: str, clock):
    """A quota app of its own (SQLite in ``folder``), as tests/quota_fixtures.py makes one."""
    from quota.app import create_app
    from quota.settings import QuotaSettings
    from tests.quota_fixtures import account_of_token

    folder.mkdir(parents=True, exist_ok=True)
    alliance = folder / "alliance.yaml"
    alliance.write_text(alliance_text)
    settings = QuotaSettings(alliance=alliance, data_dir=folder / "quota", api_token=TOKEN, use_nvml=False,
                             database_url=f"sqlite:///{folder / 'quota.sqlite'}")
    return create_app(settings, clock=clock, token_resolver=account_of_token, run_timers=False)
