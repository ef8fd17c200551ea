"""The Grafana dashboards of the quota service, built with grafana-foundation-sdk.

Three dashboards, each panel a query of the metrics in :mod:`quota.metrics`:

- **alliance**: GPU-hours served against entitlement per tier and school, the queue and its
  waits, reclaims, budgets, fair-share priorities;
- **pools**: units allocated against capacity, by pool and school, held units by idle time and the
  utilisation of held GPUs;
- **service**: whether the service is up, decision, journal commit and HTTP answer times,
  answers by code, server errors, journal commit failures.

The JSON lives in helm/gpu-commons/files/dashboards/ (the chart's Grafana ConfigMaps read it,
and a plain Grafana imports it); regenerate it after a change here with::

    .venv/bin/python -m quota.dashboards

tests/test_dashboards.py checks that the committed JSON is what this module makes, and runs
every panel's query against a real Prometheus scraping a real quota service. The SDK is a
test dependency (``pip install -e '.[test]'``); the service never imports this module.

Queries use Grafana's ``$__rate_interval`` (rates) and ``$__range`` / ``$__range_s`` (the
dashboard's time range), and the scrape job ``gpu-commons-quota`` (docs/operations.md).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

from grafana_foundation_sdk.builders import bargauge, common, dashboard, prometheus, stat, table, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import DataSourceRef

OUT = Path(__file__).resolve().parent.parent / "helm" / "gpu-commons" / "files" / "dashboards"
JOB = "gpu-commons-quota"
DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")
TAGS = ["gpu-commons"]


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str = ""


@dataclass(frozen=True)
class Panel:
    """One panel: ``kind`` timeseries, stat, bargauge or table; ``stack`` stacks the series."""

    title: str
    description: str
    queries: tuple[Query, ...]
    unit: str = "short"
    kind: str = "timeseries"
    width: int = 12
    stack: bool = False


@dataclass(frozen=True)
class Row:
    title: str
    panels: tuple[Panel, ...]


@dataclass(frozen=True)
class Board:
    uid: str
    title: str
    description: str
    rows: tuple[Row, ...]


def quantiles(histogram: str, by: str = "", window: str = "$__rate_interval") -> tuple[Query, ...]:
    group = f"{by}, le" if by else "le"
    prefix = "{{" + by + "}} " if by else ""
    return tuple(
        Query(f"histogram_quantile({q}, sum by ({group}) (rate({histogram}_bucket[{window}])))", f"{prefix}p{int(q * 100)}")
        for q in (0.5, 0.95, 0.99)
    )


ALLIANCE = Board(
    "gpu-commons-alliance", "GPU Commons: alliance",
    "Is the alliance fair? GPU-hours served against entitlement, the queue, reclaims and budgets.",
    (
        Row("Served against entitlement", (
            Panel("GPUs held, entitled and guaranteed, by tier",
                  "Held: GPUs the tier's granted leases hold. Entitled: its guaranteed share, capped by what its "
                  "schools hold and ask for (a school that asks for less is not short). Guaranteed: the fair share.",
                  (Query("sum by (tier) (gpu_commons_gpus_held)", "{{tier}} held"),
                   Query("sum by (tier) (gpu_commons_gpus_entitled)", "{{tier}} entitled"),
                   Query("sum by (tier) (gpu_commons_gpus_guaranteed)", "{{tier}} guaranteed"))),
            Panel("GPU-hours served and entitled, by school (time range)",
                  "Over the dashboard's time range: GPU-hours the school's leases held, and the GPU-hours it was "
                  "entitled to. Served below entitled means its students waited while it was below its share.",
                  (Query("sum by (school, tier) (avg_over_time(gpu_commons_gpus_held[$__range])) * $__range_s / 3600",
                         "{{school}} ({{tier}}) served"),
                   Query("sum by (school, tier) (avg_over_time(gpu_commons_gpus_entitled[$__range])) * $__range_s / 3600",
                         "{{school}} ({{tier}}) entitled")),
                  unit="none", kind="bargauge"),
            Panel("Served / entitled, by school (time range)",
                  "GPU-hours served divided by GPU-hours entitled over the time range; schools that were entitled to "
                  "nothing (they asked for nothing) are left out. The alert GpuCommonsCountyBelowEntitlement fires "
                  "below 90 % over a day.",
                  (Query("sum by (school, tier) (avg_over_time(gpu_commons_gpus_held[$__range])) / "
                         "(sum by (school, tier) (avg_over_time(gpu_commons_gpus_entitled[$__range])) > 0)",
                         "{{school}} ({{tier}})"),),
                  unit="percentunit", kind="bargauge"),
            Panel("GPU-hours of ended leases per hour, by tier",
                  "From the usage ledger: GPU-hours of the leases that ended in the last hour.",
                  (Query("sum by (tier) (increase(gpu_commons_gpu_usage_seconds_total[1h])) / 3600", "{{tier}}"),)),
        )),
        Row("Queue", (
            Panel("Queue length, by tier and kind", "Lease requests waiting for a GPU unit.",
                  (Query("sum by (tier, kind) (gpu_commons_queue_length)", "{{tier}} {{kind}}"),), stack=True),
            Panel("Longest wait now, by tier", "How long the longest-waiting queued request of the tier has waited.",
                  (Query("max by (tier) (gpu_commons_queue_longest_wait_seconds)", "{{tier}}"),), unit="s"),
            Panel("Queue wait of granted leases, by tier",
                  "Median and 95th percentile of the wait of leases granted after queueing, over 15 minutes. The "
                  "alert GpuCommonsQueueWaitHigh fires when the p95 stays over 30 minutes.",
                  tuple(q for q in quantiles("gpu_commons_queue_wait_seconds", "tier", "15m")
                        if not q.legend.endswith("p99")), unit="s"),
            Panel("Lease requests by first decision",
                  "Requests per second: granted at once, queued, or refused (a cap, a budget, no such unit).",
                  (Query("sum by (outcome, tier) (rate(gpu_commons_lease_requests_total[$__rate_interval]))",
                         "{{tier}} {{outcome}}"),), unit="reqps"),
        )),
        Row("Reclaims, budgets and priorities", (
            Panel("Leases reclaimed per hour, by tier",
                  "Leases ended early to give a borrowed share back to a school below its guarantee, by the tier "
                  "that gave it back.",
                  (Query("sum by (tier) (increase(gpu_commons_leases_reclaimed_total[1h]))", "{{tier}}"),)),
            Panel("GPU-hour budget used, by school",
                  "GPU-hours used in the rolling budget period over the school's budget (schools with a budget).",
                  (Query("max by (school, tier) (gpu_commons_budget_used_gpu_hours) / "
                         "max by (school, tier) (gpu_commons_budget_gpu_hours)", "{{school}} ({{tier}})"),),
                  unit="percentunit", kind="bargauge"),
            Panel("Fair-share priority, by school",
                  "Decayed GPU-hours used divided by the school's weight: the queue serves the lowest first.",
                  (Query("max by (school, tier) (gpu_commons_fair_share_priority_gpu_seconds) / 3600",
                         "{{school}} ({{tier}})"),), width=24),
        )),
    ),
)

POOLS = Board(
    "gpu-commons-pools", "GPU Commons: pools",
    "The GPU pools: units allocated against capacity, who holds them, and held units that idle.",
    (
        Row("Allocation", (
            Panel("Units allocated / capacity, by pool", "Share of the pool's GPU units (whole GPUs or slices) held.",
                  (Query("sum by (pool) (gpu_commons_gpu_units_allocated) / sum by (pool) (gpu_commons_gpu_units)",
                         "{{pool}}"),), unit="percentunit", kind="stat", width=8),
            Panel("Inventory, by pool and kind",
                  "GPU units each pool can lease; simulated=true: declared in the alliance file, not read from GPUs.",
                  (Query("sum by (pool, kind, simulated) (gpu_commons_gpu_units)",
                         "{{pool}} {{kind}} simulated={{simulated}}"),), kind="stat", width=16),
            Panel("Units allocated and capacity, by pool", "GPU units held by granted leases, and all the pool has.",
                  (Query("sum by (pool) (gpu_commons_gpu_units_allocated)", "{{pool}} allocated"),
                   Query("sum by (pool) (gpu_commons_gpu_units)", "{{pool}} capacity"))),
            Panel("Units allocated, by school", "Which schools hold the pools' units.",
                  (Query("sum by (pool, school) (gpu_commons_gpu_units_allocated)", "{{pool}} {{school}}"),), stack=True),
            Panel("Leases granted per hour, by pool", "Leases granted, at once or after queueing (CPU leases: pool \"\").",
                  (Query("sum by (pool) (increase(gpu_commons_leases_granted_total[1h]))", "{{pool}}"),), width=24),
        )),
        Row("Idle holders", (
            Panel("Held units idle over 30 minutes, by pool",
                  "Units whose workspace was not known to be used for 30 minutes (since its grant, until the hub "
                  "reports activity). The alert GpuCommonsGpuHeldIdle fires when they stay idle while others queue.",
                  (Query("sum by (pool) (gpu_commons_gpu_unit_idle_seconds > bool 1800)", "{{pool}}"),)),
            Panel("Held units by idle time", "Every held unit with the seconds since its workspace was last used.",
                  (Query("max by (pool, unit) (gpu_commons_gpu_unit_idle_seconds)", "{{unit}}"),),
                  unit="s", kind="bargauge"),
            Panel("GPU utilisation of held GPUs",
                  "How busy each held whole GPU of the hardware pools is (NVML, read by the quota service; on "
                  "Kubernetes use DCGM exporter's DCGM_FI_DEV_GPU_UTIL). A held GPU near 0 for long is a notebook "
                  "left open.",
                  (Query("max by (pool, unit) (gpu_commons_gpu_unit_busy_ratio)", "{{unit}}"),),
                  unit="percentunit", kind="bargauge", width=24),
        )),
    ),
)

HTTP = "gpu_commons_http_request_duration_seconds"
SERVICE = Board(
    "gpu-commons-service", "GPU Commons: quota service",
    "The quota service: up, decision and journal commit times, HTTP answer times and errors.",
    (
        Row("Health", (
            Panel("Quota service processes up", f"1 = Prometheus scraped the process (job {JOB}); 0 = it did not answer.",
                  (Query(f'up{{job="{JOB}"}}', "{{instance}}"),), kind="stat", width=8),
            Panel("Journal commit failures (last hour)",
                  "Commits that failed: their callers were answered 503 and the allocator was rebuilt from the "
                  "database. The alert GpuCommonsJournalErrors fires on any.",
                  (Query("sum(increase(gpu_commons_journal_commit_failures_total[1h]))", "failures"),),
                  kind="stat", width=8),
            Panel("Server errors (5xx) / all answers", "Share of HTTP answers that were server errors (503: no writer "
                  "or no database).",
                  (Query(f'(sum(rate({HTTP}_count{{code=~"5.."}}[$__rate_interval])) or vector(0)) / '
                         f"sum(rate({HTTP}_count[$__rate_interval]))", "5xx"),), unit="percentunit", kind="stat",
                  width=8),
        )),
        Row("Decisions and the journal", (
            Panel("Decision time", "Time the allocator took to decide one input in memory.",
                  quantiles("gpu_commons_decision_duration_seconds"), unit="s"),
            Panel("Journal commit time", "Time of one durable commit (all the inputs waiting for it).",
                  quantiles("gpu_commons_journal_commit_duration_seconds"), unit="s"),
            Panel("Inputs per commit", "Inputs stored by one commit, on average (group commit under load).",
                  (Query("sum(rate(gpu_commons_journal_inputs_stored_total[$__rate_interval])) / "
                         "sum(rate(gpu_commons_journal_commit_duration_seconds_count[$__rate_interval]))", "inputs"),),
                  width=24),
        )),
        Row("HTTP", (
            Panel("HTTP answer time p95, by route", "95th percentile of the time to answer, by route template.",
                  (Query(f"histogram_quantile(0.95, sum by (route, le) (rate({HTTP}_bucket[$__rate_interval])))",
                         "{{route}}"),), unit="s"),
            Panel("HTTP answers per second, by code", "Answers by status code (409: a refusal, 429: a rate limit).",
                  (Query(f"sum by (code) (rate({HTTP}_count[$__rate_interval]))", "{{code}}"),), unit="reqps",
                  stack=True),
        )),
    ),
)

BOARDS = {"alliance": ALLIANCE, "pools": POOLS, "service": SERVICE}


def _panel(spec: Panel, panel_id: int):
    builder = {"timeseries": timeseries.Panel, "stat": stat.Panel, "bargauge": bargauge.Panel,
               "table": table.Panel}[spec.kind]()
    builder = (builder.id(panel_id).title(spec.title).description(spec.description).datasource(DATASOURCE)
               .unit(spec.unit).span(spec.width).height(8))
    for ref, query in zip("ABCDEFGH", spec.queries):
        target = prometheus.Dataquery().expr(query.expr).legend_format(query.legend or "__auto").ref_id(ref)
        if spec.kind != "timeseries":
            target = target.instant()
        builder = builder.with_target(target)
    if spec.kind == "timeseries":
        builder = builder.legend(common.VizLegendOptions().show_legend(True).display_mode("list").placement("bottom"))
        if spec.stack:
            builder = builder.fill_opacity(30).stacking(common.StackingConfig().mode("normal"))
    else:
        builder = builder.reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]))
    return builder


def build(board: Board) -> dict:
    """The dashboard's JSON model, as Grafana imports it."""
    builder = (
        dashboard.Dashboard(board.title).uid(board.uid).description(board.description).tags(TAGS)
        .editable().refresh("1m").time("now-24h", "now").timezone("browser")
        .with_variable(dashboard.DatasourceVariable("datasource").label("Prometheus").type("prometheus"))
    )
    panel_id = 0
    for row in board.rows:
        panel_id += 1
        builder = builder.with_row(dashboard.Row(row.title).id(panel_id))
        for spec in row.panels:
            panel_id += 1
            builder = builder.with_panel(_panel(spec, panel_id))
    return json.loads(json.dumps(builder.build(), cls=JSONEncoder))


def render(board: Board) -> str:
    return json.dumps(build(board), indent=2, sort_keys=True) + "\n"


def panels(model: dict) -> list[dict]:
    """Every panel of a dashboard model, rows' own panels included."""
    found = []
    for panel in model["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))
    return found


def main(argv: list[str] | None = None) -> int:
    out = Path((argv or sys.argv[1:] or [str(OUT)])[0])
    out.mkdir(parents=True, exist_ok=True)
    for name, board in BOARDS.items():
        (out / f"{name}.json").write_text(render(board))
        print(f"wrote {out / f'{name}.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
