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


@router.get("/api/ready", response_model=Health, responses={503: {"description": "A standby, or not started yet."}})
def ready(request: Request, response: Response) -> Health:
    """200 while this process is the writer and its allocator is built (a Kubernetes
    readiness probe); 503 on a standby, which takes over when the writer stops. No token."""
    if not request.app.state.leadership.is_writer():
        response.status_code = 503
        return Health(status="standby")
    return Health(status="ok")


@router.get("/metrics", response_class=Response)
def metrics(request: Request) -> Response:
    """Prometheus metrics (text exposition format); needs no token."""
    return Response(generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
