"""``POST /feedback``: impressions, clicks, carts and purchases, one event or a list, stored durably."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body
from fastapi.responses import Response
from pydantic import Field

from zadanie4.api.errors import ERROR_RESPONSES, error_response, json_response
from zadanie4.api.schemas import FeedbackEvent, FeedbackResponse
from zadanie4.feedback.feedback_recorder import FeedbackUnavailable, feedback_records
from zadanie4.service import ServiceRuntime
from zadanie4.settings import ServeSettings


def feedback_router(runtime: ServiceRuntime, settings: ServeSettings) -> APIRouter:
    router = APIRouter(tags=["feedback"])

    async def feedback(body: Any) -> Response:
        """Idempotent by ``event_id``: a repeated id is acknowledged as ``duplicate`` and not stored twice.
        A 200 means every event of the request is durably written; on 503 nothing was, retry."""
        events = body if isinstance(body, list) else [body]
        if not events:
            return error_response(422, "body: the list of events is empty")
        if len(events) > settings.max_feedback_batch:
            return error_response(
                422, f"body: at most {settings.max_feedback_batch} events per request, got {len(events)}"
            )
        records = feedback_records([e.model_dump() for e in events])
        try:
            outcome = await runtime.feedback.record(records)
        except FeedbackUnavailable as exc:
            return error_response(503, f"{exc}; nothing was stored, retry", retry_after=True)
        return json_response(
            {
                "stored": outcome.stored,
                "duplicates": outcome.duplicates,
                "results": [
                    {"event_id": eid, "status": "stored" if new else "duplicate"} for eid, new in outcome.results
                ],
            }
        )

    # The batch limit is a setting, so the body type (one event, or a list of 1..max_feedback_batch) is
    # built here and documented in the OpenAPI schema as such. Annotations of this module are strings
    # resolved against its globals, hence the explicit assignment of the closure's type.
    feedback.__annotations__["body"] = Annotated[
        FeedbackEvent | Annotated[list[FeedbackEvent], Field(min_length=1, max_length=settings.max_feedback_batch)],
        Body(),
    ]
    router.post(
        "/feedback",
        response_model=FeedbackResponse,
        responses=ERROR_RESPONSES,
        summary="Store impressions, clicks, carts, purchases (one event or a list)",
    )(feedback)
    return router
