"""The local backend's sandbox, run for real with bubblewrap: students cannot see each
other's files, cannot write outside their home, and do not run as root."""

from __future__ import annotations

import shutil
import subprocess
from types import SimpleNamespace

import pytest

from spawner.local import SANDBOX_HOME, SandboxedLocalSpawner



@pytest.fixture(autouse=True)
def _needs_bubblewrap():
    if not shutil.which("bwrap"):
        pytest.fail("bubblewrap is missing; run `make install-test` (Debian package bubblewrap)")


def spawner_for(name: str, user_id: int, homes_dir) -> SandboxedLocalSpawner:
    user = SimpleNamespace(name=name, id=user_id, url=f"/user/{name}/")
    return SandboxedLocalSpawner(user=user, homes_dir=str(homes_dir))


def run_inside(spawner: SandboxedLocalSpawner, script: str) -> subprocess.CompletedProcess:
    spawner.ensure_home()
    return subprocess.run(
        [*spawner.sandbox_command(), "/bin/sh", "-c", script],
        capture_output=True, text=True, timeout=30, env=spawner.user_env({}),
    )


def test_each_student_sees_only_their_own_home(tmp_path):
    homes = tmp_path / "homes"
    alice, bob = spawner_for("alice", 1, homes), spawner_for("bob", 2, homes)
    written = run_inside(alice, f"echo secret > {SANDBOX_HOME}/notes.txt && id -u")
    assert written.returncode == 0, written.stderr
    assert written.stdout.strip() == str(alice.student_uid) != "0"
    assert (homes / "alice" / "notes.txt").read_text() == "secret\n"
    assert (homes / "alice").stat().st_uid == alice.student_uid

    # Bob's sandbox holds no path to Alice's home, neither inside nor on the host.
    probe = run_inside(bob, f"ls {SANDBOX_HOME}; cat {homes}/alice/notes.txt; ls {homes}")
    assert "secret" not in probe.stdout
    assert "notes.txt" not in probe.stdout
    assert probe.returncode != 0


def test_home_is_private_even_on_the_host(tmp_path):
    alice = spawner_for("alice", 1, tmp_path / "homes")
    alice.ensure_home()
    assert oct((tmp_path / "homes" / "alice").stat().st_mode & 0o777) == "0o700"


def test_nothing_outside_home_is_writable_and_no_capabilities(tmp_path):
    alice = spawner_for("alice", 1, tmp_path / "homes")
    result = run_inside(
        alice,
        "touch /usr/x 2>/dev/null && echo usr-writable; touch /etc/x 2>/dev/null && echo etc-writable; "
        "grep CapEff /proc/self/status; cat /etc/shadow >/dev/null 2>&1 && echo shadow-readable; ps -e | wc -l",
    )
    assert "writable" not in result.stdout and "shadow-readable" not in result.stdout
    assert "CapEff:\t0000000000000000" in result.stdout
    # Its own PID namespace: the host's processes are not visible.
    assert int(result.stdout.strip().splitlines()[-1]) < 10


def test_platform_data_is_not_mounted(tmp_path):
    data = tmp_path / "data"
    (data / "secrets").mkdir(parents=True)
    (data / "secrets" / "token").write_text("t0p")
    alice = spawner_for("alice", 1, data / "homes")
    result = run_inside(alice, f"cat {data}/secrets/token; ls {data}")
    assert "t0p" not in result.stdout and result.returncode != 0


def test_the_workspace_python_runs_and_tmp_is_private_and_writable(tmp_path):
    (tmp_path / "host-file").write_text("host")
    alice = spawner_for("alice", 1, tmp_path / "homes")
    python = alice.cmd[0].rsplit("/", 1)[0] + "/python"
    result = run_inside(alice, f"touch /tmp/mine && ls /tmp && {python} -c 'import jupyterlab; print(\"lab-ok\")'")
    assert result.returncode == 0, result.stderr
    assert "lab-ok" in result.stdout and "mine" in result.stdout and "pytest-of-root" not in result.stdout
