"""The alliance's library (issue 16): entries in the alliance file, `gpu-commons library add|retire|list`
(checked copies, nothing half-copied), what the spawner tells the workspace, and the local
sandbox's read-only mount run for real with bubblewrap."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from quota import library as lib
from quota.alliance import AllianceError, load_alliance, parse_alliance
from spawner.backends import LocalQuotaSpawner
from spawner.library import library_binds, library_env
from spawner.local import SANDBOX_HOME

DEMO = Path(__file__).resolve().parents[1] / "alliances" / "demo.yaml"
IRIS = b"sepal length (cm),target\n5.1,0\n4.9,0\n"


def alliance_data(**entry) -> dict:
    data = yaml.safe_load(DEMO.read_text(encoding="utf-8"))
    data["library"] = [{
        "id": "iris", "name": {"zh-CN": "鸢尾花", "en": "Iris"}, "description": {"zh-CN": "花。", "en": "Flowers."},
        "licence": "CC-BY-4.0", "source": "tests", "size_bytes": len(IRIS), "sha256": hashlib.sha256(IRIS).hexdigest(),
        "path": "datasets/iris.csv", **entry,
    }]
    data["schools"][0]["classes"][0]["library"] = ["iris"]
    return data


def test_the_demo_library_is_valid_and_attached_to_a_class():
    alliance = load_alliance(DEMO)
    assert [e.id for e in alliance.library] == ["iris", "wine", "digits", "diabetes", "breast-cancer", "jieba-dict"]
    assert [e.id for e in alliance.attached_library("c01-s1")] == ["iris", "jieba-dict"]
    assert alliance.attached_library("u01-s1") == []
    assert alliance.classes_of("c01-s1") == ["c01/grade8-ai"]


@pytest.mark.parametrize("change, said", [
    ({"path": "../etc/passwd"}, "must be relative and below the library root"),
    ({"path": "/srv/x.csv"}, "must be relative"),
    ({"path": "catalogue.json"}, "the catalogue's own file"),
    ({"sha256": "abc"}, "library[0] (iris).sha256: is 'abc'"),
    ({"name": {"en": "Iris"}}, "library[0] (iris).name.zh-CN: is required"),
    ({"size_bytes": 0}, "library[0] (iris).size_bytes: is 0"),
])
def test_a_bad_entry_names_the_entry_and_the_fix(change, said):
    with pytest.raises(AllianceError) as caught:
        parse_alliance(alliance_data(**change), "a.yaml")
    assert said in str(caught.value)


def test_a_class_may_attach_only_entries_of_the_library():
    data = alliance_data()
    data["schools"][0]["classes"][0]["library"] = ["iris", "mnist"]
    with pytest.raises(AllianceError, match="class grade8-ai of school c01 attaches library entry 'mnist', which is "
                                            "not under 'library'; use one of \\['iris'\\]"):
        parse_alliance(data, "a.yaml")
    data = alliance_data()
    data["library"].append({**data["library"][0], "id": "iris2"})
    with pytest.raises(AllianceError, match="library paths has duplicate id"):
        parse_alliance(data, "a.yaml")


# -- add, retire, list --------------------------------------------------------------------

@pytest.fixture
def alliance():
    return parse_alliance(alliance_data())


@pytest.fixture
def source(tmp_path):
    path = tmp_path / "incoming" / "iris.csv"
    path.parent.mkdir()
    path.write_bytes(IRIS)
    return path


def left_in(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_add_puts_a_checked_read_only_copy_in_place_and_records_it(alliance, source, tmp_path):
    root = tmp_path / "library"
    target = lib.add_entry(alliance.library_entry("iris"), source, root, now=1000.0)
    assert target == root / "datasets" / "iris.csv" and target.read_bytes() == IRIS
    assert target.stat().st_mode & 0o777 == 0o444 and (root / "datasets").stat().st_mode & 0o777 == 0o755
    record = json.loads((root / "catalogue.json").read_text())["entries"]["iris"]
    assert record == {"id": "iris", "kind": "dataset", "name": {"zh-CN": "鸢尾花", "en": "Iris"},
                      "description": {"zh-CN": "花。", "en": "Flowers."}, "licence": "CC-BY-4.0", "source": "tests",
                      "size_bytes": len(IRIS), "sha256": hashlib.sha256(IRIS).hexdigest(),
                      "path": "datasets/iris.csv", "load_with": "pandas", "added_at": 1000.0}
    assert left_in(root) == ["catalogue.json", "datasets/iris.csv"]
    assert lib.entry_states(alliance, root) == [("iris", "in place")]
    lib.retire_entry("iris", root)
    assert left_in(root) == ["catalogue.json"] and lib.read_catalogue(root) == {"entries": {}}
    assert lib.entry_states(alliance, root) == [("iris", "not added")]


def test_a_root_given_relative_to_the_current_folder_works(alliance, source, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    target = lib.add_entry(alliance.library_entry("iris"), source, Path("data/demo/library"))
    assert target == Path("data/demo/library/datasets/iris.csv") and target.read_bytes() == IRIS
    assert (tmp_path / "data/demo/library/datasets").stat().st_mode & 0o777 == 0o755
    assert "iris" in lib.read_catalogue(Path("data/demo/library"))["entries"]


def test_a_damaged_file_is_refused_and_nothing_is_left(alliance, source, tmp_path):
    root = tmp_path / "library"
    source.write_bytes(IRIS.replace(b"5.1", b"5.2"))  # same size, other bytes
    with pytest.raises(lib.LibraryRefused) as caught:
        lib.add_entry(alliance.library_entry("iris"), source, root)
    assert str(caught.value).startswith(f"Library entry iris: the SHA-256 of {source} is ")
    assert "fetch it again, or correct sha256 once you trust it" in str(caught.value)
    assert left_in(root) == []  # no temporary file, no entry, no catalogue


def test_a_file_of_another_size_or_a_missing_one_is_refused(alliance, source, tmp_path):
    root = tmp_path / "library"
    source.write_bytes(IRIS + b"4.7,0\n")
    with pytest.raises(lib.LibraryRefused, match=f"Library entry iris: {source} has {len(IRIS) + 6} bytes, the "
                                                 f"alliance file says size_bytes: {len(IRIS)}; use the right file"):
        lib.add_entry(alliance.library_entry("iris"), source, root)
    with pytest.raises(lib.LibraryRefused, match="Library entry iris: the file .*missing.csv does not exist; give its "
                                                 "path with --from"):
        lib.add_entry(alliance.library_entry("iris"), tmp_path / "missing.csv", root)
    assert not root.exists() or left_in(root) == []


def test_an_entry_larger_than_the_free_space_is_refused_before_copying(alliance, source, tmp_path):
    root = tmp_path / "library"
    with pytest.raises(lib.LibraryRefused, match=f"Library entry iris needs {len(IRIS)} bytes, but the library's disk "
                                                 f"\\({root}\\) has only 10 free; free some space or retire"):
        lib.add_entry(alliance.library_entry("iris"), source, root, free_bytes=10)
    assert left_in(root) == []


def test_a_failed_add_keeps_the_copy_already_in_place(alliance, source, tmp_path):
    root = tmp_path / "library"
    lib.add_entry(alliance.library_entry("iris"), source, root, now=1.0)
    before = (root / "catalogue.json").read_bytes()
    source.write_bytes(IRIS.replace(b"4.9", b"4.8"))
    with pytest.raises(lib.LibraryRefused):
        lib.add_entry(alliance.library_entry("iris"), source, root)
    assert (root / "datasets" / "iris.csv").read_bytes() == IRIS and (root / "catalogue.json").read_bytes() == before
    assert left_in(root) == ["catalogue.json", "datasets/iris.csv"]


def test_the_command_line_adds_lists_and_retires(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("LANG", "en_US.UTF-8")  # the operator's language; else the alliance's (zh-CN)
    alliance_file = tmp_path / "a.yaml"
    alliance_file.write_text(yaml.safe_dump(alliance_data(), allow_unicode=True), encoding="utf-8")
    sources, root = tmp_path / "sources", tmp_path / "library"
    (sources / "datasets").mkdir(parents=True)
    (sources / "datasets" / "iris.csv").write_bytes(IRIS)
    common = ["--alliance", str(alliance_file), "--root", str(root)]
    from quota.cli import main

    assert main(["library", "add", "--all", "--from-dir", str(sources), *common]) == 0
    assert main(["library", "list", *common]) == 0
    assert "iris                     in place" in capsys.readouterr().out
    assert main(["library", "add", "wine", "--from", str(sources / "x"), *common]) == 1
    assert "Library entry wine is not in the alliance file" in capsys.readouterr().err
    assert main(["library", "retire", "iris", *common]) == 0
    assert main(["library", "retire", "iris", *common]) == 1
    assert "Library entry iris is not in the library at" in capsys.readouterr().err
    monkeypatch.setenv("LANG", "zh_CN.UTF-8")
    assert main(["library", "list", *common]) == 0
    assert "iris                     尚未加入" in capsys.readouterr().out


def test_refusals_are_in_chinese_too(alliance, source, tmp_path):
    from gpu_commons_i18n import render

    with pytest.raises(lib.LibraryRefused) as caught:
        lib.add_entry(alliance.library_entry("iris"), source, tmp_path / "library", free_bytes=1)
    chinese = render(caught.value.message, "zh-CN")
    assert "iris" in chinese and chinese != str(caught.value)


# -- the workspace's side -----------------------------------------------------------------

def test_the_spawner_tells_the_workspace_its_classes_entries(alliance):
    assert library_env(alliance, "c01-s1") == {
        "GPU_COMMONS_LIBRARY": "/srv/library",
        "GPU_COMMONS_LIBRARY_ATTACHED": '{"iris": "datasets/iris.csv"}',
        "GPU_COMMONS_CLASSES": "c01/grade8-ai",
    }
    assert library_env(alliance, "u01-s1")["GPU_COMMONS_LIBRARY_ATTACHED"] == "{}"


def test_the_sandbox_binds_the_root_read_only():
    assert library_binds("/data/lib") == ["--perms", "0755", "--dir", "/srv", "--ro-bind", "/data/lib", "/srv/library"]
    assert library_binds("") == []


@pytest.fixture
def library_root(tmp_path, alliance, source):
    root = tmp_path / "library"
    lib.add_entry(alliance.library_entry("iris"), source, root)
    return root


def local_spawner(tmp_path, library_root) -> LocalQuotaSpawner:
    user = SimpleNamespace(name="c01-s1", id=4242, url="/user/c01-s1/")
    return LocalQuotaSpawner(user=user, homes_dir=str(tmp_path / "homes"), library_root=str(library_root),
                             alliance_file=str(DEMO))


@pytest.mark.skipif(not shutil.which("bwrap"), reason="needs bubblewrap (make install-test)")
def test_a_student_reads_the_library_and_cannot_write_or_delete_there(tmp_path, library_root):
    spawner = local_spawner(tmp_path, library_root)
    spawner.ensure_home()
    command = spawner.sandbox_command()
    assert command[command.index("--ro-bind", command.index("/srv") - 3):][:3] == [
        "--ro-bind", str(library_root), "/srv/library"]
    script = (
        "head -1 /srv/library/datasets/iris.csv; "
        "echo x > /srv/library/new.csv || echo WRITE-REFUSED; "
        "rm -f /srv/library/datasets/iris.csv || echo DELETE-REFUSED; "
        "mv /srv/library/datasets/iris.csv /srv/library/x.csv || echo MOVE-REFUSED; "
        f"echo mine > {SANDBOX_HOME}/notes.txt && cat {SANDBOX_HOME}/notes.txt; "
        "python3 -c \"import csv; print(len(list(csv.reader(open('/srv/library/datasets/iris.csv')))))\""
    )
    done = subprocess.run([*command, "/bin/sh", "-c", script], capture_output=True, text=True, timeout=60,
                          env=spawner.user_env({}))
    assert done.stdout.splitlines() == ["sepal length (cm),target", "WRITE-REFUSED", "DELETE-REFUSED",
                                        "MOVE-REFUSED", "mine", "3"], done.stderr
    assert done.stderr.count("Read-only file system") == 3, done.stderr
    assert left_in(library_root) == ["catalogue.json", "datasets/iris.csv"]
    assert (library_root / "datasets" / "iris.csv").read_bytes() == IRIS


def test_without_a_library_root_the_sandbox_has_none(tmp_path, library_root):
    spawner = local_spawner(tmp_path, "")
    assert "/srv/library" not in spawner.sandbox_command()
    spawner = local_spawner(tmp_path, tmp_path / "nowhere")
    assert "/srv/library" not in spawner.sandbox_command()
