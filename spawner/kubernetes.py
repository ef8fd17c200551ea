"""KubeQuotaSpawner: each student's workspace as a pod on the nodes of the lease's pool.

KubeSpawner does the work (claims, pods, watching, events, stop); this layer builds the pod
and the home claim from a :class:`WorkspaceSpec` with the pure builders (the leased GPU or
MIG unit as an extended resource, the pool's node selector, affinity and tolerations, the
student's claim, CPU and memory limits), and stops waiting as soon as the pod's status or
events say it cannot start, with a message for the student.

Pools are node groups of the cluster the hub talks to (optionally each in its own
namespace)::

    c.JupyterHub.spawner_class = "spawner.kubernetes.KubeQuotaSpawner"
    c.KubeQuotaSpawner.pools = {
        "uni-a": {"node_selector": {"gpu-commons/pool": "uni-a"},
                  "tolerations": [{"key": "nvidia.com/gpu", "effect": "NoSchedule"}],
                  "slice_resource": "nvidia.com/mig-1g.10gb", "gpu_product": "NVIDIA-A100-SXM4-80GB"},
    }
"""

from __future__ import annotations

import asyncio
import json

import aiohttp
from kubernetes_asyncio.client.rest import ApiException
from kubespawner import KubeSpawner
from traitlets import Dict, Float, default

from spawner.builders.kubernetes import build_home_claim, build_pod, diagnose_pod
from spawner.containers import ContainerWorkspaceMixin
from spawner.failures import WorkspaceFailed
from spawner.pools import KubePool, PoolConfigError, library_volume, node_requirements, parse_pools, tolerations
from spawner.light_start import LinedStart
from spawner.prestart import PrestartedWorkspace
from spawner.quota import QuotaSpawnerMixin
from spawner.specs import HomeVolume, Placement, WorkspaceSpec, quantity


class _Json:
    """What ApiClient.deserialize reads: a response with a JSON body."""

    def __init__(self, body: dict):
        self.data = json.dumps(body)


class LeasedKubeSpawner(ContainerWorkspaceMixin, KubeSpawner):
    pools = Dict(
        help="""Where each pool's nodes are, by pool id (see spawner.pools.KubePool for every key).

        Example::

            c.KubeQuotaSpawner.pools = {
                "uni-a": {"node_selector": {"gpu-commons/pool": "uni-a"},
                          "slice_resource": "nvidia.com/mig-1g.10gb",
                          "tolerations": [{"key": "nvidia.com/gpu", "effect": "NoSchedule"}]},
            }
        """,
    ).tag(config=True)

    unschedulable_timeout = Float(
        120,
        help="""Seconds a pod may stay unschedulable (no node of the pool has room, or none is up)
        before the start is given up and the lease released. Image and volume errors end it at once.""",
    ).tag(config=True)

    @default("delete_grace_period")
    def _time_to_shut_down(self):
        return 30  # SIGTERM lets the server stop its kernels; files saved so far are on the claim

    @default("storage_pvc_ensure")
    def _home_claim_per_student(self):
        return True

    @default("default_url")
    def _open_lab(self):
        return "/lab"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._configured_namespace = self.namespace  # before load_state() puts the last pool's in

    async def load_user_options(self):
        # user_options['profile'] names an alliance profile, applied by the quota step and the
        # pod builder; KubeSpawner's own profile_list is not used.
        return None

    def pool_settings(self, pool_id: str) -> KubePool:
        try:
            pools = parse_pools(self.pools, KubePool, f"c.{type(self).__name__}.pools")
        except PoolConfigError as exc:
            self.log.error("%s", exc)
            raise WorkspaceFailed("config", pool=pool_id) from None
        if pool_id not in pools:
            self.log.error(
                "lease for pool %r, but c.%s.pools has no entry for it; add its nodes", pool_id, type(self).__name__
            )
            raise WorkspaceFailed("pool", pool=pool_id)
        return pools[pool_id]

    # -- start ---------------------------------------------------------------------------

    async def start(self):
        lease, profile = self.granted()
        self.pool_id = self.pool_of(lease)
        pool = self.pool_settings(self.pool_id)
        self.image = self.image_for(profile, lease)
        namespace = pool.namespace or self._configured_namespace
        if namespace != self.namespace:
            self.namespace = namespace
            self._pvc_exists = False  # the home claim of another namespace does not count here
        starting = asyncio.ensure_future(super().start())
        watching = asyncio.ensure_future(self._watch_for_problems(lease.device or ""))
        try:
            await asyncio.wait({starting, watching}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (starting, watching):
                if not task.done():
                    task.cancel()
        if watching.done() and not watching.cancelled() and watching.exception():
            raise watching.exception()
        try:
            return starting.result()
        except (aiohttp.ClientError, OSError) as exc:
            self.log.error("%s: the Kubernetes API of pool %s did not answer: %r", self._log_name, self.pool_id, exc)
            raise WorkspaceFailed("pool", pool=self.pool_id, detail=str(exc)) from None
        except ApiException as exc:
            self.log.error("%s: Kubernetes refused the workspace on pool %s: %s", self._log_name, self.pool_id, exc)
            kind = "pool" if exc.status == 404 else "config"  # 404: the pool's namespace is not there
            raise WorkspaceFailed(kind, pool=self.pool_id, detail=str(exc)) from None

    async def _watch_for_problems(self, device: str) -> None:
        """Raise WorkspaceFailed as soon as the pod's status or events say it cannot start."""
        ref_key = f"{self.namespace}/{self.pod_name}"
        loop = asyncio.get_running_loop()
        first_seen: dict[str, float] = {}
        while True:
            await asyncio.sleep(1)
            pod = self.pod_reflector.pods.get(ref_key) if self.pod_reflector else None
            problem = diagnose_pod(pod, self.events if self.event_reflector else [])
            if problem is None:
                first_seen.clear()
                continue
            patience = self.unschedulable_timeout if problem.kind == "unschedulable" else 0
            if loop.time() - first_seen.setdefault(problem.kind, loop.time()) >= patience:
                self.log.error("%s: pod %s cannot start: %s", self._log_name, ref_key, problem.detail)
                raise WorkspaceFailed(problem.kind, pool=self.pool_id, image=self.image, device=device,
                                      detail=problem.detail)

    def workspace_spec(self, env: dict) -> WorkspaceSpec:
        lease, profile = self.granted()
        pool = self.pool_settings(self.pool_id)
        return WorkspaceSpec(
            name=self.pod_name,
            user=self.user.name,
            lease_id=lease.id,
            image=self.image,
            command=tuple((self.cmd or ["jupyterhub-singleuser"]) + self.get_args()),
            env=env,
            port=self.port,
            placement=Placement(
                pool=self.pool_id,
                namespace=self.namespace,
                node_selector=pool.node_selector,
                node_requirements=node_requirements(pool),
                tolerations=tolerations(pool),
            ),
            home=self._home(pool),
            resources=self.resources_for(profile),
            gpu=self.gpu_share_of(lease),
            library=library_volume(pool),
            image_pull_policy=self.image_pull_policy or "",
            labels=self._build_pod_labels(self._expand_all(self.extra_labels)),
            annotations=self._build_common_annotations(self._expand_all(self.extra_annotations)),
            stop_grace_seconds=self.delete_grace_period,
        )

    def _home(self, pool: KubePool) -> HomeVolume:
        labels = self._build_common_labels(self._expand_all(self.storage_extra_labels))
        labels["component"] = "singleuser-storage"  # as KubeSpawner labels its claims
        _lease, profile = self.granted()
        quota = self.resources_for(profile).home_quota  # the profile's (or the hub's) quota over the pool's size
        return HomeVolume(
            name=self.pvc_name,
            size=quantity(quota) if quota else pool.home_size,
            storage_class=pool.storage_class,
            access_mode=(self.storage_access_modes or ["ReadWriteOnce"])[0],
            labels=labels,
        )

    async def get_pod_manifest(self):
        manifest = build_pod(self.workspace_spec(self.get_env()))
        return self.api.api_client.deserialize(_Json(manifest), "V1Pod")

    def get_pvc_manifest(self):
        claim = build_home_claim(self._home(self.pool_settings(self.pool_id)), self.namespace, self.user.name)
        return self.api.api_client.deserialize(_Json(claim), "V1PersistentVolumeClaim")


class KubeQuotaSpawner(PrestartedWorkspace, QuotaSpawnerMixin, LinedStart, LeasedKubeSpawner):
    """Workspaces as pods on the pools' nodes of a Kubernetes cluster, each behind a lease; started
    ahead of a booked lesson (spawner/prestart.py) and, beyond JupyterHub's usual 100 at once, in
    the start line rather than refused."""

    @default("concurrent_starts")
    def _as_many_as_the_hub_started(self):
        return 100  # JupyterHub's own concurrent_spawn_limit: the cluster's nodes do the starting


__all__ = ["KubeQuotaSpawner", "LeasedKubeSpawner"]
