"""A real Prometheus server (the Debian package's binary) for tests that query what it scraped.

- ``PrometheusServer(data_dir, scrape={"gpu-commons-quota": ["127.0.0.1:8181"]}, rule_files=[...])``:
  ``start()`` (waits for /-/ready), ``stop()``;
- ``query(expr)``: the instant vector of a PromQL query (raises on a PromQL error);
- ``wait_for(expr)``: polls until the query returns data (the first scrape lands seconds after start);
- ``rules()``: the loaded rule groups as /api/v1/rules answers them.

Everything listens on 127.0.0.1 and scrapes every second.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import yaml

from tests.stack import free_port


def prometheus_binary() -> str:
    binary = shutil.which("prometheus")
    if not binary:
        pytest.fail("prometheus is missing; run `make install-test` (Debian package prometheus)")
    return binary


@dataclass
class PrometheusServer:
    data_dir: Path
    scrape: dict[str, list[str]]  # job name -> host:port targets
    rule_files: list[Path] = field(default_factory=list)
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(path) for path in self.rule_files],
            "scrape_configs": [{"job_name": job, "static_configs": [{"targets": targets}]}
                               for job, targets in self.scrape.items()],
        }
        config_path = self.data_dir / "prometheus.yml"
        config_path.write_text(yaml.safe_dump(config))
        log = open(self.data_dir / "prometheus.log", "ab")
        self.process = subprocess.Popen(
            [prometheus_binary(), f"--config.file={config_path}", f"--storage.tsdb.path={self.data_dir / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=log, stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"prometheus exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.url}/-/ready", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"prometheus was not ready within {timeout} s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def query(self, expr: str) -> list[dict]:
        answer = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=30).json()
        if answer["status"] != "success":
            raise AssertionError(f"Prometheus refused {expr!r}: {answer.get('error')}")
        result = answer["data"]
        if result["resultType"] == "scalar":
            return [{"metric": {}, "value": result["result"]}]
        return result["result"]

    def wait_for(self, expr: str, timeout: float = 30) -> list[dict]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.query(expr)
            if found:
                return found
            time.sleep(0.5)
        raise AssertionError(f"{expr!r} returned nothing within {timeout} s")

    def rules(self) -> list[dict]:
        return httpx.get(f"{self.url}/api/v1/rules", timeout=30).json()["data"]["groups"]

    def log_tail(self, lines: int = 40) -> str:
        path = self.data_dir / "prometheus.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""
