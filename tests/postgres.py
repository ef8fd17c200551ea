"""A real PostgreSQL 15 server for tests and benchmarks, started by hand (no system service).

``PostgresServer`` runs ``initdb`` in a fresh directory owned by the ``postgres`` account
(``initdb`` refuses to run as root) and ``pg_ctl start`` on a free loopback port, with its
socket in the same directory. ``create_database()`` gives each test its own empty database.

The server runs with ``timezone = Asia/Shanghai``, so code that forgets to turn times
into UTC fails here instead of in a school's deployment. Tests turn off ``fsync`` (a crash
of the machine is not what they test; a killed service process is); benchmarks keep it on.

Fixtures: ``postgres_server`` (one per session).
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.stack import free_port

INSTALL_HINT = "PostgreSQL 15 is not installed; run `make install-test` (Debian package postgresql)"


def postgres_bin_dir() -> Path | None:
    """Where initdb, pg_ctl and postgres live (Debian keeps them out of PATH)."""
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if Path(candidate, "initdb").exists() and Path(candidate, "pg_ctl").exists():
            return Path(candidate)
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb and shutil.which("pg_ctl") else None


@dataclass
class PostgresServer:
    bin_dir: Path
    fsync: bool = False
    port: int = field(default_factory=free_port)
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="gpu-commons-pg-")))

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        self.data_dir.mkdir()
        self._as_postgres_owner(self.root)
        self._run("initdb", "-D", str(self.data_dir), "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8")
        options = [
            "-c listen_addresses=127.0.0.1", f"-p {self.port}", f"-k {self.root}", "-c timezone=Asia/Shanghai",
            "-c max_connections=200", f"-c fsync={'on' if self.fsync else 'off'}",
        ]
        if not self.fsync:
            options += ["-c synchronous_commit=off", "-c full_page_writes=off"]
        self._run("pg_ctl", "-D", str(self.data_dir), "-l", str(self.root / "server.log"), "-w",
                  "-o", " ".join(options), "start")

    def stop(self) -> None:
        if (self.data_dir / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data_dir), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)

    def create_database(self) -> str:
        """A new empty database; returns its SQLAlchemy URL."""
        name = f"t_{uuid.uuid4().hex[:12]}"
        self.execute(f'CREATE DATABASE "{name}" TEMPLATE template0 STRATEGY FILE_COPY')  # fast for small ones
        return self.url(name)

    def drop_database(self, url: str) -> None:
        name = url.rsplit("/", 1)[-1]
        self.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def execute(self, statement: str) -> None:
        import psycopg

        with psycopg.connect(host="127.0.0.1", port=self.port, user="postgres", dbname="postgres", autocommit=True) as db:
            db.execute(statement)

    def log_tail(self, lines: int = 40) -> str:
        log = self.root / "server.log"
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:]) if log.exists() else ""

    def _run(self, program: str, *args: str) -> None:
        command = [str(self.bin_dir / program), *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, cwd=self.root)
        if result.returncode != 0:
            raise RuntimeError(f"{program} failed ({result.returncode}):\n{result.stdout}{result.stderr}\n{self.log_tail()}")

    @staticmethod
    def _as_postgres_owner(root: Path) -> None:
        if os.geteuid() != 0:
            return
        import pwd

        account = pwd.getpwnam("postgres")
        for path in (root, root / "data"):
            os.chown(path, account.pw_uid, account.pw_gid)


def start_postgres(fsync: bool = False) -> PostgresServer:
    """Start a server, or say plainly what to install."""
    bin_dir = postgres_bin_dir()
    if bin_dir is None:
        raise FileNotFoundError(INSTALL_HINT)
    if os.geteuid() == 0:
        try:
            import pwd

            pwd.getpwnam("postgres")
        except KeyError:
            raise FileNotFoundError(f"{INSTALL_HINT}: the 'postgres' account is missing") from None
    server = PostgresServer(bin_dir, fsync=fsync)
    server.start()
    return server


@pytest.fixture(scope="session")
def postgres_server():
    try:
        server = start_postgres()
    except FileNotFoundError as exc:
        pytest.fail(str(exc))
    try:
        yield server
    finally:
        server.stop()
