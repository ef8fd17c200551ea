"""What a local workspace's own network costs: making its namespace (veth pair, addresses, packet
filter) and its gates, and closing it again, as the spawner does at each start and stop.

Needs root, iproute2, iptables and util-linux; makes nothing outside the namespaces it makes (in
``--subnet``, by default a /24 at the top of the spawner's default block, far from running hubs)::

    .venv/bin/python benchmarks/workspace_network.py --rounds 30
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import statistics
import time

from spawner.net_gates import GatePlan, WorkspaceGates
from spawner.netns import WorkspaceNetwork


async def one_round(subnet: str) -> tuple[float, float, float]:
    started = time.perf_counter()
    network = await asyncio.to_thread(WorkspaceNetwork.create, subnet, 8888, f"gpu-commons:benchmark/{os.getpid()}")
    made = time.perf_counter()
    plan = GatePlan(("127.0.0.1", 8081), 8081, "http://127.0.0.1:8181", 8181)
    gates = await WorkspaceGates.open(network, plan, lambda: "l-1", logging.getLogger("benchmark"))
    opened = time.perf_counter()
    await gates.close()
    await asyncio.to_thread(network.close)
    return made - started, opened - made, time.perf_counter() - opened


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--subnet", default="169.254.127.0/24")
    args = parser.parse_args()
    rounds = [await one_round(args.subnet) for _ in range(args.rounds)]
    for name, values in zip(("namespace", "gates", "close"), zip(*rounds)):
        values = sorted(v * 1000 for v in values)
        print(f"{name:10s} median {statistics.median(values):6.1f} ms  p90 {values[int(len(values) * 0.9)]:6.1f} ms")
    print(f"load average {os.getloadavg()[0]:.1f}, {args.rounds} rounds")


if __name__ == "__main__":
    asyncio.run(main())
