"""Fair under a storm (issue 18, point 3), on the real platform: more students press Start at
once than the machine starts at a time (``concurrent_starts = 1`` here). None is refused (no
JupyterHub 429), each waiting one's page says how many are ahead, and a county student who
comes last starts before the urban students already waiting (the start line's order,
spawner/light_start.py)."""

from __future__ import annotations

import json
import threading
import time

import pytest

from tests.hub_client import log_in
from tests.stack import running_stack

pytestmark = pytest.mark.slow

ALLIANCE = """
name: Start line test alliance
tiers: {county: {weight: 2}, urban: {weight: 1}}
pools:
  - {id: uni-a, gpus: 1, simulated: true}
profiles:
  - {id: cpu, display_name: CPU only, gpu: none, max_minutes: 60}
schools:
  - {id: c01, tier: county, students: [c01-s1]}
  - {id: u01, tier: urban, students: [u01-s1, u01-s2, u01-s3]}
"""

HUB_CONFIG = {"LocalQuotaSpawner": {"concurrent_starts": 1}}
AHEAD = ("ahead of you", "你前面还有")


def _waiting_lines(stack, account: str) -> list[str]:
    """What the waiting page told ``account`` of those ahead (each progress message is also in the
    hub log: a start that is ready before its answer, 201, replays only its last event)."""
    return [line for line in stack.log_path.read_text().splitlines()
            if f"{account}/default:" in line and any(a in line for a in AHEAD)]


def follow_start(student, results: dict) -> None:
    """Press Start and read the spawn page's progress until ready or failed."""
    answer = student.hub.post(f"/users/{student.name}/server", json={"user_options": {"profile": "cpu"}})
    events = []
    if answer.status_code in (201, 202):
        with student.hub.stream("GET", f"/users/{student.name}/server/progress", timeout=180) as stream:
            for line in stream.iter_lines():
                if line.startswith("data:"):
                    events.append(json.loads(line[5:]))
                    if events[-1].get("ready") or events[-1].get("failed"):
                        break
    results[student.name] = {"status": answer.status_code, "events": events, "done_at": time.monotonic()}


def test_a_storm_waits_in_line_in_the_allocators_order_and_none_fails(tmp_path):
    with running_stack(tmp_path, ALLIANCE, HUB_CONFIG) as stack:
        students = {name: log_in(stack, name) for name in ("u01-s1", "u01-s2", "u01-s3", "c01-s1")}
        results: dict = {}
        threads = []
        for name in ("u01-s1", "u01-s2", "u01-s3"):
            threads.append(threading.Thread(target=follow_start, args=(students[name], results)))
            threads[-1].start()
            time.sleep(0.1)  # they come in this order
        # The county student comes once the last urban one waits in line (on a busy machine its
        # request could otherwise come after the line has moved on)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not _waiting_lines(stack, "u01-s3"):
            time.sleep(0.1)
        threads.append(threading.Thread(target=follow_start, args=(students["c01-s1"], results)))
        threads[-1].start()
        for thread in threads:
            thread.join(240)
        try:
            for name, got in results.items():
                assert got["status"] in (201, 202), (name, got)  # never 429 "too many users starting"
                assert got["events"][-1].get("ready"), (name, got["events"][-1])
            assert len(results) == 4
            done = sorted(results, key=lambda name: results[name]["done_at"])
            assert done.index("c01-s1") < done.index("u01-s3"), done  # came later, waited less
            said = _waiting_lines(stack, "u01-s3")
            assert said, stack.log_tail(60)  # the waiting page said how many were ahead
            assert any(ch.isdigit() and ch != "0" for ch in said[0].split("default:")[1]), said  # someone was ahead
        finally:
            for student in students.values():
                student.stop()
