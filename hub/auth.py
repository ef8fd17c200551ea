"""Log in with an alliance account: name and password checked against bcrypt hashes."""

from __future__ import annotations

from jupyterhub.auth import Authenticator
from traitlets import Unicode

from hub.passwords import check_password, load_hashes


class AllianceAuthenticator(Authenticator):
    """Accounts come from the alliance file; their password hashes from ``password_file``.

    Set a password with ``gpu-commons set-password ACCOUNT``.
    """

    password_file = Unicode(
        help="""Path of the JSON file of bcrypt password hashes (account -> hash).

        Written by `gpu-commons set-password` and `gpu-commons demo`; keep it readable
        by the hub only. Example::

            c.AllianceAuthenticator.password_file = "/srv/gpu-commons/passwords.json"
        """,
    ).tag(config=True)

    async def authenticate(self, handler, data):
        username = self.normalize_username(data.get("username", ""))
        password = data.get("password", "")
        hashed = load_hashes(self.password_file).get(username) if self.password_file else None
        if hashed is None or not check_password(password, hashed):
            self.log.warning("Failed login for %r", username)
            return None
        return username
