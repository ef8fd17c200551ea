"""Turn the service's own errors into HTTP answers that name the field and the fix."""

from __future__ import annotations

import contextlib

from fastapi import HTTPException, status

from quota.errors import InvalidField, NotFound


@contextlib.contextmanager
def translated():
    try:
        yield
    except InvalidField as exc:
        raise HTTPException(422, str(exc)) from None
    except NotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
