"""Everything the hub needs, built from the alliance file and a data directory.

`hub/jupyterhub_config.py` calls :func:`configure_hub` with the settings that
`gpu-commons hub` put in the environment, so the same code serves the demo, the
tests and a production server.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml
from traitlets.config import Config

from gpu_commons_i18n import _
from hub.groups import hub_groups, hub_roles
from hub.i18n import HubLanguage, configure_templates
from hub.passwords import password_file
from quota.alliance import load_alliance
from quota.private_files import make_private, private_dir


# Where workspaces run: the spawner class of each backend (imported by JupyterHub, so the
# Docker and Kubernetes clients are needed only where they are used).
BACKENDS = {
    "local": "spawner.backends.LocalQuotaSpawner",
    "docker": "spawner.docker.DockerQuotaSpawner",
    "kubernetes": "spawner.kubernetes.KubeQuotaSpawner",
}


@dataclass(frozen=True)
class HubSettings:
    alliance: Path
    data_dir: Path
    ip: str = "127.0.0.1"
    port: int = 8000
    hub_api_port: int = 8081
    proxy_api_port: int = 8001
    quota_port: int = 8181
    proxy_command: str = ""
    backend: str = "local"  # a key of BACKENDS
    quota_url: str = ""  # a quota service run elsewhere (the Helm chart); empty = the hub starts one
    proxy_api_url: str = ""  # a proxy run elsewhere (the Helm chart); empty = the hub starts one
    extra_config: Path | None = None  # traitlets config as YAML, merged last (pools, images, hub URLs)

    @classmethod
    def from_environment(cls, env=os.environ) -> "HubSettings":
        def number(name: str, default: int) -> int:
            value = env.get(name, str(default))
            if not value.isdigit():
                raise SystemExit(f"{name}={value!r} is not a port number; set it to e.g. {default}")
            return int(value)

        if "GPU_COMMONS_ALLIANCE" not in env:
            raise SystemExit("GPU_COMMONS_ALLIANCE is not set; start the hub with `gpu-commons hub --alliance FILE`")
        backend = env.get("GPU_COMMONS_BACKEND", "local")
        if backend not in BACKENDS:
            raise SystemExit(f"GPU_COMMONS_BACKEND={backend!r} is not a backend; use one of {', '.join(BACKENDS)}")
        return cls(
            alliance=Path(env["GPU_COMMONS_ALLIANCE"]).resolve(),
            data_dir=Path(env.get("GPU_COMMONS_DATA_DIR", "data")).resolve(),
            ip=env.get("GPU_COMMONS_HUB_IP", "127.0.0.1"),
            port=number("GPU_COMMONS_HUB_PORT", 8000),
            hub_api_port=number("GPU_COMMONS_HUB_API_PORT", 8081),
            proxy_api_port=number("GPU_COMMONS_PROXY_API_PORT", 8001),
            quota_port=number("GPU_COMMONS_QUOTA_PORT", 8181),
            proxy_command=env.get("GPU_COMMONS_PROXY_COMMAND", ""),
            backend=backend,
            quota_url=env.get("GPU_COMMONS_QUOTA_URL", ""),
            proxy_api_url=env.get("GPU_COMMONS_PROXY_API_URL", ""),
            extra_config=Path(env["GPU_COMMONS_HUB_CONFIG"]).resolve() if env.get("GPU_COMMONS_HUB_CONFIG") else None,
        )


def read_or_create_secret(path: Path) -> str:
    """A token kept in the data directory, readable by the hub's user only (mode 0600, in a
    0700 directory)."""
    if path.exists():
        make_private(path)
        return path.read_text().strip()
    private_dir(path.parent)
    token = secrets.token_hex(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(token)
    return token


def cookie_secret_path(data_dir: Path) -> Path:
    return Path(data_dir) / "secrets" / "jupyterhub_cookie_secret"


def quota_token_path(data_dir: Path) -> Path:
    return Path(data_dir) / "secrets" / "quota-service.token"


def prometheus_token_path(data_dir: Path) -> Path:
    return Path(data_dir) / "secrets" / "prometheus.token"


def sweeper_token_path(data_dir: Path) -> Path:
    return Path(data_dir) / "secrets" / "workspace-sweeper.token"


def cgroup_parent_for(data_dir: Path) -> str:
    """One cgroup parent per hub (per data directory), so that hubs on one machine never
    sweep each other's workspaces."""
    return f"gpu-commons/hub-{hashlib.sha256(str(Path(data_dir).resolve()).encode()).hexdigest()[:10]}"


def find_proxy_command(configured: str) -> str:
    candidates = [configured, shutil.which("configurable-http-proxy") or ""]
    candidates.append(str(Path.cwd() / ".build" / "node" / "node_modules" / ".bin" / "configurable-http-proxy"))
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise SystemExit(
        "configurable-http-proxy was not found; install it with "
        "`npm install --prefix .build/node configurable-http-proxy` or set GPU_COMMONS_PROXY_COMMAND"
    )


def configure_hub(c, settings: HubSettings) -> None:
    from hub.auth import AllianceAuthenticator

    alliance = load_alliance(settings.alliance)
    data = settings.data_dir
    data.mkdir(parents=True, exist_ok=True)
    quota_token = read_or_create_secret(quota_token_path(data))
    # Made here with mode 0600 before the hub opens them (JupyterHub would create its database
    # world-readable, and write the cookie secret before making it private).
    read_or_create_secret(cookie_secret_path(data))
    make_private(data / "jupyterhub.sqlite")
    make_private(password_file(data), create=False)  # written 0600; one of an older version may not be
    prometheus_token = read_or_create_secret(prometheus_token_path(data))
    quota_url = settings.quota_url or f"http://127.0.0.1:{settings.quota_port}"

    c.JupyterHub.bind_url = f"http://{settings.ip}:{settings.port}"
    c.JupyterHub.hub_bind_url = f"http://127.0.0.1:{settings.hub_api_port}"
    if settings.proxy_api_url:  # its token comes in CONFIGPROXY_AUTH_TOKEN
        c.ConfigurableHTTPProxy.api_url = settings.proxy_api_url
        c.ConfigurableHTTPProxy.should_start = False
    else:
        c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{settings.proxy_api_port}"
        c.ConfigurableHTTPProxy.command = [find_proxy_command(settings.proxy_command)]
        c.ConfigurableHTTPProxy.pid_file = str(data / "proxy.pid")
    c.JupyterHub.db_url = f"sqlite:///{data / 'jupyterhub.sqlite'}"
    c.JupyterHub.cookie_secret_file = str(cookie_secret_path(data))
    c.JupyterHub.pid_file = str(data / "jupyterhub.pid")
    c.JupyterHub.allow_named_servers = False

    c.JupyterHub.authenticator_class = AllianceAuthenticator
    c.AllianceAuthenticator.password_file = str(password_file(data))
    c.AllianceAuthenticator.quota_url = quota_url  # students a teacher imported (hub/roster.py)
    c.AllianceAuthenticator.quota_api_token = quota_token
    c.Authenticator.allowed_users = set(alliance.accounts())
    c.JupyterHub.load_groups = hub_groups(alliance)
    c.JupyterHub.load_roles = hub_roles(alliance) + [
        {
            "name": "quota-service",
            "description": "The quota service reads users and servers to reconcile leases, and stops a workspace "
                           "when an operator asks on its workspaces page",
            "scopes": ["list:users", "read:users", "read:servers", "read:groups", "delete:servers"],
            "services": ["quota"],
        },
        {"name": "prometheus", "description": "Scrapes /hub/metrics", "scopes": ["read:metrics"], "services": ["prometheus"]},
    ]
    c.JupyterHub.services = [
        {
            "name": "quota",
            "display": False,
            "url": quota_url,
            "api_token": quota_token,
            "oauth_no_confirm": True,  # students log in to the quota pages without a consent page
            **({} if settings.quota_url else {
                # started again within a second if it dies (hub/keepalive.py), not at the hub's next poll
                "command": [sys.executable, "-m", "hub.keepalive", "--name", "quota", "--",
                            sys.executable, "-m", "quota", "serve"],
                "environment": {
                    "GPU_COMMONS_ALLIANCE": str(settings.alliance),
                    "GPU_COMMONS_DATA_DIR": str(data / "quota"),
                    "PYTHONUNBUFFERED": "1",
                },
            }),
        },
        {"name": "prometheus", "api_token": prometheus_token},
    ]

    c.JupyterHub.spawner_class = BACKENDS[settings.backend]
    c.LocalQuotaSpawner.homes_dir = str(data / "homes")
    if (data / "library").is_dir():  # gpu-commons library add --root <data-dir>/library (docs/library.md)
        c.LocalQuotaSpawner.library_root = str(data / "library")
    c.QuotaSpawnerMixin.alliance_file = str(settings.alliance)
    c.QuotaSpawnerMixin.quota_url = quota_url
    c.QuotaSpawnerMixin.quota_api_token = quota_token
    c.Spawner.http_timeout = 90  # JupyterLab may take a while on a busy 2-core server
    # More students starting at once than the backend starts at a time wait in the spawner's
    # start line (spawner/light_start.py) instead of JupyterHub's 429 "too many users starting".
    c.JupyterHub.concurrent_spawn_limit = 0
    # The server's own token may read its lease from the quota service (the workspace
    # extension learns there when a borrowed GPU share is reclaimed); the rest is JupyterHub's
    # default "server" role.
    c.Spawner.server_token_scopes = ["users:activity!user", "access:servers!server", "access:services!service=quota"]

    if any(pool.simulated for pool in alliance.pools):
        c.JupyterHub.template_vars = {
            "announcement": _("Simulated GPUs: this server has no real GPU. Bookings work as in production; "
                              "code cannot use CUDA here.")
        }
    # The pages in the student's language (hub/i18n.py, hub/templates/); the alliance's language
    # for a browser that asks for none of ours, unless c.HubLanguage.default_locale says otherwise.
    c.HubLanguage.default_locale = alliance.language

    if settings.backend == "local":
        c.LocalQuotaSpawner.cgroup_parent = cgroup_parent_for(data)

    if settings.extra_config:
        c.merge(load_extra_config(settings.extra_config))
    configure_templates(c, HubLanguage(config=c).default_locale, str(Path(__file__).resolve().parent / "templates"))
    # Compressed pages, scripts and styles (a county school's 2 Mbit/s link: docs/slow-links.md);
    # tornado_settings set in the extra config add to this and may switch it off.
    c.JupyterHub.tornado_settings = {"compress_response": True, **c.JupyterHub.get("tornado_settings", {})}

    if settings.backend == "local":
        add_workspace_sweeper(c, data)
    if alliance.fairshare.reservation_lead_minutes:
        add_prestart_service(c, data, settings.alliance, quota_url, quota_token)


def add_workspace_sweeper(c, data: Path) -> None:
    """The hub-managed service that ends what is left of workspaces whose student has no
    server (spawner/sweep.py), with the local spawner's settings as configured."""
    from spawner.backends import LocalQuotaSpawner

    def setting(name: str):
        for section in ("LocalQuotaSpawner", "SandboxedLocalSpawner"):
            if name in c[section]:
                return c[section][name]
        return LocalQuotaSpawner.class_traits()[name].default()

    c.JupyterHub.services.append({
        "name": "workspace-sweeper",
        "display": False,
        "api_token": read_or_create_secret(sweeper_token_path(data)),
        "command": [
            sys.executable, "-m", "spawner.sweep", "--cgroup-parent", setting("cgroup_parent"),
            "--cgroup-root", setting("cgroup_root"), "--uid-base", str(setting("uid_base")),
            "--uid-count", str(setting("uid_count")), "--interval", str(setting("sweep_interval")),
        ],
        "environment": {"PYTHONUNBUFFERED": "1"},
    })
    c.JupyterHub.load_roles.append({
        "name": "workspace-sweeper",
        "description": "Lists the servers that run, to end the processes of students who have none",
        "scopes": ["list:users", "read:servers"],
        "services": ["workspace-sweeper"],
    })


def prestart_token_path(data_dir: Path) -> Path:
    return Path(data_dir) / "secrets" / "prestart.token"


def add_prestart_service(c, data: Path, alliance_file: Path, quota_url: str, quota_token: str) -> None:
    """The hub-managed service that starts a booked class's workspaces before its lesson
    (hub/prestart.py; the spawner's side: spawner/prestart.py)."""
    interval = c.PrestartService.get("interval_seconds", 10.0)
    c.JupyterHub.services.append({
        "name": "prestart",
        "display": False,
        "api_token": read_or_create_secret(prestart_token_path(data)),
        "command": [sys.executable, "-m", "hub.prestart", "--alliance", str(alliance_file), "--interval", str(interval)],
        "environment": {"PYTHONUNBUFFERED": "1", "GPU_COMMONS_QUOTA_URL": quota_url,
                        "GPU_COMMONS_QUOTA_TOKEN": quota_token},
    })
    c.JupyterHub.load_roles.append({
        "name": "prestart",
        "description": "Starts the servers of a booked class's students before its lesson",
        "scopes": ["list:users", "read:users", "read:servers", "servers"],
        "services": ["prestart"],
    })
    # A pre-started workspace counts as opened from the activity the hub sees on it: look at the
    # proxy's traffic every 30 s instead of every 5 minutes.
    if "last_activity_interval" not in c.JupyterHub:
        c.JupyterHub.last_activity_interval = 30


def load_extra_config(path: Path) -> Config:
    """Operator settings as YAML, by class and trait, as in a jupyterhub_config.py::

        DockerQuotaSpawner:
          pools: {uni-b: {docker_url: "tcp://gpu1.uni-b.edu.cn:2376"}}
    """
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise SystemExit(f"{path}: cannot read the hub configuration: {exc}") from None
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise SystemExit(f"{path}: write one mapping per class, e.g. 'DockerQuotaSpawner: {{pools: ...}}'")
    return Config(data)
