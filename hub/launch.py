"""Start the hub, its proxy and the quota service (stop with Ctrl-C or SIGTERM)

The hub manages the quota service and the proxy: stopping the hub stops the workspaces first
(their leases are released), then the quota service and the proxy (hub/app.py).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from quota.alliance import AllianceError, load_alliance

CONFIG_FILE = Path(__file__).with_name("jupyterhub_config.py")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--alliance", required=True, help="alliance YAML file")
    parser.add_argument("--data-dir", default="data", help="where the databases, homes and secrets live")
    parser.add_argument("--ip", default="127.0.0.1", help="address the public proxy listens on")
    parser.add_argument("--port", type=int, default=8000, help="public port (the URL students open)")
    parser.add_argument("--hub-api-port", type=int, default=8081)
    parser.add_argument("--proxy-api-port", type=int, default=8001)
    parser.add_argument("--quota-port", type=int, default=8181)
    parser.add_argument("--proxy-command", default="", help="path of configurable-http-proxy")
    parser.add_argument(
        "--backend", default="local", choices=["local", "docker", "kubernetes"],
        help="where workspaces run: sandboxed processes here, Docker hosts or a Kubernetes cluster",
    )
    parser.add_argument("--config", default="", help="hub settings as YAML by class and trait (pools, images)")


def hub_environment(args: argparse.Namespace) -> dict[str, str]:
    return {
        "GPU_COMMONS_ALLIANCE": str(Path(args.alliance).resolve()),
        "GPU_COMMONS_DATA_DIR": str(Path(args.data_dir).resolve()),
        "GPU_COMMONS_HUB_IP": args.ip,
        "GPU_COMMONS_HUB_PORT": str(args.port),
        "GPU_COMMONS_HUB_API_PORT": str(args.hub_api_port),
        "GPU_COMMONS_PROXY_API_PORT": str(args.proxy_api_port),
        "GPU_COMMONS_QUOTA_PORT": str(args.quota_port),
        "GPU_COMMONS_PROXY_COMMAND": args.proxy_command,
        "GPU_COMMONS_BACKEND": args.backend,
        "GPU_COMMONS_HUB_CONFIG": str(Path(args.config).resolve()) if args.config else "",
    }


def run(args: argparse.Namespace) -> int:
    try:
        load_alliance(args.alliance)  # fail here, with the file and field, not inside the hub's traceback
    except AllianceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.backend == "local" and os.geteuid() != 0:
        print("error: the hub must run as root to sandbox each student's workspace under its own uid", file=sys.stderr)
        return 2
    env = {**os.environ, **hub_environment(args)}
    Path(args.data_dir).mkdir(parents=True, exist_ok=True)
    # hub.app: JupyterHub that stops the workspaces (and so releases their leases) before the quota service
    os.execve(sys.executable, [sys.executable, "-m", "hub.app", "-f", str(CONFIG_FILE)], env)
