"""The library on a real Docker engine (tests/docker_engine.py: Debian's dockerd): the body that
``build_container`` makes from a pool's ``library_host_path`` binds the library read-only at
/srv/library; the workspace's user reads it, a write, a delete or a rename there fails with
'Read-only file system', and the rest of the container still writes."""

from __future__ import annotations

import uuid

import pytest

from quota import library as lib
from quota.alliance import parse_alliance
from spawner.builders.docker import build_container
from spawner.pools import DockerPool, library_volume
from spawner.specs import HomeVolume, Placement, WorkspaceSpec
from tests.docker_engine import base_image

pytestmark = [pytest.mark.docker, pytest.mark.slow]

IRIS = b"sepal length (cm),target\n5.1,0\n"
SCRIPT = (
    "id -u; head -1 /srv/library/datasets/iris.csv; "
    "echo x > /srv/library/new.csv || echo WRITE-REFUSED; "
    "rm -f /srv/library/datasets/iris.csv || echo DELETE-REFUSED; "
    "mv /srv/library/datasets/iris.csv /srv/library/x.csv || echo MOVE-REFUSED; "
    "echo mine > /tmp/notes.txt && cat /tmp/notes.txt"
)


def test_a_docker_workspace_reads_the_library_and_cannot_change_it(docker_engine, tmp_path):
    import hashlib

    entry = parse_alliance({
        "tiers": {"county": {}}, "pools": [{"id": "p", "gpus": 0}], "schools": [{"id": "c01", "tier": "county"}],
        "library": [{"id": "iris", "name": {"zh-CN": "鸢尾花", "en": "Iris"}, "description": {"zh-CN": "花。", "en": "Flowers."},
                     "licence": "CC-BY-4.0", "source": "tests", "size_bytes": len(IRIS),
                     "sha256": hashlib.sha256(IRIS).hexdigest(), "path": "datasets/iris.csv"}],
    }).library_entry("iris")
    source = tmp_path / "iris.csv"
    source.write_bytes(IRIS)
    root = tmp_path / "library"
    lib.add_entry(entry, source, root)
    tmp_path.chmod(0o755)  # the engine's user namespace is the host's: uid 1000 passes through to the root

    client = docker_engine.client()
    user = f"library-{uuid.uuid4().hex[:8]}"
    spec = WorkspaceSpec(name=f"gpu-commons-{user}", user=user, lease_id="l-1", image=base_image(client),
                         command=("/bin/sh", "-c", SCRIPT), env={}, placement=Placement(pool="docker-pool"),
                         home=HomeVolume(name=f"gpu-commons-home-{user}"),
                         library=library_volume(DockerPool(library_host_path=str(root))))
    container = client.create_container_from_config(build_container(spec), spec.name)
    try:
        client.start(container["Id"])
        assert client.wait(container["Id"], timeout=60)["StatusCode"] == 0
        out = client.logs(container["Id"], stdout=True, stderr=False).decode().splitlines()
        err = client.logs(container["Id"], stdout=False, stderr=True).decode()
    finally:
        client.remove_container(container["Id"], force=True, v=True)
        client.remove_volume(spec.home.name, force=True)
    assert out == ["1000", "sepal length (cm),target", "WRITE-REFUSED", "DELETE-REFUSED", "MOVE-REFUSED", "mine"], err
    assert err.count("Read-only file system") == 3, err
    assert sorted(p.name for p in (root / "datasets").iterdir()) == ["iris.csv"] and not (root / "new.csv").exists()
