"""The start line's order follows the allocator's rule (issue 18, point 3): a lease says whether
it is within its school's guaranteed share (``within_share`` on the quota service's answer),
and the local spawner's start key puts those first, then the heavier tier, then arrival
(spawner/backends.py ``start_priority``; the line itself: tests/test_light_start.py, the real
storm: tests/test_start_line.py)."""

from __future__ import annotations

from types import SimpleNamespace

from quota.alliance import Tier
from spawner.backends import LocalQuotaSpawner
from spawner.quota_client import Lease
from tests.quota_calls import ask


def test_a_granted_lease_says_whether_it_is_within_its_school_s_share(quota_client):
    within = ask(quota_client, "u01-s1").json()  # half a GPU, inside u01's third of 2 GPUs
    borrowed = ask(quota_client, "u01-s2").json()  # beyond it
    cpu = ask(quota_client, "c01-s1", profile="cpu").json()  # c01 holds nothing of its two thirds
    assert (within["within_share"], borrowed["within_share"], cpu["within_share"]) == (True, False, True)
    assert quota_client.get(f"/api/leases/{borrowed['id']}").json()["within_share"] is False
    queued = ask(quota_client, "u01-s3").json()
    assert queued["state"] == "queued" and queued["within_share"] is None
    assert Lease.from_api(borrowed).within_share is False


def _key(tier: str, within_share: bool | None) -> tuple:
    spawner = SimpleNamespace(
        _school=lambda: ("school", tier),
        alliance=SimpleNamespace(tiers={"county": Tier(weight=2.0), "urban": Tier(weight=1.0)}),
        _lease=None if within_share is None else SimpleNamespace(within_share=within_share),
    )
    return LocalQuotaSpawner.start_priority(spawner)


def test_the_start_key_puts_leases_within_their_school_s_share_first_then_the_heavier_tier():
    order = sorted([("urban borrowing", _key("urban", False)), ("county borrowing", _key("county", False)),
                    ("urban within", _key("urban", True)), ("county within", _key("county", True)),
                    ("county no lease", _key("county", None))], key=lambda item: item[1])
    assert [name for name, _ in order] == [
        "county within", "urban within", "county borrowing", "county no lease", "urban borrowing"]
