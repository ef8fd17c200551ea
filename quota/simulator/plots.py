"""Three PNG charts a staff member can read without the code.

* ``wait_by_tier.png``: how long requests waited, per tier (cumulative share of requests).
* ``utilization.png``: share of the GPUs in use over time, with the optimum's for reference.
* ``served_vs_entitlement.png``: GPU-hours each school got against its fair entitlement
  (the optimum's); points on the diagonal got exactly their share.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from quota.simulator.trace import Trace  # noqa: E402

COLORS = ["#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02"]


def _tiers(result: dict, trace: Trace) -> dict[str, list[int]]:
    tiers: dict[str, list[int]] = {}
    for i, school in enumerate(trace.school):
        tiers.setdefault(result["tier_of"].get(school, "?"), []).append(i)
    return dict(sorted(tiers.items()))


def wait_plot(result: dict, trace: Trace, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for k, (tier, idx) in enumerate(_tiers(result, trace).items()):
        waits = np.sort([result["waits"][i] / 60 for i in idx if result["outcome"][i] != "refused"])
        if len(waits):
            ax.step(waits, np.arange(1, len(waits) + 1) / len(waits), where="post", color=COLORS[k % 6],
                    label=f"{tier} (p95 {np.percentile(waits, 95):.1f} min)")
    ax.set_xlabel("wait before the GPU was given (minutes; those who gave up count their patience)")
    ax.set_ylabel("share of requests waiting at most this long")
    ax.set_title(f"Waiting time per tier — policy {result['summary']['policy']}")
    ax.set_ylim(0, 1.01)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def utilization_plot(result: dict, path: Path, bins: int = 200) -> None:
    lo, hi = result["window"]
    cap = result["capacity_milli"]
    edges = np.linspace(lo, hi, bins + 1) if hi > lo else np.array([lo, lo + 1])

    def binned(t: list[float], m: list[float]) -> np.ndarray:
        t = np.asarray(t, dtype=float)
        m = np.asarray(m, dtype=float)
        if not len(t):
            return np.zeros(len(edges) - 1)
        # integral of the step function at each edge, then differences
        seg = np.diff(np.append(t, max(hi, t[-1])))
        cum = np.concatenate([[0.0], np.cumsum(m * seg)])
        knots = np.append(t, max(hi, t[-1]))

        def integral(x: np.ndarray) -> np.ndarray:
            k = np.clip(np.searchsorted(knots, x, side="right") - 1, 0, len(m) - 1)
            inside = x >= knots[0]
            return np.where(inside, cum[k] + m[k] * (x - knots[k]), 0.0)

        return np.diff(integral(edges)) / np.diff(edges)

    used = binned(*result["timeline"]) / cap
    fluid = result["fluid"]
    opt = binned(fluid.steps_t, fluid.steps_milli) / cap
    hours = (edges[:-1] - lo) / 3600
    fig, ax = plt.subplots(figsize=(9, 4))
    ax.plot(hours, opt, color="#999999", lw=1, label="offline optimum (upper bound)")
    ax.plot(hours, used, color="#d95f02", lw=1.2, label=f"{result['summary']['policy']}")
    ax.set_xlabel("hours since the first request")
    ax.set_ylabel("share of the GPUs in use")
    ax.set_ylim(0, 1.05)
    ax.set_title(f"GPU utilisation — {result['summary']['utilization']:.1%} over the trace")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def served_plot(result: dict, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 6))
    tier_of = result["tier_of"]
    tiers = sorted(set(tier_of.values()))
    top = 0.0
    for k, tier in enumerate(tiers):
        schools = [s for s in result["entitled"] if tier_of.get(s) == tier and result["entitled"][s] > 0]
        x = np.array([result["entitled"][s] / 3.6e6 for s in schools])
        y = np.array([result["served"].get(s, 0.0) / 3.6e6 for s in schools])
        if len(x):
            top = max(top, x.max(), y.max())
            ax.scatter(x, y, s=14, alpha=0.7, color=COLORS[k % 6], label=tier)
    ax.plot([0, top * 1.05], [0, top * 1.05], color="#555555", lw=1, ls="--", label="served = entitlement")
    ax.set_xlabel("fair entitlement (GPU-hours, offline optimum)")
    ax.set_ylabel("served (GPU-hours)")
    jain_index = result['summary']['jain_index']
    ax.set_title("Served versus entitlement per school — Jain " + ("n/a" if jain_index is None else f"{jain_index:.3f}"))
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_plots(result: dict, trace: Trace, out: Path) -> list[Path]:
    paths = [out / "wait_by_tier.png", out / "utilization.png", out / "served_vs_entitlement.png"]
    wait_plot(result, trace, paths[0])
    utilization_plot(result, paths[1])
    served_plot(result, paths[2])
    return paths
