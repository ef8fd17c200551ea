"""Docker workspaces off the host's network (issue 17, point 3): a pool's workspaces go on a
bridge of their own with container-to-container traffic off, and the host network is refused
unless a pool says it is an engine without a bridge. Pure: the settings and the create body."""

from __future__ import annotations

import pytest

from spawner.builders.docker import build_workspace_network
from spawner.pools import WORKSPACE_NETWORK, DockerPool, PoolConfigError, parse_pools


def test_workspaces_go_on_their_own_bridge_by_default():
    assert DockerPool().network == WORKSPACE_NETWORK == "gpu-commons-workspaces"


def test_the_workspace_bridge_lets_no_container_reach_another():
    assert build_workspace_network(WORKSPACE_NETWORK) == {
        "name": "gpu-commons-workspaces",
        "driver": "bridge",
        "options": {"com.docker.network.bridge.enable_icc": "false"},
        "labels": {"gpu-commons.network": "workspaces"},
        "check_duplicate": True,
    }


def test_the_host_network_is_refused_unless_the_pool_allows_it():
    with pytest.raises(PoolConfigError) as refused:
        parse_pools({"uni-b": {"network": "host"}}, DockerPool, "c.DockerQuotaSpawner.pools")
    message = str(refused.value)
    assert "c.DockerQuotaSpawner.pools['uni-b']" in message and "allow_host_network" in message
    allowed = parse_pools({"t": {"network": "host", "allow_host_network": True}}, DockerPool, "pools")
    assert allowed["t"].network == "host"
    assert parse_pools({"b": {"network": "school-lan"}}, DockerPool, "pools")["b"].network == "school-lan"


@pytest.mark.docker
async def test_the_spawner_makes_the_workspace_bridge_once_on_a_real_engine(docker_engine):
    from types import SimpleNamespace

    from spawner.docker import LeasedDockerSpawner

    spawner = LeasedDockerSpawner(pools={"p": {"docker_url": docker_engine.url}},
                                  user=SimpleNamespace(name="c01-s1", id=1, url="/user/c01-s1/"))
    spawner.pool_id = "p"
    client = docker_engine.client()
    try:
        await spawner.ensure_workspace_network()
        await spawner.ensure_workspace_network()  # there already: left as it is
        made = [n for n in client.networks(names=[WORKSPACE_NETWORK]) if n["Name"] == WORKSPACE_NETWORK]
        assert len(made) == 1
        assert made[0]["Driver"] == "bridge"
        assert made[0]["Options"]["com.docker.network.bridge.enable_icc"] == "false"
        assert made[0]["Labels"] == {"gpu-commons.network": "workspaces"}
    finally:
        for network in client.networks(names=[WORKSPACE_NETWORK]):
            client.remove_network(network["Id"])
