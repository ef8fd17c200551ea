"""An emulated Kubernetes cluster for KubeSpawner: kmock's API emulator plus a fake kubelet.

No API server can run here, so the tests serve kmock's in-memory emulator on 127.0.0.1 and
hand the hub a kubeconfig for it. Three things make the real KubeSpawner work against it:

1. kubernetes_asyncio asks for ``watch=True``; kmock knows only ``watch=true``;
2. kmock stores objects as sent: the emulator adds ``metadata.uid``, ``resourceVersion``,
   ``creationTimestamp`` and a first ``status`` on create, and a new ``resourceVersion`` on
   every patch (KubeSpawner's reflector reads them);
3. nothing runs pods: :class:`FakeKubelet` watches the pods, starts each pod's command as a
   local process on its own loopback address (127.0.0.N, the pod IP) with the pod's
   environment, and patches the pod to Running. A claim is a directory under ``volumes/``,
   so files in the home outlive the pod as on a real volume. It stops the process (SIGTERM,
   then the pod's grace period) when the pod is deleted, and reports ErrImagePull for the
   images it is told are missing.

It does not schedule, enforce securityContext or resource limits, or run device plugins:
what those would do is checked on the pod's spec.
"""

from __future__ import annotations

import asyncio
import datetime
import itertools
import os
import shutil
import signal
import subprocess
import sys
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import aiohttp
import yaml
from kmock import KubernetesEmulator, Server

_versions = itertools.count(1000)


class ClusterEmulator(KubernetesEmulator):
    async def __call__(self, raw_request):
        if raw_request.query.get("watch") == "True":  # fix 1
            raw_request = raw_request.clone(rel_url=raw_request.rel_url.update_query(watch="true"))
        return await super().__call__(raw_request)

    async def _handle(self, request):
        data = request.data if isinstance(request.data, dict) else None
        if data is not None and request.resource is not None:  # fix 2
            metadata = data.setdefault("metadata", {})
            if request.action.name == "CREATE":
                metadata.setdefault("uid", str(uuid.uuid4()))
                metadata.setdefault("creationTimestamp", _now())
                kind = request.resource.plural
                if kind == "pods":
                    data.setdefault("status", {"phase": "Pending"})
                elif kind == "persistentvolumeclaims":
                    data.setdefault("status", {"phase": "Bound"})
            if request.action.name in ("CREATE", "UPDATE"):
                metadata["resourceVersion"] = str(next(_versions))
        return await super()._handle(request)


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class RunningPod:
    process: subprocess.Popen
    ip: str
    grace: int
    image: str


@dataclass
class FakeKubelet:
    api: str
    volumes: Path
    bin_dir: Path
    logs: Path
    missing_images: frozenset[str] = frozenset()  # pulling these fails, as from a registry without them
    pods: dict[str, RunningPod] = field(default_factory=dict)  # by uid
    _ips: itertools.count = field(default_factory=lambda: itertools.count(2))

    async def run(self) -> None:
        async with aiohttp.ClientSession(base_url=self.api) as session:
            while True:
                try:
                    await self._sync(session)
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.3)

    async def _sync(self, session: aiohttp.ClientSession) -> None:
        async with session.get("/api/v1/pods") as response:
            listed = (await response.json())["items"]
        seen = set()
        for pod in listed:
            key = pod["metadata"]["uid"]  # a pod deleted and created again under its name is a new pod
            seen.add(key)
            if key not in self.pods and (pod.get("status") or {}).get("phase") == "Pending":
                image = pod["spec"]["containers"][0]["image"]
                if image in self.missing_images:
                    await self._patch_status(session, pod, _image_pull_failed(image))
                    continue
                self.pods[key] = running = self._start(pod)
                await self._patch_status(session, pod, _running(running))
        for key in list(self.pods):
            if key not in seen:
                await asyncio.to_thread(self._stop, self.pods.pop(key))

    def _start(self, pod: dict) -> RunningPod:
        container = pod["spec"]["containers"][0]
        ip = f"127.0.0.{next(self._ips)}"
        port = container["ports"][0]["containerPort"]
        env = {item["name"]: item.get("value", "") for item in container.get("env", [])}
        # The pod listens on its own IP, as in a pod network.
        url = urlparse(env.get("JUPYTERHUB_SERVICE_URL", f"http://0.0.0.0:{port}/"))
        env["JUPYTERHUB_SERVICE_URL"] = urlunparse(url._replace(netloc=f"{ip}:{port}"))
        home = Path(container.get("workingDir", "/home/jovyan"))
        workdir = None
        read_only: list[str] = []  # bwrap arguments: a claim mounted readOnly (the library) is read-only in the process
        for mount in container.get("volumeMounts", []):
            volume = next(v for v in pod["spec"]["volumes"] if v["name"] == mount["name"])
            if "persistentVolumeClaim" not in volume:
                continue  # an emptyDir (the pod's /tmp): the process here uses the host's /tmp
            host = self.volumes / volume["persistentVolumeClaim"]["claimName"]
            host.mkdir(parents=True, exist_ok=True)
            if Path(mount["mountPath"]) == home:
                workdir = host
            elif mount.get("readOnly") and volume["persistentVolumeClaim"].get("readOnly"):
                parent = str(Path(mount["mountPath"]).parent)
                read_only += ["--tmpfs", parent, "--ro-bind", str(host), mount["mountPath"]]
        env.update({"PATH": f"{self.bin_dir}:/usr/bin:/bin", "HOME": str(workdir), "LANG": "C.UTF-8"})
        command = list(container["args"]) + ["--allow-root"]  # the kubelet runs as root here
        if read_only:  # the host's file system, but the read-only mounts in their place and read-only
            command = ["bwrap", "--dev-bind", "/", "/", *read_only, "--", *command]
        log = open(self.logs / f"{pod['metadata']['name']}.log", "ab")
        process = subprocess.Popen(command, cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        return RunningPod(process, ip, pod["spec"].get("terminationGracePeriodSeconds", 30), container["image"])

    async def _patch_status(self, session: aiohttp.ClientSession, pod: dict, status: dict) -> None:
        meta = pod["metadata"]
        async with session.patch(f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}",
                                 json={"status": status},
                                 headers={"Content-Type": "application/merge-patch+json"}) as response:
            response.raise_for_status()

    @staticmethod
    def _stop(running: RunningPod) -> None:
        try:
            os.killpg(running.process.pid, signal.SIGTERM)
            running.process.wait(timeout=running.grace)
        except subprocess.TimeoutExpired:
            os.killpg(running.process.pid, signal.SIGKILL)
            running.process.wait()
        except ProcessLookupError:
            pass

    def stop_all(self) -> None:
        for running in self.pods.values():
            self._stop(running)
        self.pods.clear()


def _running(pod: RunningPod) -> dict:
    return {
        "phase": "Running",
        "podIP": pod.ip,
        "startTime": _now(),
        "conditions": [{"type": "Ready", "status": "True"}],
        "containerStatuses": [{"name": "notebook", "ready": True, "restartCount": 0, "image": pod.image,
                               "imageID": f"sha256:{pod.image}", "state": {"running": {"startedAt": _now()}}}],
    }


def _image_pull_failed(image: str) -> dict:
    message = f'Failed to pull image "{image}": not found'
    return {
        "phase": "Pending",
        "containerStatuses": [{"name": "notebook", "ready": False, "restartCount": 0, "image": image, "imageID": "",
                               "state": {"waiting": {"reason": "ErrImagePull", "message": message}}}],
    }


class Cluster:
    """The emulator and the kubelet on their own event loop, in a thread of the test process."""

    def __init__(self, root: Path, missing_images: frozenset[str] = frozenset()):
        self.root = root
        self.missing_images = missing_images
        self.emulator = ClusterEmulator()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: Server | None = None
        self.kubelet: FakeKubelet | None = None
        self._kubelet_task = None

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(30)

    async def _start(self) -> None:
        await self.emulator.__aenter__()
        self.emulator.resources.load_bundled()
        self._server = Server(self.emulator)
        await self._server.__aenter__()
        (self.root / "logs").mkdir(parents=True, exist_ok=True)
        self.kubelet = FakeKubelet(api=self.url, volumes=self.root / "volumes",
                                   bin_dir=Path(sys.executable).parent, logs=self.root / "logs",
                                   missing_images=self.missing_images)
        self._kubelet_task = asyncio.ensure_future(self.kubelet.run())

    @property
    def url(self) -> str:
        return str(self._server.url).rstrip("/")

    def kubeconfig(self, path: Path) -> Path:
        path.write_text(yaml.safe_dump({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "kmock", "cluster": {"server": self.url}}],
            "users": [{"name": "hub", "user": {"token": "not-checked"}}],
            "contexts": [{"name": "kmock", "context": {"cluster": "kmock", "user": "hub", "namespace": "default"}}],
            "current-context": "kmock",
        }))
        return path

    def objects(self, plural: str) -> list[dict]:
        async def read():
            return [obj.raw for key, obj in self.emulator.objects.items()
                    if key[0].plural == plural and not obj.deleted]
        return asyncio.run_coroutine_threadsafe(read(), self._loop).result(10)

    def stop(self) -> None:
        async def stop():
            if self._kubelet_task:
                self._kubelet_task.cancel()
            if self._server:
                await self._server.__aexit__(None, None, None)
            await self.emulator.__aexit__(None, None, None)
        try:
            asyncio.run_coroutine_threadsafe(stop(), self._loop).result(30)
        finally:
            if self.kubelet:
                self.kubelet.stop_all()
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            shutil.rmtree(self.root / "logs", ignore_errors=True)
