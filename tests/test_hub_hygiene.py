"""Operator hygiene (issue 17, point 8): files only their owner reads, no passwords in logs,
a crashed quota service back within seconds.

The attacks as found: the hub's and the quota service's SQLite files were world-readable on
the host (a student's terminal could copy every token hash and lease); ``make demo > log``
wrote every password into a world-readable file; after a ``kill -9`` of the quota service
every spawn failed for 32 s until the hub restarted it. The queue across that outage is in
tests/test_quota_outage.py.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import bcrypt
import httpx
import pytest
from traitlets.config import Config

from hub import demo
from hub.config import HubSettings, configure_hub, cookie_secret_path, quota_token_path
from hub.passwords import password_file
from quota.db import make_engine, upgrade
from quota.private_files import make_private
from tests.stack import PROXY, REPO

DEMO_ALLIANCE = REPO / "alliances" / "demo.yaml"


def others_may_read(path: Path) -> bool:
    return bool(path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO))


@pytest.fixture(autouse=True)
def usual_umask():
    """Files are created as on an operator's shell (umask 022: world-readable unless made private)."""
    before = os.umask(0o022)
    yield
    os.umask(before)


def test_make_private_creates_0600_and_narrows_older_files(tmp_path):
    fresh = make_private(tmp_path / "a" / "db.sqlite")
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o600
    old = tmp_path / "old.sqlite"
    for path in (old, old.with_name("old.sqlite-wal")):
        path.write_text("x")
        path.chmod(0o644)
    make_private(old)
    assert not others_may_read(old) and not others_may_read(old.with_name("old.sqlite-wal"))
    assert not make_private(tmp_path / "absent.json", create=False).exists()


def test_the_quota_database_and_its_companions_are_private(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'quota' / 'quota.sqlite'}")
    try:
        upgrade(engine)
        with engine.begin() as connection:  # WAL mode: -wal and -shm appear with the first write
            connection.exec_driver_sql("CREATE TABLE probe (x INTEGER)")
        files = sorted((tmp_path / "quota").glob("quota.sqlite*"))
        assert {path.name for path in files} >= {"quota.sqlite", "quota.sqlite-wal", "quota.sqlite-shm"}
        assert [path.name for path in files if others_may_read(path)] == []
    finally:
        engine.dispose()


def test_the_hubs_database_secrets_and_passwords_are_private_before_the_hub_opens_them(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    password_file(data).write_text("{}")
    password_file(data).chmod(0o644)  # written by an older version
    settings = HubSettings(alliance=DEMO_ALLIANCE, data_dir=data, proxy_command=str(PROXY))
    configure_hub(Config(), settings)
    for path in (data / "jupyterhub.sqlite", cookie_secret_path(data), quota_token_path(data), password_file(data)):
        assert path.exists() and not others_may_read(path), path
    assert stat.S_IMODE((data / "secrets").stat().st_mode) == 0o700
    assert len(bytes.fromhex(cookie_secret_path(data).read_text().strip())) == 32  # as JupyterHub reads it


def run_demo(tmp_path, monkeypatch, capsys, terminal: bool) -> tuple[str, Path]:
    monkeypatch.setattr(demo.launch, "run", lambda args: 0)  # everything but starting the hub
    monkeypatch.setattr(sys.stdout, "isatty", lambda: terminal, raising=False)
    args = argparse.Namespace(alliance=str(DEMO_ALLIANCE), data_dir=str(tmp_path / "demo"), ip="127.0.0.1", port=8000)
    assert demo.run(args) == 0
    return capsys.readouterr().out, demo.sheet_path(tmp_path / "demo")


def test_the_demo_prints_no_password_into_a_log_and_names_the_private_file(tmp_path, monkeypatch, capsys):
    output, sheet = run_demo(tmp_path, monkeypatch, capsys, terminal=False)  # make demo > log
    hashes = json.loads(password_file(tmp_path / "demo").read_text())
    lines = [line.split() for line in sheet.read_text().splitlines()[1:]]
    passwords = {fields[0]: fields[-1] for fields in lines}
    assert set(passwords) == set(hashes) and len(passwords) > 3
    for account, password in passwords.items():
        assert bcrypt.checkpw(password.encode(), hashes[account].encode())
        assert password not in output
    assert str(sheet.resolve()) in output and "not printed" in output
    assert stat.S_IMODE(sheet.stat().st_mode) == 0o600 and not others_may_read(sheet.parent)


def test_the_demo_prints_the_passwords_on_a_terminal(tmp_path, monkeypatch, capsys):
    output, sheet = run_demo(tmp_path, monkeypatch, capsys, terminal=True)
    password = sheet.read_text().splitlines()[1].split()[-1]
    assert password in output and str(sheet.resolve()) in output


def keepalive(tmp_path: Path) -> tuple[subprocess.Popen, Path]:
    pids = tmp_path / "pids"
    child = f"import os, time; open({str(pids)!r}, 'a').write(f'{{os.getpid()}}\\n'); time.sleep(600)"
    process = subprocess.Popen([sys.executable, "-m", "hub.keepalive", "--name", "probe", "--", sys.executable,
                                "-c", child], cwd=REPO, stderr=subprocess.PIPE, text=True)
    return process, pids


def child_pids(pids: Path, count: int, timeout: float = 10) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [int(line) for line in pids.read_text().split()] if pids.exists() else []
        if len(found) >= count:
            return found
        time.sleep(0.02)
    raise AssertionError(f"no child number {count} within {timeout} s")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] if Path(f"/proc/{pid}").exists() else "X"
    return state not in ("Z", "X")


def test_keepalive_starts_a_killed_service_again_within_a_second_and_stops_with_it(tmp_path):
    process, pids = keepalive(tmp_path)
    try:
        [first] = child_pids(pids, 1)
        killed = time.monotonic()
        os.kill(first, signal.SIGKILL)
        second = child_pids(pids, 2)[1]
        assert time.monotonic() - killed < 1.0
        process.send_signal(signal.SIGTERM)  # the hub stopping the service
        assert process.wait(timeout=10) == 128 + signal.SIGTERM  # passed on; the child's status
        assert not alive(second)
        assert "was killed by signal 9" in process.stderr.read()
    finally:
        process.kill()

    (tmp_path / "again").mkdir()
    orphaned, pids = keepalive(tmp_path / "again")
    try:
        [child] = child_pids(pids, 1)
        orphaned.kill()  # kill -9 of the keepalive itself: its child must not keep the port and the lock
        orphaned.wait()
        deadline = time.monotonic() + 5
        while alive(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not alive(child)
    finally:
        orphaned.kill()


def test_keepalive_stops_its_service_when_the_hub_is_killed(tmp_path):
    """kill -9 of the hub (its parent) left the keepalive and the quota service running: the hub
    started again could start no service on the port and the writer lock they kept."""
    pids = tmp_path / "pids"
    child = f"import os, time; open({str(pids)!r}, 'a').write(f'{{os.getpid()}}\\n'); time.sleep(600)"
    # a stand-in for the hub: it starts the keepalive, writes its pid, and waits
    hub = subprocess.Popen([sys.executable, "-c", (
        "import subprocess, sys, time\n"
        f"k = subprocess.Popen([sys.executable, '-m', 'hub.keepalive', '--name', 'probe', '--', sys.executable, '-c', {child!r}])\n"
        f"open({str(tmp_path / 'keepalive.pid')!r}, 'w').write(str(k.pid))\n"
        "time.sleep(600)\n")], cwd=REPO)
    try:
        [service] = child_pids(pids, 1)
        keeper = int((tmp_path / "keepalive.pid").read_text())
        hub.kill()
        hub.wait()
        deadline = time.monotonic() + 5
        while (alive(keeper) or alive(service)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not alive(keeper) and not alive(service)
    finally:
        hub.kill()
        for pid in child_pids(pids, 1) + ([int((tmp_path / "keepalive.pid").read_text())]
                                           if (tmp_path / "keepalive.pid").exists() else []):
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


# -- the real platform ---------------------------------------------------------------------------


@pytest.mark.slow
def test_the_platforms_files_are_private(stack):
    data = stack.data_dir
    files = [data / "jupyterhub.sqlite", password_file(data), *sorted((data / "secrets").iterdir()),
             *sorted((data / "quota").glob("quota.sqlite*"))]
    assert {path.name for path in files} >= {"jupyterhub.sqlite", "passwords.json", "jupyterhub_cookie_secret",
                                             "quota-service.token", "quota.sqlite"}
    assert [str(path) for path in files if others_may_read(path)] == []
    hub_files = sorted(data.glob("jupyterhub.sqlite*"))
    assert [str(path) for path in hub_files if others_may_read(path)] == []


@pytest.mark.slow
def test_a_killed_quota_service_answers_again_within_seconds(stack):
    lock = stack.data_dir / "quota" / "quota.sqlite.writer.lock"
    first = int(lock.read_text())
    killed = time.monotonic()
    os.kill(first, signal.SIGKILL)
    restarted = answered = None
    while time.monotonic() - killed < 30:
        pid = int(lock.read_text() or 0) if lock.exists() else 0
        if restarted is None and pid and pid != first:
            restarted = time.monotonic() - killed
        try:
            if restarted is not None and httpx.get(f"{stack.quota_url}/api/health", timeout=1).status_code == 200:
                answered = time.monotonic() - killed
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    print(f"quota service: new process after {restarted} s, answering after {answered} s")
    assert restarted is not None and restarted < 5, restarted  # was 30 s or more: the hub's poll
    assert answered is not None and answered < 15, answered
    with stack.quota() as quota:
        lease = quota.post("/api/leases", json={"user": "c01-s1", "school": "c01", "profile": "cpu"}).json()
        assert lease["state"] == "granted"
        quota.delete(f"/api/leases/{lease['id']}")
