# JupyterHub configuration of GPU Commons; start it with `gpu-commons hub`.
from hub.config import HubSettings, configure_hub

configure_hub(c, HubSettings.from_environment())  # noqa: F821 (c is provided by JupyterHub)
