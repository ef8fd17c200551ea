"""Prometheus metrics of the quota service.

Naming rule: ``gpu_commons_<noun>_<verb or unit>``; counters end in ``_total``, and a
unit (``_seconds``, ``_gpu_hours``) is spelled out; a histogram is named for what it
measures (``_duration_seconds``, ``_wait_seconds``). Each app has its own registry, so
tests can build several apps in one process. Every label combination is created up front,
so a dashboard shows a zero rather than nothing; four families cannot be and say so: the
HTTP histogram (a series appears with the first answer of its route and code), the idle
time and the utilisation of held GPU units (only held units have one) and the budgets (only
schools with a budget). tests/test_quota_metrics.py checks the names and types, `promtool check metrics`
the exposition.

Counters of what happened since start-up live in this process; what the database knows
(units held, queue, GPU-seconds used) is read from the LeaseBook at every scrape, so it
survives a restart of the service.

The dashboards (helm/gpu-commons/files/dashboards/, made by quota/dashboards.py) and the
alert rules (helm/gpu-commons/files/prometheus-rules.yaml) query these names: rename one
there too (tests/test_dashboards.py runs every panel's query against a real Prometheus).
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from quota.alliance import Alliance
from quota.leases import JournalUnavailable, LeaseBook, Listener

disable_created_metrics()  # the _created series only add noise to dashboards

OUTCOMES = ("granted", "queued", "refused")
KINDS = ("whole", "slice", "shared")
# in-memory decisions take tens of microseconds to milliseconds; a durable commit milliseconds
DECISION_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
COMMIT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)
QUEUE_WAIT_BUCKETS = (10, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400)  # seconds
UNMATCHED_ROUTE = "unmatched"  # a path no route serves (scanners): one series, not one per path


class QuotaMetrics:
    def __init__(self, alliance: Alliance):
        self.registry = CollectorRegistry(auto_describe=True)
        self.lease_requests = Counter(
            "gpu_commons_lease_requests_total",
            "Lease requests by their first decision (granted, queued, refused) and the school's tier.",
            ["outcome", "tier"],
            registry=self.registry,
        )
        self.leases_granted = Counter(
            "gpu_commons_leases_granted_total",
            "Leases granted, at once or after queueing, by pool and the school's tier (CPU leases: pool=\"\").",
            ["pool", "tier"],
            registry=self.registry,
        )
        self.queue_wait = Histogram(
            "gpu_commons_queue_wait_seconds",
            "Seconds a lease waited in the queue before it was granted (leases granted at once are not counted), "
            "by the school's tier.",
            ["tier"],
            buckets=QUEUE_WAIT_BUCKETS,
            registry=self.registry,
        )
        self.decision = Histogram(
            "gpu_commons_decision_duration_seconds",
            "Seconds the allocator took to decide one input (a request, a release, a renewal, the passing of time) "
            "in memory, without waiting for the journal.",
            buckets=DECISION_BUCKETS,
            registry=self.registry,
        )
        self.commit = Histogram(
            "gpu_commons_journal_commit_duration_seconds",
            "Seconds one durable commit of the journal took (one transaction holding every input waiting for it).",
            buckets=COMMIT_BUCKETS,
            registry=self.registry,
        )
        self.inputs_stored = Counter(
            "gpu_commons_journal_inputs_stored_total",
            "Inputs stored by the journal's commits (divided by the commits: inputs per commit).",
            registry=self.registry,
        )
        self.commit_failures = Counter(
            "gpu_commons_journal_commit_failures_total",
            "Commits of the journal that failed: their inputs were answered 503 and the allocator was rebuilt "
            "from the database.",
            registry=self.registry,
        )
        self.http = Histogram(
            "gpu_commons_http_request_duration_seconds",
            "Seconds from a request's arrival to the end of its answer, by method, route (the path template, "
            f"{UNMATCHED_ROUTE!r} for a path no route serves) and status code.",
            ["method", "route", "code"],
            buckets=HTTP_BUCKETS,
            registry=self.registry,
        )
        tiers = list(alliance.tiers)
        for tier in tiers:
            self.queue_wait.labels(tier)
            for outcome in OUTCOMES:
                self.lease_requests.labels(outcome, tier)
            for pool in alliance.pools:
                self.leases_granted.labels(pool.id, tier)

    def listener(self) -> Listener:
        return Listener(
            on_request=lambda outcome, tier: self.lease_requests.labels(outcome, tier).inc(),
            on_grant=lambda pool, tier: self.leases_granted.labels(pool, tier).inc(),
            on_commit=self._committed,
            on_commit_failure=self.commit_failures.inc,
            on_decision=self.decision.observe,
            on_queue_wait=lambda tier, seconds: self.queue_wait.labels(tier).observe(seconds),
        )

    def _committed(self, seconds: float, inputs: int) -> None:
        self.commit.observe(seconds)
        self.inputs_stored.inc(inputs)

    def watch(self, book: LeaseBook) -> None:
        self.registry.register(_BookCollector(book))

    def watch_gpus(self, readings) -> None:
        """Report ``readings()`` (unit id -> (pool, busy fraction)) of the held real GPUs at each
        scrape (quota.gpu_activity: NVML's utilisation, read every gpu_activity_interval_s)."""
        self.registry.register(_GpuCollector(readings))


class _GpuCollector(Collector):
    def __init__(self, readings):
        self._readings = readings

    def describe(self):
        return []

    def collect(self):
        busy = GaugeMetricFamily(
            "gpu_commons_gpu_unit_busy_ratio",
            "How busy each held whole GPU of the hardware pools was at the last reading (NVML's utilisation, 0 to "
            "1); held units only, and only where the service reads the GPUs itself (not simulated pools, not "
            "Kubernetes: DCGM exporter's DCGM_FI_DEV_GPU_UTIL there).",
            labels=["pool", "unit"],
        )
        for unit_id, (pool, fraction) in sorted(self._readings().items()):
            busy.add_metric([pool, unit_id], fraction)
        yield busy


class TimedRequests:
    """ASGI middleware: how long each HTTP answer took, by method, route template and code."""

    def __init__(self, app, histogram: Histogram):
        self.app = app
        self._histogram = histogram

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        began = time.perf_counter()
        code = 500  # the app raised before it answered

        async def send_noting_code(message):
            nonlocal code
            if message["type"] == "http.response.start":
                code = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_noting_code)
        finally:
            route = scope.get("route")  # set by the router on the same scope once it matched
            template = getattr(route, "path", None) or UNMATCHED_ROUTE
            self._histogram.labels(scope["method"], template, str(code)).observe(time.perf_counter() - began)


class _BookCollector(Collector):
    """Reads the current state from the LeaseBook at scrape time."""

    def __init__(self, book: LeaseBook):
        self._book = book

    def describe(self):
        return []  # state-derived: nothing to check at registration

    def collect(self):
        try:
            families = list(self._families())
        except JournalUnavailable:  # a standby (or the database is away): the counters above still answer
            return
        yield from families

    def _families(self):
        book = self._book
        alliance = book.alliance
        capacity = GaugeMetricFamily(
            "gpu_commons_gpu_units", "GPU units (whole GPUs or slices) the pool can lease.", labels=["pool", "kind", "simulated"]
        )
        counts: dict[tuple[str, str, str], int] = {}
        for unit in book.units:
            key = (unit.pool, unit.kind, "true" if unit.simulated else "false")
            counts[key] = counts.get(key, 0) + 1
        for key, value in sorted(counts.items()):
            capacity.add_metric(list(key), value)
        yield capacity

        allocated = GaugeMetricFamily(
            "gpu_commons_gpu_units_allocated", "GPU units held by granted leases, by pool and school.", labels=["pool", "school"]
        )
        held = {(pool.id, school.id): 0 for pool in alliance.pools for school in alliance.schools}
        for lease in book.holders().values():
            key = (lease.pool, lease.school)
            held[key] = held.get(key, 0) + 1
        for key, value in sorted(held.items()):
            allocated.add_metric(list(key), value)
        yield allocated

        idle = GaugeMetricFamily(
            "gpu_commons_gpu_unit_idle_seconds",
            "Seconds since the workspace holding the GPU unit was last known to be used (its grant, or the latest "
            "activity the service was told of); held units only.",
            labels=["pool", "unit"],
        )
        for unit_id, (pool, seconds) in sorted(book.idle_seconds_by_unit().items()):
            idle.add_metric([pool, unit_id], seconds)
        yield idle

        queue = GaugeMetricFamily(
            "gpu_commons_queue_length",
            "Lease requests waiting, by the kind of unit asked for and the school's tier.",
            labels=["kind", "tier"],
        )
        longest = GaugeMetricFamily(
            "gpu_commons_queue_longest_wait_seconds",
            "Seconds the longest-waiting queued lease of the tier has waited so far (0: nobody waits).",
            labels=["tier"],
        )
        waiting = {(kind, tier): 0 for kind in KINDS for tier in alliance.tiers}
        oldest = {tier: 0.0 for tier in alliance.tiers}
        now = book.clock()
        for lease in book.queue():
            key = (lease.kind or "none", lease.tier)
            waiting[key] = waiting.get(key, 0) + 1
            oldest[lease.tier] = max(oldest.get(lease.tier, 0.0), (now - lease.requested_at).total_seconds())
        for key, value in sorted(waiting.items()):
            queue.add_metric(list(key), value)
        for tier, value in sorted(oldest.items()):
            longest.add_metric([tier], value)
        yield queue
        yield longest

        used = CounterMetricFamily(
            "gpu_commons_gpu_usage_seconds",
            "GPU-seconds of ended leases in the usage ledger, by school and tier.",
            labels=["school", "tier"],
        )
        totals = {(school.id, school.tier): 0.0 for school in alliance.schools}
        totals.update(book.gpu_seconds_by_school())
        for key, value in sorted(totals.items()):
            used.add_metric(list(key), value)
        yield used

        reclaimed = CounterMetricFamily(
            "gpu_commons_leases_reclaimed",
            "Leases ended early to give a borrowed GPU share back to a school below its guaranteed share, "
            "by the tier of the school that gave it back.",
            labels=["tier"],
        )
        counts = {tier: 0 for tier in alliance.tiers}
        counts.update(book.reclaimed_by_tier())
        for tier, value in sorted(counts.items()):
            reclaimed.add_metric([tier], value)
        yield reclaimed

        guaranteed = GaugeMetricFamily(
            "gpu_commons_gpus_guaranteed", "GPUs guaranteed to the school by its fair share.", labels=["school", "tier"]
        )
        held_gpus = GaugeMetricFamily(
            "gpu_commons_gpus_held", "GPUs the school's granted leases hold in open pools.", labels=["school", "tier"]
        )
        queued_gpus = GaugeMetricFamily(
            "gpu_commons_gpus_queued", "GPUs the school's queued lease requests ask for.", labels=["school", "tier"]
        )
        entitled = GaugeMetricFamily(
            "gpu_commons_gpus_entitled",
            "GPUs the school is entitled to now: its guaranteed share, or what its granted and queued leases hold "
            "and ask for if that is less (a school asking for less than its share is not short of it).",
            labels=["school", "tier"],
        )
        priority = GaugeMetricFamily(
            "gpu_commons_fair_share_priority_gpu_seconds",
            "Decayed GPU usage of the school divided by its weight: the queue serves the lowest first.",
            labels=["school", "tier"],
        )
        asked = book.queued_gpus_by_school()
        for share in book.fair_share():
            labels = [share.school, share.tier]
            wanted = share.held_gpus + asked.get(share.school, 0.0)
            guaranteed.add_metric(labels, share.guaranteed_gpus)
            held_gpus.add_metric(labels, share.held_gpus)
            queued_gpus.add_metric(labels, asked.get(share.school, 0.0))
            entitled.add_metric(labels, min(share.guaranteed_gpus, wanted))
            priority.add_metric(labels, share.priority_gpu_seconds)
        yield guaranteed
        yield held_gpus
        yield queued_gpus
        yield entitled
        yield priority

        budget = GaugeMetricFamily(
            "gpu_commons_budget_gpu_hours",
            "GPU-hours the school may use per rolling budget period (schools with a budget only).",
            labels=["school", "tier"],
        )
        budget_used = GaugeMetricFamily(
            "gpu_commons_budget_used_gpu_hours",
            "GPU-hours the school used in the current rolling budget period, running leases included "
            "(schools with a budget only).",
            labels=["school", "tier"],
        )
        for school, tier, limit, spent in book.budget_use():
            budget.add_metric([school, tier], limit)
            budget_used.add_metric([school, tier], spent)
        yield budget
        yield budget_used
