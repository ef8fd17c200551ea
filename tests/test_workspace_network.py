"""A local workspace's own network namespace, for real but without a hub (spawner/netns.py,
spawner/net_gates.py): the sandbox runs a shell script as the student behind the quota step
with a lease from the fake quota service (tests/sandboxes.py).

The pure parts (addresses, rules, the gates' rules and URLs) are tested first, then real
namespaces: what the workspace sees and reaches, that a stop and every failed start leave no
veth, address or namespace behind, and the gates."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import sys
from types import SimpleNamespace

import httpx
import pytest

from spawner.backends import LocalQuotaSpawner
from spawner.failures import WorkspaceFailed
from spawner.net_gates import (
    GatePlan, hub_request_allowed, hub_request_head, inside_env, lease_request_allowed, parse_head,
)
from spawner.netns import firewall_rules, free_slots, host_links, link_alias, link_for, missing_tools
from tests.sandboxes import cgroup_scope, processes_of_uid, wait_for, workspace_spawner
from tests.spawner_fakes import FakeQuotaService, lease

ALLIANCE = """
name: Network test alliance
tiers: {county: {weight: 1}}
pools:
  - {id: test-pool, gpus: 1, sliced_gpus: 1, slices_per_gpu: 1, simulated: true}
profiles:
  - {id: cpu, display_name: CPU only, gpu: none, max_minutes: 30}
  - {id: gpu-slice, display_name: One GPU slice, gpu: slice, max_minutes: 30}
schools:
  - {id: c01, tier: county, students: [c01-s1, c01-s2, c01-s3]}
"""
PYTHON = os.path.join(sys.prefix, "bin", "python")

# -- plain data ------------------------------------------------------------------------------


def test_each_slot_is_a_slash_30_of_the_subnet():
    assert link_for("169.254.0.0/17", 0) == link_for("169.254.0.0/17", 0)
    first, second = link_for("169.254.0.0/17", 0), link_for("169.254.0.0/17", 1)
    assert (first.host_name, first.host_address, first.workspace_address) == ("gcwa9fe0000", "169.254.0.1", "169.254.0.2")
    assert (second.host_address, second.workspace_address) == ("169.254.0.5", "169.254.0.6")
    assert link_for("169.254.0.0/17", 8191).workspace_address == "169.254.127.254"  # never 169.254.169.254
    with pytest.raises(ValueError):
        link_for("169.254.0.0/17", 8192)


def test_blocks_held_by_any_hub_are_skipped_whatever_its_subnet():
    held = ["lo", "eth0", "gcwa9fe0000", "gcwa9fe0008", "gcw0", "docker0"]  # 169.254.0.0 and .8
    assert list(free_slots("169.254.0.0/28", held)) == [1, 3]
    assert list(free_slots("169.254.0.8/29", held)) == [1]  # another subnet, the same block .8 is held
    assert list(free_slots("169.254.0.0/30", ["gcwa9fe0000"])) == []
    assert link_for("10.250.0.0/16", 1).host_name == "gcw0afa0004"


def test_the_packet_filter_lets_in_only_the_server_port_and_out_only_loopback_and_answers():
    rules = firewall_rules(8888).splitlines()
    assert ":INPUT DROP [0:0]" in rules and ":OUTPUT DROP [0:0]" in rules and ":FORWARD DROP [0:0]" in rules
    accepted_in = [rule for rule in rules if rule.startswith("-A INPUT") and rule.endswith("ACCEPT")]
    assert accepted_in == ["-A INPUT -i lo -j ACCEPT",
                           "-A INPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
                           "-A INPUT -i eth0 -p tcp --dport 8888 -m conntrack --ctstate NEW -j ACCEPT"]
    accepted_out = [rule for rule in rules if rule.startswith("-A OUTPUT") and rule.endswith("ACCEPT")]
    assert accepted_out == ["-A OUTPUT -o lo -j ACCEPT", "-A OUTPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT"]


def test_missing_tools_are_named_with_their_package():
    assert missing_tools(lambda tool: None if tool == "iptables-restore" else f"/usr/sbin/{tool}") == [
        "iptables-restore (Debian package iptables)"]
    assert missing_tools(lambda tool: f"/usr/bin/{tool}") == []


def test_the_gates_keep_the_urls_of_an_embedded_hub_and_move_others_to_the_loopback():
    env = {"JUPYTERHUB_API_URL": "http://127.0.0.1:8081/hub/api",
           "JUPYTERHUB_ACTIVITY_URL": "http://127.0.0.1:8081/hub/api/users/a/activity",
           "GPU_COMMONS_QUOTA_URL": "http://127.0.0.1:8181", "OTHER": "x"}
    plan = GatePlan.from_env(env)
    assert plan == GatePlan(("127.0.0.1", 8081), 8081, "http://127.0.0.1:8181", 8181, "/hub/api")
    assert inside_env(env, plan) == env
    assert GatePlan.from_state(json.loads(json.dumps(plan.as_state()))) == plan

    far = {"JUPYTERHUB_API_URL": "http://10.0.0.5:8081/hub/api",
           "GPU_COMMONS_QUOTA_URL": "https://hub.example.edu/services/quota/"}
    plan = GatePlan.from_env(far)
    assert plan.hub_api == ("10.0.0.5", 8081) and plan.quota_url == "https://hub.example.edu/services/quota"
    assert inside_env(far, plan) == {"JUPYTERHUB_API_URL": "http://127.0.0.1:8081/hub/api",
                                     "GPU_COMMONS_QUOTA_URL": "http://127.0.0.1:443/services/quota"}
    same_port = GatePlan.from_env({"JUPYTERHUB_API_URL": "https://a/hub/api", "GPU_COMMONS_QUOTA_URL": "https://b"})
    assert (same_port.hub_port, same_port.quota_port) == (443, 444)
    assert GatePlan.from_env({"JUPYTERHUB_API_URL": "http://127.0.0.1:8081/hub/api"}).quota_url == ""


@pytest.mark.parametrize("head, allowed", [
    (b"GET /api/leases/l-1 HTTP/1.1\r\nHost: x\r\nAuthorization: token t", True),
    (b"GET /api/leases/l-2 HTTP/1.1\r\nHost: x", False),  # another lease
    (b"GET /api/leases/l-1/ HTTP/1.1\r\nHost: x", False),
    (b"GET /api/leases/l-1?user=other HTTP/1.1\r\nHost: x", False),
    (b"GET /api/leases/l-1/../../api/inventory HTTP/1.1\r\nHost: x", False),
    (b"POST /api/leases/l-1/renew HTTP/1.1\r\nHost: x", False),
    (b"DELETE /api/leases/l-1 HTTP/1.1\r\nHost: x", False),
    (b"GET /api/leases HTTP/1.1\r\nHost: x", False),
    (b"GET /api/inventory HTTP/1.1\r\nHost: x", False),
    (b"GET /api/leases/l-1 HTTP/1.1\r\nContent-Length: 5", False),  # a body to smuggle a second request
    (b"GET /api/leases/l-1 HTTP/1.1\r\nTransfer-Encoding: chunked", False),
    (b"GET /api/leases/l-1 HTTP/1.1\r\n Folded: header", False),
    (b"GET  /api/leases/l-1 HTTP/1.1", False),
    (b"\x16\x03\x01 not http", False),
])
def test_the_lease_gate_passes_only_a_get_of_the_workspaces_own_lease(head, allowed):
    assert lease_request_allowed(parse_head(head), "l-1") is allowed


@pytest.mark.parametrize("head, allowed", [
    (b"GET /hub/api/user HTTP/1.1\r\nAuthorization: token t", True),
    (b"POST /hub/api/users/a/activity HTTP/1.1\r\nContent-Length: 12", True),
    (b"POST /hub/api/oauth2/token?x=1 HTTP/1.1\r\nContent-Length: 0", True),
    (b"GET /hub/api HTTP/1.1", True),
    (b"GET /hub/login HTTP/1.1", False),  # the login form: not from a workspace
    (b"POST /hub/login HTTP/1.1\r\nContent-Length: 30", False),
    (b"GET /hub/apix HTTP/1.1", False),
    (b"GET /hub/api/../login HTTP/1.1", False),
    (b"GET /hub/api/%2e%2e/login HTTP/1.1", False),
    (b"GET /hub/api/..%2flogin HTTP/1.1", False),
    (b"GET /hub/api/\\..\\login HTTP/1.1", False),
    (b"GET /user/other/ HTTP/1.1", False),
    (b"GET http://127.0.0.1:8081/hub/api/user HTTP/1.1", False),
    (b"POST /hub/api/users/a/activity HTTP/1.1\r\nTransfer-Encoding: chunked", False),
    (b"POST /hub/api/users/a/activity HTTP/1.1\r\nContent-Length: 99999999", False),
    (b"POST /hub/api/users/a/activity HTTP/1.1\r\nContent-Length: -1", False),
])
def test_the_hub_gate_passes_only_the_hub_api(head, allowed):
    assert hub_request_allowed(parse_head(head), "/hub/api") is allowed


def test_the_hub_gate_drops_address_and_hop_headers_and_asks_for_one_request():
    head = parse_head(b"GET /hub/api/user HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 10.9.9.9\r\nForwarded: for=1.2.3.4"
                      b"\r\nX-Real-Ip: 5.6.7.8\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket"
                      b"\r\nAuthorization: token t")
    assert hub_request_head(head) == (b"GET /hub/api/user HTTP/1.1\r\nhost: h\r\nauthorization: token t\r\n"
                                      b"Connection: close\r\n\r\n")


def test_the_lease_gate_refuses_everything_without_a_lease():
    head = parse_head(b"GET /api/leases/ HTTP/1.1\r\nHost: x")
    assert not lease_request_allowed(head, "")


# -- real namespaces -------------------------------------------------------------------------


@pytest.fixture
def needs_root():
    if os.geteuid() != 0 or not shutil.which("bwrap") or missing_tools():
        pytest.fail(f"these tests build real sandboxes and namespaces: run them as root with bubblewrap, iproute2 "
                    f"and iptables installed (make install-test); missing {missing_tools()}")


@pytest.fixture
def alliance(tmp_path):
    path = tmp_path / "alliance.yaml"
    path.write_text(ALLIANCE)
    return path


@pytest.fixture
async def service():
    fake = FakeQuotaService()
    yield fake
    await fake.close()


@pytest.fixture
def scope():
    with cgroup_scope() as parent:
        yield parent


class FakeHub:
    """A tiny HTTP server on the host's loopback standing in for the hub API: answers every
    request with who asked (the gate passes every byte)."""

    async def __aenter__(self):
        self.server = await asyncio.start_server(self._answer, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def _answer(self, reader, writer):
        head = await reader.readuntil(b"\r\n\r\n")
        body = json.dumps({"asked": head.split(b" ")[1].decode()}).encode()
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body))
        await writer.drain()
        writer.close()

    async def __aexit__(self, *exc):
        self.server.close()


def our_links(spawner: LocalQuotaSpawner) -> list[str]:
    return [name for name in host_links() if link_alias(name) == spawner.network_alias]


def cpu_lease() -> dict:
    return lease("granted", profile="cpu", device=None, unit_kind=None, pool=None)


def spawner_for(service, alliance, tmp_path, scope, script: str, profile: str = "cpu", name: str = "c01-s1", **config):
    granted = lease("granted") if profile == "gpu-slice" else cpu_lease()
    service.answer("POST", "/api/leases", granted)
    service.answer("GET", "/api/leases/l-1", granted)
    spawner = workspace_spawner(service, alliance, tmp_path / "homes", scope, script, profile, **config)
    spawner.user.name = name
    return spawner


def home_file(spawner, name: str, timeout: float = 20) -> str:
    path = spawner.home_on_host / name
    return wait_for(lambda: path.exists() and path.read_text().strip(), timeout, f"{name} in the home")


PROBE = """
import json, os, socket, sys, urllib.request
targets = json.loads(sys.argv[1])
def connect(host, port):
    try:
        socket.create_connection((host, port), timeout=2).close()
        return "connected"
    except OSError as exc:
        return type(exc).__name__
links = sorted(line.split(":")[0].strip() for line in open("/proc/net/dev").readlines()[2:])
found = {"links": links, "connect": {f"{h}:{p}": connect(h, p) for h, p in targets}}
found["hub"] = urllib.request.urlopen(os.environ["JUPYTERHUB_API_URL"] + "/user", timeout=5).read().decode()
found["ipv6"] = open("/proc/net/if_inet6").read()
open(os.path.expanduser("~/probe.json.tmp"), "w").write(json.dumps(found))
os.rename(os.path.expanduser("~/probe.json.tmp"), os.path.expanduser("~/probe.json"))
"""


@pytest.mark.usefixtures("needs_root")
async def test_a_workspace_has_its_own_namespace_and_reaches_only_its_gates(service, alliance, tmp_path, scope):
    host_port = socket.socket()
    host_port.bind(("0.0.0.0", 0))
    host_port.listen()
    port = host_port.getsockname()[1]
    async with FakeHub() as hub:
        targets = [["127.0.0.1", port], ["169.254.0.1", port]]
        spawner = spawner_for(service, alliance, tmp_path, scope,
                              f"{PYTHON} -c \"$PROBE\" '{json.dumps(targets)}'; exec sleep 600",
                              environment={"PROBE": PROBE})
        spawner.hub = SimpleNamespace(public_host="", api_url=f"http://127.0.0.1:{hub.port}/hub/api", base_url="/hub/")
        try:
            ip, server_port = await spawner.start()
            link = spawner._network.link
            assert ip == link.workspace_address and server_port == spawner.port
            assert our_links(spawner) == [link.host_name]
            targets.append([link.host_address, port])
            found = json.loads(await asyncio.to_thread(home_file, spawner, "probe.json"))
        finally:
            await spawner.stop(now=True)
            host_port.close()
    assert found["links"] == ["eth0", "lo"]
    assert all(outcome != "connected" for outcome in found["connect"].values()), found
    assert json.loads(found["hub"]) == {"asked": "/hub/api/user"}  # through the hub API gate
    assert found["ipv6"] == ""  # no IPv6 address to go around the filter
    assert our_links(spawner) == []
    assert processes_of_uid(spawner.student_uid) == []


@pytest.mark.usefixtures("needs_root")
async def test_every_workspace_gets_its_own_block_and_a_full_subnet_is_a_clear_error_leaving_nothing(
        service, alliance, tmp_path, scope, caplog):
    # A /29 holds two /30s: the third workspace has no block. One far from other hubs' workspaces.
    subnet = next(f"169.254.127.{start}/29" for start in range(248, 0, -8)
                  if len(list(free_slots(f"169.254.127.{start}/29", host_links()))) == 2)
    first = spawner_for(service, alliance, tmp_path, scope, "exec sleep 600", workspace_subnet=subnet)
    second = spawner_for(service, alliance, tmp_path, scope, "exec sleep 600", name="c01-s2", workspace_subnet=subnet)
    third = spawner_for(service, alliance, tmp_path, scope, "exec sleep 600", name="c01-s3", workspace_subnet=subnet)
    started = []
    try:
        for spawner in (first, second):
            await spawner.start()
            started.append(spawner)
        assert {first.ip, second.ip} == {link_for(subnet, 0).workspace_address, link_for(subnet, 1).workspace_address}
        with pytest.raises(WorkspaceFailed) as refused:
            await third.start()
        assert "could not be set up" in str(refused.value)  # the student's sentence, from the catalogue
        assert "workspace_subnet" in caplog.text  # the operator's, naming the setting
        assert our_links(third) == [] and third._network is None and third._gates is None
        assert processes_of_uid(third.student_uid) == []
        assert service.paths("DELETE")  # its lease was given back
    finally:
        for spawner in started:
            await spawner.stop(now=True)
    assert our_links(first) == [] and our_links(second) == []


@pytest.mark.usefixtures("needs_root")
async def test_a_start_that_fails_after_the_network_leaves_nothing_of_it(service, alliance, tmp_path, scope):
    spawner = spawner_for(service, alliance, tmp_path, scope, "exec sleep 600")
    spawner.bwrap_path = "/nonexistent/bwrap"  # Popen fails once the namespace, veth and gates exist
    with pytest.raises(Exception):
        await spawner.start()
    assert our_links(spawner) == [] and spawner._network is None and spawner._gates is None
    assert spawner.network_slot == -1


@pytest.mark.usefixtures("needs_root")
async def test_the_lease_gate_asks_the_quota_service_for_the_own_lease_only(service, alliance, tmp_path, scope):
    asked = []

    async def quota(reader, writer):
        head = await reader.readuntil(b"\r\n\r\n")
        asked.append(head.decode())
        body = b'{"id": "l-1", "state": "granted"}'
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(quota, "127.0.0.1", 0)
    quota_url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    script = ("for path in api/leases/l-1 api/leases/l-2 api/inventory; do "
              f"{PYTHON} -c \"$GET\" \"$GPU_COMMONS_QUOTA_URL/$path\" >> ~/answers; done; exec sleep 600")
    get = ("import sys, urllib.request, urllib.error\n"
           "request = urllib.request.Request(sys.argv[1], headers={'Authorization': 'token secret'})\n"
           "try:\n    print(urllib.request.urlopen(request, timeout=5).status)\n"
           "except urllib.error.HTTPError as exc:\n    print(exc.code)\n")
    spawner = spawner_for(service, alliance, tmp_path, scope, script, profile="gpu-slice", quota_url=quota_url,
                          environment={"GET": get})
    try:
        await spawner.start()
        answers = await asyncio.to_thread(lambda: wait_for(
            lambda: len((spawner.home_on_host / "answers").read_text().split()) == 3
            if (spawner.home_on_host / "answers").exists() else False, 20, "three answers"))
        assert answers
        assert (spawner.home_on_host / "answers").read_text().split() == ["200", "403", "403"]
    finally:
        await spawner.stop(now=True)
        server.close()
    assert len(asked) == 1 and asked[0].startswith("GET /api/leases/l-1 HTTP/1.1")
    assert "authorization: token secret" in asked[0].lower()


@pytest.mark.usefixtures("needs_root")
async def test_a_restarted_hub_serves_the_gates_of_a_running_workspace_again(service, alliance, tmp_path, scope):
    # The workspace asks the hub API every 0.2 s and notes each answer: ok, or the error's name.
    asker = ("import os, time, urllib.request\n"
             "while True:\n"
             "    try:\n"
             "        urllib.request.urlopen(os.environ['JUPYTERHUB_API_URL'] + '/user', timeout=2).read()\n"
             "        note = 'ok'\n"
             "    except Exception as exc:\n"
             "        note = type(exc).__name__\n"
             "    with open(os.path.expanduser('~/asked'), 'a') as out:\n"
             "        out.write(note + '\\n')\n"
             "    time.sleep(0.2)\n")
    log = lambda spawner: (spawner.home_on_host / "asked").read_text().split() if (  # noqa: E731
        spawner.home_on_host / "asked").exists() else []
    async with FakeHub() as hub:
        hub_at = SimpleNamespace(public_host="", api_url=f"http://127.0.0.1:{hub.port}/hub/api", base_url="/hub/")
        first = spawner_for(service, alliance, tmp_path, scope, f"exec {PYTHON} -c \"$ASKER\"",
                            environment={"ASKER": asker})
        first.hub = hub_at
        await first.start()
        restarted = None
        try:
            await asyncio.to_thread(wait_for, lambda: "ok" in log(first), 20, "an answer through the gate")
            state = first.get_state()
            assert state["network"]["slot"] == first.network_slot >= 0
            # The hub dies: its gates and its descriptor of the namespace go with it, the workspace runs on.
            await first._gates.close()
            os.close(first._network.fd)
            seen = len(log(first))
            await asyncio.to_thread(wait_for, lambda: any(n != "ok" for n in log(first)[seen:]), 20,
                                    "the workspace to miss the hub")
            assert our_links(first)  # its veth lives with its processes

            restarted = spawner_for(service, alliance, tmp_path, scope, "unused")
            restarted.user, restarted.hub = first.user, hub_at
            restarted.load_state(state)
            assert await restarted.poll() is None  # running: and its gates are served again
            seen = len(log(first))
            await asyncio.to_thread(wait_for, lambda: "ok" in log(first)[seen:], 20, "answers again after the restart")
        finally:
            first._gates = first._network = None
            await (restarted or first).stop(now=True)
    assert our_links(first) == []
    assert processes_of_uid(first.student_uid) == []


@pytest.mark.usefixtures("needs_root")
async def test_a_missing_tool_is_named_with_its_package_and_the_setting(service, alliance, tmp_path, scope,
                                                                         monkeypatch, caplog):
    tools = tmp_path / "bin"
    tools.mkdir()
    for tool in ("ip", "nsenter"):  # no iptables-restore
        (tools / tool).symlink_to(shutil.which(tool))
    monkeypatch.setenv("PATH", str(tools))
    spawner = spawner_for(service, alliance, tmp_path, scope, "exec sleep 600")
    with pytest.raises(WorkspaceFailed):
        await spawner.start()
    assert "iptables-restore (Debian package iptables)" in caplog.text
    assert "c.LocalQuotaSpawner.network_isolation = False" in caplog.text
    assert our_links(spawner) == [] and processes_of_uid(spawner.student_uid) == []


# -- the sweep -----------------------------------------------------------------------------------


def test_the_sweep_deletes_network_links_only_of_students_without_a_server():
    from spawner.sweep import NetworkLink, plan_sweep

    links = [NetworkLink("gcwa9fe0000", "c01-s1"), NetworkLink("gcwa9fe0004", "c01-s2"),
             NetworkLink("gcwa9fe0008", "c%C3%A9-s3")]
    plan = plan_sweep({"c01-s1"}, [], [], asked_at=200.0, uids=range(0), cgroup_top="gpu-commons", links=links)
    assert plan.links == ["gcwa9fe0004", "gcwa9fe0008"]
    assert plan_sweep({"c01-s1", "cé-s3"}, [], [], asked_at=200.0, uids=range(0), cgroup_top="gpu-commons",
                      links=links).links == ["gcwa9fe0004"]


@pytest.mark.usefixtures("needs_root")
def test_a_link_left_by_a_held_namespace_is_deleted_by_the_sweep(scope, caplog):
    import http.server
    import threading

    from spawner.netns import WorkspaceNetwork, alias_for
    from spawner.sweep import Settings, sweep_once

    class NoServers(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (the hub's /users?state=active: nobody)
            body = json.dumps({"items": [], "_pagination": {"next": None}}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    hub = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NoServers)
    threading.Thread(target=hub.serve_forever, daemon=True).start()
    # Something else holds the namespace (an operator's nsenter, say): the kernel keeps the link.
    network = WorkspaceNetwork.create("169.254.126.0/24", 8888, alias_for(scope, "c01-s9"))
    try:
        settings = Settings(api_url=f"http://127.0.0.1:{hub.server_address[1]}/hub/api", token="t",
                            cgroup_parent=scope, uid_base=0, uid_count=0)
        with caplog.at_level("WARNING", logger="gpu-commons.sweep"):
            plan = sweep_once(settings)
        assert plan.links == [network.link.host_name]
        assert network.link.host_name not in host_links()
        assert f"deleted the network link {network.link.host_name} of c01-s9, who has no running server" in caplog.text
    finally:
        network.close()
        hub.shutdown()
