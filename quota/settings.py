"""QuotaSettings: every setting of the quota service, in one place.

Read from the environment (prefix ``GPU_COMMONS_``) and, as JupyterHub-managed service,
from the variables the hub sets (``JUPYTERHUB_SERVICE_URL``, ``JUPYTERHUB_API_TOKEN``).
Built by a factory (``QuotaSettings.from_environment()``), never at import time, so tests
can construct their own.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class QuotaSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GPU_COMMONS_", extra="ignore")

    alliance: Path = Field(description="Path of the alliance YAML file (schools, tiers, pools, profiles).")
    data_dir: Path = Field(Path("data/quota"), description="Directory of the service's SQLite database.")
    database_url: str = Field(
        "",
        description="SQLAlchemy URL of the database; empty = sqlite:///<data_dir>/quota.sqlite. "
        "PostgreSQL example: postgresql+psycopg://quota@db/quota",
    )
    bind_url: str = Field(
        "",
        description="Where to listen; empty = JUPYTERHUB_SERVICE_URL, else http://127.0.0.1:8181.",
    )
    api_token: str = Field(
        "",
        description="Token clients send as 'Authorization: token …'; empty = JUPYTERHUB_API_TOKEN.",
    )
    timer_max_sleep_s: float = Field(
        5.0, gt=0,
        description="The allocator is advanced at its next wake-up (a reservation window, a reclaim stop, a lease "
        "end, an abandoned queue place); it is also advanced at least this often, in seconds.",
    )
    standby_poll_s: float = Field(
        1.0, gt=0,
        description="On PostgreSQL, how often (seconds) a standby process tries to take over as the writer, and "
        "the writer checks that it still holds its lock.",
    )
    queue_heartbeat_timeout_s: float = Field(
        120.0, gt=0,
        description="A queued lease nobody asked about for this long is abandoned (the student left the page).",
    )
    use_nvml: bool = Field(True, description="Read GPUs through NVML for pools marked simulated: false.")
    reconcile_interval_s: float = Field(
        60.0, gt=0,
        description="Seconds between two comparisons of the leases with the hub's servers (only under a hub: "
        "JUPYTERHUB_API_URL set); a granted lease whose student has no running or pending server is released.",
    )
    reconcile_grace_s: float = Field(
        120.0, ge=0,
        description="A lease granted less than this many seconds before the hub was asked is never released by "
        "the reconciliation (its server may be too new to be listed).",
    )

    @model_validator(mode="after")
    def _fill_from_hub(self) -> "QuotaSettings":
        if not self.bind_url:
            self.bind_url = os.environ.get("JUPYTERHUB_SERVICE_URL") or "http://127.0.0.1:8181"
        if not self.api_token:
            self.api_token = os.environ.get("JUPYTERHUB_API_TOKEN", "")
        if not self.api_token:
            raise ValueError(
                "api_token: no token is set. Run the service under JupyterHub (which sets JUPYTERHUB_API_TOKEN) "
                "or set GPU_COMMONS_API_TOKEN."
            )
        if not self.database_url:
            self.database_url = f"sqlite:///{Path(self.data_dir).resolve() / 'quota.sqlite'}"
        return self

    @classmethod
    def from_environment(cls, **overrides) -> "QuotaSettings":
        return cls(**overrides)
