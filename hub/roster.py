"""Students a teacher imported (quota/roster_store.py): how the hub logs them in.

The quota database is the one source of truth of who they are; the hub keeps, as for every
account, only the bcrypt hash of the password the student chose (its password file). So:

- an account the alliance file does not list is asked of the quota service
  (``GET /api/roster/accounts/<name>``, with the hub's own token): its school, class and
  the bcrypt hash of the one-time password on its slip, until that is spent;
- the one-time password does not log in. It opens a page where the student chooses their own
  password (:func:`ticket` binds that page to the account and to the unspent one-time
  password's hash, for ten minutes); the new password's hash goes into the hub's password file,
  the service is told the one-time password is spent (``POST .../password-set``), and only then
  is the student logged in. From then on the one-time password fails: an account with a hash in
  the password file is checked against that hash only;
- a teacher may print a new slip (quota/pages/accounts.py): the service then holds an unspent
  one-time password again, and while it does the hub ignores the account's own password (it is
  forgotten when the new slip's password is used), so the old password stops working at once;
- a student removed from their class, or an account the service no longer has, is not allowed
  (``check_allowed``) and a login of theirs ends at its next refresh;
- teachers created with a class on the classes page log in the same way (role ``teacher`` in
  the service's answer) and also get their school's ``teacher-<school>`` role;
- at each login and each refresh of the login (``Authenticator.auth_refresh_age``, and the first
  request after a hub restart) the student is put in their school's group (whose properties the
  spawner reads) and given the ``quota-pages`` role, as the alliance file's students are.

Passwords never leave the hub: only hashes come from the service, nothing but the account's
name goes to it.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
from urllib.parse import quote

import httpx

from hub.groups import school_group_name
from hub.passwords import hash_password, load_hashes, save_hashes

TICKET_S = 600
MIN_PASSWORD = 8
_password_file_lock = threading.Lock()  # first logins of a whole class write the file at once


async def roster_account(quota_url: str, token: str, account: str, timeout: float = 5.0) -> dict | None:
    """The imported account, or None when the service has none of that name. Raises
    ``httpx.HTTPError`` when the service cannot answer (the caller decides)."""
    if not quota_url or not account:
        return None
    async with httpx.AsyncClient(timeout=timeout) as http:
        answer = await http.get(f"{quota_url.rstrip('/')}/api/roster/accounts/{quote(account, safe='')}",
                                headers={"Authorization": f"token {token}"})
    if answer.status_code == 404:
        return None
    answer.raise_for_status()
    return answer.json()


async def password_spent(quota_url: str, token: str, account: str, timeout: float = 5.0) -> None:
    async with httpx.AsyncClient(timeout=timeout) as http:
        answer = await http.post(f"{quota_url.rstrip('/')}/api/roster/accounts/{quote(account, safe='')}/password-set",
                                 headers={"Authorization": f"token {token}"})
    if answer.status_code not in (204, 404):
        answer.raise_for_status()


def ticket(secret: bytes, account: str, one_time_hash: str, now: float) -> str:
    """A ticket for the set-password page: the account, an expiry and an HMAC binding both to
    the one-time password's hash (a spent or replaced one voids it)."""
    expires = int(now) + TICKET_S
    return f"{account}:{expires}:{_mac(secret, account, expires, one_time_hash)}"


def ticket_account(secret: bytes, value: str, one_time_hash: str | None, now: float) -> str | None:
    """The account of a valid ticket, else None."""
    try:
        account, expires, mac = value.rsplit(":", 2)
        expires_at = int(expires)
    except ValueError:
        return None
    if one_time_hash is None or expires_at < now:
        return None
    return account if hmac.compare_digest(mac, _mac(secret, account, expires_at, one_time_hash)) else None


def _mac(secret: bytes, account: str, expires: int, one_time_hash: str) -> str:
    return hmac.new(secret, f"set-password:{account}:{expires}:{one_time_hash}".encode(), hashlib.sha256).hexdigest()


def store_password(password_file: str, account: str, password: str) -> bool:
    """Hash and keep the student's own password (blocking: bcrypt; in a worker thread). False
    when the account already has one (its one-time password was spent in another tab)."""
    hashed = hash_password(password)
    with _password_file_lock:
        hashes = load_hashes(password_file)
        if account in hashes:
            return False
        hashes[account] = hashed
        save_hashes(password_file, hashes)
    return True


def forget_password(password_file: str, account: str) -> bool:
    """Drop the account's own password (a teacher printed a new slip for it); True when it had one."""
    with _password_file_lock:
        hashes = load_hashes(password_file)
        if hashes.pop(account, None) is None:
            return False
        save_hashes(password_file, hashes)
    return True


def join_school(db, user, school_id: str, role: str = "student") -> bool:
    """Put the hub's ``user`` (ORM object) in their school's group and give them the role the
    file's students have (and a teacher the school's ``teacher-<school>`` role,
    hub/groups.py); True when something changed."""
    from jupyterhub import orm, roles

    from hub.groups import teacher_role_name

    changed = False
    group = orm.Group.find(db, school_group_name(school_id))
    if group is not None and group not in user.groups:
        user.groups.append(group)
        changed = True
    for other in list(user.groups):  # moved to another school by a new import
        if other.name.startswith("school-") and other is not group:
            user.groups.remove(other)
            changed = True
    wanted = ["quota-pages"] + ([teacher_role_name(school_id)] if role == "teacher" else [])
    for name in wanted:
        if orm.Role.find(db, name) is not None and name not in {r.name for r in user.roles}:
            roles.grant_role(db, user, name, commit=False)
            changed = True
    if changed:
        db.commit()
    return changed


def password_problem(password: str, again: str):
    """Why the chosen password is refused (a catalogue message), else None."""
    from gpu_commons_i18n import _

    if len(password) < MIN_PASSWORD:
        return _("Choose a password of at least {n} characters.", n=MIN_PASSWORD)
    if password != again:
        return _("The two passwords differ; type the same password twice.")
    return None



async def with_imported(alliance, quota: httpx.AsyncClient):
    """``alliance`` with the students teachers imported in their schools and classes, and the
    classes created on the classes page, as the quota service has them (``GET
    /api/roster/accounts`` and ``/api/roster/classes``, the hub's token); as it is when the
    service has no roster (an older one answers 404) or does not let this token read it."""
    from types import SimpleNamespace

    from quota.roster_store import merged

    answer = await quota.get("/api/roster/accounts")
    if answer.status_code in (401, 403, 404):
        return alliance
    answer.raise_for_status()
    classes = await quota.get("/api/roster/classes")
    created = [SimpleNamespace(**row) for row in classes.json()] if classes.status_code == 200 else []
    return merged(alliance, [SimpleNamespace(**row) for row in answer.json()], created)
