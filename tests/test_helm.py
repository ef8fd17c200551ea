"""The Helm chart (helm/gpu-commons): linted strictly, rendered offline with default and with
maximal values, every object validated against the Kubernetes schemas (the Prometheus
Operator's ServiceMonitor and PrometheusRule, which those schemas lack, checked by shape), what
it hands the hub and the quota service read by their own loaders, and who its NetworkPolicies
let reach whom."""

from __future__ import annotations

import json

import kubernetes_validate
import pytest
import yaml
from helm_python.chart import Chart, lint

from kubespawner import KubeSpawner

from quota import dashboards
from quota.alliance import parse_alliance
from spawner.builders.kubernetes import LABEL_PREFIX
from spawner.pools import KubePool, library_volume, parse_pools
from spawner.specs import LibraryVolume
from tests.helm_chart import CHART, find, rendered, values

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
        "uni-b": {"namespace": "uni-b-workspaces", "node_selector": {"gpu-commons/pool": "uni-b"},
                  "gpu_sharing": "hami", "shared_resource": "nvidia.com/gpu.shared",
                  "hami_memory_resource": "nvidia.com/gpumem", "hami_cores_resource": "nvidia.com/gpucores"},
    },
    "hub": {
        "config": {"KubeQuotaSpawner": {"unschedulable_timeout": 300}, "JupyterHub": {"concurrent_spawn_limit": 50}},
        "leaseWarningMinutes": [15, 5, 1],
        "storage": {"size": "2Gi", "storageClass": "fast"},
    },
    "quota": {"storage": {"size": "2Gi", "storageClass": "fast"},
              "database": {"existingSecret": "quota-postgres", "secretKey": "url"}, "replicas": 2},
    "proxy": {"service": {"type": "NodePort", "port": 30080}},
    "secrets": {"quotaToken": "q" * 64, "proxyToken": "p" * 64},
    "networkPolicy": {
        "enabled": True,
        "metricsFrom": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}],
        "workspaces": {"allowInternet": False,
                       "egress": [{"to": [{"ipBlock": {"cidr": "10.20.0.5/32"}}], "ports": [{"port": 445}]}]},
    },
    "podDisruptionBudget": {"enabled": True},
    "metrics": {
        "serviceMonitor": {"enabled": True, "interval": "15s", "labels": {"release": "kube-prometheus-stack"}},
        "prometheusRule": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
        "dashboards": {"enabled": True, "label": "grafana_dashboard", "labelValue": "1", "namespace": "monitoring",
                       "annotations": {"grafana_folder": "GPU Commons"}},
    },
}
PROMETHEUS_OPERATOR = "monitoring.coreos.com/v1"  # CRDs: not in kubernetes-validate's schemas


@pytest.mark.parametrize("extra", [None, MAXIMAL], ids=["default", "maximal"])
def test_chart_lints_strictly(extra):
    result = lint(str(CHART), values(extra), strict=True, namespace="schools")
    assert result["errors"] == []
    assert [m for m in result["messages"] if m["severity"] > 1] == []  # 1 = INFO (no icon)


@pytest.mark.parametrize("extra", [None, MAXIMAL], ids=["default", "maximal"])
def test_every_rendered_object_is_valid_kubernetes(extra):
    objects = rendered(extra)
    kinds = sorted(o["kind"] for o in objects)
    # the hub's volume, and the quota service's unless its database is PostgreSQL (maximal)
    assert kinds.count("Deployment") == 3 and kinds.count("PersistentVolumeClaim") == (1 if extra else 2)
    for obj in objects:
        if obj["apiVersion"] != PROMETHEUS_OPERATOR:
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
    assert (pools["uni-a"].gpu_sharing, pools["uni-b"].gpu_sharing) == ("time-slicing", "hami")
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
    # workspaces ask about their lease through the proxy (the NetworkPolicies keep them off the service's port)
    assert settings["QuotaSpawnerMixin"]["workspace_quota_url"] == "http://gc-gpu-commons-proxy.schools.svc:30080/services/quota"
    [quota] = find(objects, "Deployment", "-quota")
    env = {e["name"]: e.get("value") for e in quota["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["JUPYTERHUB_API_URL"] == "http://gc-gpu-commons-hub:8081/hub/api"
    assert env["JUPYTERHUB_SERVICE_PREFIX"] == "/services/quota/"
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


def component(name: str) -> dict:
    return {"app.kubernetes.io/name": "gpu-commons", "app.kubernetes.io/instance": "gc", "app.kubernetes.io/component": name}


def peer(name: str) -> dict:
    return {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "schools"}},
            "podSelector": {"matchLabels": component(name)}}


WORKSPACE_PODS = {"matchLabels": {"component": KubeSpawner.component_label.default_value},  # KubeSpawner's label
                  "matchExpressions": [{"key": f"{LABEL_PREFIX}/pool", "operator": "Exists"}]}  # the builder's


def workspaces_in(namespace: str) -> dict:
    return {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}, "podSelector": WORKSPACE_PODS}


def policy(objects: list[dict], name: str, namespace: str | None = None) -> dict:
    [found] = [o for o in objects if o["kind"] == "NetworkPolicy" and o["metadata"]["name"] == name
               and o["metadata"].get("namespace") == namespace]
    return found["spec"]


def test_network_policies_say_who_reaches_whom():
    objects = rendered(MAXIMAL)
    namespaces = ["schools", "uni-a-workspaces", "uni-b-workspaces"]
    # every policy of a component selects that component's pods, as its Deployment labels them
    for name in ("hub", "proxy", "quota"):
        [deployment] = find(objects, "Deployment", f"-{name}")
        selector = policy(objects, f"gc-gpu-commons-{name}")["podSelector"]["matchLabels"]
        assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()

    hub = policy(objects, "gc-gpu-commons-hub")
    assert hub["ingress"] == [{"ports": [{"port": 8081, "protocol": "TCP"}],
                               "from": [peer("proxy"), peer("quota"), *map(workspaces_in, namespaces)]}]
    proxy = policy(objects, "gc-gpu-commons-proxy")
    assert proxy["ingress"] == [{"ports": [{"port": 8000, "protocol": "TCP"}]},  # students, from anywhere
                                {"ports": [{"port": 8001, "protocol": "TCP"}], "from": [peer("hub")]}]
    quota = policy(objects, "gc-gpu-commons-quota")  # no workspace: they go through the proxy
    assert quota["ingress"] == [{"ports": [{"port": 8181, "protocol": "TCP"}], "from": [
        peer("hub"), peer("proxy"), {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]}]
    database = policy(objects, "gc-gpu-commons-database")
    assert database["podSelector"]["matchLabels"] == component("database")
    assert database["ingress"] == [{"from": [peer("quota")]}]
    # the SQLite database's volume: only the quota service mounts it
    claims = {(d["metadata"]["name"], v["persistentVolumeClaim"]["claimName"]) for d in find(rendered(), "Deployment")
              for v in d["spec"]["template"]["spec"].get("volumes", []) if "persistentVolumeClaim" in v}
    assert [name for name, claim in claims if claim == "gc-gpu-commons-quota"] == ["gc-gpu-commons-quota"]

    for namespace in namespaces:  # in every namespace the hub starts workspaces in
        workspaces = policy(objects, "gc-gpu-commons-workspaces", namespace)
        assert workspaces["podSelector"] == WORKSPACE_PODS
        assert workspaces["policyTypes"] == ["Ingress", "Egress"]
        assert workspaces["ingress"] == [{"from": [peer("proxy"), peer("hub")]}]
        assert workspaces["egress"] == [
            {"to": [peer("hub")], "ports": [{"port": 8081, "protocol": "TCP"}]},
            {"to": [peer("proxy")], "ports": [{"port": 8000, "protocol": "TCP"}]},
            {"ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]},
            *MAXIMAL["networkPolicy"]["workspaces"]["egress"],  # allowInternet: false
        ]


def test_workspaces_reach_the_internet_outside_private_ranges_by_default():
    objects = rendered()
    [workspaces] = [o["spec"] for o in objects if o["kind"] == "NetworkPolicy" and o["metadata"]["name"].endswith("-workspaces")]
    [internet] = [rule for rule in workspaces["egress"] if "ipBlock" in rule.get("to", [{}])[0]]
    assert internet["to"][0]["ipBlock"]["cidr"] == "0.0.0.0/0"
    assert {"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16"} <= set(internet["to"][0]["ipBlock"]["except"])
    assert "ports" not in internet
    assert not find(objects, "ServiceMonitor") and not find(objects, "PrometheusRule")  # behind their flags
    assert [o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"].endswith("-dashboard")] == []
    without = rendered({"networkPolicy": {"enabled": False}, "podDisruptionBudget": {"enabled": False}})
    assert not find(without, "NetworkPolicy") and not find(without, "PodDisruptionBudget")


def test_one_disruption_budget_over_the_hub_the_proxy_and_the_quota_service():
    [budget] = find(rendered(), "PodDisruptionBudget")
    assert budget["spec"] == {"maxUnavailable": 1, "selector": {
        "matchLabels": {"app.kubernetes.io/name": "gpu-commons", "app.kubernetes.io/instance": "gc"},
        "matchExpressions": [{"key": "app.kubernetes.io/component", "operator": "In", "values": ["hub", "proxy", "quota"]}]}}


def test_with_postgresql_the_quota_service_runs_a_hot_standby_and_no_volume():
    objects = rendered(MAXIMAL)
    [quota] = find(objects, "Deployment", "-quota")
    spec = quota["spec"]
    [container] = spec["template"]["spec"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert env["GPU_COMMONS_DATABASE_URL"]["valueFrom"] == {"secretKeyRef": {"name": "quota-postgres", "key": "url"}}
    assert spec["replicas"] == 2
    assert spec["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    assert container["readinessProbe"]["httpGet"]["path"] == "/api/ready"  # the standby gets no traffic
    assert {"name": "data", "emptyDir": {}} in spec["template"]["spec"]["volumes"]
    assert not [c for c in find(objects, "PersistentVolumeClaim") if c["metadata"]["name"].endswith("-quota")]
    [budget] = find(objects, "PodDisruptionBudget")  # a standby is never ready: it would block every drain
    assert budget["spec"]["selector"]["matchExpressions"][0]["values"] == ["hub", "proxy"]

    sqlite = find(rendered(), "Deployment", "-quota")[0]["spec"]
    assert sqlite["replicas"] == 1 and sqlite["strategy"] == {"type": "Recreate"}
    assert "GPU_COMMONS_DATABASE_URL" not in {e["name"] for e in sqlite["template"]["spec"]["containers"][0]["env"]}
    assert find(rendered(), "PersistentVolumeClaim", "-quota")


def test_a_standby_beside_sqlite_is_refused_with_the_fix():
    with pytest.raises(Exception, match="quota.replicas > 1 needs quota.database.existingSecret"):
        rendered({"quota": {"replicas": 2}})


def test_service_monitor_scrapes_the_quota_service_as_the_dashboards_job():
    objects = rendered(MAXIMAL)
    [monitor] = find(objects, "ServiceMonitor")
    assert monitor["apiVersion"] == PROMETHEUS_OPERATOR
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    [service] = [o for o in find(objects, "Service") if o["metadata"]["name"] == "gc-gpu-commons-quota"]
    spec = monitor["spec"]
    assert spec["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert service["metadata"]["labels"][spec["jobLabel"]] == dashboards.JOB  # the job the panels and alerts query
    assert spec["namespaceSelector"] == {"matchNames": ["schools"]}
    assert spec["endpoints"] == [{"port": "api", "path": "/metrics", "interval": "15s"}]
    assert [port["name"] for port in service["spec"]["ports"]] == ["api"]


def test_prometheus_rule_ships_the_tested_rules_file():
    [rule] = find(rendered(MAXIMAL), "PrometheusRule")
    assert rule["apiVersion"] == PROMETHEUS_OPERATOR
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert rule["spec"] == yaml.safe_load((CHART / "files" / "prometheus-rules.yaml").read_text())
    assert {r["alert"] for g in rule["spec"]["groups"] for r in g["rules"]} >= {"GpuCommonsQuotaServiceDown"}


def test_dashboards_as_configmaps_for_grafanas_sidecar():
    maps = [o for o in rendered(MAXIMAL) if o["kind"] == "ConfigMap" and o["metadata"]["name"].endswith("-dashboard")]
    assert sorted(m["metadata"]["name"] for m in maps) == [f"gc-gpu-commons-{name}-dashboard" for name in sorted(dashboards.BOARDS)]
    for configmap in maps:
        assert configmap["metadata"]["namespace"] == "monitoring"
        assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert configmap["metadata"]["annotations"] == {"grafana_folder": "GPU Commons"}
        [(key, text)] = configmap["data"].items()
        assert json.loads(text) == json.loads((dashboards.OUT / key).read_text())


def test_a_shared_gpu_pool_reaches_the_hub_and_the_quota_service():
    shared = {"id": "uni-t", "gpus": 4, "gpu_model": "Tesla T4", "simulated": True,
              "shared": {"students_per_gpu": 4, "memory_per_student": "3584M", "gpu_memory": "15360M"}}
    objects = rendered({"alliance": {"pools": [shared],
                                     "profiles": [{"id": "gpu-shared", "display_name": "A shared GPU", "gpu": "shared"}]},
                        "pools": {"uni-t": {"gpu_sharing": "hami"}}})
    [alliance_map] = find(objects, "ConfigMap", "-alliance")
    [pool] = parse_alliance(yaml.safe_load(alliance_map["data"]["alliance.yaml"]), "chart").pools
    assert (pool.shared.students_per_gpu, pool.shared.memory_per_student_mib) == (4, 3584)
    [hub_map] = find(objects, "ConfigMap", "-hub")
    pools = parse_pools(yaml.safe_load(hub_map["data"]["hub-config.yaml"])["KubeQuotaSpawner"]["pools"], KubePool, "chart")
    assert pools["uni-t"].gpu_sharing == "hami"


def test_a_pools_library_claim_reaches_the_spawner_and_its_pods_mount_it_read_only():
    objects = rendered({"pools": {"uni-a": {"library_claim": "gpu-commons-library"}}})
    [hub_map] = find(objects, "ConfigMap", "-hub")
    pools = parse_pools(yaml.safe_load(hub_map["data"]["hub-config.yaml"])["KubeQuotaSpawner"]["pools"], KubePool, "chart")
    assert library_volume(pools["uni-a"]) == LibraryVolume(claim="gpu-commons-library")
    with pytest.raises(Exception, match="library_claims"):
        Chart.load(str(CHART)).validate_schema(values({"pools": {"uni-a": {"library_claims": "x"}}}))
