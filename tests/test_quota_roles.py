"""Every route checks who calls: students, teachers, school admins, staff, operators, the hub.

Tokens are resolved by a stand-in for the hub (tests/quota_fixtures.py); the end-to-end
OAuth login through the real hub is in tests/test_quota_oauth.py.
"""

from __future__ import annotations


def ask(client, user, profile="gpu-slice", school=None):
    return client.post("/api/leases", json={"user": user, "school": school or user.split("-")[0], "profile": profile})


def test_unknown_tokens_are_401_and_accounts_without_a_role_403(client_as, quota_client):
    response = quota_client.get("/api/leases", headers={"Authorization": "token not-a-hub-token"})
    assert response.status_code == 401 and "log in again" in response.json()["detail"]
    stranger = client_as("nobody").get("/api/leases")
    assert stranger.status_code == 403 and "'nobody' has no role" in stranger.json()["detail"]


def test_a_student_token_cannot_ask_for_renew_or_end_a_gpu_lease(quota_client, client_as):
    """Issue 17: a student running a CPU workspace took the only whole GPU straight from the
    quota API with the server token in their environment, and renewed it while others
    queued. Only the hub asks for and renews leases, for the workspace it starts."""
    student = client_as("c01-s1")
    for profile in ("gpu-whole", "gpu-slice", "cpu"):
        refused = ask(student, "c01-s1", profile=profile)
        assert refused.status_code == 403 and "start your server" in refused.json()["detail"], refused.text
    assert ask(student, "c01-s2").status_code == 403
    for account in ("c01-teacher", "c01-admin", "staff-admin", "it-ops"):  # nobody but the hub asks
        assert ask(client_as(account), "c01-s1").status_code == 403
    assert quota_client.get("/api/leases").json() == []  # nothing was booked

    held = ask(quota_client, "c01-s1", profile="gpu-whole").json()  # the spawner's lease
    renewing = student.post(f"/api/leases/{held['id']}/renew")
    assert renewing.status_code == 403 and "The hub renews" in renewing.json()["detail"]
    ending = student.delete(f"/api/leases/{held['id']}")
    assert ending.status_code == 403 and "Stop My Server" in ending.json()["detail"]
    # the student still reads their own lease (the workspace extension does, with the server's token)
    assert student.get(f"/api/leases/{held['id']}").json()["state"] == "granted"
    assert [lease["id"] for lease in student.get("/api/leases").json()] == [held["id"]]
    assert quota_client.post(f"/api/leases/{held['id']}/renew").status_code == 200  # the hub renews


def test_a_student_cannot_read_another_students_usage_or_leases(quota_client, client_as, clock):
    theirs = ask(quota_client, "c01-s2").json()
    clock.advance(minutes=5)
    quota_client.delete(f"/api/leases/{theirs['id']}")
    student = client_as("c01-s1")
    response = student.get("/api/usage", params={"user": "c01-s2"})
    assert response.status_code == 403 and "c01-s2" in response.json()["detail"]
    assert student.get("/api/usage").json() == []  # the unfiltered list holds only their own
    assert student.get("/api/leases", params={"user": "c01-s2"}).status_code == 403
    assert student.get(f"/api/leases/{theirs['id']}").status_code == 403


def test_a_student_cannot_cancel_another_students_lease(quota_client, client_as):
    theirs = ask(quota_client, "c01-s2").json()
    response = client_as("c01-s1").delete(f"/api/leases/{theirs['id']}")
    assert response.status_code == 403 and "your own" in response.json()["detail"]
    assert quota_client.get(f"/api/leases/{theirs['id']}").json()["state"] == "granted"
    assert client_as("u01-teacher").delete(f"/api/leases/{theirs['id']}").status_code == 403  # another school's
    assert client_as("c01-teacher").delete(f"/api/leases/{theirs['id']}").json()["state"] == "released"


def test_teachers_see_their_class_and_admins_their_school(quota_client, client_as, clock):
    for user in ("c01-s1", "c01-s3", "u01-s1"):
        lease = ask(quota_client, user, profile="cpu").json()
        clock.advance(minutes=1)
        quota_client.delete(f"/api/leases/{lease['id']}")
    teacher_sees = {record["user"] for record in client_as("c01-teacher").get("/api/usage").json()}
    assert teacher_sees == {"c01-s1"}  # c01-s3 is not in the teacher's class
    assert client_as("c01-teacher").get("/api/usage", params={"user": "c01-s3"}).status_code == 403
    admin_sees = {record["user"] for record in client_as("c01-admin").get("/api/usage").json()}
    assert admin_sees == {"c01-s1", "c01-s3"}
    staff_sees = {record["user"] for record in client_as("staff-admin").get("/api/usage").json()}
    assert staff_sees == {"c01-s1", "c01-s3", "u01-s1"}


def test_only_the_hub_withdraws_by_key(quota_client, client_as):
    ask(quota_client, "c01-s1")
    assert client_as("c01-s1").delete("/api/leases/by-key/anything").status_code == 403
    assert client_as("staff-admin").delete("/api/leases/by-key/anything").status_code == 403


def test_renew_only_while_nobody_with_a_better_claim_waits(quota_client, client_as, clock):
    # c01 (county, weight 2) is guaranteed 2/3 of the alliance's 2 GPUs, u01 (urban) 1/3:
    # an urban student on the whole GPU borrows it, a county student there does not.
    whole = ask(quota_client, "u01-s1", profile="gpu-whole").json()
    clock.advance(minutes=20)
    renewed = quota_client.post(f"/api/leases/{whole['id']}/renew")  # the spawner renews
    assert renewed.status_code == 200 and renewed.json()["expires_at"] > whole["expires_at"]
    assert client_as("u01-s2").post(f"/api/leases/{whole['id']}/renew").status_code == 403

    # a county student below the guarantee waits: the borrowed GPU is reclaimed after a warning
    county = ask(quota_client, "c01-s1", profile="gpu-whole").json()
    assert county["state"] == "queued"
    warned = client_as("u01-s1").get(f"/api/leases/{whole['id']}").json()
    assert warned["state"] == "granted" and warned["reclaim_at"] is not None and "Save your work" in warned["reason"]
    refused = quota_client.post(f"/api/leases/{whole['id']}/renew")
    assert refused.status_code == 409 and "goes back" in refused.json()["detail"]

    clock.advance(minutes=1)
    client_as("c01-s1").get(f"/api/leases/{county['id']}")  # the hub keeps asking: the place is kept
    clock.advance(minutes=1)  # the alliance's warning lead time is 2 minutes
    assert quota_client.app.state.book.sweep() == 1
    assert client_as("u01-s1").get(f"/api/leases/{whole['id']}").json()["state"] == "expired"
    granted = client_as("c01-s1").get(f"/api/leases/{county['id']}").json()
    assert granted["state"] == "granted" and granted["device"] == warned["device"]
    usage = client_as("u01-s1").get("/api/usage", params={"user": "u01-s1"}).json()
    assert [record["end_reason"] for record in usage] == ["reclaimed"]

    # within its guarantee the county student may renew while an urban student waits
    assert ask(quota_client, "u01-s2", profile="gpu-whole").json()["state"] == "queued"
    clock.advance(minutes=5)
    renewed = quota_client.post(f"/api/leases/{county['id']}/renew")
    assert renewed.status_code == 200
