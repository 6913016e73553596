"""Request and response models of the HTTP API (pydantic); they are also the OpenAPI schema at /docs.

Responses of the hot path are encoded with orjson straight from dicts shaped like these models (no
pydantic round trip per request); the models document them and validate every request body.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

MAX_K = 100
MAX_CONTEXT_IDS = 200
Reason = Literal["personalized", "cold_start_popular", "category_popular", "session_similar", "exploration"]
Variant = Literal["champion", "challenger", "fallback"]
FeedbackEventType = Literal["impression", "click", "cart", "purchase"]


class RecommendRequest(BaseModel):
    """Body of ``POST /recommend``: the user, how many items, and what the user is looking at now."""

    model_config = ConfigDict(extra="forbid")

    user_id: int = Field(ge=0, le=2**63 - 1, description="Shop's user id; unknown users get the cold-start path.")
    k: int = Field(10, ge=1, le=MAX_K, description="Number of items to return (1..100).")
    session_product_ids: list[int] = Field(
        default_factory=list,
        max_length=MAX_CONTEXT_IDS,
        description="Products viewed in the current session, newest first.",
    )
    category_id: int | None = Field(None, ge=-1, le=2**63 - 1, description="Category the user is browsing.")
    exclude_product_ids: list[int] = Field(
        default_factory=list, max_length=MAX_CONTEXT_IDS, description="Products that must not be returned."
    )


class RecommendedItemOut(BaseModel):
    product_id: int
    score: float = Field(description="Ranking score of the path that chose the item (higher is better).")
    reason: Reason = Field(description="Which path chose the item.")


class RecommendResponse(BaseModel):
    recommendation_id: str = Field(description="Quote it in /feedback events to attribute them to this list.")
    user_id: int
    model_version: str | None = Field(description="Ranker version that scored the list (None for fallback).")
    variant: Variant
    degraded: bool = Field(description="True when a dependency failed and the list came from a fallback.")
    items: list[RecommendedItemOut]


class FeedbackEvent(BaseModel):
    """One user reaction to a recommended item."""

    model_config = ConfigDict(extra="forbid")

    event_id: str = Field(min_length=1, max_length=128, description="Client-made unique id; repeats are ignored.")
    user_id: int = Field(ge=0, le=2**63 - 1)
    product_id: int = Field(ge=0, le=2**63 - 1)
    event_type: FeedbackEventType
    recommendation_id: str | None = Field(None, max_length=128, description="From the /recommend response.")
    timestamp: datetime | None = Field(None, description="When it happened (ISO 8601); default: when received.")


class FeedbackResult(BaseModel):
    event_id: str
    status: Literal["stored", "duplicate"]


class FeedbackResponse(BaseModel):
    stored: int = Field(description="Events written durably by this request.")
    duplicates: int = Field(description="Events whose event_id had been stored before (not written again).")
    results: list[FeedbackResult]


class HealthResponse(BaseModel):
    status: Literal["ok", "not_ready"]
    checks: dict[str, bool] = Field(default_factory=dict)


class ModelSlot(BaseModel):
    version: str | None
    source: str | None = Field(None, description="Where it was loaded from (registry alias, cache, local folder).")
    loaded_at: datetime | None = None


class ModelInfoResponse(BaseModel):
    champion: ModelSlot
    challenger: ModelSlot
    canary_weight: float
    shadow_enabled: bool
    feature_freshness_seconds: float | None = Field(description="Age of the in-process product features.")
    products_cached: int
    feature_store_breaker_open: bool


class CanaryRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    weight: float = Field(ge=0.0, le=1.0, allow_inf_nan=False, description="Share of users sent to the challenger.")


class ShadowRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    enabled: bool


class AdminStateResponse(BaseModel):
    canary_weight: float
    shadow_enabled: bool
    champion_version: str | None
    challenger_version: str | None


class ReloadResponse(BaseModel):
    champion_version: str | None
    challenger_version: str | None
    changed: list[str] = Field(description="Variants whose model version changed.")
    errors: list[str] = Field(default_factory=list, description="Aliases that failed to load (old model kept).")


class ErrorDetail(BaseModel):
    loc: list[str | int] = Field(default_factory=list)
    msg: str
    type: str


class ErrorResponse(BaseModel):
    """Every 4xx/5xx answer: one clear line in ``detail`` (plus per-field ``errors`` for 422)."""

    detail: str
    errors: list[ErrorDetail] = Field(default_factory=list)
