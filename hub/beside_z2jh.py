"""GPU Commons inside the hub of an existing zero-to-jupyterhub release.

An alliance that already runs zero-to-jupyterhub (z2jh) keeps its hub, proxy, login and
database and adds GPU Commons: this chart installs the quota service alone
(``zeroToJupyterHub.enabled``), and the z2jh hub runs the GPU Commons image with, in its
``hub.extraConfig``::

    from hub.beside_z2jh import configure_beside_z2jh
    configure_beside_z2jh(c)

That applies what :func:`hub.config.configure_hub` sets for the platform (the quota
spawner, the quota service and its roles, the schools' groups and roles, the pages in the
student's language) and leaves to z2jh what z2jh owns: where the hub and the proxy listen,
the proxy, the hub's database and cookie secret, and, unless ``alliance_accounts=True``,
the login (a university's own authenticator; its user names must be the alliance file's
accounts). docs/operations.md, "Beside zero-to-jupyterhub", gives the z2jh values.
"""

from __future__ import annotations

from dataclasses import replace

from traitlets.config import Config

from hub.config import HubSettings, configure_hub

# Settings the z2jh chart makes in its own jupyterhub_config.py (before hub.extraConfig runs).
Z2JH_OWNS: dict[str, tuple[str, ...]] = {
    "JupyterHub": ("bind_url", "hub_bind_url", "hub_connect_url", "hub_connect_ip", "hub_ip", "hub_port", "ip",
                   "port", "base_url", "db_url", "cookie_secret_file", "pid_file", "cleanup_servers",
                   "allow_named_servers", "concurrent_spawn_limit", "last_activity_interval"),
    "ConfigurableHTTPProxy": ("api_url", "should_start", "command", "pid_file", "auth_token"),
}
LOGIN = {"JupyterHub": ("authenticator_class",), "Authenticator": ("allowed_users", "admin_users")}
MERGED = ("services", "load_roles", "load_groups")


def configure_beside_z2jh(c: Config, settings: HubSettings | None = None, alliance_accounts: bool = False) -> None:
    """Add GPU Commons to the z2jh hub's config ``c`` (see the module). ``settings``: from the
    hub's environment (``GPU_COMMONS_ALLIANCE``, ``GPU_COMMONS_QUOTA_URL``, ...) by default."""
    settings = settings or HubSettings.from_environment()
    if not settings.quota_url:
        raise SystemExit("GPU_COMMONS_QUOTA_URL is not set: beside zero-to-jupyterhub the quota service is this "
                         "chart's Service, e.g. http://gpu-commons-quota:8181 (docs/operations.md)")
    owned = {section: keys for section, keys in Z2JH_OWNS.items()}
    if not alliance_accounts:
        for section, keys in LOGIN.items():
            owned[section] = owned.get(section, ()) + keys
    kept = {(section, key): c[section][key] for section, keys in owned.items() for key in keys if key in c[section]}
    theirs = {key: c.JupyterHub[key] for key in MERGED if key in c.JupyterHub}
    # the proxy is z2jh's: configure_hub must not look for a configurable-http-proxy to start
    configure_hub(c, replace(settings, proxy_api_url=settings.proxy_api_url or "http://proxy-api:8001"))
    for section, keys in owned.items():
        for key in keys:
            if (section, key) in kept:
                c[section][key] = kept[(section, key)]
            elif key in c[section]:
                del c[section][key]
    # lists z2jh fills from its values (hub.services, hub.loadRoles, hub.loadGroups): theirs stay,
    # beside ours; an entry of theirs with one of our names gives way (the quota service is ours)
    ours_services = {service["name"] for service in c.JupyterHub.services}
    c.JupyterHub.services = [*c.JupyterHub.services,
                             *(s for s in theirs.get("services", []) if s["name"] not in ours_services)]
    ours_roles = {role["name"] for role in c.JupyterHub.load_roles}
    c.JupyterHub.load_roles = [*c.JupyterHub.load_roles,
                               *(r for r in theirs.get("load_roles", []) if r["name"] not in ours_roles)]
    c.JupyterHub.load_groups = {**theirs.get("load_groups", {}), **c.JupyterHub.load_groups}
