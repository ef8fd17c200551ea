"""How the platform feels on a county school's link: 2 Mbit/s down, 1 Mbit/s up, 150 ms latency.

Starts a real platform (hub + proxy + quota service, tests/stack.py), starts one student's
CPU workspace through the hub's REST API, then drives real headless Chromium with the
link emulated by Chromium itself (Chrome DevTools Protocol, ``Network.emulateNetworkConditions``).
Each round opens a fresh browser context (empty cache, no cookies) and times, as a student
meets them:

- the login page, until its ``load`` event;
- logging in to the hub's home page (form sent until the home page's ``load``);
- JupyterLab cold: an empty cache, the first visit of the workspace in this browser (with
  the hub's OAuth redirects), until the launcher's cards show (``.jp-LauncherCard``);
- JupyterLab warm: the same page opened again with what the browser cached.

Each step also reports its requests and its bytes on the wire (what came over the network,
headers included, compressed as it came), and the hosts other than the hub that any page
asked anything of (there should be none). Prints a table, then the figures as JSON, and
whether the targets are met: cold JupyterLab <= 9 s, warm <= 3 s, login page <= 2 s,
JupyterLab's cold bytes <= 40 % of the figure measured before compression (``--baseline-bytes``).
Not part of the test suite; needs root (the sandbox), bubblewrap, Chromium and the proxy
(`make install-test`).

    .venv/bin/python benchmarks/slow_link.py --rounds 3
    .venv/bin/python benchmarks/slow_link.py --rounds 3 --no-compression   # the platform as it was
    .venv/bin/python benchmarks/slow_link.py --unthrottled
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.browser import CHROMIUM, CHROMIUM_ARGS, LAB_READY, Link, Wire  # noqa: E402
from tests.hub_client import log_in as log_in_api  # noqa: E402
from tests.stack import make_stack  # noqa: E402

ALLIANCE = """
name: Slow-link benchmark alliance
tiers: {county: {weight: 2}}
pools:
  - {id: bench-pool, gpus: 1, sliced_gpus: 0, slices_per_gpu: 1, simulated: true}
profiles:
  - {id: cpu, display_name: CPU only, gpu: none, max_minutes: 120}
schools:
  - {id: c01, tier: county, students: [c01-s1]}
"""

STUDENT = "c01-s1"
COUNTY_LINK = Link.mbit(down=2, up=1, latency_ms=150)
TARGETS_S = {"login page": 2.0, "JupyterLab cold": 9.0, "JupyterLab warm": 3.0}
# JupyterLab's cold bytes on the wire before compression (5.2 MB in 71 requests, issue 13);
# --baseline-bytes replaces it with a figure of this benchmark's --no-compression run.
BASELINE_LAB_BYTES = 5_200_000
STEPS = ("login page", "log in to home", "JupyterLab cold", "JupyterLab warm")


def no_compression_config(path: Path) -> Path:
    """Hub settings (YAML, by class) that switch compression off in the hub and in the
    workspace's Jupyter server: the platform as it was, for the figures before."""
    path.write_text(
        "JupyterHub:\n  tornado_settings: {compress_response: false}\n"
        "Spawner:\n  args: ['--ServerApp.tornado_settings={\"compress_response\": False}']\n"
    )
    return path


def one_round(browser, stack, link: Link | None) -> dict[str, dict]:
    """The four steps in a fresh browser context; per step its seconds, requests and bytes."""
    context = browser.new_context()
    try:
        page = context.new_page()
        wire = Wire.watch(context, page)
        if link:
            wire.slow_down(link)
        figures: dict[str, dict] = {}
        outside: set[str] = set()

        def measured(step: str, action) -> None:
            wire.reset()
            started = time.perf_counter()
            action()
            figures[step] = {"s": time.perf_counter() - started, "requests": wire.requests, "wire_bytes": wire.wire_bytes,
                             "responses": [
                                 {"url": r.url, "status": r.status, "wire_bytes": r.wire_bytes, "from_cache": r.from_cache,
                                  **{name: r.headers.get(name, "") for name in ("content-encoding", "cache-control")}}
                                 for r in wire.responses.values()
                             ]}
            outside.update(wire.hosts_other_than(stack.url))

        lab = f"{stack.url}/user/{STUDENT}/lab"
        measured("login page", lambda: page.goto(f"{stack.url}/hub/login?next=/hub/home", wait_until="load"))
        page.fill("input[name=username]", STUDENT)
        page.fill("input[name=password]", stack.passwords[STUDENT])

        def log_in_to_home() -> None:
            with page.expect_navigation(url=f"{stack.url}/hub/home", wait_until="load", timeout=60_000):
                page.click("#login_submit")

        measured("log in to home", log_in_to_home)
        page.wait_for_load_state("networkidle")  # the home page's scripts load more after its load event
        wire.clear_cache()

        def open_lab() -> None:
            page.goto(lab, wait_until="commit", timeout=120_000)
            page.wait_for_selector(LAB_READY, state="visible", timeout=120_000)

        measured("JupyterLab cold", open_lab)
        page.wait_for_timeout(1000)  # JupyterLab saves its workspace layout once it is up
        measured("JupyterLab warm", open_lab)
        figures["outside hosts"] = sorted(outside)
        return figures
    finally:
        context.close()


def summary(rounds: list[dict[str, dict]]) -> dict[str, dict]:
    return {
        step: {
            "median_s": round(statistics.median(r[step]["s"] for r in rounds), 2),
            "runs_s": [round(r[step]["s"], 2) for r in rounds],
            "requests": statistics.median(r[step]["requests"] for r in rounds),
            "wire_bytes": int(statistics.median(r[step]["wire_bytes"] for r in rounds)),
        }
        for step in STEPS
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="fresh browser contexts, each through the four steps")
    parser.add_argument("--unthrottled", action="store_true", help="no link emulation (loopback speed)")
    parser.add_argument("--no-compression", action="store_true",
                        help="switch compression off in the hub and the workspace (figures before)")
    parser.add_argument("--responses", type=Path, help="write each response of the last round (URL, bytes, "
                        "content-encoding, cache-control) to this JSON file")
    parser.add_argument("--baseline-bytes", type=int, default=BASELINE_LAB_BYTES,
                        help="JupyterLab's cold bytes on the wire before compression, for the 40 %% target")
    args = parser.parse_args()
    link = None if args.unthrottled else COUNTY_LINK

    root = Path(tempfile.mkdtemp(prefix="slow-link-bench-"))
    alliance = root / "alliance.yaml"
    alliance.write_text(ALLIANCE)
    hub_args = ["--config", str(no_compression_config(root / "hub.yaml"))] if args.no_compression else []
    stack = make_stack(root / "data", alliance, hub_args)
    rounds = []
    from playwright.sync_api import sync_playwright

    try:
        stack.start()
        student = log_in_api(stack, STUDENT)
        event = student.start("cpu")
        if not event.get("ready"):
            raise RuntimeError(f"the workspace did not start: {event.get('message')}")
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            try:
                one_round(browser, stack, link)  # warm-up: first imports and settings files on the server
                for number in range(args.rounds):
                    rounds.append(one_round(browser, stack, link))
                    print(f"round {number + 1}: " + ", ".join(f"{step} {rounds[-1][step]['s']:.2f} s" for step in STEPS),
                          flush=True)
            finally:
                browser.close()
        student.stop()
    finally:
        stack.stop()

    figures = summary(rounds)
    if args.responses:
        args.responses.write_text(json.dumps({step: rounds[-1][step]["responses"] for step in STEPS}, indent=1))
    outside = sorted({host for r in rounds for host in r["outside hosts"]})
    print(f"\n{'step':<18} {'median s':>9} {'requests':>9} {'MB on the wire':>15}")
    for step, row in figures.items():
        print(f"{step:<18} {row['median_s']:>9.2f} {row['requests']:>9.0f} {row['wire_bytes'] / 1e6:>15.2f}")
    link_text = "unthrottled" if link is None else "2 Mbit/s down, 1 Mbit/s up, 150 ms"
    print(json.dumps({"link": link_text, "compression": not args.no_compression, "rounds": args.rounds,
                      "steps": figures, "outside_hosts": outside}, indent=2))
    if link is not None:
        lab_share = figures["JupyterLab cold"]["wire_bytes"] / args.baseline_bytes
        checks = [(f"{step} <= {limit:g} s", figures[step]["median_s"] <= limit) for step, limit in TARGETS_S.items()]
        checks.append((f"JupyterLab cold bytes {100 * lab_share:.0f} % of {args.baseline_bytes / 1e6:.2f} MB <= 40 %",
                       lab_share <= 0.40))
        checks.append(("no outside host", not outside))
        for text, met in checks:
            print(f"{'met   ' if met else 'MISSED'} {text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
