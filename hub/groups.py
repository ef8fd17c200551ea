"""Turn the alliance into JupyterHub groups and roles.

Each school becomes a group ``school-<id>`` whose properties carry the school id and
tier; the spawner reads them to ask the quota service for a lease. Teachers get a role
scoped to their own school's group; alliance staff read every user and the metrics.

JupyterHub's admin page is for university IT (the alliance's operators, JupyterHub admins):
its buttons (add users, start servers, groups, shut the hub down) need scopes a teacher or
staff member should not have, and with only ``admin-ui`` they failed in front of them. Teachers
and staff do their work on the quota service's pages (their classes and sessions, the equity
view: docs/pages.md), so they get no ``admin-ui`` and the hub shows them no Admin link.
"""

from __future__ import annotations

from quota.alliance import Alliance

SCHOOL_GROUP_PREFIX = "school-"


def school_group_name(school_id: str) -> str:
    return f"{SCHOOL_GROUP_PREFIX}{school_id}"


def hub_groups(alliance: Alliance) -> dict[str, dict]:
    return {
        school_group_name(school.id): {
            "users": [*school.students, *school.teachers, *school.admins],
            "properties": {
                "school_id": school.id,
                "school_name": school.name or school.id,
                "tier": school.tier,
            },
        }
        for school in alliance.schools
    }


def teacher_role_name(school_id: str) -> str:
    return f"teacher-{school_id}"


def hub_roles(alliance: Alliance) -> list[dict]:
    """Every school has a teacher role, also one whose teachers are all created on the quota
    service's classes page: the hub grants it to them at login (hub/roster.py)."""
    roles: list[dict] = []
    for school in alliance.schools:
        group = school_group_name(school.id)
        roles.append(
            {
                "name": teacher_role_name(school.id),
                "description": f"Teachers of {school.name or school.id}: see and stop their students' workspaces",
                "scopes": [
                    "self",
                    f"list:users!group={group}",
                    f"read:users!group={group}",
                    f"read:servers!group={group}",
                    f"delete:servers!group={group}",
                    f"read:groups!group={group}",
                ],
                "users": list(school.teachers),
            }
        )
    if alliance.staff:
        roles.append(
            {
                "name": "alliance-staff",
                "description": "Alliance staff: read every school's users, servers and the hub's metrics",
                "scopes": ["self", "list:users", "read:users", "read:servers", "read:groups", "read:metrics"],
                "users": list(alliance.staff),
            }
        )
    if alliance.operators:  # JupyterHub's own admin role: every button of the admin page works for them
        roles.append({"name": "admin", "users": list(alliance.operators)})
    roles.append(
        {
            "name": "quota-pages",
            "description": "Every alliance account may log in to the quota service (it checks their role itself)",
            "scopes": ["self", "access:services!service=quota"],
            "users": sorted(alliance.accounts()),
        }
    )
    return roles
