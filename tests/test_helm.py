"""The Helm chart (helm/gpu-commons): linted strictly, rendered offline with default and with
maximal values, every object validated against the Kubernetes schemas, and what it hands the
hub and the quota service read by their own loaders."""

from __future__ import annotations

import copy
import json

import kubernetes_validate
import pytest
import yaml
from helm_python.chart import Chart, lint

from quota.alliance import parse_alliance
from spawner.pools import KubePool, parse_pools
from tests.docker_engine import REPO

CHART = REPO / "helm" / "gpu-commons"
KUBERNETES = "1.30.0"

MAXIMAL = {
    "pools": {
        "uni-a": {
            "namespace": "uni-a-workspaces",
            "node_selector": {"gpu-commons/pool": "uni-a"},
            "node_affinity": [{"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["z1"]}],
            "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
            "gpu_resource": "nvidia.com/gpu",
            "slice_resource": "nvidia.com/mig-1g.10gb",
            "gpu_product": "NVIDIA-A100-SXM4-80GB",
            "storage_class": "nfs-homes",
            "home_size": "20Gi",
        },
        "uni-b": {"namespace": "uni-b-workspaces", "node_selector": {"gpu-commons/pool": "uni-b"}},
    },
    "hub": {
        "config": {"KubeQuotaSpawner": {"unschedulable_timeout": 300}, "JupyterHub": {"concurrent_spawn_limit": 50}},
        "leaseWarningMinutes": [15, 5, 1],
        "storage": {"size": "2Gi", "storageClass": "fast"},
    },
    "quota": {"storage": {"size": "2Gi", "storageClass": "fast"}},
    "proxy": {"service": {"type": "NodePort", "port": 30080}},
    "secrets": {"quotaToken": "q" * 64, "proxyToken": "p" * 64},
}


def values(extra: dict | None = None) -> dict:
    merged = copy.deepcopy(Chart.load(str(CHART)).values)
    for key, value in (extra or {}).items():
        if isinstance(value, dict) and key != "pools":
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged


def rendered(extra: dict | None = None) -> list[dict]:
    files = Chart.load(str(CHART)).render(values(extra), name="gc", namespace="schools", is_install=True)
    return [doc for name, text in files.items() if name.endswith(".yaml") for doc in yaml.safe_load_all(text) if doc]


def find(objects: list[dict], kind: str, suffix: str = "") -> list[dict]:
    return [o for o in objects if o["kind"] == kind and o["metadata"]["name"].endswith(suffix)]


@pytest.mark.parametrize("extra", [None, MAXIMAL], ids=["default", "maximal"])
def test_chart_lints_strictly(extra):
    result = lint(str(CHART), values(extra), strict=True, namespace="schools")
    assert result["errors"] == []
    assert [m for m in result["messages"] if m["severity"] > 1] == []  # 1 = INFO (no icon)


@pytest.mark.parametrize("extra", [None, MAXIMAL], ids=["default", "maximal"])
def test_every_rendered_object_is_valid_kubernetes(extra):
    objects = rendered(extra)
    kinds = sorted(o["kind"] for o in objects)
    assert kinds.count("Deployment") == 3 and kinds.count("PersistentVolumeClaim") == 2
    for obj in objects:
        kubernetes_validate.validate(obj, KUBERNETES, strict=True)


def test_the_hub_and_the_quota_service_read_what_the_chart_gives_them():
    objects = rendered(MAXIMAL)
    [alliance_map] = find(objects, "ConfigMap", "-alliance")
    alliance = parse_alliance(yaml.safe_load(alliance_map["data"]["alliance.yaml"]), "chart")
    assert [pool.id for pool in alliance.pools] == ["uni-a"]

    [hub_map] = find(objects, "ConfigMap", "-hub")
    settings = yaml.safe_load(hub_map["data"]["hub-config.yaml"])
    pools = parse_pools(settings["KubeQuotaSpawner"]["pools"], KubePool, "chart pools")
    assert pools["uni-a"].slice_resource == "nvidia.com/mig-1g.10gb" and pools["uni-b"].namespace == "uni-b-workspaces"
    assert settings["KubeQuotaSpawner"]["unschedulable_timeout"] == 300  # hub.config is merged in
    assert settings["KubeQuotaSpawner"]["namespace"] == "schools"
    assert settings["QuotaSpawnerMixin"]["lease_warning_minutes"] == [15, 5, 1]
    assert settings["JupyterHub"]["hub_connect_url"] == "http://gc-gpu-commons-hub.schools.svc:8081"

    # The hub may manage workspaces in its own namespace and in each pool's.
    assert sorted(r["metadata"]["namespace"] for r in find(objects, "Role")) == [
        "schools", "uni-a-workspaces", "uni-b-workspaces"]
    [hub] = find(objects, "Deployment", "-hub")
    env = {e["name"]: e.get("value") for e in hub["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["GPU_COMMONS_BACKEND"] == "kubernetes"
    assert env["GPU_COMMONS_QUOTA_URL"] == "http://gc-gpu-commons-quota:8181"
    assert hub["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == 1000


def test_schema_describes_the_pool_settings_of_the_spawner_and_refuses_typos():
    schema = json.loads((CHART / "values.schema.json").read_text())
    pool = schema["properties"]["pools"]["additionalProperties"]
    assert set(pool["properties"]) == set(KubePool.model_fields)  # no drift between chart and spawner
    assert all(p.get("description") for p in pool["properties"].values())
    chart = Chart.load(str(CHART))
    with pytest.raises(Exception, match="nodeSelector"):
        chart.validate_schema(values({"pools": {"uni-a": {"nodeSelector": {"a": "b"}}}}))
    with pytest.raises(Exception, match="replicas"):
        chart.validate_schema(values({"hub": {"replicas": 2}}))
