"""Server-rendered pages of the quota service, in zh-CN and en, behind the hub's login.

One module per audience (teacher, staff, operator, student), Jinja2 templates in
``templates/``, one style sheet in ``static/``; no script. What they share (language, the
CSRF token of forms, headers) is in :mod:`quota.pages.web`. See docs/pages.md.
"""

from __future__ import annotations


def routers():
    from quota.pages import accounts, classes, home, operator, roster, staff, static, student, teacher, workspaces

    return [home.router, static.router, teacher.router, roster.router, accounts.router, classes.router, staff.router,
            operator.router, workspaces.router, student.router]


UPLOAD_LIMITS = {  # path suffix -> largest body (quota/web_guard.py): the roster's CSV upload
    "/pages/teacher/roster/preview": 2 * 1024 * 1024 + 65_536,
    "/pages/teacher/roster/import": 3 * 1024 * 1024 + 65_536,
}
