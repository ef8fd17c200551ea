"""The hub: JupyterHub, stopping the students' workspaces before its managed services.

JupyterHub's ``cleanup`` (Ctrl-C, SIGTERM) stops the managed services first and the
single-user servers after them. Here the quota service is a managed service, and a
workspace's stop releases its GPU lease through it: stopped in that order, every release
failed ("could not release lease ...; it ends at its expiry") and the GPU stayed booked
until the lease ran out, also across a restart. This hub stops the workspaces first,
while the quota service still answers, and then does JupyterHub's own cleanup.

``gpu-commons hub`` and ``gpu-commons demo`` run it (``python -m hub.app -f <config>``);
its settings are JupyterHub's (``c.JupyterHub.*`` applies to it).
"""

from __future__ import annotations

import asyncio

from jupyterhub.app import JupyterHub


class GPUCommonsHub(JupyterHub):
    async def cleanup(self):
        if self.cleanup_servers:
            await self.stop_workspaces()
        await super().cleanup()

    async def stop_workspaces(self) -> None:
        """Stop every running or starting server, all at once, and wait for each (its
        spawner ends the workspace's processes and releases its lease)."""
        stops = {
            f"{user.name}/{name}" if name else user.name: asyncio.ensure_future(user.stop(name))
            for user in list(self.users.values())
            for name, spawner in list(user.spawners.items())
            if spawner.active
        }
        if not stops:
            return
        self.log.info("Stopping %i workspaces before the services, so their leases are released...", len(stops))
        for server, stop in stops.items():
            try:
                await stop
            except Exception as exc:  # one failed stop must not keep the others' leases
                self.log.error("Failed to stop the workspace of %s: %s", server, exc)


main = GPUCommonsHub.launch_instance

if __name__ == "__main__":
    main()
