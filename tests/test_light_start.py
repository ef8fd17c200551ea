"""The lighter start of a local workspace (spawner/light_start.py): the start line's order,
places and hand-overs, the server-extension switch, the shim that keeps the RFC 3987 parser
out of a workspace, and the wait until the server listens."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "spawner" / "start_shims"))

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


# -- the server started without the hub's own server code (spawner/start_shims/light_singleuser.py)

LIGHT_ALLIANCE = """
name: Light start test alliance
tiers: {county: {weight: 2}}
pools:
  - {id: uni-a, gpus: 1, simulated: true}
profiles:
  - {id: cpu, display_name: CPU only, gpu: none, max_minutes: 60}
schools:
  - {id: c01, tier: county, students: [c01-s1]}
"""
# The server reports its activity to the hub every 2 s (JupyterHub's default: every 5 minutes).
LIGHT_HUB_CONFIG = {"LocalQuotaSpawner": {"environment": {"JUPYTERHUB_ACTIVITY_INTERVAL": "2"}}}
# Loaded only when SQLAlchemy's package itself runs (its engine), never for sqlalchemy.exc alone.
SQLALCHEMY_ENGINE = "sqlalchemy/engine/_"


def _server_process(stack, user: str) -> int:
    from hub.config import cgroup_parent_for
    from spawner.cgroups import WorkspaceCgroup
    from spawner.local import cgroup_name

    for pid in WorkspaceCgroup(cgroup_name(user), cgroup_parent_for(stack.data_dir)).pids():
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"light_singleuser" in command:
            return pid
    raise AssertionError(f"no light_singleuser process in {user}'s workspace")


@pytest.mark.slow
def test_a_workspace_without_the_hubs_server_code_serves_opens_terminals_and_reports_activity(tmp_path):
    from tests.hub_client import log_in, run_in_terminal, wait_for
    from tests.stack import running_stack

    with running_stack(tmp_path, LIGHT_ALLIANCE, LIGHT_HUB_CONFIG) as stack:
        student = log_in(stack, "c01-s1")
        assert student.start("cpu").get("ready"), stack.log_tail()
        assert student.server()["ready"]  # the hub sees it ready
        pid = _server_process(stack, "c01-s1")

        # It serves the API (the hub's token check of a request) and a terminal runs a command.
        status = httpx.get(f"{student.url}/user/c01-s1/api/status",
                           headers={"Authorization": f"token {student.token}"}, timeout=30)
        assert status.status_code == 200 and "kernels" in status.json()
        assert run_in_terminal(student, "echo light > light.txt", "light.txt").strip() == "light"

        # Its activity reports arrive at the hub (the server's own POST, not the proxy's traffic).
        def reported():
            return "200 POST /hub/api/users/c01-s1/activity" in stack.log_path.read_text()
        wait_for(reported, 30, "the workspace's activity report at the hub")

        log = stack.log_path.read_text()
        assert "[light_singleuser]" not in log  # neither fell back nor imported the deferred modules
        maps = Path(f"/proc/{pid}/maps").read_text()
        assert SQLALCHEMY_ENGINE not in maps  # still deferred after serving all that
        student.stop()


def _run_light(code: str, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    env = with_shims({**os.environ, **(env_extra or {})})
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)


def test_the_installed_jupyterhub_is_checked_and_its_digest_memo_is_true():
    import light_singleuser
    from jupyterhub import __file__ as hub_init

    package = Path(hub_init).parent
    assert light_singleuser.plan_from_sources(package) is None
    assert light_singleuser.sources_digest(package) in light_singleuser.CHECKED_DIGESTS


def test_a_jupyterhub_whose_names_differ_falls_back_to_the_normal_import(tmp_path):
    import shutil

    import light_singleuser
    from jupyterhub import __file__ as hub_init

    copy = tmp_path / "jupyterhub"
    shutil.copytree(Path(hub_init).parent, copy, ignore=shutil.ignore_patterns("__pycache__"))
    log = copy / "log.py"
    log.write_text(log.read_text().replace("from .handlers.pages import HealthCheckHandler",
                                           "from .handlers.pages import HealthCheckHandler, PrefixRedirectHandler"))
    why = light_singleuser.plan(copy)
    assert why is not None and "log.py" in why
    probe = (f"import sys, light_singleuser as l; from pathlib import Path; l.import_singleuser(Path({str(copy)!r})); "
             "print(type(sys.modules['sqlalchemy']).__name__, 'jupyterhub.handlers.base' in sys.modules)")
    done = _run_light(probe)
    assert done.returncode == 0, done.stderr
    assert "normal import of jupyterhub.singleuser" in done.stderr and "log.py" in done.stderr
    assert done.stdout.split() == ["module", "True"]  # the hub's modules imported as usual


def test_a_failing_deferred_import_falls_back_and_the_server_module_still_imports():
    probe = ("import sys, light_singleuser as l; l.DEFERRED = l.DEFERRED + ('no_such_module_here',); "
             "s = l.import_singleuser(); print(s.__name__, type(sys.modules['sqlalchemy']).__name__)")
    done = _run_light(probe)
    assert done.returncode == 0, done.stderr
    assert "the deferred import failed" in done.stderr
    assert done.stdout.split() == ["jupyterhub.singleuser", "module"]


def test_deferred_modules_run_when_used_and_the_hub_itself_still_imports():
    probe = ("import sys, light_singleuser as l; l.import_singleuser(); "
             "import jupyterhub.log as log, jupyterhub.utils as u; "
             "print(sorted(l._WAITING)); "
             "import jupyterhub.app, sqlalchemy, sqlalchemy.exc, jupyterhub.handlers.pages as pages; "
             "print(u.SQLAlchemyError is sqlalchemy.exc.SQLAlchemyError, issubclass(pages.HealthCheckHandler, "
             "log.HealthCheckHandler), isinstance(object(), log.HealthCheckHandler), sorted(l._WAITING), "
             "sqlalchemy.create_engine('sqlite://').dialect.name)")
    done = _run_light(probe)
    assert done.returncode == 0, done.stderr
    waiting, used = done.stdout.strip().splitlines()
    assert waiting == str(sorted(["sqlalchemy", "jupyterhub.orm", "jupyterhub.roles", "jupyterhub.handlers",
                                  "jupyterhub.handlers.pages"]))
    assert used == "True True False [] sqlite"


def test_jupyterlab_gets_no_yarn_configuration_run_in_the_server():
    probe = ("import light_singleuser as l; print(l.without_yarn_config()); import logging, jupyterlab.commands as c; "
             "print(c.AppOptions(logger=logging.getLogger('t')).registry)")
    done = _run_light(probe)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["None", "https://registry.yarnpkg.com"]
