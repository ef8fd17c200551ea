"""Liveness and the Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from quota.schemas import Health

router = APIRouter(tags=["health"])


@router.get("/api/health", response_model=Health)
def health() -> Health:
    """Answers while the service runs; needs no token."""
    return Health(status="ok")


@router.get("/metrics", response_class=Response)
def metrics(request: Request) -> Response:
    """Prometheus metrics (text exposition format); needs no token."""
    return Response(generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
