"""FastAPI dependencies: the token check and the app's LeaseBook."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status

from quota.leases import LeaseBook


def require_token(request: Request) -> None:
    """Every /api route but health needs the service token."""
    expected = request.app.state.settings.api_token
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() not in ("token", "bearer") or not hmac.compare_digest(token.strip(), expected):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "Missing or wrong token: send the header 'Authorization: token <the quota service API token>'.",
        )


def get_book(request: Request) -> LeaseBook:
    return request.app.state.book


Book = Annotated[LeaseBook, Depends(get_book)]
Authorized = [Depends(require_token)]
