"""Errors the quota service answers with a 4xx; each names the field and the fix."""

from __future__ import annotations


class InvalidField(ValueError):
    """A request names something that does not exist or is out of range (answered 422)."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class NotFound(LookupError):
    """The thing asked for does not exist (answered 404)."""
