"""What one workspace start costs in CPU, with and without the lighter start's cuts.

Two real platforms side by side (hub + proxy + quota service, sandboxed local workspaces,
tests/stack.py): ``before`` starts ``jupyterhub-singleuser`` as JupyterLab's defaults have it
(``c.LocalQuotaSpawner.defer_hub_imports = False``, ``lab_extension_manager = ""``), ``light``
with the platform's defaults (``python -m light_singleuser``, the read-only extension manager).
The same student starts and stops a workspace on each in turn, alternating the order, so both
see the same machine load. For each start:

- ``workspace_cpu_s``: the CPU time of every process in the workspace's cgroup (bubblewrap,
  setpriv, the server and the children it waited for) when the hub says it is ready, which is
  once the server listens (``wait_for_listen``);
- ``hub_cpu_s``: the hub process's CPU time from the start request until then (the quota step,
  the sandbox's setup: home, cgroup, network namespace, gates);
- ``ready_s``: wall time from the start request until the hub says it is ready.

Also ``-X importtime`` of ``import jupyterhub.singleuser`` (with the start shims on
``PYTHONPATH``, as in a workspace) both ways. Not part of the test suite; needs root (the
sandbox), bubblewrap and the proxy (``make install-test``)::

    .venv/bin/python benchmarks/start_cpu.py --rounds 4
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hub.config import cgroup_parent_for  # noqa: E402
from spawner.cgroups import WorkspaceCgroup  # noqa: E402
from spawner.light_start import SHIMS_DIR, with_shims  # noqa: E402
from spawner.local import cgroup_name  # noqa: E402
from tests.hub_client import log_in  # noqa: E402
from tests.stack import make_stack  # noqa: E402

ALLIANCE = """
name: Start CPU benchmark alliance
tiers: {county: {weight: 2}}
pools:
  - {id: bench-pool, gpus: 1, simulated: true}
profiles:
  - {id: cpu, display_name: CPU only, gpu: none, max_minutes: 30}
schools:
  - {id: c01, tier: county, students: [c01-s1]}
"""
STUDENT = "c01-s1"
MODES = {
    "before": {"LocalQuotaSpawner": {"defer_hub_imports": False, "lab_extension_manager": ""}},
    "light": {},
}
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int, children: bool = True) -> float:
    """utime + stime (+ the waited-for children's) of one process, in seconds (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    ticks = int(fields[11]) + int(fields[12]) + ((int(fields[13]) + int(fields[14])) if children else 0)
    return ticks / TICK


def one_start(stack, student) -> dict:
    hub_pid = stack.process.pid
    hub_before = cpu_seconds(hub_pid, children=False)
    started = time.perf_counter()
    event = student.start("cpu")
    ready = time.perf_counter() - started
    hub_cpu = cpu_seconds(hub_pid, children=False) - hub_before
    if not event.get("ready"):
        raise RuntimeError(f"the start failed: {event}")
    cgroup = WorkspaceCgroup(cgroup_name(STUDENT), cgroup_parent_for(stack.data_dir))
    workspace_cpu = sum(cpu_seconds(pid) for pid in cgroup.pids())
    student.stop()
    return {"ready_s": round(ready, 3), "workspace_cpu_s": round(workspace_cpu, 3), "hub_cpu_s": round(hub_cpu, 3)}


IMPORTS = {
    "before": "import jupyterhub.singleuser",
    "light": "import light_singleuser as l; l.import_singleuser()",
}


def import_times(runs: int) -> dict:
    """``-X importtime`` total (the top-level imports' cumulative microseconds, summed) and the
    CPU seconds of the process, per way of importing; median of ``runs``."""
    env = with_shims(dict(os.environ), SHIMS_DIR)
    out = {}
    for mode, code in IMPORTS.items():
        totals, cpus = [], []
        for _ in range(runs):
            probe = f"import time; {code}; print(time.process_time())"
            done = subprocess.run([sys.executable, "-X", "importtime", "-c", probe], env=env, capture_output=True,
                                  text=True, check=True)
            top = [line for line in done.stderr.splitlines() if line.startswith("import time:")
                   and line.split("|")[2].startswith(" ") and not line.split("|")[2].startswith("  ")]
            totals.append(sum(int(line.split("|")[1]) for line in top if line.split("|")[1].strip().isdigit()) / 1e6)
            cpus.append(float(done.stdout.strip().splitlines()[-1]))
        out[mode] = {"importtime_s": round(statistics.median(totals), 3), "process_cpu_s": round(statistics.median(cpus), 3)}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--import-runs", type=int, default=5)
    args = parser.parse_args()

    load_before = os.getloadavg()[0]
    imports = import_times(args.import_runs)
    here = Path(tempfile.mkdtemp(prefix="start-cpu-"))
    alliance = here / "alliance.yaml"
    alliance.write_text(ALLIANCE)
    stacks = {}
    try:
        for mode, config in MODES.items():
            config_file = here / f"{mode}.yaml"
            config_file.write_text(yaml.safe_dump(config))
            stacks[mode] = make_stack(here / mode, alliance, ["--config", str(config_file)])
            stacks[mode].start()
        students = {mode: log_in(stack, STUDENT) for mode, stack in stacks.items()}
        samples = {mode: [] for mode in MODES}
        for round_ in range(args.rounds):
            for mode in (list(MODES) if round_ % 2 == 0 else list(reversed(MODES))):
                samples[mode].append(one_start(stacks[mode], students[mode]))
    finally:
        for stack in stacks.values():
            stack.stop()
    result = {"rounds": args.rounds, "load_before": round(load_before, 2), "load_after": round(os.getloadavg()[0], 2),
              "imports": imports}
    for mode, runs in samples.items():
        result[mode] = {key: round(statistics.median(run[key] for run in runs), 3) for key in runs[0]}
        result[mode]["samples"] = runs
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
