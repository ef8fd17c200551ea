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
    gpu_activity_interval_s: float = Field(
        30.0, gt=0,
        description="Seconds between two readings of how busy each held whole GPU of the hardware pools is "
        "(NVML); a lease whose GPU is busy counts as used then (quota/gpu_activity.py).",
    )
    gpu_busy_percent: int = Field(
        5, ge=1, le=100,
        description="A held GPU at least this many percent busy (NVML's utilisation) counts as used. "
        "Example: GPU_COMMONS_GPU_BUSY_PERCENT=10",
    )
    reconcile_interval_s: float = Field(
        60.0, gt=0,
        description="Seconds between two comparisons of the leases with the hub's servers (only under a hub: "
        "JUPYTERHUB_API_URL set); a granted lease that no running or pending server of its student holds (none "
        "runs the lease's profile) is released.",
    )
    reconcile_grace_s: float = Field(
        10.0, ge=0, le=3600,
        description="A lease granted less than this many seconds before the hub was asked is never released by "
        "the reconciliation (its server may be too new to be listed). The hub lists a server, with its profile, "
        "before its spawner asks for the lease, so a few seconds are enough; with the interval, a lease whose "
        "workspace is gone or runs another profile is released within interval + grace seconds.",
    )

    lease_requests_per_minute: int = Field(
        20, ge=0, le=10_000,
        description="Lease requests one student may make in any 60 seconds, counted whether granted, queued or "
        "refused, also when the hub asks on their behalf; one more is answered 429 with Retry-After. 0 = no limit "
        "(load tests only). Example: GPU_COMMONS_LEASE_REQUESTS_PER_MINUTE=30",
    )
    max_cpu_leases_per_student: int = Field(
        3, ge=1, le=100,
        description="CPU-only leases (workspaces without a GPU) one student may hold at once; one more is answered "
        "409. GPU workspaces are capped by the alliance (fairshare.max_sessions_per_student). "
        "Example: GPU_COMMONS_MAX_CPU_LEASES_PER_STUDENT=2",
    )
    max_body_bytes: int = Field(
        65_536, ge=1024, le=10_485_760,
        description="Largest request body the service reads, in bytes; a larger one is answered 413 naming this "
        "limit. The API's bodies take a few hundred bytes.",
    )
    token_cache_s: int = Field(
        5, ge=1, le=5,
        description="Seconds (1 to 5) the hub's answer about a JupyterHub token is reused before asking again, so "
        "a token revoked at the hub stops working here within this time.",
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
            self.database_url = default_database_url(self.data_dir)
        return self

    @classmethod
    def from_environment(cls, **overrides) -> "QuotaSettings":
        return cls(**overrides)


def default_database_url(data_dir: Path) -> str:
    """The database when no URL is set: SQLite in the data directory."""
    return f"sqlite:///{Path(data_dir).resolve() / 'quota.sqlite'}"
