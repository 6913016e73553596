"""``GET /recommend`` and ``POST /recommend``: top-k products for a user, with the page context.

Unknown users get the cold-start list. Never 5xx on store trouble: the list then comes from popularity
with ``degraded: true`` (see :mod:`zadanie4.pipeline.recommendation_service`).
"""

from __future__ import annotations

from typing import Annotated

import orjson
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import Field

from zadanie4.api.errors import ERROR_RESPONSES, JSON, error_response
from zadanie4.api.request_limits import VARIANT_SCOPE_KEY
from zadanie4.api.schemas import MAX_CONTEXT_IDS, MAX_ID, MAX_K, RecommendRequest, RecommendResponse
from zadanie4.dependencies import RequestContext
from zadanie4.service import ServiceRuntime

QueryId = Annotated[int, Field(ge=0, le=MAX_ID)]
"""A product id in the query string (text, so not strict like the body's ids): 0..9e18."""


def recommend_router(runtime: ServiceRuntime) -> APIRouter:
    router = APIRouter(tags=["recommendations"])

    async def _recommend(request: Request, user_id: int, k: int, context: RequestContext) -> Response:
        service = runtime.service
        if service is None:
            return error_response(503, "service is starting: models and features are not loaded yet", retry_after=True)
        outcome = await service.recommend(user_id, k, context)
        request.scope[VARIANT_SCOPE_KEY] = outcome.variant
        return Response(orjson.dumps(outcome.payload), media_type=JSON)

    @router.get(
        "/recommend", response_model=RecommendResponse, responses=ERROR_RESPONSES, summary="Top-k products for a user"
    )
    async def recommend_get(
        request: Request,
        user_id: Annotated[int, Query(ge=0, le=MAX_ID, description="Shop's user id.")],
        k: Annotated[int, Query(ge=1, le=MAX_K, description="Number of items, 1..100.")] = 10,
        category_id: Annotated[int | None, Query(ge=-1, le=MAX_ID, description="Category being browsed.")] = None,
        session_product_ids: Annotated[
            list[QueryId], Query(max_length=MAX_CONTEXT_IDS, description="Session products, newest first.")
        ] = [],  # noqa: B006 - FastAPI copies defaults
        exclude_product_ids: Annotated[
            list[QueryId], Query(max_length=MAX_CONTEXT_IDS, description="Products not to return.")
        ] = [],  # noqa: B006
    ) -> Response:
        """Recommendations for ``user_id``; unknown users get the cold-start list. Never 5xx on store
        trouble: the list then comes from popularity with ``degraded: true``."""
        context = RequestContext(tuple(session_product_ids), category_id, tuple(exclude_product_ids))
        return await _recommend(request, user_id, k, context)

    @router.post(
        "/recommend",
        response_model=RecommendResponse,
        responses=ERROR_RESPONSES,
        summary="Top-k products for a user, with the page context",
    )
    async def recommend_post(request: Request, body: RecommendRequest) -> Response:
        """Like GET, with the current session's products, the category page and ids to exclude."""
        context = RequestContext(tuple(body.session_product_ids), body.category_id, tuple(body.exclude_product_ids))
        return await _recommend(request, body.user_id, body.k, context)

    return router
