"""Schemathesis fuzzes every operation of the quota API (in-process, from its own OpenAPI),
with valid and invalid data, as the hub and as a student: no answer is a server error, and
every 4xx tells the person what to do (a sentence in ``detail``, or FastAPI's list of the
fields that are wrong and why)."""

from __future__ import annotations

import json

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from tests.quota_fixtures import TOKEN

EXAMPLES = 25  # per operation, mode and caller
CALLERS = {"hub": TOKEN, "student": "tok-c01-s1"}


@pytest.fixture
def database_url(tmp_path):
    """Fuzzing looks for bugs in the routes, not in the storage: SQLite only (see test_lease_api for both)."""
    return f"sqlite:///{tmp_path / 'quota' / 'quota.sqlite'}"


def problem_with(response) -> str | None:
    """Why this answer is not acceptable, or None."""
    if response.status_code >= 500:
        return f"server error {response.status_code}: {response.text[:300]}"
    if not 400 <= response.status_code < 500:
        return None
    try:
        detail = response.json().get("detail")
    except ValueError:
        return f"{response.status_code} without a JSON body: {response.text[:200]}"
    if isinstance(detail, str):
        return None if len(detail.split()) >= 4 else f"{response.status_code} with a terse detail: {detail!r}"
    if isinstance(detail, list) and detail and all(item.get("loc") and item.get("msg") for item in detail):
        return None  # FastAPI's validation errors: which field, and what is wrong with it
    return f"{response.status_code} without an actionable detail: {response.text[:200]}"


@pytest.mark.parametrize("caller", CALLERS)
def test_no_server_errors_and_every_refusal_says_what_to_do(make_quota_app, caller):
    schema = schemathesis.openapi.from_asgi("/openapi.json", make_quota_app())
    headers = {"Authorization": f"token {CALLERS[caller]}"}
    problems: dict[str, str] = {}

    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                      suppress_health_check=list(HealthCheck))
            def call(case):
                response = case.call(headers=headers)
                problem = problem_with(response)
                if problem:
                    request = response.request
                    problems.setdefault(operation.label, f"{problem}\n    after {request.method} {request.url}")

            try:
                call()
            except Unsatisfiable:
                assert mode == GenerationMode.NEGATIVE  # nothing to get wrong (no parameters, no body)
    assert problems == {}, "\n".join(f"{label}: {problem}" for label, problem in problems.items())


# Valid by the schema's letter but outside what its generators produce (date-times there always carry a zone).
HAND_PICKED = [
    ("GET", "/api/usage/report", {"params": {"since": "2026-09-01T00:00:00"}}),
    ("GET", "/api/usage/report", {"params": {"until": "2026-09-01"}}),
    ("POST", "/api/reservations", {"json": {"pool": "uni-a", "school": "c01", "units": 1,
                                            "starts_at": "2026-09-01T08:00:00", "ends_at": "2026-09-01T09:00:00"}}),
    ("DELETE", "/api/leases/by-key/%2F", {}),
]


def test_hand_picked_requests_get_an_actionable_answer(make_quota_app):
    from fastapi.testclient import TestClient

    with TestClient(make_quota_app(), headers={"Authorization": f"token {TOKEN}"}, raise_server_exceptions=False) as client:
        problems = [f"{method} {path} {options}: {problem}" for method, path, options in HAND_PICKED
                    if (problem := problem_with(client.request(method, path, **options)))]
    assert problems == []


# Inputs below what the OpenAPI schema can describe: header bytes, and JSON that only a lax parser reads.
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(st.characters(codec=None, exclude_categories=())),  # lone surrogates included
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
FIELDS = {"user": "c01-s1", "school": "c01", "profile": "cpu"}


def test_tokens_of_any_bytes_and_json_of_any_value_get_a_4xx(make_quota_app):
    """Any bytes as a token (header or cookie), and any JSON value (NaN, Infinity, lone
    surrogates, huge integers) in any field of a lease request or a tier change."""
    from fastapi.testclient import TestClient

    problems: list[str] = []
    with TestClient(make_quota_app(lease_requests_per_minute=0), raise_server_exceptions=False) as client:

        @given(token=st.binary(min_size=1, max_size=60).filter(lambda b: not set(b) & set(b"\r\n\0")),
               as_cookie=st.booleans())
        @settings(max_examples=150, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        def any_token(token, as_cookie):
            headers = {"Cookie": b"gpu-commons-quota-token=" + token} if as_cookie else {"Authorization": b"token " + token}
            problem = problem_with(client.get("/api/leases", headers=headers))
            if problem:
                problems.append(f"token {token!r}: {problem}")

        @given(field=st.sampled_from([*FIELDS, "idempotency_key", "weight", "budget_gpu_hours"]), value=JSON_VALUES)
        @settings(max_examples=300, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        def any_value(field, value):
            body = json.dumps({**FIELDS, field: value}, allow_nan=True).encode()  # ASCII: surrogates as \\udxxx
            for token, method, path in ((TOKEN, "POST", "/api/leases"), ("tok-staff-admin", "PATCH", "/api/tiers/county")):
                answer = client.request(method, path, content=body, headers={
                    "Authorization": f"token {token}", "Content-Type": "application/json"})
                problem = problem_with(answer)
                if problem:
                    problems.append(f"{method} {path} {body[:120]!r}: {problem}")

        any_token()
        any_value()
    assert problems == [], "\n".join(problems[:10])
