"""``GET /health/live``, ``GET /health/ready``, ``GET /model`` and ``GET /metrics``: what operators poll."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response

from zadanie4.api.errors import json_response
from zadanie4.api.schemas import HealthResponse, ModelInfoResponse
from zadanie4.observability.prometheus_metrics import ServiceMetrics
from zadanie4.service import ServiceRuntime


def operations_router(runtime: ServiceRuntime, metrics: ServiceMetrics) -> APIRouter:
    router = APIRouter(tags=["operations"])

    @router.get("/health/live", response_model=HealthResponse)
    async def live() -> Response:
        """The process answers (no dependency checked)."""
        return json_response({"status": "ok", "checks": {}})

    @router.get(
        "/health/ready",
        response_model=HealthResponse,
        responses={503: {"model": HealthResponse, "description": "Not ready: a model or the features are missing."}},
    )
    async def ready() -> Response:
        """Ready when a champion model, the product features and the candidate index are loaded."""
        checks = runtime.readiness_checks()
        if runtime.is_ready():
            return json_response({"status": "ok", "checks": checks})
        return json_response({"status": "not_ready", "checks": checks}, 503)

    @router.get("/model", response_model=ModelInfoResponse)
    async def model_info() -> Response:
        """Serving versions, canary weight, shadow flag and the age of the product features."""
        snapshot = runtime.state.snapshot
        products = runtime.products
        age = products.age_seconds() if products is not None else None

        def slot(model: Any, loaded_at: Any) -> dict[str, Any]:
            return {
                "version": model.version if model else None,
                "source": model.source if model else None,
                "loaded_at": loaded_at.isoformat() if loaded_at else None,
                "scorer": runtime.rollout.compiler.status_of(model.ranker) if model and model.ranker else None,
            }

        return json_response(
            {
                "champion": slot(snapshot.champion, snapshot.champion_loaded_at),
                "challenger": slot(snapshot.challenger, snapshot.challenger_loaded_at),
                "canary_weight": snapshot.canary_weight,
                "shadow_enabled": snapshot.shadow_enabled,
                "feature_freshness_seconds": age,
                "products_cached": products.snapshot.n_products if products and products.snapshot else 0,
                "feature_store_breaker_open": bool(runtime.features and runtime.features.breaker.is_open),
            }
        )

    @router.get("/metrics", response_class=Response, summary="Prometheus metrics")
    async def prometheus() -> Response:
        """Prometheus text exposition (see zadanie4/observability/prometheus_metrics.py for every series)."""
        products = runtime.products
        age = products.age_seconds() if products is not None else None
        if age is not None:
            metrics.set_feature_freshness(age)
        if runtime.shadow is not None:
            metrics.set_queue_size("shadow", runtime.shadow.queue_size)
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    return router
