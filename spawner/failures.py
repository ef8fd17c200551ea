"""Why a workspace did not start, in words a student can act on, the same on every backend.

Each backend reads its own errors (Docker API answers, pod status and events) into one of a
few kinds; the student then reads what happened to their booking and files and what to do.
The technical detail goes to the hub log, not to the student.
"""

from __future__ import annotations

from typing import Literal

from gpu_commons_i18n import Message, _
from spawner.quota import SpawnRefused

FailureKind = Literal["pool", "image", "device", "volume", "unschedulable", "config"]

_RELEASED = _("Your GPU booking was released, so nothing is held for you.")


class WorkspaceFailed(SpawnRefused):
    """The backend could not start the workspace; ``str()`` is the student's message."""

    def __init__(self, kind: FailureKind, *, pool: str, image: str = "", device: str = "", detail: str = ""):
        self.kind = kind
        self.detail = detail
        self.device = device  # for the hub log only
        super().__init__(student_message(kind, pool=pool, image=image, device=device, detail=detail))


def student_message(kind: FailureKind, *, pool: str, image: str = "", device: str = "", detail: str = "") -> Message:
    """The student's sentence (a catalogue message: English as a str, rendered in their language)."""
    if kind == "pool":
        return _("The computers of pool '{pool}' cannot be reached right now, so your workspace did not start. "
                 "{released} Please try again in a few minutes; if it keeps happening, tell your teacher.",
                 pool=pool, released=_RELEASED)
    if kind == "image":
        return _("The workspace software ('{image}') is not available on pool '{pool}', so your workspace did not "
                 "start. {released} Please tell your teacher: the pool's operator has to install that image.",
                 image=image, pool=pool, released=_RELEASED)
    if kind == "device":
        # No device id for the student (the hub log has it, with the detail).
        return _("The GPU assigned to you on pool '{pool}' is not available any more. {released} "
                 "Please start again: you will get another GPU, or a place in the queue.",
                 pool=pool, released=_RELEASED)
    if kind == "volume":
        return _("Your home folder could not be attached on pool '{pool}', so your workspace did not start. Your "
                 "saved files are untouched. {released} Please tell your teacher.", pool=pool, released=_RELEASED)
    if kind == "unschedulable":
        return _("No computer of pool '{pool}' can take your workspace right now. {released} "
                 "Please try again in a few minutes; if it keeps happening, tell your teacher.",
                 pool=pool, released=_RELEASED)
    return _("Your workspace on pool '{pool}' could not be set up. {released} "
             "Please try again; if it keeps happening, tell your teacher.", pool=pool, released=_RELEASED)


def docker_failure_kind(message: str) -> FailureKind | None:
    """The kind of a Docker engine error, from its message; None if it is none of ours.
    Volume and device errors come first: their messages may quote a refused connection."""
    text = message.lower()
    for kind, needles in _DOCKER_NEEDLES:
        if any(needle in text for needle in needles):
            return kind
    return None


_DOCKER_NEEDLES: list[tuple[FailureKind, tuple[str, ...]]] = [
    ("volume", ("error while mounting volume", "failed to mount local volume", "error while creating mount",
                "volumedriver.mount")),
    ("device", ("could not select device driver", "unknown device", "device error", "nvidia-container-cli")),
    ("image", ("pull access denied", "no such image", "manifest unknown", "repository does not exist",
               "invalid reference format")),
    ("pool", ("error while fetching server api version", "connection refused", "connection aborted",
              "read timed out", "name or service not known", "max retries exceeded")),
]
