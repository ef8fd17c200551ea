"""The alliance as data: tiers, GPU pools, profiles, schools and their people.

One YAML file describes an alliance. The hub (groups, accounts, the profile form),
the quota service (inventory, profiles, tiers) and the simulator all read it through
:func:`load_alliance`, so a mistake in the file is reported the same way everywhere:
the file, the field and what to write instead.

Minimal form (what the simulator needs)::

    tiers: {county: {weight: 2}, urban: {weight: 1}}
    pools: [{id: uni-a, gpus: 8}]
    schools: [{id: c01, tier: county}, {id: u01, tier: urban}]
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

ID_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"
_ID_HELP = "use lower-case letters, digits and '-', starting with a letter or digit"


class AllianceError(ValueError):
    """A mistake in an alliance file, phrased for the operator who wrote it."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Tier(_Strict):
    weight: float = Field(1.0, gt=0, description="Fair-share weight of every school in this tier (> 0).")
    description: str = ""


class Pool(_Strict):
    """GPU capacity on one university server or cluster."""

    id: str = Field(pattern=ID_PATTERN)
    name: str = ""
    gpus: int = Field(ge=0, description="Number of physical GPUs in the pool.")
    sliced_gpus: int = Field(
        0, ge=0, description="How many of the GPUs are partitioned into slices (MIG); the last ones are."
    )
    slices_per_gpu: int = Field(2, ge=1, le=7, description="Slices on each sliced GPU.")
    gpu_model: str = "simulated GPU"
    simulated: bool = Field(
        True,
        description="True when the inventory is declared here rather than read from NVML on the GPU server.",
    )

    @model_validator(mode="after")
    def _sliced_within_gpus(self) -> "Pool":
        if self.sliced_gpus > self.gpus:
            raise ValueError(
                f"sliced_gpus ({self.sliced_gpus}) is larger than gpus ({self.gpus}); "
                "set sliced_gpus to at most gpus"
            )
        return self


class Profile(_Strict):
    """A choice on the spawn form: what kind of GPU share the workspace gets."""

    id: str = Field(pattern=ID_PATTERN)
    display_name: str
    description: str = ""
    gpu: Literal["none", "slice", "whole"] = "none"
    max_minutes: float = Field(60, gt=0, description="Length of a lease before the workspace is stopped.")
    cpu_limit: float | None = Field(None, gt=0)
    mem_limit: str | None = None


class School(_Strict):
    id: str = Field(pattern=ID_PATTERN)
    name: str = ""
    tier: str
    weight: float | None = Field(None, gt=0, description="Overrides the tier's weight for this school.")
    students: list[str] = []
    teachers: list[str] = []


class Alliance(_Strict):
    name: str = "GPU alliance"
    tiers: dict[str, Tier]
    pools: list[Pool]
    profiles: list[Profile] = []
    schools: list[School]
    staff: list[str] = Field([], description="Alliance staff accounts: set quotas, read all usage.")

    @field_validator("tiers")
    @classmethod
    def _tier_names(cls, tiers: dict[str, Tier]) -> dict[str, Tier]:
        for name in tiers:
            if not re.match(ID_PATTERN, name):
                raise ValueError(f"tier name {name!r} is not valid: {_ID_HELP}")
        return tiers

    @model_validator(mode="after")
    def _cross_references(self) -> "Alliance":
        _unique("pools", [p.id for p in self.pools])
        _unique("profiles", [p.id for p in self.profiles])
        _unique("schools", [s.id for s in self.schools])
        for index, school in enumerate(self.schools):
            if school.tier not in self.tiers:
                raise ValueError(
                    f"schools[{index}] ({school.id}) has tier {school.tier!r}, which is not under 'tiers'; "
                    f"use one of {sorted(self.tiers)} or add it to 'tiers'"
                )
        seen: dict[str, str] = {}
        for school in self.schools:
            for account in [*school.students, *school.teachers]:
                _check_account(account)
                if account in seen:
                    raise ValueError(
                        f"account {account!r} is listed in both school {seen[account]!r} and {school.id!r}; "
                        "an account belongs to one school"
                    )
                seen[account] = school.id
        for account in self.staff:
            _check_account(account)
        return self

    # -- lookups used by the hub and the service -------------------------------------

    def school(self, school_id: str) -> School:
        for school in self.schools:
            if school.id == school_id:
                return school
        raise KeyError(school_id)

    def profile(self, profile_id: str) -> Profile:
        for profile in self.profiles:
            if profile.id == profile_id:
                return profile
        raise KeyError(profile_id)

    def school_of(self, account: str) -> School | None:
        for school in self.schools:
            if account in school.students or account in school.teachers:
                return school
        return None

    def weight_of(self, school: School) -> float:
        return school.weight if school.weight is not None else self.tiers[school.tier].weight

    def accounts(self) -> dict[str, str]:
        """Every account with its role: student, teacher or staff."""
        roles: dict[str, str] = {}
        for school in self.schools:
            roles.update({name: "student" for name in school.students})
            roles.update({name: "teacher" for name in school.teachers})
        roles.update({name: "staff" for name in self.staff})
        return roles


def _unique(what: str, ids: list[str]) -> None:
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise ValueError(f"{what} has duplicate id(s) {duplicates}; give each entry its own id")


def _check_account(name: str) -> None:
    if not re.match(ID_PATTERN, name):
        raise ValueError(f"account name {name!r} is not valid: {_ID_HELP}")


def parse_alliance(data: object, source: str = "<alliance>") -> Alliance:
    """Validate already-parsed YAML; errors name ``source`` and the field path."""
    if not isinstance(data, dict):
        raise AllianceError(f"{source}: the file must be a YAML mapping with tiers, pools and schools")
    try:
        return Alliance.model_validate(data)
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            location = ".".join(str(part) for part in error["loc"]) or "(top level)"
            message = error["msg"].removeprefix("Value error, ")
            if error["type"] == "extra_forbidden":
                message = "is not a known field; check its spelling or remove it"
            elif error["type"] == "missing":
                message = "is required"
            lines.append(f"{source}: {location}: {message}")
        raise AllianceError("\n".join(lines)) from None


def load_alliance(path: str | Path) -> Alliance:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise AllianceError(f"{path}: cannot read the alliance file ({exc.strerror})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise AllianceError(f"{path}:{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    return parse_alliance(data, str(path))
