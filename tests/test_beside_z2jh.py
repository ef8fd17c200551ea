"""GPU Commons inside an existing zero-to-jupyterhub release (issue 15, point 6).

hub/beside_z2jh.py is what the z2jh hub's extraConfig runs: on a config shaped like the one
z2jh's own jupyterhub_config.py makes, it adds the platform (the quota spawner, the quota
service, the schools' roles and groups) and keeps what z2jh owns (where things listen, the
proxy, the database, the login, z2jh's own services and roles). The chart's side, the
quota service alone with a ConfigMap of spawner settings for that hub, is tested as rendered.
"""

from __future__ import annotations

import pytest
from traitlets.config import Config

from hub.beside_z2jh import configure_beside_z2jh
from hub.config import HubSettings
from tests.helm_chart import find, rendered

ALLIANCE = """
name: Beside z2jh
tiers: {county: {weight: 1}}
pools: [{id: uni-a, gpus: 1, simulated: true}]
profiles: [{id: cpu, display_name: CPU only, gpu: none, max_minutes: 30}]
schools: [{id: c01, tier: county, students: [c01-s1], teachers: [c01-teacher]}]
"""


def z2jh_config() -> Config:
    """What z2jh's jupyterhub_config.py has set by the time hub.extraConfig runs (abridged)."""
    c = Config()
    c.JupyterHub.bind_url = "http://:8000"
    c.JupyterHub.hub_bind_url = "http://:8081"
    c.JupyterHub.hub_connect_url = "http://hub:8081"
    c.JupyterHub.db_url = "sqlite:////srv/jupyterhub/jupyterhub.sqlite"
    c.JupyterHub.cleanup_servers = False
    c.JupyterHub.authenticator_class = "oauthenticator.generic.GenericOAuthenticator"
    c.JupyterHub.services = [{"name": "announcement", "url": "http://announcement:8888"}]
    c.JupyterHub.load_roles = [{"name": "user", "scopes": ["self", "read:groups"]}]
    c.ConfigurableHTTPProxy.api_url = "http://proxy-api:8001"
    c.ConfigurableHTTPProxy.should_start = False
    c.KubeSpawner.namespace = "jhub"
    return c


def settings(tmp_path) -> HubSettings:
    alliance = tmp_path / "alliance.yaml"
    alliance.write_text(ALLIANCE)
    return HubSettings(alliance=alliance, data_dir=tmp_path / "srv", backend="kubernetes",
                       quota_url="http://gc-gpu-commons-quota:8181")


def test_the_platform_joins_the_z2jh_hub_and_z2jh_keeps_what_it_owns(tmp_path):
    c = z2jh_config()
    configure_beside_z2jh(c, settings(tmp_path))
    assert c.JupyterHub.spawner_class == "spawner.kubernetes.KubeQuotaSpawner"
    assert c.QuotaSpawnerMixin.quota_url == "http://gc-gpu-commons-quota:8181"
    services = {service["name"]: service for service in c.JupyterHub.services}
    assert services["quota"]["url"] == "http://gc-gpu-commons-quota:8181" and "command" not in services["quota"]
    assert services["announcement"] == {"name": "announcement", "url": "http://announcement:8888"}  # theirs, kept
    roles = {role["name"] for role in c.JupyterHub.load_roles}
    assert {"user", "teacher-c01", "quota-service"} <= roles
    assert "school-c01" in c.JupyterHub.load_groups
    # z2jh's: where the hub and the proxy listen, the database, the proxy, the login
    assert (c.JupyterHub.bind_url, c.JupyterHub.hub_connect_url, c.JupyterHub.db_url) == (
        "http://:8000", "http://hub:8081", "sqlite:////srv/jupyterhub/jupyterhub.sqlite")
    assert c.JupyterHub.cleanup_servers is False
    assert c.ConfigurableHTTPProxy.should_start is False and "command" not in c.ConfigurableHTTPProxy
    assert c.JupyterHub.authenticator_class == "oauthenticator.generic.GenericOAuthenticator"
    assert "allowed_users" not in c.Authenticator  # the university's login decides who comes in
    assert "pid_file" not in c.JupyterHub and "cookie_secret_file" not in c.JupyterHub


def test_the_alliance_accounts_may_log_in_there_too(tmp_path):
    c = z2jh_config()
    configure_beside_z2jh(c, settings(tmp_path), alliance_accounts=True)
    assert c.JupyterHub.authenticator_class.__name__ == "AllianceAuthenticator"
    assert c.Authenticator.allowed_users == {"c01-s1", "c01-teacher"}


def test_without_the_quota_services_address_it_says_what_to_set(tmp_path):
    from dataclasses import replace

    with pytest.raises(SystemExit, match="GPU_COMMONS_QUOTA_URL is not set"):
        configure_beside_z2jh(z2jh_config(), replace(settings(tmp_path), quota_url=""))


BESIDE = {"zeroToJupyterHub": {"enabled": True, "release": "jhub"}}


def test_the_chart_installs_only_the_quota_service_for_the_z2jh_hub(tmp_path):
    import kubernetes_validate
    import yaml

    objects = rendered(BESIDE)
    assert sorted(d["metadata"]["name"] for d in find(objects, "Deployment")) == ["gc-gpu-commons-quota"]
    assert not find(objects, "Service", "-hub") and not find(objects, "Service", "-proxy")
    for obj in objects:
        if obj["apiVersion"] != "monitoring.coreos.com/v1":
            kubernetes_validate.validate(obj, "1.30.0", strict=True)
    [quota] = find(objects, "Deployment", "-quota")
    env = {e["name"]: e.get("value") for e in quota["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["JUPYTERHUB_API_URL"] == "http://hub:8081/hub/api"
    [policy] = [p for p in find(objects, "NetworkPolicy") if p["metadata"]["name"] == "gc-gpu-commons-quota"]
    assert policy["spec"]["ingress"][0]["from"][:2] == [
        {"podSelector": {"matchLabels": {"app": "jupyterhub", "release": "jhub", "component": "hub"}}},
        {"podSelector": {"matchLabels": {"app": "jupyterhub", "release": "jhub", "component": "proxy"}}}]
    [budget] = find(objects, "PodDisruptionBudget")
    assert budget["spec"]["selector"]["matchExpressions"][0]["values"] == ["quota"]

    # the spawner settings for the z2jh hub to mount (GPU_COMMONS_HUB_CONFIG): no JupyterHub section
    [config_map] = find(objects, "ConfigMap", "-hub")
    hub_config = yaml.safe_load(config_map["data"]["hub-config.yaml"])
    assert "JupyterHub" not in hub_config
    assert hub_config["QuotaSpawnerMixin"]["workspace_quota_url"] == "http://proxy-public/services/quota"
    path = tmp_path / "hub-config.yaml"
    path.write_text(config_map["data"]["hub-config.yaml"])
    from dataclasses import replace

    c = z2jh_config()
    configure_beside_z2jh(c, replace(settings(tmp_path), extra_config=path))
    assert c.KubeQuotaSpawner.namespace == "schools" and c.JupyterHub.hub_connect_url == "http://hub:8081"
