"""The library's usage (issue 16, point 5): the hub reports the openings its workspaces counted,
the quota service keeps them per class (never per student), and staff, school admins and
teachers read them as their role allows; and how the spawner turns a workspace's running
counts into reports."""

from __future__ import annotations

import hashlib

import pytest

from spawner.library import new_opens
from tests.quota_fixtures import QUOTA_ALLIANCE

SHA = hashlib.sha256(b"x").hexdigest()
LIBRARY = f"""
library:
  - {{id: iris, name: {{zh-CN: 鸢尾花, en: Iris}}, description: {{zh-CN: 花。, en: Flowers.}}, licence: CC-BY-4.0,
     source: tests, size_bytes: 1, sha256: {SHA}, path: datasets/iris.csv}}
  - {{id: wine, name: {{zh-CN: 葡萄酒, en: Wine}}, description: {{zh-CN: 酒。, en: Wine.}}, licence: CC-BY-4.0,
     source: tests, size_bytes: 1, sha256: {SHA}, path: datasets/wine.csv}}
"""


@pytest.fixture
def quota_alliance(tmp_path):
    path = tmp_path / "alliance.yaml"
    path.write_text(QUOTA_ALLIANCE + LIBRARY)
    return path


def test_openings_are_kept_per_class_and_read_as_each_role_may(quota_client, client_as):
    assert quota_client.post("/api/library/opens", json={"user": "c01-s1", "opens": {"iris": 2, "wine": 1}}).json() == {
        "recorded": 3, "classes": ["c01/ai-club"]}
    assert quota_client.post("/api/library/opens", json={"user": "c01-s2", "opens": {"iris": 1}}).status_code == 200
    assert quota_client.post("/api/library/opens", json={"user": "u01-s1", "opens": {"iris": 4}}).json() == {
        "recorded": 4, "classes": ["u01"]}  # in no class: the school's count
    every = [{"entry": "iris", "school": "c01", "class": "ai-club", "opens": 3},
             {"entry": "iris", "school": "u01", "class": "", "opens": 4},
             {"entry": "wine", "school": "c01", "class": "ai-club", "opens": 1}]
    assert client_as("staff-admin").get("/api/library/usage").json() == {"opens": every}
    assert client_as("it-ops").get("/api/library/usage", params={"school": "u01"}).json() == {"opens": every[1:2]}
    assert client_as("c01-admin").get("/api/library/usage").json() == {"opens": [every[0], every[2]]}
    assert client_as("c01-teacher").get("/api/library/usage").json() == {"opens": [every[0], every[2]]}
    assert client_as("u01-teacher").get("/api/library/usage").json() == {"opens": []}
    assert client_as("c01-s1").get("/api/library/usage").status_code == 403


def test_only_the_hub_reports_and_only_known_entries(quota_client, client_as):
    refused = client_as("c01-s1").post("/api/library/opens", json={"user": "c01-s1", "opens": {"iris": 100}})
    assert refused.status_code == 403
    unknown = quota_client.post("/api/library/opens", json={"user": "c01-s1", "opens": {"mnist": 1}})
    assert unknown.status_code == 404 and "No library entry 'mnist'" in unknown.text
    assert quota_client.post("/api/library/opens", json={"user": "c01-s1", "opens": {"iris": 0}}).status_code == 422
    assert quota_client.post("/api/library/opens", json={"user": "nobody", "opens": {"iris": 1}}).status_code == 404
    assert client_as("staff-admin").get("/api/library/usage").json() == {"opens": []}


def test_the_spawner_reports_only_what_is_new_and_a_restarted_server_from_zero():
    fresh, sent = new_opens({"server": "a", "opens": {"iris": 2}}, {})
    assert fresh == {"iris": 2} and sent == {"server": "a", "opens": {"iris": 2}}
    fresh, sent = new_opens({"server": "a", "opens": {"iris": 3, "wine": 1}}, sent)
    assert fresh == {"iris": 1, "wine": 1}
    assert new_opens({"server": "a", "opens": {"iris": 3, "wine": 1}}, sent)[0] == {}
    fresh, sent = new_opens({"server": "b", "opens": {"iris": 1}}, sent)  # a new server counts from 0
    assert fresh == {"iris": 1} and sent == {"server": "b", "opens": {"iris": 1}}
