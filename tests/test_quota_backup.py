"""Backup and restore of the quota database, with a restore drill (issue 15, point 7).

A service with running, queued and ended leases is backed up while it runs; the backup is
restored into an empty database; a service started on it holds the same leases, the same
queue in the same order and the same usage ledger. A restore refuses while a service writes
the target, into a database that holds leases (unless --force), and from a file that is no
backup. Once on SQLite and once on PostgreSQL (pg_dump / pg_restore).
"""

from __future__ import annotations

import stat

import pytest
from fastapi.testclient import TestClient

from quota import backup
from quota.cli import main as cli
from tests.quota_fixtures import TOKEN


def hub_client(app) -> TestClient:
    return TestClient(app, headers={"Authorization": f"token {TOKEN}"})


def ask(client, user: str, profile: str) -> dict:
    answer = client.post("/api/leases", json={"user": user, "school": user.split("-")[0], "profile": profile})
    assert answer.status_code in (200, 201), answer.text
    return answer.json()


def state_of(client) -> dict:
    return {
        "leases": client.get("/api/leases").json(),
        "queue": [lease["id"] for lease in client.get("/api/queue").json()],
        "usage": client.get("/api/usage").json(),
    }


@pytest.fixture
def empty_database(request, database_url, tmp_path):
    """Another empty database of the same kind as ``database_url``."""
    if database_url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path / 'restored' / 'quota.sqlite'}"
        return
    server = request.getfixturevalue("postgres_server")
    url = server.create_database()
    yield url
    server.drop_database(url)


def test_a_backup_taken_while_the_service_runs_restores_the_same_leases_queue_and_ledger(
        make_quota_app, database_url, empty_database, tmp_path, clock, capsys):
    file = tmp_path / "backups" / "quota.backup"
    with hub_client(make_quota_app()) as service:
        assert ask(service, "c01-s1", "gpu-whole")["state"] == "granted"
        ended = ask(service, "c01-s2", "gpu-slice")
        clock.advance(minutes=7)
        assert service.delete(f"/api/leases/{ended['id']}").status_code == 200
        assert ask(service, "u01-s1", "gpu-slice")["state"] == "granted"
        assert ask(service, "u01-s2", "gpu-slice")["state"] == "granted"
        waiting = [ask(service, "c01-s3", "gpu-whole"), ask(service, "c01-s2", "gpu-whole")]
        assert [lease["state"] for lease in waiting] == ["queued", "queued"]
        before = state_of(service)
        assert len(before["usage"]) == 1 and len(before["queue"]) == 2

        assert cli(["backup", "create", "--database-url", database_url, "--to", str(file)]) == 0
        assert "leases: 3 granted, 2 queued, 1 released; usage records: 1" in capsys.readouterr().out
        assert stat.S_IMODE(file.stat().st_mode) == 0o600

        # the running service holds the writer lock: its own database cannot be restored under it
        with pytest.raises(backup.BackupError, match="a quota service is running on this database"):
            backup.restore(file, database_url, force=True)

    assert cli(["backup", "restore", "--from", str(file), "--database-url", empty_database]) == 0
    assert "leases: 3 granted, 2 queued, 1 released; usage records: 1" in capsys.readouterr().out
    with hub_client(make_quota_app(database_url=empty_database, data_dir=tmp_path / "restored")) as restored:
        assert state_of(restored) == before
        # and it goes on from there: the first in the queue (heard from again after the restart, as
        # the spawner polls it) gets the whole GPU when it is released
        for lease_id in before["queue"]:
            assert restored.get(f"/api/leases/{lease_id}").json()["state"] == "queued"
        holder = next(lease for lease in before["leases"] if lease["profile"] == "gpu-whole" and lease["state"] == "granted")
        restored.delete(f"/api/leases/{holder['id']}")
        assert restored.get(f"/api/leases/{before['queue'][0]}").json()["state"] == "granted"

    # a database that holds leases is replaced only on purpose
    with pytest.raises(backup.BackupError, match="already holds leases.*--force"):
        backup.restore(file, empty_database)
    assert backup.restore(file, empty_database, force=True).leases_by_state == {"granted": 3, "queued": 2, "released": 1}


def test_a_file_that_is_no_backup_is_refused_naming_it(tmp_path, database_url, capsys):
    junk = tmp_path / "notes.txt"
    junk.write_text("not a database\n" * 100)
    assert cli(["backup", "restore", "--from", str(junk), "--database-url", database_url]) == 2
    error = capsys.readouterr().err
    assert str(junk) in error and "backup" in error
    missing = tmp_path / "gone.backup"
    assert cli(["backup", "restore", "--from", str(missing), "--database-url", database_url]) == 2
    assert f"{missing}: no such backup file" in capsys.readouterr().err
