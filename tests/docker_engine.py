"""A real Docker engine for the tests, and the images built for real from images/.

- :func:`start_engine` runs Debian's dockerd by hand (overlay2, no bridge, no iptables: the
  containers use the host network) on its own socket. Its data root lives in
  ``.build/docker``, so images built by one test session are reused by the next (a second
  session running at the same time gets a fresh data root of its own).
- The engine has no GPU, so a stand-in for the NVIDIA prestart hook
  (``tests/fake_nvidia_hook.py``, installed as ``nvidia-container-runtime-hook`` on dockerd's
  PATH) makes dockerd accept GPU device requests exactly as on a GPU host: the engine sets
  ``NVIDIA_VISIBLE_DEVICES`` in the container from the request and calls the hook, which
  refuses devices not in ``FAKE_GPU_DEVICES`` the way nvidia-container-cli does.
- :func:`base_image` imports a Debian 12 root filesystem made with debootstrap (python3 and
  venv included) as the images' ``BASE_IMAGE``; no registry is reachable here.
- :class:`Wheelhouse` downloads the pinned requirements on the host and serves them as a
  PEP 503 index on 127.0.0.1, the images' ``PIP_INDEX_URL`` (a school's mirror, in effect).
"""

from __future__ import annotations

import ctypes
import fcntl
import functools
import http.server
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import docker

REPO = Path(__file__).resolve().parent.parent
BUILD = REPO / ".build"
BASE_IMAGE = "gpu-commons-test/debian-bookworm-python:1"
FAKE_GPU_DEVICES = ("MIG-sim-docker-pool-gpu0-slice0",)  # slice1 of the inventory has "gone"


@dataclass
class Engine:
    url: str
    process: subprocess.Popen
    run_dir: Path
    hook_log: Path
    lock: object = None  # held while this engine owns .build/docker

    def client(self) -> docker.APIClient:
        return docker.APIClient(base_url=self.url, version="auto", timeout=600)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        # dockerd leaves its network namespace mounted under the exec root.
        with open("/proc/mounts") as mounts:
            left = [line.split()[1] for line in mounts if line.split()[1].startswith(f"{self.run_dir}/")]
        for mount in sorted(left, reverse=True):
            subprocess.run(["umount", "-l", mount], check=False)
        shutil.rmtree(self.run_dir, ignore_errors=True)
        if self.lock:
            self.lock.close()  # releases the image cache for the next session

    def granted_devices(self) -> list[str]:
        """Devices the stand-in NVIDIA hook handed to containers, in order."""
        if not self.hook_log.exists():
            return []
        return [line.split()[1] for line in self.hook_log.read_text().splitlines() if line.startswith("granted ")]


def start_engine() -> Engine:
    dockerd = shutil.which("dockerd")
    if not dockerd:
        raise RuntimeError("dockerd is missing; run `make install-test` (Debian package docker.io)")
    run_dir = Path(f"/tmp/gc-docker-{os.getpid()}")  # short: containerd's socket paths are limited
    hooks = run_dir / "bin"
    hooks.mkdir(parents=True, exist_ok=True)
    hook = hooks / "nvidia-container-runtime-hook"
    hook.write_text(f"#!{sys.executable}\n" + (REPO / "tests" / "fake_nvidia_hook.py").read_text())
    hook.chmod(0o755)
    # One engine at a time may own the image cache in .build/docker; another test session
    # running at the same time gets a fresh data root of its own (and builds from scratch).
    BUILD.mkdir(exist_ok=True)
    lock = open(BUILD / "docker.lock", "w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        data_root = BUILD / "docker"
    except BlockingIOError:
        lock.close()
        lock, data_root = None, run_dir / "data"
    data_root.mkdir(parents=True, exist_ok=True)
    socket = run_dir / "docker.sock"
    env = {
        **os.environ,
        "PATH": f"{hooks}:{os.environ.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}",
        "FAKE_GPU_DEVICES": ",".join(FAKE_GPU_DEVICES),
        "FAKE_GPU_LOG": str(run_dir / "hook.log"),
    }
    log = open(run_dir / "dockerd.log", "wb")
    process = subprocess.Popen(
        [dockerd, "--storage-driver=overlay2", "--iptables=false", "--ip-masq=false", "--bridge=none",
         "--data-root", str(data_root), "--exec-root", str(run_dir / "exec"), "--pidfile", str(run_dir / "docker.pid"),
         "-H", f"unix://{socket}"],
        stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True, preexec_fn=_die_with_parent,
    )
    engine = Engine(url=f"unix://{socket}", process=process, run_dir=run_dir, hook_log=run_dir / "hook.log", lock=lock)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"dockerd exited with {process.returncode}:\n{(run_dir / 'dockerd.log').read_text()[-3000:]}")
        try:
            if engine.client().ping():
                return engine
        except Exception:
            time.sleep(0.3)
    engine.stop()
    raise RuntimeError("dockerd did not answer within 60 s")


def _die_with_parent() -> None:
    """A test run that is killed takes its engine along (PR_SET_PDEATHSIG), even without teardown."""
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)


def base_image(client: docker.APIClient) -> str:
    """Debian 12 with python3 and venv, from a debootstrap root filesystem (cached in .build/)."""
    if client.images(name=BASE_IMAGE):
        return BASE_IMAGE
    tarball = BUILD / "rootfs" / "bookworm-python.tar"
    if not tarball.exists():
        rootfs = BUILD / "rootfs" / f"bookworm-{os.getpid()}"
        shutil.rmtree(rootfs, ignore_errors=True)
        rootfs.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["debootstrap", "--variant=minbase", "--include=python3,python3-venv", "bookworm", str(rootfs),
             "http://deb.debian.org/debian"],
            check=True, stdout=subprocess.DEVNULL,
        )
        partial = tarball.with_suffix(".partial")
        subprocess.run(["tar", "-C", str(rootfs), "-cf", str(partial), "."], check=True)
        partial.rename(tarball)
        shutil.rmtree(rootfs, ignore_errors=True)
    repository, tag = BASE_IMAGE.rsplit(":", 1)
    with open(tarball, "rb") as data:
        client.import_image_from_data(data, repository=repository, tag=tag)
    return BASE_IMAGE


class Wheelhouse:
    """Wheels of the given requirement files, downloaded on the host and served as an index."""

    def __init__(self, root: Path):
        self.root = root
        self.files = root / "files"
        self._server: http.server.ThreadingHTTPServer | None = None

    def add(self, *pip_args: str) -> None:
        self.files.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            # The images' Python is Debian 12's 3.11 on x86_64, as on this host: same wheels.
            [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
             "--only-binary=:all:", "-d", str(self.files), *pip_args],
            capture_output=True, text=True,
        )
        if done.returncode:
            raise RuntimeError(f"pip download {' '.join(pip_args)} failed:\n{done.stderr[-3000:]}")

    def index(self, name: str, wheels: list[Path]) -> None:
        """A PEP 503 'simple' tree under root/<name>/ (http.server's listings are the project pages)."""
        simple = self.root / name
        shutil.rmtree(simple, ignore_errors=True)
        for wheel in wheels:
            project = re.sub(r"[-_.]+", "-", wheel.name.split("-")[0]).lower()
            (simple / project).mkdir(parents=True, exist_ok=True)
            os.link(wheel, simple / project / wheel.name)

    # The index URL is a build argument, part of Docker's cache key: the same port in every
    # session lets an unchanged image come from the cache (any free port when it is taken).
    PORT = 38471

    def serve(self) -> str:
        handler = functools.partial(_QuietHandler, directory=str(self.root))
        try:
            self._server = http.server.ThreadingHTTPServer(("127.0.0.1", self.PORT), handler)
        except OSError:
            self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def close(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass


def build_image(client: docker.APIClient, dockerfile: str, tag: str, buildargs: dict[str, str]) -> list[str]:
    """Build one image of images/ from the repository root; returns the build log."""
    log: list[str] = []
    for chunk in client.build(path=str(REPO), dockerfile=dockerfile, tag=tag, buildargs=buildargs,
                              network_mode="host", rm=True, forcerm=True, decode=True):
        if "stream" in chunk:
            log.append(chunk["stream"])
        if "error" in chunk:
            raise RuntimeError(f"building {dockerfile} failed: {chunk['error']}\n{''.join(log)[-4000:]}")
    return log


# -- pytest fixtures (registered in tests/conftest.py) -------------------------------------

import pytest  # noqa: E402

WORKSPACE_CPU = "gpu-commons/workspace-cpu:test"


@pytest.fixture(scope="session")
def docker_engine():
    engine = start_engine()
    try:
        yield engine
    finally:
        client = engine.client()
        for container in client.containers(all=True, filters={"label": "gpu-commons.user"}):
            client.remove_container(container["Id"], force=True, v=True)
        for volume in (client.volumes(filters={"label": "gpu-commons.user"}) or {}).get("Volumes") or []:
            client.remove_volume(volume["Name"], force=True)
        client.prune_images(filters={"dangling": True})  # layers of earlier builds of the same tags
        engine.stop()


@pytest.fixture(scope="session")
def wheelhouse():
    """Every image's pinned requirements, served at an index URL the builds can reach."""
    house = Wheelhouse(BUILD / "wheelhouse")
    requirements = sorted((REPO / "images").glob("*/requirements.txt"))
    stamp = BUILD / "wheelhouse" / "downloaded.txt"
    wanted = "\n".join(f"{path}:{path.stat().st_mtime_ns}" for path in requirements)
    if not stamp.exists() or stamp.read_text() != wanted:
        for path in requirements:
            house.add("--requirement", str(path))
        house.add("setuptools>=68")  # builds /src and workspace/ in an isolated build environment
        stamp.write_text(wanted)
    house.index("simple", sorted(house.files.glob("*.whl")))
    url = house.serve()
    try:
        yield f"{url}/simple/"
    finally:
        house.close()


@pytest.fixture(scope="session")
def workspace_cpu_image(docker_engine, wheelhouse) -> str:
    client = docker_engine.client()
    build_image(client, "images/workspace-cpu/Dockerfile", WORKSPACE_CPU,
                {"BASE_IMAGE": base_image(client), "PIP_INDEX_URL": wheelhouse})
    return WORKSPACE_CPU
