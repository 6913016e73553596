"""``POST /admin/canary|shadow|reload|products``: the operator's levers, behind the bearer token.

The request-limits middleware already refuses a bad token before the body is read; the dependency here
documents the scheme in OpenAPI and keeps the check if the app is mounted without that middleware.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException

from zadanie4.api.errors import ADMIN_ERROR_RESPONSES, error_response, json_response
from zadanie4.api.request_limits import admin_authorized
from zadanie4.api.schemas import (
    AdminStateResponse,
    CanaryRequest,
    ProductsRequest,
    ProductsResponse,
    ReloadResponse,
    ShadowRequest,
)
from zadanie4.service import ServiceRuntime
from zadanie4.settings import ServeSettings


def admin_router(runtime: ServiceRuntime, settings: ServeSettings) -> APIRouter:
    bearer = HTTPBearer(auto_error=False, description="The admin token (RECSYS_SERVE_ADMIN_TOKEN).")
    admin_token = settings.admin_token.get_secret_value().encode() if settings.admin_token else None

    def require_admin(request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
        if not admin_authorized(request.scope, admin_token):
            raise StarletteHTTPException(
                401, "missing or invalid admin bearer token", headers={"WWW-Authenticate": "Bearer"}
            )

    router = APIRouter(tags=["admin"], dependencies=[Depends(require_admin)], responses=ADMIN_ERROR_RESPONSES)

    def admin_state() -> Response:
        snapshot = runtime.state.snapshot
        return json_response(
            {
                "canary_weight": snapshot.canary_weight,
                "shadow_enabled": snapshot.shadow_enabled,
                "champion_version": snapshot.champion.version if snapshot.champion else None,
                "challenger_version": snapshot.challenger.version if snapshot.challenger else None,
            }
        )

    @router.post("/admin/canary", response_model=AdminStateResponse)
    async def admin_canary(body: CanaryRequest) -> Response:
        """Set the share of users (0..1) served by the challenger; sticky per user. ``challenger``:
        ``popularity`` serves those users the popularity list (A/B control), ``registry`` the alias."""
        await runtime.rollout.set_canary_weight(body.weight, body.challenger)
        return admin_state()

    @router.post("/admin/products", response_model=ProductsResponse)
    async def admin_products(body: ProductsRequest) -> Response:
        """Announce products released since the last feature build (the shop's catalogue feed): they
        enter the new-product exploration pool at once, before any feature row exists for them."""
        pool = runtime.announce_products([(p.product_id, p.category_id, p.price) for p in body.products])
        return json_response({"announced": len(body.products), "exploration_pool": pool})

    @router.post("/admin/shadow", response_model=AdminStateResponse)
    async def admin_shadow(body: ShadowRequest) -> Response:
        """Turn shadow scoring of champion requests by the challenger on or off."""
        await runtime.rollout.set_shadow_enabled(body.enabled)
        return admin_state()

    @router.post(
        "/admin/reload",
        response_model=ReloadResponse,
        responses={502: {"model": ReloadResponse, "description": "An alias failed to load; the old model is kept."}},
    )
    async def admin_reload() -> Response:
        """Load the registry aliases again and swap them in without dropping requests."""
        try:
            result = await runtime.rollout.reload()
        except RuntimeError as exc:
            return error_response(503, str(exc), retry_after=True)
        payload = {
            "champion_version": result.champion_version,
            "challenger_version": result.challenger_version,
            "changed": result.changed,
            "errors": result.errors,
        }
        return json_response(payload, 502 if result.errors else 200)

    return router
