"""Turn the alliance into JupyterHub groups and roles.

Each school becomes a group ``school-<id>`` whose properties carry the school id and
tier; the spawner reads them to ask the quota service for a lease. Teachers get a role
scoped to their own school's group; alliance staff read every user and the metrics.
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


def hub_roles(alliance: Alliance) -> list[dict]:
    roles: list[dict] = []
    for school in alliance.schools:
        if not school.teachers:
            continue
        group = school_group_name(school.id)
        roles.append(
            {
                "name": f"teacher-{school.id}",
                "description": f"Teachers of {school.name or school.id}: see and stop their students' workspaces",
                "scopes": [
                    "self",
                    "admin-ui",
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
                "scopes": ["self", "admin-ui", "list:users", "read:users", "read:servers", "read:groups", "read:metrics"],
                "users": list(alliance.staff),
            }
        )
    roles.append(
        {
            "name": "quota-pages",
            "description": "Every alliance account may log in to the quota service (it checks their role itself)",
            "scopes": ["self", "access:services!service=quota"],
            "users": sorted(alliance.accounts()),
        }
    )
    return roles
