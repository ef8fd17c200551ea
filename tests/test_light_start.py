"""The lighter start of a local workspace (spawner/light_start.py): the start line's order,
places and hand-overs, the server-extension switch, the shim that keeps the RFC 3987 parser
out of a workspace, and the wait until the server listens."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys

import pytest

from spawner.light_start import (
    SHIMS_DIR, SKIPPED_SERVER_EXTENSIONS, StartLine, server_extension_args, wait_listening, with_shims,
)


def test_the_line_lets_width_start_and_the_rest_go_lowest_key_first():
    async def scenario():
        line = StartLine(2)
        order, places = [], {}

        async def student(name, key, work):
            await line.enter(key, lambda ahead: places.setdefault(name, []).append(ahead))
            order.append(name)
            await asyncio.sleep(work)
            line.leave()

        first = [asyncio.create_task(student(n, (0,), 0.05)) for n in ("a", "b")]
        await asyncio.sleep(0.01)
        later = [asyncio.create_task(student("urban", (-1,), 0.01)),
                 asyncio.create_task(student("county-1", (-2,), 0.01)),
                 asyncio.create_task(student("county-2", (-2,), 0.01))]
        await asyncio.gather(*first, *later)
        return order, places, line

    order, places, line = asyncio.run(scenario())
    assert order == ["a", "b", "county-1", "county-2", "urban"]  # heavier tier first, then arrival
    assert places["urban"][0] == 0 and places["county-2"][0] == 1  # as they took their places
    assert "a" not in places and "b" not in places  # started at once, never waited
    assert line.starting == 0 and not line._waiting


def test_a_student_who_leaves_the_line_is_not_counted_and_does_not_block_it():
    async def scenario():
        line = StartLine(1)
        await line.enter(())  # someone is starting
        seen = []
        leaver = asyncio.create_task(line.enter((0,)))
        waiter = asyncio.create_task(line.enter((1,), seen.append, report_every=0.01))
        await asyncio.sleep(0.03)
        leaver.cancel()
        await asyncio.sleep(0.05)
        assert seen == [1, 0]  # one ahead, then none once the first left the line
        line.leave()  # the start ends: the turn passes to the one still waiting
        await asyncio.wait_for(waiter, 1)
        line.leave()
        return line

    line = asyncio.run(scenario())
    assert line.starting == 0


def test_server_extensions_switch_merges_over_the_environment():
    assert server_extension_args({}) == []
    assert server_extension_args(SKIPPED_SERVER_EXTENSIONS) == [
        "--ServerApp.jpserver_extensions={'jupyter_lsp': False, 'notebook_shim': False}"]


def test_the_shim_keeps_the_rfc3987_parser_out_and_jsonschema_still_works():
    env = with_shims({**os.environ, "PYTHONPATH": "/elsewhere"})
    assert env["PYTHONPATH"] == f"{SHIMS_DIR}:/elsewhere"
    probe = ("import sys, jsonschema; jsonschema.validate({'a': 1}, {'properties': {'a': {'type': 'integer'}}}); "
             "print('rfc3987_syntax' in sys.modules)")
    shimmed = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
    assert shimmed.stdout.strip() == "False"


def test_wait_listening_returns_when_the_port_listens_and_fails_when_the_server_ends():
    async def scenario():
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        server = socket.socket()

        async def listen_soon():
            await asyncio.sleep(0.2)
            server.bind(("127.0.0.1", port))
            server.listen()

        async def alive():
            return True

        asyncio.ensure_future(listen_soon())
        started = asyncio.get_running_loop().time()
        await wait_listening("127.0.0.1", port, alive, timeout=5)
        waited = asyncio.get_running_loop().time() - started
        server.close()

        async def ended():
            return False

        with pytest.raises(RuntimeError, match="ended before it listened"):
            await wait_listening("127.0.0.1", port, ended, timeout=5)
        with pytest.raises(TimeoutError):
            await wait_listening("127.0.0.1", port, alive, timeout=0.2)
        return waited

    assert 0.15 < asyncio.run(scenario()) < 2
