"""Who is calling, and what they may do.

Identity comes from JupyterHub: the hub and other services send JupyterHub API tokens;
browser users log in through JupyterHub OAuth (see quota/routes/oauth.py), which leaves a
token in a cookie. The quota service's own token is the hub's (its spawner asks for
leases). Roles come from the alliance file, the system of record for who belongs where:

- ``hub``: the hub itself (the service's own token): everything;
- ``operator``: university IT: pools (and reads everything);
- ``staff``: alliance staff: tiers, schools, quotas, budgets, all usage and reservations;
- ``school_admin``: one school's leases, usage and reservations;
- ``teacher``: their school's classes: reservations and their students' usage;
- ``student``: their own leases and usage.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass, field
from typing import Callable

from quota.alliance import Alliance

log = logging.getLogger(__name__)


class Role(str, enum.Enum):
    hub = "hub"
    operator = "operator"
    staff = "staff"
    school_admin = "school_admin"
    teacher = "teacher"
    student = "student"


SEES_EVERYTHING = {Role.hub, Role.operator, Role.staff}


@dataclass(frozen=True)
class Principal:
    name: str
    role: Role
    school: str | None = None
    students: frozenset[str] = field(default_factory=frozenset)  # a teacher's students

    def may_see_user(self, user: str, school: str | None) -> bool:
        """May this caller read the leases and usage of ``user`` (of ``school``)?"""
        if self.role in SEES_EVERYTHING:
            return True
        if self.role == Role.school_admin:
            return school == self.school
        if self.role == Role.teacher:
            return user in self.students or user == self.name
        return user == self.name

    def may_act_for_school(self, school: str) -> bool:
        """May this caller book for ``school`` (reservations)?"""
        if self.role in (Role.hub, Role.staff):
            return True
        return self.role in (Role.school_admin, Role.teacher) and school == self.school


class NotAllowed(PermissionError):
    """The caller is known but lacks the right (answered 403; ``str()`` says which role is needed)."""


# token -> JupyterHub user name, or None when the hub does not know the token
TokenResolver = Callable[[str], "str | None"]


def principal_for(name: str, alliance: Alliance) -> Principal | None:
    """The role of a JupyterHub account in the alliance, or None when it has none."""
    if name in alliance.operators:
        return Principal(name, Role.operator)
    if name in alliance.staff:
        return Principal(name, Role.staff)
    for school in alliance.schools:
        if name in school.admins:
            return Principal(name, Role.school_admin, school.id)
        if name in school.teachers:
            taught = {s for group in school.classes if name in group.teachers for s in group.students}
            return Principal(name, Role.teacher, school.id, frozenset(taught))
        if name in school.students:
            return Principal(name, Role.student, school.id)
    return None


def hub_oauth_client(service_token: str, cache_s: int = 5):
    """JupyterHub's own OAuth client for services, configured from the variables the hub
    sets for a managed service; None when the service does not run under a hub. The hub's
    answer about a token is reused for ``cache_s`` seconds (setting ``token_cache_s``), so a
    token revoked at the hub stops working here within that time."""
    import os

    if not os.environ.get("JUPYTERHUB_API_URL"):
        return None
    from jupyterhub.services.auth import HubOAuth

    return HubOAuth(api_token=service_token, cache_max_age=cache_s)


def hub_token_resolver(hub_auth) -> TokenResolver:
    """Ask the hub who owns a token (HubAuth, with its cache). Only tokens allowed to
    access this service count. Without a hub, only the service's own token works."""
    if hub_auth is None:
        return lambda token: None

    def resolve(token: str) -> str | None:
        try:
            model = hub_auth.user_for_token(token, sync=True)
        except Exception as exc:  # the hub is down: nobody but the hub's own token gets in
            log.error("could not ask the hub about a token: %r", exc)
            return None
        if not model or model.get("kind", "user") != "user":
            return None
        if hub_auth.access_scopes and not hub_auth.check_scopes(hub_auth.access_scopes, model):
            log.warning("token of %s lacks %s", model.get("name"), hub_auth.access_scopes)
            return None
        return model["name"]

    return resolve
