"""The quota service's reasons reach the student in their language: the real service (in-process)
refuses for a spent budget and for a student's workspace cap, and the allocator's English phrase
with its numbers comes back as the catalogue's sentence (``reason_message``)."""

from __future__ import annotations

import re

from gpu_commons_i18n import from_json

CHINESE = re.compile(r"[\u4e00-\u9fff]")


def ask(client, user, profile="gpu-whole"):
    return client.post("/api/leases", json={"user": user, "school": user.split("-")[0], "profile": profile}).json()


def in_chinese(lease: dict) -> str:
    assert lease["reason_message"], lease
    message = from_json(lease["reason_message"])
    assert str(message) == lease["reason"]  # the English reason is the same sentence
    return message.render("zh-CN")


def test_a_spent_budget_and_when_it_comes_back_in_chinese(quota_client, client_as, clock):
    client_as("staff-admin").patch("/api/schools/c01/quota", json={"budget_gpu_hours": 0.25})
    lease = ask(quota_client, "c01-s1")
    clock.advance(minutes=15)
    quota_client.delete(f"/api/leases/{lease['id']}")
    refused = ask(quota_client, "c01-s2")
    assert refused["state"] == "refused"
    chinese = in_chinese(refused)
    assert chinese.startswith("你的学校的 GPU 预算已用完（最近 7 天内已用 0.25 / 0.25 GPU 时）"), chinese
    assert chinese.endswith("你可以从 2026-09-08 08:00（UTC）起再次申请。"), chinese
    assert not re.search(r"[A-Za-z]{4,}", chinese.replace("GPU", "").replace("UTC", "")), chinese


def test_a_students_workspace_cap_in_chinese(quota_client, client_as):
    assert ask(quota_client, "c01-s1")["state"] == "granted"  # the alliance's default cap: 1
    refused = ask(quota_client, "c01-s1", profile="gpu-slice")
    assert refused["state"] == "refused", refused
    assert in_chinese(refused).startswith("你已有 1 个工作区在运行或排队，这是学校允许的上限"), in_chinese(refused)
    assert refused["reason"].startswith("You already have 1 workspace running or waiting")  # singular in English


def test_a_phrase_the_catalogue_does_not_know_stays_an_english_sentence():
    from quota.messages import sentence

    assert sentence("some new phrase of the allocator") == "Some new phrase of the allocator."
    assert CHINESE.search(sentence("the GPU-hour budget is used up").render("zh-CN"))
