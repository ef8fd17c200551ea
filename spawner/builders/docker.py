"""A workspace as a Docker Engine API container-create body, and Docker errors in words.

The body is what ``POST /containers/create`` takes (docker-py:
``APIClient.create_container_from_config(body, name)``). The GPU goes in as a device request
for exactly the lease's device, so the engine's NVIDIA hook exposes that GPU or MIG slice
and nothing else; a share of a shared GPU also gets its memory cap (CUDA MPS's client settings,
with the daemon's pipe directory mounted and the host's IPC namespace, or the frameworks'
settings alone: spawner/sharing.py). The profile's limits become the engine's (memory without extra swap, CPUs,
processes, a size-limited /tmp in memory); a named volume of the local driver has no size,
so a home quota is not enforced on Docker.
"""

from __future__ import annotations

from spawner.sharing import cap_env
from spawner.specs import HOST_DEVICE_VARIABLES, WorkspaceSpec

LABEL_PREFIX = "gpu-commons"


def build_workspace_network(name: str) -> dict:
    """The bridge of a pool's workspaces, as ``APIClient.create_network`` keyword arguments:
    container-to-container traffic off (the engine drops it in its iptables rules), IPv4 only."""
    return {
        "name": name,
        "driver": "bridge",
        "options": {"com.docker.network.bridge.enable_icc": "false"},
        "labels": {f"{LABEL_PREFIX}.network": "workspaces"},
        "check_duplicate": True,
    }


def build_container(spec: WorkspaceSpec) -> dict:
    port = f"{spec.port}/tcp"
    home = spec.home
    volume: dict = {"Labels": {**home.labels, f"{LABEL_PREFIX}.user": spec.user}}
    if home.driver != "local" or home.driver_options:
        volume["DriverConfig"] = {"Name": home.driver, "Options": dict(home.driver_options)}
    host_config: dict = {
        "NetworkMode": spec.placement.network,
        "Mounts": [{"Type": "volume", "Source": home.name, "Target": home.mount_path, "VolumeOptions": volume}],
        "CapDrop": ["ALL"],
        "SecurityOpt": ["no-new-privileges"],
    }
    if spec.placement.network != "host":  # the host network refuses port bindings
        host_config["PortBindings"] = {port: [{"HostIp": spec.placement.host_ip, "HostPort": ""}]}
    r = spec.resources
    if r.cpu_limit is not None:
        host_config["NanoCpus"] = round(r.cpu_limit * 1e9)
    if r.mem_limit is not None:
        host_config["Memory"] = r.mem_limit
        host_config["MemorySwap"] = r.mem_limit  # memory and swap together: no swapping past the limit
    if r.mem_guarantee is not None:
        host_config["MemoryReservation"] = r.mem_guarantee
    if r.pids_limit is not None:
        host_config["PidsLimit"] = r.pids_limit
    if r.tmp_size is not None:
        # In memory, so within Memory; a write past the size fails with ENOSPC.
        host_config["Tmpfs"] = {"/tmp": f"rw,nosuid,nodev,size={r.tmp_size}"}
    if spec.library is not None:  # read-only: a student's write there fails with EROFS
        library = spec.library
        mount = ({"Type": "bind", "Source": library.host_path} if library.host_path
                 else {"Type": "volume", "Source": library.volume})
        host_config["Mounts"].append({**mount, "Target": library.mount_path, "ReadOnly": True})
    if spec.gpu:
        host_config["DeviceRequests"] = [
            {"Driver": spec.gpu.driver, "DeviceIDs": [spec.gpu.device], "Capabilities": [["gpu"]]}
        ]
    cap = spec.gpu.cap if spec.gpu else None
    if cap is not None and cap.enforcement == "mps":
        # MPS clients reach the host's control daemon through its pipes and shared memory
        host_config["Mounts"].append({"Type": "bind", "Source": cap.mps_pipe_directory,
                                      "Target": cap.mps_pipe_directory})
        host_config["IpcMode"] = "host"
    return {
        "Image": spec.image,
        "Cmd": list(spec.command),
        "Env": [f"{name}={value}" for name, value in sorted(_env(spec).items())],
        "User": f"{spec.uid}:{spec.gid}",
        "WorkingDir": home.mount_path,
        "ExposedPorts": {port: {}},
        "StopTimeout": spec.stop_grace_seconds,
        "Labels": _labels(spec),
        "HostConfig": host_config,
    }


def _env(spec: WorkspaceSpec) -> dict[str, str]:
    env = dict(spec.env)
    if spec.gpu:
        # The engine sets NVIDIA_VISIBLE_DEVICES from the device request.
        for name in HOST_DEVICE_VARIABLES:
            env.pop(name, None)
        env["GPU_COMMONS_DEVICE"] = spec.gpu.device
        if spec.gpu.cap is not None:
            env.update(cap_env(spec.gpu.cap))
    return env


def _labels(spec: WorkspaceSpec) -> dict[str, str]:
    labels = {
        **spec.labels,
        f"{LABEL_PREFIX}.pool": spec.placement.pool,
        f"{LABEL_PREFIX}.lease": spec.lease_id,
        f"{LABEL_PREFIX}.user": spec.user,
        f"{LABEL_PREFIX}.gpu": spec.gpu.kind if spec.gpu else "none",
    }
    if spec.gpu:
        labels[f"{LABEL_PREFIX}.device"] = spec.gpu.device
    return dict(sorted(labels.items()))
