"""Run the quota service (uvicorn), as JupyterHub starts it: `python -m quota serve`."""

from __future__ import annotations

import argparse
import logging
from urllib.parse import urlparse

from pydantic import ValidationError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--alliance", help="alliance YAML file (default: GPU_COMMONS_ALLIANCE)")
    parser.add_argument("--data-dir", help="database directory (default: GPU_COMMONS_DATA_DIR)")
    parser.add_argument("--bind-url", help="where to listen (default: JUPYTERHUB_SERVICE_URL)")


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from quota.app import create_app
    from quota.settings import QuotaSettings

    logging.basicConfig(level=logging.INFO, format="[%(levelname)1.1s %(asctime)s %(name)s] %(message)s")
    overrides = {k: v for k, v in {"alliance": args.alliance, "data_dir": args.data_dir, "bind_url": args.bind_url}.items() if v}
    try:
        settings = QuotaSettings.from_environment(**overrides)
    except ValidationError as exc:
        for error in exc.errors():
            field = ".".join(map(str, error["loc"])) or "settings"
            logging.error("quota service setting %s: %s", field, error["msg"])
        return 2
    from quota.alliance import AllianceError
    from quota.hardware import InventoryMismatch
    from quota.writer import AnotherWriter

    url = urlparse(settings.bind_url)
    try:
        app = create_app(settings)
    except AnotherWriter as exc:
        logging.error("quota service not started: %s", exc)
        return 3
    except (AllianceError, InventoryMismatch) as exc:  # the file, or the GPUs it declares, is wrong: say where
        logging.error("quota service not started: %s", exc)
        return 2
    uvicorn.run(app, host=url.hostname or "127.0.0.1", port=url.port or 8181, log_level="info", access_log=False)
    return 0
