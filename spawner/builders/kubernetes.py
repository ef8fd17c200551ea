"""A workspace as Kubernetes objects: the pod, the student's home claim, and what went wrong.

The pod keeps KubeSpawner's conventions (container ``notebook``, port ``notebook-port``,
arguments after the image's entrypoint), so KubeSpawner watches, reaches and deletes it
as one of its own. The profile's limits become the container's resources (CPU, memory,
ephemeral storage) and a size-limited in-memory /tmp; the home quota is the claim's size. A share
of a shared GPU is one time-sliced replica of the device plugin (the cap only in the frameworks'
settings) or HAMi's GPU with its memory (and compute) resources, as the pool's settings say.
A pod has no process limit of its own: that is the kubelet's ``podPidsLimit``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from spawner.sharing import cap_env
from spawner.specs import HOST_DEVICE_VARIABLES, HomeVolume, WorkspaceSpec, cpu_quantity, quantity

LABEL_PREFIX = "gpu-commons"
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"  # set on nodes by NVIDIA GPU feature discovery
HOME_VOLUME = "home"
TMP_VOLUME = "tmp"
LIBRARY_VOLUME = "library"


def build_pod(spec: WorkspaceSpec) -> dict:
    container = {
        "name": "notebook",
        "image": spec.image,
        "args": list(spec.command),
        "env": [{"name": name, "value": value} for name, value in sorted(_env(spec).items())],
        "ports": [{"name": "notebook-port", "containerPort": spec.port}],
        "resources": _resources(spec),
        "securityContext": {
            "runAsUser": spec.uid,
            "runAsGroup": spec.gid,
            "runAsNonRoot": True,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [{"name": HOME_VOLUME, "mountPath": spec.home.mount_path}],
        "workingDir": spec.home.mount_path,
    }
    volumes = [{"name": HOME_VOLUME, "persistentVolumeClaim": {"claimName": spec.home.name}}]
    if spec.resources.tmp_size is not None:
        # A tmpfs of that size (so a write past it fails with ENOSPC), counted in the memory limit.
        container["volumeMounts"].append({"name": TMP_VOLUME, "mountPath": "/tmp"})
        size = quantity(spec.resources.tmp_size)
        volumes.append({"name": TMP_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": size}})
    if spec.library is not None:
        # Read-only in the pod and, for a claim, at the volume too: a student's write fails with EROFS.
        library = spec.library
        container["volumeMounts"].append({"name": LIBRARY_VOLUME, "mountPath": library.mount_path, "readOnly": True})
        source = ({"persistentVolumeClaim": {"claimName": library.claim, "readOnly": True}} if library.claim
                  else {"hostPath": {"path": library.host_path, "type": "Directory"}})
        volumes.append({"name": LIBRARY_VOLUME, **source})
    if spec.image_pull_policy:
        container["imagePullPolicy"] = spec.image_pull_policy
    pod_spec = {
        "containers": [container],
        "volumes": volumes,
        "securityContext": {"fsGroup": spec.gid, "fsGroupChangePolicy": "OnRootMismatch"},
        "restartPolicy": "OnFailure",
        "terminationGracePeriodSeconds": spec.stop_grace_seconds,
        "automountServiceAccountToken": False,  # a student's code gets no cluster credentials
        "enableServiceLinks": False,
    }
    node_selector = dict(spec.placement.node_selector)
    if spec.gpu and spec.gpu.product:
        node_selector[GPU_PRODUCT_LABEL] = spec.gpu.product
    if node_selector:
        pod_spec["nodeSelector"] = dict(sorted(node_selector.items()))
    if spec.placement.node_requirements:
        expressions = []
        for requirement in spec.placement.node_requirements:
            expression = {"key": requirement.key, "operator": requirement.operator}
            if requirement.values:
                expression["values"] = list(requirement.values)
            expressions.append(expression)
        pod_spec["affinity"] = {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": expressions}]}
            }
        }
    if spec.placement.tolerations:
        pod_spec["tolerations"] = [
            {k: v for k, v in (("key", t.key), ("operator", t.operator), ("value", t.value), ("effect", t.effect)) if v}
            for t in spec.placement.tolerations
        ]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": spec.name,
            "namespace": spec.placement.namespace,
            "labels": _labels(spec),
            "annotations": _annotations(spec),
        },
        "spec": pod_spec,
    }


def build_home_claim(home: HomeVolume, namespace: str, user: str) -> dict:
    """The student's PersistentVolumeClaim; it outlives every pod, so files survive a lease's end."""
    claim_spec = {
        "accessModes": [home.access_mode],
        "resources": {"requests": {"storage": home.size}},
    }
    if home.storage_class:
        claim_spec["storageClassName"] = home.storage_class
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {
            "name": home.name,
            "namespace": namespace,
            "labels": dict(sorted({**home.labels, f"{LABEL_PREFIX}/component": "home"}.items())),
            "annotations": {f"{LABEL_PREFIX}/user": user},
        },
        "spec": claim_spec,
    }


def _env(spec: WorkspaceSpec) -> dict[str, str]:
    env = dict(spec.env)
    if spec.gpu:
        # The device plugin exposes the unit and sets NVIDIA_VISIBLE_DEVICES itself.
        for name in HOST_DEVICE_VARIABLES:
            env.pop(name, None)
        env["GPU_COMMONS_DEVICE"] = spec.gpu.device
        if spec.gpu.cap is not None:
            env.update(cap_env(spec.gpu.cap))
    return env


def _resources(spec: WorkspaceSpec) -> dict:
    limits: dict[str, str] = {}
    requests: dict[str, str] = {}
    r = spec.resources
    if r.cpu_limit is not None:
        limits["cpu"] = cpu_quantity(r.cpu_limit)
    if r.mem_limit is not None:
        limits["memory"] = quantity(r.mem_limit)
    if r.tmp_size is not None:
        # The container's writable layer and logs (/tmp is in memory): past it the kubelet evicts the pod.
        limits["ephemeral-storage"] = quantity(r.tmp_size)
    if r.cpu_guarantee is not None:
        requests["cpu"] = cpu_quantity(r.cpu_guarantee)
    if r.mem_guarantee is not None:
        requests["memory"] = quantity(r.mem_guarantee)
    if spec.gpu:
        limits[spec.gpu.resource] = "1"  # extended resources: the request equals the limit
        cap = spec.gpu.cap
        if cap is not None and cap.enforcement == "hami":  # HAMi holds the container to them
            limits[cap.memory_resource] = str(cap.memory_mib)
            if cap.compute_percent is not None:
                limits[cap.cores_resource] = str(cap.compute_percent)
    resources = {}
    if limits:
        resources["limits"] = limits
    if requests:
        resources["requests"] = requests
    return resources


def _labels(spec: WorkspaceSpec) -> dict[str, str]:
    labels = {**spec.labels, f"{LABEL_PREFIX}/pool": spec.placement.pool}
    labels[f"{LABEL_PREFIX}/gpu"] = spec.gpu.kind if spec.gpu else "none"
    return dict(sorted(labels.items()))


def _annotations(spec: WorkspaceSpec) -> dict[str, str]:
    annotations = {**spec.annotations, f"{LABEL_PREFIX}/lease": spec.lease_id}
    if spec.gpu:
        annotations[f"{LABEL_PREFIX}/device"] = spec.gpu.device  # device ids may hold '/' or ':', so not a label
    return dict(sorted(annotations.items()))


# -- why a pod does not start ------------------------------------------------------------

ProblemKind = Literal["image", "volume", "unschedulable", "config"]


@dataclass(frozen=True)
class PodProblem:
    """Why a workspace pod cannot start. ``kind`` lets the spawner wait a little for
    problems that may clear by themselves (a node being added) and not for the others."""

    kind: ProblemKind
    detail: str


def _device_refused(reason: str) -> bool:
    return reason == "UnexpectedAdmissionError" or reason.startswith("OutOf")


_IMAGE_REASONS = {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"}
_CONFIG_REASONS = {"CreateContainerConfigError", "CreateContainerError", "RunContainerError"}
_VOLUME_EVENTS = {"FailedMount", "FailedAttachVolume", "FailedMapVolume"}


def diagnose_pod(pod: dict | None, events: list[dict]) -> PodProblem | None:
    """The first reason, read from the pod's status and its events, why it cannot start."""
    if not pod:
        return None
    status = pod.get("status") or {}
    if status.get("phase") == "Failed" and _device_refused(status.get("reason", "")):
        # The kubelet could not hand over the GPU unit (it went away since the pod was scheduled).
        return PodProblem("device", status.get("message") or status["reason"])
    for container in status.get("containerStatuses") or []:
        waiting = (container.get("state") or {}).get("waiting") or {}
        reason = waiting.get("reason", "")
        if reason in _IMAGE_REASONS:
            return PodProblem("image", waiting.get("message") or reason)
        if reason in _CONFIG_REASONS:
            return PodProblem("config", waiting.get("message") or reason)
    name = (pod.get("metadata") or {}).get("name")
    for event in events:
        involved = event.get("involvedObject") or {}
        if involved.get("name") == name and event.get("reason") in _VOLUME_EVENTS:
            return PodProblem("volume", event.get("message") or event["reason"])
    for condition in status.get("conditions") or []:
        if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
            message = condition.get("message") or condition.get("reason") or "no node can take it"
            kind: ProblemKind = "volume" if "PersistentVolumeClaim" in message else "unschedulable"
            return PodProblem(kind, message)
    return None
