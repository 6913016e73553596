"""Request and response models of the HTTP API (pydantic); they are also the OpenAPI schema at /docs.

Responses of the hot path are encoded with orjson straight from dicts shaped like these models (no
pydantic round trip per request); the models document them and validate every request body.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

MAX_K = 100
MAX_CONTEXT_IDS = 200
MAX_ID = 9 * 10**18
"""Largest id accepted (fits int64). Not 2**63 - 1: readers that parse JSON numbers as doubles (JavaScript,
schema tools) round that to 2**63 and disagree on the bound; 9e18 is exact in binary floating point."""


def _json_integer(value: Any) -> Any:
    """JSON Schema's ``integer``: 5 and 5.0 are integers; true, "5" and 5.5 are not.

    Pydantic's lax mode would accept true and "5" (the schema rejects them); its strict mode would
    reject 5.0 (the schema accepts it). The service accepts exactly what its OpenAPI schema says.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PydanticCustomError("int_type", "Input should be a valid integer")
    if isinstance(value, float):
        if not value.is_integer():
            raise PydanticCustomError("int_from_float", "Input should be a valid integer, got a number with a fraction")
        return int(value)
    return value


_JSON_INTEGER = BeforeValidator(_json_integer)
StrictId = Annotated[int, Field(ge=0, le=MAX_ID), _JSON_INTEGER]
"""A user or product id in a JSON body: an integer 0..9e18 (int64), read as JSON Schema does."""
# RFC 3339 date-time, the `format: date-time` of the OpenAPI schema: a naive time ("2026-11-28T15:48:02")
# would be read in an unknown zone, so an offset (Z or +hh:mm) is required.
RFC3339_DATETIME = re.compile(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})")
MAX_LISTED_UNKNOWN = 5


class RequestBody(BaseModel):
    """Base of the request bodies: unknown fields are refused (a typo must not pass silently), with ONE
    error per object listing them.

    Pydantic's ``extra="forbid"`` reports one error per unknown key, and building those errors is the
    cost: a 0.9 MB body of 80,000 keys kept the event loop busy for 1-2 s before its 422 (measured by
    the input-limits scenario, zadanie4/evaluation/reliability). Checking the keys first bounds the errors of a
    body by its number of objects.
    """

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _refuse_unknown_fields(cls, data: Any) -> Any:
        if isinstance(data, dict):
            known = cls.model_fields  # a property: read once, not per key
            unknown = [key for key in data if key not in known]
            if unknown:
                shown = ", ".join(repr(str(key)[:40]) for key in unknown[:MAX_LISTED_UNKNOWN])
                more = f" (+{len(unknown) - MAX_LISTED_UNKNOWN} more)" if len(unknown) > MAX_LISTED_UNKNOWN else ""
                raise PydanticCustomError(
                    "extra_forbidden",
                    "unknown field(s) {fields}; allowed: {allowed}",
                    {"fields": shown + more, "allowed": ", ".join(known)},
                )
        return data


Reason = Literal["personalized", "cold_start_popular", "category_popular", "session_similar", "exploration"]
Variant = Literal["champion", "challenger", "fallback"]
FeedbackEventType = Literal["impression", "click", "cart", "purchase"]


class RecommendRequest(RequestBody):
    """Body of ``POST /recommend``: the user, how many items, and what the user is looking at now."""

    user_id: StrictId = Field(description="Shop's user id; unknown users get the cold-start path.")
    k: Annotated[int, Field(ge=1, le=MAX_K), _JSON_INTEGER] = Field(
        10, description="Number of items to return (1..100)."
    )
    session_product_ids: list[StrictId] = Field(
        default_factory=list,
        max_length=MAX_CONTEXT_IDS,
        description="Products viewed in the current session, newest first.",
    )
    category_id: Annotated[int, Field(ge=-1, le=MAX_ID), _JSON_INTEGER] | None = Field(
        None, description="Category the user is browsing."
    )
    exclude_product_ids: list[StrictId] = Field(
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


class FeedbackEvent(RequestBody):
    """One user reaction to a recommended item."""

    event_id: str = Field(min_length=1, max_length=128, description="Client-made unique id; repeats are ignored.")
    user_id: StrictId
    product_id: StrictId
    event_type: FeedbackEventType
    recommendation_id: str | None = Field(None, max_length=128, description="From the /recommend response.")
    timestamp: datetime | None = Field(
        None,
        description="When it happened, RFC 3339 with an offset (e.g. 2026-11-28T15:48:02Z); default: when received.",
    )

    @field_validator("timestamp", mode="before")
    @classmethod
    def _rfc3339_with_offset(cls, value: Any) -> Any:
        if value is None or isinstance(value, datetime):
            return value
        if not isinstance(value, str) or not RFC3339_DATETIME.fullmatch(value):
            raise ValueError("timestamp must be an RFC 3339 date-time with an offset, e.g. 2026-11-28T15:48:02Z")
        return value


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
    scorer: str | None = Field(
        None, description="How the ranker is evaluated: compiled | compiling | lightgbm | failed: <reason>."
    )


class ModelInfoResponse(BaseModel):
    champion: ModelSlot
    challenger: ModelSlot
    canary_weight: float
    shadow_enabled: bool
    feature_freshness_seconds: float | None = Field(description="Age of the in-process product features.")
    products_cached: int
    feature_store_breaker_open: bool


class CanaryRequest(RequestBody):
    weight: float = Field(
        strict=True, ge=0.0, le=1.0, allow_inf_nan=False, description="Share of users sent to the challenger."
    )
    challenger: Literal["registry", "popularity"] | None = Field(
        None,
        description=(
            "What serves the challenger's users: the registry's challenger alias, or the popularity list "
            "(the control arm of an A/B test). Omitted: unchanged."
        ),
    )


class AnnouncedProduct(RequestBody):
    """A product released after the last feature build (the ranker has no features for it yet)."""

    product_id: StrictId
    category_id: Annotated[int, Field(ge=0, le=MAX_ID), _JSON_INTEGER] = Field(description="Its leaf category.")
    price: float | None = Field(None, gt=0, allow_inf_nan=False, description="Current price, if known.")


class ProductsRequest(RequestBody):
    """Body of ``POST /admin/products``: the shop's catalogue feed of newly released products."""

    products: list[AnnouncedProduct] = Field(min_length=1, max_length=1000)


class ProductsResponse(BaseModel):
    announced: int = Field(description="Products in this request.")
    exploration_pool: int = Field(description="New products the exploration slots now choose from.")


class ShadowRequest(RequestBody):
    enabled: bool = Field(strict=True)


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
