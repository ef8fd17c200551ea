"""The embedded backend: one sandboxed JupyterLab process per student on the GPU server.

Students have no Unix accounts on the server. Each workspace runs

    bwrap (own PID, IPC and mount namespaces; only system dirs, read-only)
      -> setpriv (drops to the student's own uid, no capabilities)
        -> jupyterhub-singleuser

with the student's home directory bound at ``/home/jovyan``. Other students' homes and
the platform's data directory are simply not mounted, and each home is mode 0700 and
owned by that student's uid, so a workspace can neither read nor write another's files,
and nothing runs as root.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from jupyterhub.spawner import LocalProcessSpawner
from traitlets import Integer, List, Unicode, default

SANDBOX_HOME = "/home/jovyan"


class SandboxedLocalSpawner(LocalProcessSpawner):
    homes_dir = Unicode(
        help="""Directory that holds one home directory per student (created 0700, owned by the student's uid).

        Example::

            c.SandboxedLocalSpawner.homes_dir = "/srv/gpu-commons/homes"
        """,
    ).tag(config=True)

    uid_base = Integer(
        200000,
        help="""Students run as uid ``uid_base + <JupyterHub user id>``; pick a range no system account uses.

        Example::

            c.SandboxedLocalSpawner.uid_base = 200000
        """,
    ).tag(config=True)

    bwrap_path = Unicode("/usr/bin/bwrap", help="Path of bubblewrap (Debian package `bubblewrap`).").tag(config=True)
    setpriv_path = Unicode("/usr/bin/setpriv", help="Path of setpriv (Debian package `util-linux`).").tag(config=True)

    read_only_paths = List(
        Unicode(),
        help="""Host directories visible read-only inside every workspace, besides /usr and /etc.

        Defaults to the Python environment the hub runs in (its prefix and base prefix), which
        holds jupyterhub-singleuser and JupyterLab.
        """,
    ).tag(config=True)

    @default("read_only_paths")
    def _python_prefixes(self):
        return sorted({sys.prefix, sys.base_prefix, os.path.realpath(sys.base_prefix)})

    @default("cmd")
    def _singleuser_in_this_environment(self):
        return [str(Path(sys.prefix) / "bin" / "jupyterhub-singleuser")]

    @default("default_url")
    def _open_lab(self):
        return "/lab"

    @default("notebook_dir")
    def _home_as_notebook_dir(self):
        return SANDBOX_HOME

    @property
    def student_uid(self) -> int:
        return self.uid_base + self.user.id

    @property
    def home_on_host(self) -> Path:
        return Path(self.homes_dir) / self.user.name

    def ensure_home(self) -> None:
        home = self.home_on_host
        home.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(home.parent, 0o711)  # students may pass through, never list
        home.mkdir(mode=0o700, exist_ok=True)
        os.chown(home, self.student_uid, self.student_uid)
        os.chmod(home, 0o700)

    def sandbox_command(self) -> list[str]:
        """The bwrap + setpriv prefix that confines one student's workspace."""
        uid = str(self.student_uid)
        command = [self.bwrap_path, "--unshare-pid", "--unshare-ipc"]
        command += ["--ro-bind", "/usr", "/usr", "--ro-bind", "/etc", "/etc"]
        # /tmp first: a Python environment that lives under /tmp is bound on top of it, not hidden by it.
        command += ["--perms", "1777", "--tmpfs", "/tmp"]
        for name in ("bin", "sbin", "lib", "lib64"):
            if os.path.islink(f"/{name}"):
                command += ["--symlink", os.readlink(f"/{name}"), f"/{name}"]
        for path in self.read_only_paths:
            # Parents that bwrap creates default to 0700: let the student's uid pass through them.
            for parent in reversed(Path(path).parents[:-1]):
                command += ["--perms", "0755", "--dir", str(parent)]
            command += ["--ro-bind", path, path]
        command += ["--perms", "0755", "--dir", "/home", "--bind", str(self.home_on_host), SANDBOX_HOME]
        command += ["--proc", "/proc", "--dev", "/dev", "--chdir", SANDBOX_HOME]
        command += ["--", self.setpriv_path, f"--reuid={uid}", f"--regid={uid}", "--clear-groups"]
        command += ["--inh-caps=-all", "--bounding-set=-all", "--"]
        return command

    def make_preexec_fn(self, name):
        return None  # bwrap needs root to build the sandbox; setpriv drops it inside

    def user_env(self, env):
        env["USER"] = self.user.name
        env["HOME"] = SANDBOX_HOME
        env["SHELL"] = "/bin/bash"
        env["PATH"] = f"{Path(sys.prefix) / 'bin'}:/usr/local/bin:/usr/bin:/bin"
        return env

    async def move_certs(self, paths):
        raise NotImplementedError("internal SSL is not supported by the sandboxed local spawner")

    async def start(self):
        self.ensure_home()
        singleuser = list(self.cmd)
        try:
            self.cmd = self.sandbox_command() + singleuser
            return await super().start()
        finally:
            self.cmd = singleuser

    async def _signal(self, sig):
        # Signal the whole process group (bwrap and the server inside it): bwrap does not forward signals.
        try:
            os.killpg(self.pid, sig)
        except ProcessLookupError:
            return False
        return True

