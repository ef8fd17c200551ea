"""The quota API documents itself: every route, parameter and field has a description
(the OpenAPI served at /docs is the reference, so it cannot drift from the code)."""

from __future__ import annotations


def undocumented(spec: dict) -> list[str]:
    missing = []
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            if not operation.get("description"):
                missing.append(f"route {method.upper()} {path}")
            for parameter in operation.get("parameters", []):
                if not (parameter.get("description") or parameter.get("schema", {}).get("description")):
                    missing.append(f"parameter {parameter['name']} of {method.upper()} {path}")
    for name, schema in spec["components"]["schemas"].items():
        if name in ("HTTPValidationError", "ValidationError"):
            continue  # FastAPI's own
        for field, field_schema in schema.get("properties", {}).items():
            if not field_schema.get("description"):
                missing.append(f"field {name}.{field}")
    return missing


def test_every_route_parameter_and_field_is_described(quota_client):
    spec = quota_client.get("/openapi.json").json()
    assert len(spec["paths"]) >= 15
    assert undocumented(spec) == []
