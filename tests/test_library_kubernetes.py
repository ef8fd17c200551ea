"""The library on Kubernetes through the real hub, quota service and KubeSpawner, against the
emulated API (tests/k8s_emulator.py): a pool's ``library_claim`` puts the ReadOnlyMany claim in the
pod read-only (at the volume and at the mount), the pod runs, the student's JupyterLab lists the
library on its catalogue page and links the class's dataset in ~/datasets; in a terminal, as
the student would, a write, a delete and a rename there fail with 'Read-only file system' while
the home still writes. In Chromium (zh-CN) the student finds iris from the launcher on the
catalogue page and loads it in a notebook (tests/library_flow.py). The emulator's kubelet honours
read-only claims with a read-only bind (what a real kubelet does with ``readOnly``); scheduling and
the volume's real binding need a cluster.
"""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest

from hub.demo_library import write_sources
from quota import library as lib
from quota.alliance import parse_alliance
from tests.browser import log_in as browser_log_in
from tests.hub_client import log_in, run_in_terminal, wait_for
from tests.k8s_emulator import Cluster
from tests.library_flow import find_and_load_iris
from tests.stack import running_stack

pytestmark = [pytest.mark.slow]

CLAIM = "gpu-commons-library"
ALLIANCE = """
name: Library test alliance
tiers: {county: {weight: 2}}
pools:
  - {id: uni-k, gpus: 1, simulated: true}
profiles:
  - {id: cpu, display_name: CPU only, gpu: none, max_minutes: 30}
schools:
  - id: c01
    tier: county
    students: [c01-s1]
    classes: [{id: grade8-ai, students: [c01-s1], library: [iris]}]
"""


def alliance_text() -> str:
    import yaml

    demo = Path(__file__).resolve().parents[1] / "alliances" / "demo.yaml"
    iris = next(e for e in yaml.safe_load(demo.read_text(encoding="utf-8"))["library"] if e["id"] == "iris")
    return ALLIANCE + yaml.safe_dump({"library": [iris]}, allow_unicode=True)


@pytest.fixture(scope="module")
def kube_stack(tmp_path_factory):
    here = tmp_path_factory.mktemp("library-kube-hub")
    cluster = Cluster(here / "cluster")
    text = alliance_text()
    import yaml

    entry = parse_alliance(yaml.safe_load(text)).library_entry("iris")
    lib.add_entry(entry, write_sources(here / "sources")["iris"], here / "cluster" / "volumes" / CLAIM)
    cluster.start()
    config = {"KubeQuotaSpawner": {"namespace": "gpu-commons",
                                   "pools": {"uni-k": {"namespace": "uni-k", "library_claim": CLAIM}}}}
    previous = os.environ.get("KUBECONFIG")
    os.environ["KUBECONFIG"] = str(cluster.kubeconfig(here / "kubeconfig.yaml"))
    try:
        with running_stack(here, text, config, ["--backend", "kubernetes"], tail=150) as stack:
            yield stack, cluster
    finally:
        cluster.stop()
        if previous is None:
            os.environ.pop("KUBECONFIG", None)
        else:
            os.environ["KUBECONFIG"] = previous


def test_a_pod_gets_the_library_read_only_and_the_student_finds_and_cannot_change_it(kube_stack):
    stack, cluster = kube_stack
    student = log_in(stack, "c01-s1")
    started = student.start("cpu")
    assert started.get("ready"), (started, stack.log_tail(60))
    try:
        [pod] = cluster.objects("pods")
        [container] = pod["spec"]["containers"]
        assert {"name": "library", "mountPath": "/srv/library", "readOnly": True} in container["volumeMounts"]
        assert {"name": "library", "persistentVolumeClaim": {"claimName": CLAIM, "readOnly": True}} in pod["spec"]["volumes"]

        base = f"{stack.url}/user/c01-s1"
        headers = {"Authorization": f"token {student.token}"}
        listed = httpx.get(f"{base}/gpu-commons/library", params={"format": "json"}, headers=headers, timeout=30)
        assert listed.status_code == 200 and listed.json()["entries"] == ["iris"], listed.text
        page = httpx.get(f"{base}/gpu-commons/library", headers=headers, timeout=30).text
        assert "Iris flowers" in page and 'pd.read_csv(&quot;/srv/library/datasets/iris.csv&quot;)' in page
        with student.contents() as contents:
            link = contents.get("datasets/iris.csv", params={"content": "1", "format": "text"}).json()
        assert link["content"].startswith("sepal length (cm),sepal width (cm)")  # the class's dataset, through the link

        script = ("(echo x > /srv/library/new.csv; rm -f /srv/library/datasets/iris.csv; "
                  "mv /srv/library/datasets/iris.csv /srv/library/x.csv; head -c 20 ~/datasets/iris.csv; echo; "
                  "echo mine > ~/mine.txt && cat ~/mine.txt) > ~/ro.txt 2>&1")
        text = run_in_terminal(student, script, "ro.txt")
        assert text.count("Read-only file system") == 3, text
        assert text.splitlines()[-2:] == ["sepal length (cm),se", "mine"], text
        volume = cluster.root / "volumes" / CLAIM
        assert sorted(p.name for p in (volume / "datasets").iterdir()) == ["iris.csv"]
        assert not (volume / "new.csv").exists() and not (volume / "x.csv").exists()
    finally:
        student.stop()
        wait_for(lambda: cluster.objects("pods") == [], 30, "the pod to be deleted")


@pytest.mark.browser
def test_on_kubernetes_a_student_finds_a_dataset_in_the_catalogue_and_loads_it_in_a_notebook(kube_stack, browser,
                                                                                             tmp_path):
    stack, cluster = kube_stack
    shots = Path(os.environ.get("GPU_COMMONS_SCREENSHOTS") or tmp_path)
    context = browser.new_context(locale="zh-CN", viewport={"width": 1280, "height": 800})
    try:
        page = browser_log_in(context, stack, "c01-s1", next_url="/hub/spawn")
        page.check("#profile-cpu")
        page.click("button[type=submit]")
        find_and_load_iris(context, page, "zh-CN", shots, "library-kubernetes")
        [pod] = cluster.objects("pods")
        assert {"name": "library", "mountPath": "/srv/library", "readOnly": True} in pod["spec"]["containers"][0][
            "volumeMounts"]
    finally:
        context.close()
        log_in(stack, "c01-s1").stop()
        wait_for(lambda: cluster.objects("pods") == [], 30, "the pod to be deleted")
