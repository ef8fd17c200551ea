"""Bad input on the spawn path: the student reads what to do, nothing is left half-started,
no lease leaks. Real hub, proxy, quota service and Chromium, as in test_end_to_end."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from tests.browser import log_in
from tests.hub_client import wait_for
from tests.quota_calls import leases_of, servers_of as server_of

pytestmark = [pytest.mark.slow, pytest.mark.browser]

ACTIVE = {"granted", "queued"}


def submit_profile(page, stack, profile_value: str):
    page.goto(f"{stack.url}/hub/spawn")
    # A tampered form (or an old bookmark) can post any value: force it onto the first radio button.
    page.eval_on_selector("input[name=profile]", "(el, value) => { el.value = value; el.checked = true; }", profile_value)
    page.click("input[type=submit], button[type=submit]")


def test_unknown_profile_is_named_on_the_form(stack, browser):
    context = browser.new_context()
    try:
        page = log_in(context, stack, "u01-s1")
        submit_profile(page, stack, "gpu-huge")
        page.wait_for_selector("text=Unknown profile 'gpu-huge'", timeout=30_000)
        assert "cpu, gpu-slice, gpu-whole" in page.content()
        assert server_of(stack, "u01-s1") == {}
        assert leases_of(stack, "u01-s1") == []
    finally:
        context.close()


def test_account_in_no_school_is_told_to_ask_the_teacher(stack, browser):
    context = browser.new_context()
    try:
        page = log_in(context, stack, "staff-admin")
        submit_profile(page, stack, "gpu-slice")
        page.wait_for_selector("text=not registered with any school", timeout=30_000)
        assert server_of(stack, "staff-admin") == {}
        assert leases_of(stack, "staff-admin") == []
    finally:
        context.close()


def test_profile_without_hardware_is_refused_with_a_reason(stack, browser):
    context = browser.new_context()
    try:
        page = log_in(context, stack, "u01-s1")
        submit_profile(page, stack, "gpu-whole")
        page.wait_for_selector("text=No GPU of this kind exists in the alliance; choose another profile", timeout=60_000)
        wait_for(lambda: server_of(stack, "u01-s1") == {}, 30, "the failed server to be cleaned up")
        assert not [lease for lease in leases_of(stack, "u01-s1") if lease["state"] in ACTIVE]
    finally:
        context.close()


def quota_service_pid(stack) -> int:
    """The hub-managed quota service of this stack (found through its data directory), not
    the keep-alive parent that runs it (whose command line holds the service's too)."""
    marker = f"GPU_COMMONS_DATA_DIR={stack.data_dir / 'quota'}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes()
            if (b"quota\x00serve" in command and b"hub.keepalive" not in command
                    and marker in (entry / "environ").read_bytes()):
                return int(entry.name)
        except OSError:
            continue
    raise AssertionError("the quota service process was not found")


def test_quota_service_not_answering(stack, browser):
    pid = quota_service_pid(stack)
    context = browser.new_context()
    os.kill(pid, signal.SIGSTOP)  # the service hangs: connections are accepted but never answered
    try:
        page = log_in(context, stack, "c01-s2")
        submit_profile(page, stack, "gpu-slice")
        page.wait_for_selector("text=no workspace was started", timeout=90_000)
    finally:
        os.kill(pid, signal.SIGCONT)
        context.close()
    # The request may have been granted once the service woke up: the hub withdraws it.
    wait_for(
        lambda: not [lease for lease in leases_of(stack, "c01-s2") if lease["state"] in ACTIVE],
        60,
        "the hub to withdraw the request it gave up on",
    )
    assert server_of(stack, "c01-s2") == {}
    with stack.quota() as quota:
        units = [u for pool in quota.get("/api/inventory").json()["pools"] for u in pool["units"]]
    assert all(unit["lease_id"] is None for unit in units)
