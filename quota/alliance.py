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
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

ID_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"
_ID_HELP = "use lower-case letters, digits and '-', starting with a letter or digit"
# A size as spawner.specs.parse_bytes reads it: 512M, 4G, 4Gi (powers of 1024).
SIZE_PATTERN = r"^(?i)\s*\d+(\.\d+)?\s*([KMGT]i?)?B?\s*$"


class AllianceError(ValueError):
    """A mistake in an alliance file, phrased for the operator who wrote it."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Limits(_Strict):
    """Fair-share limits a tier sets for its schools and a school may override (all optional)."""

    borrowing_limit_gpus: float | None = Field(
        None, ge=0, description="GPUs a school may hold beyond its guaranteed share when they idle; empty = no cap."
    )
    budget_gpu_hours: float | None = Field(
        None, ge=0, description="GPU-hours a school may use per budget period (rolling); empty = unlimited."
    )
    student_budget_gpu_hours: float | None = Field(
        None, ge=0, description="GPU-hours one student may use per budget period (rolling); empty = unlimited."
    )
    max_sessions_per_student: int | None = Field(
        None, ge=1,
        description="GPU workspaces one student may have running or waiting at once; empty = the tier's, else "
        "the alliance's default (fairshare.max_sessions_per_student).",
    )


class Tier(_Limits):
    weight: float = Field(1.0, gt=0, description="Fair-share weight of every school in this tier (> 0).")
    idle_release_minutes: float | None = Field(
        None, gt=0, le=24 * 60,
        description="A GPU workspace of this tier's schools unused for this many minutes while others wait for its "
        "kind of GPU is warned (fairshare.warning_minutes ahead, in JupyterLab) and then released, its files "
        "kept; used means the hub saw the student (last_activity) or the GPU was busy. Empty = never.",
    )
    description: str = ""


class SharedGpus(_Strict):
    """Whole GPUs of a pool shared by several students at once (time-sliced, no MIG), each
    with a cap on the GPU memory their workspace may take."""

    students_per_gpu: int = Field(
        ge=2, le=48, description="Students whose workspaces share one GPU at the same time (2 to 48: CUDA MPS "
        "serves at most 48 clients per GPU)."
    )
    memory_per_student: str = Field(
        pattern=SIZE_PATTERN,
        description="GPU memory of one student's workspace, e.g. 4G; students_per_gpu x this must fit in gpu_memory.",
    )
    gpu_memory: str = Field(
        pattern=SIZE_PATTERN,
        description="Memory of one of the pool's GPUs, e.g. 16G for a V100 16 GB; read from NVML and checked at "
        "start when the pool is not simulated.",
    )
    compute_percent_per_student: int | None = Field(
        None, ge=1, le=100,
        description="Share of the GPU's compute one workspace may use at most (CUDA MPS active-thread percentage, "
        "HAMi gpucores); empty = no compute cap (students take turns on the whole GPU).",
    )

    @property
    def memory_per_student_mib(self) -> int:
        return size_bytes(self.memory_per_student) // 1024**2

    @model_validator(mode="after")
    def _caps_fit_the_gpu(self) -> "SharedGpus":
        cap, memory = size_bytes(self.memory_per_student), size_bytes(self.gpu_memory)
        if cap * self.students_per_gpu > memory:
            fits = memory // self.students_per_gpu // 1024**2
            raise ValueError(
                f"memory_per_student ({self.memory_per_student}) x students_per_gpu ({self.students_per_gpu}) = "
                f"{_mib(cap * self.students_per_gpu)} is more than gpu_memory ({self.gpu_memory}); set "
                f"memory_per_student to at most {fits}M, or students_per_gpu to at most {max(1, memory // cap)}"
            )
        return self


class Pool(_Strict):
    """GPU capacity on one university server or cluster."""

    id: str = Field(pattern=ID_PATTERN)
    name: str = ""
    gpus: int = Field(ge=0, description="Number of physical GPUs in the pool.")
    sliced_gpus: int = Field(
        0, ge=0, description="How many of the GPUs are partitioned into slices (MIG); the last ones are."
    )
    slices_per_gpu: int = Field(2, ge=1, le=7, description="Slices on each sliced GPU.")
    mig_profile: str = Field(
        "", description="MIG profile of every slice, e.g. 1g.10gb; checked against the hardware at start when the "
        "pool is not simulated; empty = any."
    )
    shared: SharedGpus | None = Field(
        None, description="The pool's whole (not MIG-sliced) GPUs are shared by several students at once; "
        "empty = each is leased whole."
    )
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
        if self.shared is not None and self.sliced_gpus == self.gpus:
            raise ValueError(
                f"shared is set, but all {self.gpus} GPU(s) are MIG-sliced (sliced_gpus), so none is left to share; "
                "lower sliced_gpus or remove shared"
            )
        return self

    @property
    def whole_gpus(self) -> int:
        """GPUs without MIG: leased whole, or shared when ``shared`` is set."""
        return self.gpus - self.sliced_gpus


class Profile(_Strict):
    """A choice on the spawn form: what kind of GPU share the workspace gets."""

    id: str = Field(pattern=ID_PATTERN)
    display_name: str
    description: str = ""
    gpu: Literal["none", "slice", "shared", "whole"] = Field(
        "none", description="none (CPU only), slice (a MIG slice), shared (a share of a GPU that several students use "
        "at once, with a memory cap: a pool's shared) or whole (a GPU)."
    )
    max_minutes: float = Field(60, gt=0, description="Length of a lease before the workspace is stopped.")
    # Limits of one workspace; empty = the hub's setting of the same name (Spawner.cpu_limit, …).
    cpu_limit: float | None = Field(
        None, gt=0, le=1024,
        description="CPU cores the workspace's processes share (a quota, e.g. 2); empty = the hub's.",
    )
    mem_limit: str | None = Field(
        None, pattern=SIZE_PATTERN,
        description="Memory of the workspace, /tmp included, e.g. 4G; past it the kernel ends the workspace's largest "
        "process (a notebook kernel restarts); empty = the hub's.",
    )
    pids_limit: int | None = Field(
        None, ge=64, le=4_194_304,
        description="Processes and threads the workspace may run at once (a fork bomb stops there); "
        "empty = the hub's (1024).",
    )
    tmp_size: str | None = Field(
        None, pattern=SIZE_PATTERN,
        description="Size of the workspace's private /tmp, e.g. 1G (held in memory, so within mem_limit); "
        "empty = the hub's (1G).",
    )
    home_quota: str | None = Field(
        None, pattern=SIZE_PATTERN,
        description="Disk space of the student's home, e.g. 5G (enforced by the local and Kubernetes backends, see "
        "docs/security.md); empty = the hub's (none).",
    )


class SchoolClass(_Strict):
    """A class of a school: its teachers book GPUs for it and read its students' usage."""

    id: str = Field(pattern=ID_PATTERN)
    name: str = ""
    teachers: list[str] = Field([], description="Accounts (teachers of the school) who teach this class.")
    students: list[str] = Field([], description="Accounts (students of the school) in this class.")
    library: list[str] = Field(
        [], description="Ids of library entries attached to this class: each shows in its students' file browser "
        "as ~/datasets/<id> (a link into the read-only library). Always attached; its teachers add more on "
        "their page (docs/library.md).",
    )


SHA256_PATTERN = r"^[0-9a-f]{64}$"


class LibraryText(_Strict):
    """A sentence of the catalogue in both languages of the platform."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    zh_CN: str = Field(alias="zh-CN", min_length=1, description="Simplified Chinese.")
    en: str = Field(min_length=1, description="English.")


class LibraryEntry(_Strict):
    """A dataset or an open model, stored once and mounted read-only in every workspace
    (docs/library.md); ``gpu-commons library add`` puts it in place and checks it."""

    id: str = Field(pattern=ID_PATTERN)
    kind: Literal["dataset", "model"] = "dataset"
    name: LibraryText = Field(description="Its name in the catalogue, zh-CN and en.")
    description: LibraryText = Field(description="What it is and what a class may do with it, zh-CN and en.")
    licence: str = Field(min_length=1, description="Its licence as its authors give it, e.g. BSD-3-Clause, CC-BY-4.0.")
    source: str = Field(min_length=1, description="Where it comes from (a package and its file, a URL), for credit.")
    size_bytes: int = Field(ge=1, description="Its exact size in bytes; checked when it is added.")
    sha256: str = Field(pattern=SHA256_PATTERN, description="SHA-256 of the file (64 lower-case hex digits).")
    path: str = Field(description="Where it lies below the library root, e.g. datasets/iris.csv (no '..').")
    load_with: Literal["pandas", "torch", "transformers", "jieba", "open"] = Field(
        "pandas", description="What the catalogue's snippet loads it with."
    )

    @field_validator("path")
    @classmethod
    def _inside_the_root(cls, path: str) -> str:
        parts = path.split("/")
        if not path or path.startswith("/") or any(part in ("", ".", "..") for part in parts) or "\\" in path:
            raise ValueError(f"path {path!r} must be relative and below the library root, e.g. datasets/iris.csv")
        if parts[0] == CATALOGUE_FILE:
            raise ValueError(f"path {path!r} is the catalogue's own file; pick another name")
        return path


CATALOGUE_FILE = "catalogue.json"  # in the library root, written by `gpu-commons library`


class School(_Limits):
    id: str = Field(pattern=ID_PATTERN)
    name: str = ""
    tier: str
    weight: float | None = Field(None, gt=0, description="Overrides the tier's weight for this school.")
    guaranteed_share: float | None = Field(
        None, gt=0, le=1,
        description="Fraction of the alliance's GPUs guaranteed to this school; empty = derived from the weights.",
    )
    students: list[str] = []
    teachers: list[str] = []
    admins: list[str] = Field([], description="School administrators: the school's leases, usage and reservations.")
    classes: list[SchoolClass] = []


class ClassReservation(_Strict):
    """A teacher's booking: GPU units of one pool held for a school (or one class of it)."""

    id: str = Field(pattern=ID_PATTERN)
    pool: str
    school: str
    group: str | None = Field(None, description="The class (JupyterHub group); empty = the whole school.")
    slices: int = Field(
        ge=1, description="Units held: whole GPUs (students' shares of them on a pool with shared), or MIG slices on a "
        "fully sliced pool."
    )
    start: float = Field(description="Start, in seconds (Unix time; the trace's clock in the simulator).")
    end: float = Field(description="End, in seconds; must be after start.")


class FairShareSettings(_Strict):
    """Knobs of the fair-share allocator (quota.fairshare); every one has a default."""

    half_life_minutes: float = Field(
        10, gt=0, description="Past usage counts half after this long (short: a school's priority follows what it "
        "holds now, as weighted max-min does).")
    entry_penalty_minutes: float = Field(
        10, ge=0, description="Usage charged when a session starts, so a burst cannot take the whole pool."
    )
    min_runtime_minutes: float = Field(10, ge=0, description="A borrowed session runs at least this long.")
    warning_minutes: float = Field(2, ge=0, description="Warning before a borrowed session is stopped.")
    max_lease_minutes: float = Field(240, gt=0, description="A lease is renewed after this only if nobody better waits.")
    lent_lease_minutes: float | None = Field(
        15, gt=0,
        description="A session beyond its school's guaranteed share (borrowed) gets a lease of at most this, told at "
        "admission ('borrowed until HH:MM'), renewed while nobody with a better claim waits, instead of being "
        "stopped with a warning when another school wants its share back; null = full leases and such stops.")
    budget_period_days: float = Field(7, gt=0, description="Rolling window of the GPU-hour budgets.")
    reservation_lead_minutes: float = Field(
        0, ge=0, le=30,
        description="A class reservation holds its units from this long before its start, where no other booking "
        "needs them then, so the platform can start the class's workspaces before the bell (hub/prestart.py); "
        "0 = from its start, and no workspace is started ahead.",
    )
    reservation_release_minutes: float | None = Field(
        10, gt=0,
        description="A class reservation's units that no student of the class holds this long after the lesson "
        "starts go back to the pool for the rest of the lesson (a class smaller than booked, or one that does not "
        "come, leaves no GPU idle); a student of the class who comes later asks like anyone else; null = held to "
        "the end.",
    )
    max_sessions_per_student: int | None = Field(
        1, ge=1,
        description="GPU workspaces one student may have running or waiting at once, where neither the school nor "
        "its tier sets it; null = no cap. The one default of this limit, for the service and the simulator.",
    )


class Alliance(_Strict):
    name: str = "GPU alliance"
    language: Literal["zh-CN", "en"] = Field(
        "zh-CN",
        description="The language of the hub's pages, JupyterLab and every message for a student whose browser "
        "asks for none the platform has (gpu_commons_i18n); each student may switch on any hub page.",
    )
    tiers: dict[str, Tier]
    pools: list[Pool]
    profiles: list[Profile] = []
    schools: list[School]
    staff: list[str] = Field([], description="Alliance staff accounts: set quotas, read all usage.")
    operators: list[str] = Field([], description="University IT accounts: manage pools, read everything.")
    reservations: list[ClassReservation] = []
    fairshare: FairShareSettings = FairShareSettings()
    library: list[LibraryEntry] = Field(
        [], description="Datasets and open models every workspace sees read-only (docs/library.md)."
    )

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
            for account in [*school.students, *school.teachers, *school.admins]:
                _check_account(account)
                if account in seen:
                    raise ValueError(
                        f"account {account!r} is listed in both school {seen[account]!r} and {school.id!r}; "
                        "an account belongs to one school"
                    )
                seen[account] = school.id
        for account in [*self.staff, *self.operators]:
            _check_account(account)
        for school in self.schools:
            _unique(f"classes of school {school.id}", [c.id for c in school.classes])
            for group in school.classes:
                for kind, members, allowed in (
                    ("teachers", group.teachers, school.teachers), ("students", group.students, school.students)
                ):
                    for account in members:
                        if account not in allowed:
                            raise ValueError(
                                f"class {group.id} of school {school.id} lists {account!r} under {kind}, "
                                f"but the school does not; add it to the school's {kind} first"
                            )
        _unique("library", [e.id for e in self.library])
        _unique("library paths", [e.path for e in self.library])
        entries = {e.id for e in self.library}
        for school in self.schools:
            for group in school.classes:
                for entry in group.library:
                    if entry not in entries:
                        raise ValueError(
                            f"class {group.id} of school {school.id} attaches library entry {entry!r}, which is not "
                            f"under 'library'; use one of {sorted(entries) or 'none yet'} or add the entry first"
                        )
        _unique("reservations", [r.id for r in self.reservations])
        pools = {p.id: p for p in self.pools}
        schools = {s.id for s in self.schools}
        for index, res in enumerate(self.reservations):
            where = f"reservations[{index}] ({res.id})"
            if res.pool not in pools:
                raise ValueError(f"{where} names pool {res.pool!r}, which is not under 'pools'; use one of {sorted(pools)}")
            if res.school not in schools:
                raise ValueError(f"{where} names school {res.school!r}, which is not under 'schools'; add it or fix the id")
            units = reservable_units(pools[res.pool])
            if res.slices > units:
                raise ValueError(
                    f"{where}.slices is {res.slices}, more than the {units} unit(s) pool {res.pool} has; "
                    f"reserve at most {units} or add GPUs to the pool"
                )
            if res.end <= res.start:
                raise ValueError(f"{where} ends ({res.end:g}) before it starts ({res.start:g}); swap or fix the times")
        shares = sum(s.guaranteed_share or 0 for s in self.schools)
        if shares > 1 + 1e-9:
            raise ValueError(f"the schools' guaranteed_share values add up to {shares:.3f}; they must total at most 1")
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
            if account in school.students or account in school.teachers or account in school.admins:
                return school
        return None

    def library_entry(self, entry_id: str) -> LibraryEntry:
        for entry in self.library:
            if entry.id == entry_id:
                return entry
        raise KeyError(entry_id)

    def attached_library(self, account: str, attached: Iterable[tuple[str, str, str]] = ()) -> list[LibraryEntry]:
        """The library entries attached to the classes the account is in, in the file's order:
        each class's ``library`` in this file (the seed, always attached) and ``attached``, the
        (school, class, entry) rows teachers added on their page (quota/library_classes.py).
        The one rule for the spawner's ``~/datasets`` links, whoever asks."""
        extra: dict[tuple[str, str], set[str]] = {}
        for school_id, class_id, entry_id in attached:
            extra.setdefault((school_id, class_id), set()).add(entry_id)
        ids = {i for school in self.schools for group in school.classes
               if account in group.students or account in group.teachers
               for i in (*group.library, *extra.get((school.id, group.id), ()))}
        return [entry for entry in self.library if entry.id in ids]

    def classes_of(self, account: str) -> list[str]:
        """``<school>/<class>`` of every class the account studies or teaches in."""
        return [f"{school.id}/{group.id}" for school in self.schools for group in school.classes
                if account in group.students or account in group.teachers]

    def weight_of(self, school: School) -> float:
        return school.weight if school.weight is not None else self.tiers[school.tier].weight

    def limit_of(self, school: School, name: str):
        """A fair-share limit of the school, falling back to its tier's, then (for the
        session cap) the alliance's default; None = unlimited."""
        value = getattr(school, name)
        if value is None:
            value = getattr(self.tiers[school.tier], name)
        return self.default_limit(name) if value is None else value

    def idle_release_s(self, tier: str) -> float | None:
        """Seconds a GPU workspace of the tier's schools may sit unused while others wait (None: no limit)."""
        minutes = self.tiers[tier].idle_release_minutes if tier in self.tiers else None
        return None if minutes is None else minutes * 60

    def default_limit(self, name: str):
        """The alliance's default of a fair-share limit where neither a school nor its tier
        sets it: only the session cap has one (``fairshare.max_sessions_per_student``)."""
        return self.fairshare.max_sessions_per_student if name == "max_sessions_per_student" else None

    def accounts(self) -> dict[str, str]:
        """Every account with its role: student, teacher, school_admin, staff or operator."""
        roles: dict[str, str] = {}
        for school in self.schools:
            roles.update({name: "student" for name in school.students})
            roles.update({name: "teacher" for name in school.teachers})
            roles.update({name: "school_admin" for name in school.admins})
        roles.update({name: "staff" for name in self.staff})
        roles.update({name: "operator" for name in self.operators})
        return roles


def reservable_units(pool: Pool) -> int:
    """Units a reservation on the pool counts in: its whole GPUs (its students' shares of them
    when the pool shares its GPUs), or its MIG slices when every GPU of the pool is sliced."""
    whole = pool.whole_gpus
    if whole and pool.shared is not None:
        return whole * pool.shared.students_per_gpu
    return whole if whole else pool.sliced_gpus * pool.slices_per_gpu


def reservable_kind(pool: Pool) -> str:
    """The kind of unit a reservation on the pool holds, as :func:`reservable_units` counts
    them: ``whole`` (or ``shared`` on a pool that shares its GPUs), else ``slice``."""
    if not pool.whole_gpus:
        return "slice"
    return "shared" if pool.shared is not None else "whole"


def size_bytes(text: str) -> int:
    """A size as the alliance file writes it (512M, 4G, 4Gi: powers of 1024) in bytes."""
    number, unit = re.match(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?\s*$", text, re.IGNORECASE).groups()
    return int(float(number) * 1024 ** " KMGT".index((unit or " ").upper()))


def _mib(num_bytes: int) -> str:
    return f"{num_bytes / 1024**3:g} GiB" if num_bytes % 1024**3 == 0 else f"{num_bytes // 1024**2} MiB"


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
        raise AllianceError("\n".join(f"{source}: {_explain(error, data)}" for error in exc.errors())) from None


_BOUNDS = ("greater_than", "greater_than_equal", "less_than", "less_than_equal")


def _explain(error: dict, data: object) -> str:
    """One pydantic error as the operator needs it: where in the file, what is there, what to write."""
    where = _where(error["loc"], data)
    kind = error["type"]
    message = error["msg"].removeprefix("Value error, ")
    value = error.get("input")
    if kind == "extra_forbidden":
        message = "is not a known field; check its spelling or remove it"
    elif kind == "missing":
        message = "is required; add it"
    elif kind in _BOUNDS:
        message = f"is {value!r}; write a number {message.removeprefix('Input should be ')}"
    elif kind == "string_pattern_mismatch" and (error.get("ctx") or {}).get("pattern") == SIZE_PATTERN:
        message = f"is {value!r}, which is not a size; write e.g. 512M, 4G or 4Gi"
    elif kind == "string_pattern_mismatch":
        message = f"is {value!r}, which is not a valid id; {_ID_HELP}"
    elif message.startswith("Input should be "):
        wanted = message.removeprefix("Input should be ")
        if wanted.startswith("a valid"):  # drop pydantic's ", unable to parse ..." tail
            wanted = wanted.split(",")[0]
        message = f"is {value!r}; write {wanted}"
    return f"{where}: {message}" if where else message


def _where(loc: tuple, data: object) -> str:
    """``schools.0.weight`` -> ``schools[0] (c01).weight``: the path with the ids the file shows."""
    parts: list[str] = []
    node = data
    for part in loc:
        if isinstance(part, int) and parts:
            item = node[part] if isinstance(node, list) and 0 <= part < len(node) else None
            parts[-1] += f"[{part}]"
            if isinstance(item, dict) and item.get("id"):
                parts[-1] += f" ({item['id']})"
            node = item
        else:
            parts.append(str(part))
            node = node.get(part) if isinstance(node, dict) else None
    return ".".join(parts)


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
