"""The chart rendered offline (helm-python-sdk, no cluster): ``rendered(extra)`` renders
helm/gpu-commons with its default values updated by ``extra`` (one level deep: a key's dict is
merged, ``pools`` replaced) as release ``gc`` in namespace ``schools``; ``find`` picks objects."""

from __future__ import annotations

import copy
from pathlib import Path

import yaml
from helm_python.chart import Chart

CHART = Path(__file__).resolve().parent.parent / "helm" / "gpu-commons"


def values(extra: dict | None = None) -> dict:
    merged = copy.deepcopy(Chart.load(str(CHART)).values)
    for key, value in (extra or {}).items():
        if isinstance(value, dict) and key != "pools":
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged


def rendered(extra: dict | None = None) -> list[dict]:
    files = Chart.load(str(CHART)).render(values(extra), name="gc", namespace="schools", is_install=True)
    return [doc for name, text in files.items() if name.endswith(".yaml") for doc in yaml.safe_load_all(text) if doc]


def find(objects: list[dict], kind: str, suffix: str = "") -> list[dict]:
    return [o for o in objects if o["kind"] == kind and o["metadata"]["name"].endswith(suffix)]
