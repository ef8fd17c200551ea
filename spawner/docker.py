"""DockerQuotaSpawner: each student's workspace in a container on the Docker host of the lease's pool.

DockerSpawner does the work (pull, create, start, poll, stop, remove); this layer picks the
host from the lease's pool, builds the container from a :class:`WorkspaceSpec` with the pure
builder (a device request for exactly the leased GPU or MIG slice, the student's named home
volume, CPU and memory limits) and turns the engine's errors into words for the student.

    c.JupyterHub.spawner_class = "spawner.docker.DockerQuotaSpawner"
    c.DockerQuotaSpawner.pools = {"uni-b": {"docker_url": "tcp://gpu1.uni-b.edu.cn:2376", "host_ip": "10.2.0.5",
                                            "tls": {"client_cert": ["/certs/cert.pem", "/certs/key.pem"],
                                                    "ca_cert": "/certs/ca.pem", "verify": True}}}
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import docker
from dockerspawner import DockerSpawner
from traitlets import Dict, Integer, Unicode, default

from spawner.builders.docker import build_container, build_workspace_network
from spawner.containers import ContainerWorkspaceMixin
from spawner.failures import WorkspaceFailed, docker_failure_kind
from spawner.pools import WORKSPACE_NETWORK, DockerPool, PoolConfigError, library_volume, parse_pools
from spawner.light_start import LinedStart
from spawner.prestart import PrestartedWorkspace
from spawner.quota import QuotaSpawnerMixin
from spawner.specs import HomeVolume, Placement, Resources, WorkspaceSpec


class LeasedDockerSpawner(ContainerWorkspaceMixin, DockerSpawner):
    pools = Dict(
        help="""The Docker host of each pool, by pool id (see spawner.pools.DockerPool for every key).

        Example::

            c.DockerQuotaSpawner.pools = {
                "uni-b": {"docker_url": "tcp://gpu1.uni-b.edu.cn:2376", "host_ip": "10.2.0.5",
                          "tls": {"ca_cert": "/certs/ca.pem", "verify": True}},
            }
        """,
    ).tag(config=True)

    home_volume_template = Unicode(
        "gpu-commons-home-{username}",
        help="""Name of each student's home volume ({username} is the escaped user name). It is never
        removed with the container, so files survive every stop and the end of every lease.""",
    ).tag(config=True)

    host_port_base = Integer(
        20000,
        help="""On pools with network 'host', a workspace listens on host_port_base + the user's id.""",
    ).tag(config=True)

    @default("remove")
    def _remove_stopped_containers(self):
        return True  # the home volume holds the student's files; a container is disposable

    @default("default_url")
    def _open_lab(self):
        return "/lab"

    # -- the pool's host -------------------------------------------------------------

    _clients: dict = {}
    _executors: dict = {}

    def pool_settings(self, pool_id: str) -> DockerPool:
        try:
            pools = parse_pools(self.pools, DockerPool, f"c.{type(self).__name__}.pools")
        except PoolConfigError as exc:
            self.log.error("%s", exc)
            raise WorkspaceFailed("config", pool=pool_id) from None
        if pool_id not in pools:
            self.log.error(
                "lease for pool %r, but c.%s.pools has no entry for it; add its Docker host", pool_id, type(self).__name__
            )
            raise WorkspaceFailed("pool", pool=pool_id)
        return pools[pool_id]

    @property
    def client(self):
        pool = self.pool_settings(self.pool_id)
        client = self._clients.get(pool.docker_url)
        if client is None:
            tls = docker.tls.TLSConfig(**pool.tls) if pool.tls else False
            client = docker.APIClient(base_url=pool.docker_url, version="auto", timeout=pool.timeout, tls=tls)
            self._clients[pool.docker_url] = client
        return client

    @property
    def executor(self):
        # One thread per host, so a slow or unreachable pool does not hold up the others.
        url = self.pool_settings(self.pool_id).docker_url
        if url not in self._executors:
            self._executors[url] = ThreadPoolExecutor(1, thread_name_prefix=f"docker-{self.pool_id}")
        return self._executors[url]

    # -- start -------------------------------------------------------------------------

    async def start(self):
        lease, profile = self.granted()
        self.pool_id = self.pool_of(lease)
        pool = self.pool_settings(self.pool_id)
        self.image = self.image_for(profile, lease)
        self.port = self.host_port_base + self.user.id if pool.network == "host" else 8888
        try:
            if pool.network == WORKSPACE_NETWORK:
                await self.ensure_workspace_network()
            return await super().start()
        except WorkspaceFailed:
            raise
        except Exception as exc:
            kind = docker_failure_kind(str(exc))
            if kind is None:
                raise
            self.log.error("%s: the workspace did not start on pool %s: %s", self._log_name, self.pool_id, exc)
            raise WorkspaceFailed(kind, pool=self.pool_id, image=self.image, device=lease.device or "",
                                  detail=str(exc)) from None

    async def ensure_workspace_network(self) -> None:
        """The pool's workspace bridge (spawner.pools.WORKSPACE_NETWORK), made when the host lacks it."""
        found = await self.docker("networks", names=[WORKSPACE_NETWORK])
        if any(network.get("Name") == WORKSPACE_NETWORK for network in found):
            return
        self.log.info("pool %s: creating the workspace network %s", self.pool_id, WORKSPACE_NETWORK)
        try:
            await self.docker("create_network", **build_workspace_network(WORKSPACE_NETWORK))
        except docker.errors.APIError as exc:
            if exc.status_code != 409:  # another hub made it just now
                raise

    def workspace_spec(self, command: list[str], env: dict) -> WorkspaceSpec:
        lease, profile = self.granted()
        pool = self.pool_settings(self.pool_id)
        return WorkspaceSpec(
            name=self.container_name,
            user=self.user.name,
            lease_id=lease.id,
            image=self.image,
            command=tuple(command),
            env=env,
            port=self.port,
            placement=Placement(pool=self.pool_id, network=pool.network, host_ip=pool.host_ip),
            home=HomeVolume(
                name=self._render_templates(self.home_volume_template),
                driver=pool.volume_driver,
                driver_options=pool.volume_options,
            ),
            resources=self.resources_for(profile),
            gpu=self.gpu_share_of(lease),
            library=library_volume(pool),
        )

    def resources_for(self, profile) -> Resources:
        # A named volume of the local driver has no size: no home quota to enforce (or to show).
        return replace(super().resources_for(profile), home_quota=None)

    async def pull_image(self, image):
        try:
            await super().pull_image(image)
        except docker.errors.APIError as exc:  # the engine answered: the image is missing or cannot be fetched
            self.log.error("%s: image %s is not available on pool %s: %s", self._log_name, image, self.pool_id, exc)
            raise WorkspaceFailed("image", pool=self.pool_id, image=image, detail=str(exc)) from None

    async def create_object(self):
        spec = self.workspace_spec(await self.get_command(), self.get_env())
        return await self.docker("create_container_from_config", build_container(spec), spec.name)

    async def get_ip_and_port(self):
        pool = self.pool_settings(self.pool_id)
        if pool.network == "host":
            return pool.host_ip, self.port
        ip, port = await super().get_ip_and_port()
        return (pool.host_ip if ip in ("0.0.0.0", "localhost", "") else ip), port

    # -- stop ----------------------------------------------------------------------------

    async def stop_object(self):
        if self.object_id:  # nothing was created when the start failed early
            await super().stop_object()

    async def remove_object(self):
        if self.object_id:
            await super().remove_object()

    async def poll(self):
        if not self.pool_id:
            return 0  # never started on a pool: nothing runs
        return await super().poll()


class DockerQuotaSpawner(PrestartedWorkspace, QuotaSpawnerMixin, LinedStart, LeasedDockerSpawner):
    """Workspaces in containers on the pools' Docker hosts, each behind a lease; started ahead
    of a booked lesson (spawner/prestart.py) and, many at once, in the start line."""


__all__ = ["DockerQuotaSpawner", "LeasedDockerSpawner"]
