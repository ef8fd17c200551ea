"""Prometheus metrics of the quota service.

Naming rule: ``gpu_commons_<noun>_<verb or unit>``; counters end in ``_total``, and a
unit (``_seconds``) is spelled out. Each app has its own registry, so tests can build
several apps in one process. Every label combination is created up front, so a
dashboard shows a zero rather than nothing.

Counters of what happened since start-up live in this process; what the database knows
(units held, queue, GPU-seconds used) is read from the LeaseBook at every scrape, so it
survives a restart of the service.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, disable_created_metrics
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from quota.alliance import Alliance
from quota.leases import LeaseBook, Listener

disable_created_metrics()  # the _created series only add noise to dashboards

OUTCOMES = ("granted", "queued", "refused")


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
        tiers = list(alliance.tiers)
        for tier in tiers:
            for outcome in OUTCOMES:
                self.lease_requests.labels(outcome, tier)
            for pool in alliance.pools:
                self.leases_granted.labels(pool.id, tier)

    def listener(self) -> Listener:
        return Listener(
            on_request=lambda outcome, tier: self.lease_requests.labels(outcome, tier).inc(),
            on_grant=lambda pool, tier: self.leases_granted.labels(pool, tier).inc(),
        )

    def watch(self, book: LeaseBook) -> None:
        self.registry.register(_BookCollector(book))


class _BookCollector(Collector):
    """Reads the current state from the LeaseBook at scrape time."""

    def __init__(self, book: LeaseBook):
        self._book = book

    def describe(self):
        return []  # state-derived: nothing to check at registration

    def collect(self):
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

        queue = GaugeMetricFamily(
            "gpu_commons_queue_length", "Lease requests waiting, by the kind of unit asked for.", labels=["kind"]
        )
        waiting = {"whole": 0, "slice": 0}
        for lease in book.queue():
            waiting[lease.kind or "none"] = waiting.get(lease.kind or "none", 0) + 1
        for kind, value in sorted(waiting.items()):
            queue.add_metric([kind], value)
        yield queue

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
        priority = GaugeMetricFamily(
            "gpu_commons_fair_share_priority_gpu_seconds",
            "Decayed GPU usage of the school divided by its weight: the queue serves the lowest first.",
            labels=["school", "tier"],
        )
        for share in book.fair_share():
            labels = [share.school, share.tier]
            guaranteed.add_metric(labels, share.guaranteed_gpus)
            held_gpus.add_metric(labels, share.held_gpus)
            priority.add_metric(labels, share.priority_gpu_seconds)
        yield guaranteed
        yield held_gpus
        yield priority
