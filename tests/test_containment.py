"""A local workspace ends whole and stays within its profile's limits, for real: the
sandbox (bubblewrap) in its own cgroup, run by the local spawner behind the quota step with
a lease from the fake quota service. Each workspace runs a shell script as the student.

What a student could do before (issue 17): a ``setsid`` process outlived the stop with its
GPU in CUDA_VISIBLE_DEVICES while the lease went to someone else; no memory, CPU or process
limit; /tmp as big as half the host's memory; no home quota.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys

import pytest

from spawner.cgroups import CgroupLimits, WorkspaceCgroup
from tests.sandboxes import cgroup_scope, processes_of_uid, wait_for, workspace_spawner
from spawner.quota import QuotaSpawnerMixin, WorkspaceStillRunning
from tests.spawner_fakes import DEVICE, FakeBackend, FakeQuotaService, lease, student

ALLIANCE = """
name: Containment test alliance
tiers: {county: {weight: 1}}
pools:
  - {id: test-pool, gpus: 1, sliced_gpus: 1, slices_per_gpu: 1, simulated: true}
profiles:
  - {id: cpu, display_name: CPU only, gpu: none, max_minutes: 30}
  - {id: gpu-slice, display_name: One GPU slice, gpu: slice, max_minutes: 30}
  - {id: tight, display_name: Tight, gpu: none, max_minutes: 30,
     mem_limit: 96M, cpu_limit: 0.5, pids_limit: 64, tmp_size: 8M, home_quota: 16M}
schools:
  - {id: c01, tier: county, students: [c01-s1]}
"""

# A setsid child that forks a sleeper and exits: the sleeper is in no process group or
# session of the server, and its parent is gone.
DOUBLE_FORK = "setsid sh -c 'sleep 600 &' &"


class WatchedQuotaService(FakeQuotaService):
    """Notes, at each lease release, which of the student's processes still run."""

    def __init__(self):
        super().__init__()
        self.uid = None
        self.alive_at_release: list[list[int]] = []

    def handler(self, request):
        if request.method == "DELETE":
            self.alive_at_release.append(processes_of_uid(self.uid))
        return super().handler(request)


@pytest.fixture(autouse=True)
def _needs_root_and_bubblewrap():
    if os.geteuid() != 0 or not shutil.which("bwrap"):
        pytest.fail("these tests build real sandboxes: run them as root with bubblewrap installed (make install-test)")


@pytest.fixture
def alliance(tmp_path):
    path = tmp_path / "alliance.yaml"
    path.write_text(ALLIANCE)
    return path


@pytest.fixture
async def service():
    fake = WatchedQuotaService()
    yield fake
    await fake.close()


@pytest.fixture
def scope():
    with cgroup_scope() as parent:
        yield parent


@pytest.fixture
async def workspace(service, alliance, tmp_path, scope):
    """Start a workspace running a script (as the student, inside the sandbox) under a
    lease of the given profile; stopped at the end of the test if it still runs."""
    started = []

    async def start(script: str, profile: str = "tight", **config):
        granted = lease("granted") if profile == "gpu-slice" else lease("granted", profile=profile, device=None,
                                                                       unit_kind=None, pool=None)
        service.answer("POST", "/api/leases", granted)
        service.answer("GET", "/api/leases/l-1", granted)  # poll() asks whether the lease still holds
        spawner = workspace_spawner(service, alliance, tmp_path / "homes", scope, script, profile, **config)
        service.uid = spawner.student_uid
        await spawner.start()
        started.append(spawner)
        return spawner

    yield start
    for spawner in started:
        await spawner.stop(now=True)  # also unmounts the home's image


def home_file(spawner, name: str) -> str:
    path = spawner.home_on_host / name
    return wait_for(lambda: path.exists() and path.read_text().strip(), 20, f"{name} in the home")


# -- a workspace ends whole ----------------------------------------------------------------


async def test_stop_ends_setsid_double_forked_processes_before_the_lease_is_released(workspace, service, scope):
    spawner = await workspace(f"{DOUBLE_FORK} echo $CUDA_VISIBLE_DEVICES > ~/device; exec sleep 600",
                              profile="gpu-slice")
    uid = spawner.student_uid
    assert home_file(spawner, "device") == DEVICE  # the sleeper holds the GPU slice
    wait_for(lambda: len(processes_of_uid(uid, zombies=False)) == 2, 10, "the server and the setsid sleeper")

    await spawner.stop()

    assert processes_of_uid(uid) == []
    # The lease (the GPU slice) was given back once nothing of the workspace ran any more.
    assert service.paths("DELETE") == ["/api/leases/l-1"]
    assert service.alive_at_release == [[]]
    assert not WorkspaceCgroup("c01-s1", scope).exists()


async def test_every_process_of_a_workspace_is_born_in_its_cgroup(workspace, scope):
    spawner = await workspace(f"{DOUBLE_FORK} exec sleep 600")
    uid = spawner.student_uid
    wait_for(lambda: len(processes_of_uid(uid, zombies=False)) == 2, 10, "the server and the setsid sleeper")
    cgroup = WorkspaceCgroup("c01-s1", scope)
    assert set(processes_of_uid(uid, zombies=False)) <= cgroup.pids()
    await spawner.stop()
    assert not cgroup.exists()


class _StuckBackend(FakeBackend):
    async def stop(self, now=False):
        raise WorkspaceStillRunning("processes [4242] were sent SIGKILL but are still there after 10 s")


class _StuckSpawner(QuotaSpawnerMixin, _StuckBackend):
    pass


async def test_a_workspace_whose_processes_cannot_be_ended_keeps_its_lease(service, alliance):
    service.answer("POST", "/api/leases", lease("granted"))
    spawner = _StuckSpawner(user=student(), user_options={"profile": "gpu-slice"}, alliance_file=str(alliance))
    spawner._quota_client = service.client()
    await spawner.start()
    with pytest.raises(WorkspaceStillRunning):
        await spawner.stop()
    assert service.paths("DELETE") == []  # the GPU stays booked until the lease's end


async def test_a_server_that_exits_leaves_nothing_behind(workspace):
    spawner = await workspace(f"{DOUBLE_FORK} sleep 1")  # the server ends by itself, its sleeper would not
    uid = spawner.student_uid
    wait_for(lambda: len(processes_of_uid(uid)) >= 1, 10, "the setsid sleeper")
    wait_for(lambda: spawner.proc.poll() is not None, 10, "the server to exit")
    assert await spawner.poll() is not None
    await spawner.stop()  # as the hub does once poll() saw the server gone
    assert processes_of_uid(uid) == []


async def test_a_new_start_ends_what_an_earlier_workspace_left(workspace, scope, service, alliance, tmp_path):
    spawner = await workspace("exec sleep 600")
    uid = spawner.student_uid
    first = set(processes_of_uid(uid))
    spawner.proc = None  # the hub restarted and lost it, the process runs on
    service.answer("POST", "/api/leases", lease("granted", profile="tight", device=None, unit_kind=None, pool=None))
    await spawner.start()
    assert not first & set(processes_of_uid(uid))
    await spawner.stop()
    assert processes_of_uid(uid) == []


# -- limits from the profile ---------------------------------------------------------------


async def test_limits_come_from_the_profile(workspace, scope):
    await workspace("exec sleep 600")
    dirs = WorkspaceCgroup("c01-s1", scope).dirs
    assert (dirs["memory"] / "memory.limit_in_bytes").read_text().strip() == str(96 * 1024**2)
    assert (dirs["pids"] / "pids.max").read_text().strip() == "64"
    assert (dirs["cpu"] / "cpu.cfs_quota_us").read_text().strip() == "50000"
    assert (dirs["cpu"] / "cpu.cfs_period_us").read_text().strip() == "100000"


async def test_a_fork_bomb_stops_at_the_process_limit_and_the_host_can_still_fork(workspace):
    # Bounded, so that without a limit it only starts 300 sleepers (and the test fails).
    bomb = ("import os\nforked = refused = 0\nfor _ in range(300):\n    try:\n        pid = os.fork()\n"
            "    except OSError:\n        refused += 1\n        continue\n"
            "    if pid == 0:\n        os.execv('/bin/sleep', ['sleep', '600'])\n    forked += 1\n"
            "open(os.path.expanduser('~/bomb'), 'w').write(f'{forked} {refused}')\n")
    spawner = await workspace(f'{workspace_python()} -c "$BOMB"; exec sleep 600', environment={"BOMB": bomb})
    uid = spawner.student_uid
    forked, refused = map(int, home_file(spawner, "bomb").split())
    assert forked < 64 and refused > 236
    assert len(processes_of_uid(uid)) <= 64
    assert int((spawner.cgroup.dirs["pids"] / "pids.events").read_text().split()[1]) > 0  # forks were refused
    assert subprocess.run(["true"]).returncode == 0  # the host is not out of processes
    await spawner.stop()
    assert processes_of_uid(uid) == []


async def test_a_memory_hog_is_killed_inside_its_workspace_which_goes_on(workspace, caplog):
    python = workspace_python()
    spawner = await workspace(
        f"{python} -c 'a = b\"x\" * (400 * 1024 * 1024); print(len(a))'; echo $? > ~/hog; exec sleep 600"
    )
    assert home_file(spawner, "hog") == "137"  # SIGKILL from the kernel's OOM killer
    assert spawner.cgroup.oom_kills() >= 1
    assert await spawner.poll() is None  # the server (like JupyterLab, whose kernel restarts) runs on
    assert "1 process(es) ended at the workspace's memory limit (100663296 bytes)" in caplog.text  # the hub log
    await spawner.stop()


async def test_tmp_is_full_at_its_size(workspace):
    spawner = await workspace("dd if=/dev/zero of=/tmp/big bs=1M count=32 2> ~/dd; ls -l /tmp/big >> ~/dd; "
                              "echo end >> ~/dd; exec sleep 600")
    report = wait_for(lambda: "end" in (text := _read(spawner.home_on_host / "dd")) and text, 20, "dd to finish")
    assert "No space left on device" in report
    size = int(report.splitlines()[-2].split()[4])
    assert 7 * 1024**2 <= size <= 8 * 1024**2


async def test_cpu_is_held_to_the_profile_quota(workspace, scope):
    # four spinners ask for four cores, well above the quota of half a core even on a loaded machine
    # (one spinner on a busy shared machine may never get half a core, and is never throttled)
    spin = "end=$(($(date +%s) + 2)); while [ $(date +%s) -lt $end ]; do :; done"
    spawner = await workspace(f"({spin}) & ({spin}) & ({spin}) & ({spin}); wait; echo busy > ~/cpu; exec sleep 600")
    home_file(spawner, "cpu")
    cpu_stat = WorkspaceCgroup("c01-s1", scope).dirs["cpu"] / "cpu.stat"
    stat = dict(line.split() for line in cpu_stat.read_text().splitlines()) if cpu_stat.exists() else {}
    assert int(stat.get("nr_throttled", 0)) > 0


async def test_the_home_quota_ends_writes_there_and_keeps_the_files(workspace, tmp_path):
    home = tmp_path / "homes" / "c01-s1"
    home.mkdir(parents=True)
    (home / "notes.txt").write_text("from before the quota")  # moved into the quota's image
    spawner = await workspace("cat ~/notes.txt > ~/seen; dd if=/dev/zero of=$HOME/big bs=1M count=32 2> ~/dd; "
                              "echo end >> ~/dd; exec sleep 600")
    report = wait_for(lambda: "end" in (text := _read(home / "dd")) and text, 20, "dd to finish")
    assert "No space left on device" in report
    assert (home / "seen").read_text() == "from before the quota"
    assert os.path.ismount(home)
    await spawner.stop()
    assert not os.path.ismount(home) and list(home.iterdir()) == []  # the files are in the image
    assert (home.parent / ".images" / "c01-s1.ext4").stat().st_size == 16 * 1024**2


def test_a_v2_cgroup_is_killed_whole_too():
    # The unified hierarchy here has no memory, pids or cpu controller: only ending is tried.
    root = "/sys/fs/cgroup/unified"
    if not os.path.exists(f"{root}/cgroup.controllers"):
        pytest.skip("no cgroup v2 mount here")
    with cgroup_scope() as parent:
        cgroup = WorkspaceCgroup("v2-probe", parent, root)
        cgroup.create(CgroupLimits())
        try:
            process = subprocess.Popen(["sh", "-c", f"{DOUBLE_FORK} exec sleep 600"], preexec_fn=cgroup.joiner())
            wait_for(lambda: len(cgroup.pids()) >= 2, 10, "the double fork")
            assert cgroup.kill() >= 2
            process.wait(5)
            assert not cgroup.exists()
        finally:
            cgroup.kill()
            os.rmdir(f"{root}/{parent}")
            with contextlib.suppress(OSError):  # another test's may be in it
                os.rmdir(f"{root}/{parent.split('/')[0]}")


def workspace_python() -> str:
    return os.path.join(sys.prefix, "bin", "python")


def _read(path) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        return ""
