"""The quota service as a real process (``python -m quota serve``, uvicorn), for tests and
benchmarks that need real sockets, real concurrency or a ``kill -9``.

- ``crowd_alliance(path, students)``: an alliance file with many students over two schools
  and one pool of whole GPUs and slices;
- ``QuotaProcess``: start (waits for /api/health), ``kill()`` (SIGKILL), ``stop()`` (SIGTERM),
  ``restart()`` on the same database.

The hub's token (the service's own) is ``QuotaProcess.token``: the hub may ask for any student.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.stack import REPO, free_port


def crowd_alliance(path: Path, students: int, gpus: int = 4, sliced_gpus: int = 2, slices_per_gpu: int = 2) -> Path:
    """``students`` students (half at a county school, half at an urban one), one pool."""
    county = [f"c01-s{i}" for i in range(students // 2)]
    urban = [f"u01-s{i}" for i in range(students - len(county))]
    path.write_text(
        "tiers: {county: {weight: 2}, urban: {weight: 1}}\n"
        f"pools: [{{id: uni-a, gpus: {gpus}, sliced_gpus: {sliced_gpus}, slices_per_gpu: {slices_per_gpu}, simulated: true}}]\n"
        "profiles:\n"
        "  - {id: cpu, display_name: CPU only, gpu: none, max_minutes: 120}\n"
        "  - {id: gpu-slice, display_name: One GPU slice, gpu: slice, max_minutes: 60}\n"
        "  - {id: gpu-whole, display_name: One whole GPU, gpu: whole, max_minutes: 60}\n"
        "schools:\n"
        f"  - {{id: c01, tier: county, students: [{', '.join(county)}]}}\n"
        f"  - {{id: u01, tier: urban, students: [{', '.join(urban)}]}}\n"
    )
    return path


@dataclass
class QuotaProcess:
    alliance: Path
    database_url: str
    data_dir: Path
    token: str = "process-test-token"
    port: int = field(default_factory=free_port)
    env: dict[str, str] = field(default_factory=dict)  # more environment, e.g. JUPYTERHUB_API_URL
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"token {self.token}"}

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=self.headers, timeout=30)

    def start(self, timeout: float = 60) -> None:
        environment = {k: v for k, v in os.environ.items() if not k.startswith(("GPU_COMMONS_", "JUPYTERHUB_"))}
        environment.update(
            GPU_COMMONS_ALLIANCE=str(self.alliance), GPU_COMMONS_DATA_DIR=str(self.data_dir),
            GPU_COMMONS_DATABASE_URL=self.database_url, GPU_COMMONS_API_TOKEN=self.token,
            GPU_COMMONS_BIND_URL=self.url, GPU_COMMONS_USE_NVML="false",
        )
        environment.update(self.env)  # the test's own settings win (a fake NVML, say)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "quota", "serve"], env=environment, cwd=REPO, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the quota service exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.url}/api/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"the quota service did not answer within {timeout} s:\n{self.log_tail()}")

    @property
    def log_path(self) -> Path:
        return self.data_dir / f"quota-{self.port}.log"

    def kill(self) -> None:
        """``kill -9``: no shutdown code runs."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()

    def restart(self) -> None:
        self.stop()
        self.start()

    def log_tail(self, lines: int = 60) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def start_services(tmp_path: Path, database_url: str, students: int, count: int = 1, env: dict[str, str] | None = None,
                   **pool) -> list[QuotaProcess]:
    """``count`` service processes on one database (started one after the other, so only the
    first runs the migrations), on a crowd alliance; ``env``: more settings (GPU_COMMONS_…)."""
    alliance = crowd_alliance(tmp_path / "crowd.yaml", students, **pool)
    services = []
    try:
        for _ in range(count):
            service = QuotaProcess(alliance, database_url, tmp_path / "quota", env=dict(env or {}))
            service.start()
            services.append(service)
    except BaseException:
        for service in services:
            service.stop()
        raise
    return services
