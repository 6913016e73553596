"""The HTTP layer: ``create_app(settings, ...)`` builds the FastAPI app (nothing happens at import).

Endpoints: ``GET/POST /recommend``, ``POST /feedback``, ``GET /health/live``, ``GET /health/ready``,
``GET /metrics``, ``GET /model`` and the bearer-protected ``POST /admin/canary|shadow|reload``.
Every error is JSON ``{"detail": "<one line>", "errors": [...]}``: 401 admin without a valid token,
413 body over the limit, 422 invalid input (k outside 1..100, malformed JSON, wrong types), 503
while starting / overloaded / feedback store down. /recommend never answers 5xx because of a
dependency: it degrades to the popularity list instead (see request_pipeline.py).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, MutableMapping
from contextlib import asynccontextmanager
from typing import Annotated, Any

import orjson
from fastapi import Body, Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from zadanie4.api_models import (
    MAX_CONTEXT_IDS,
    MAX_ID,
    MAX_K,
    AdminStateResponse,
    CanaryRequest,
    ErrorResponse,
    FeedbackEvent,
    FeedbackResponse,
    HealthResponse,
    ModelInfoResponse,
    ProductsRequest,
    ProductsResponse,
    RecommendRequest,
    RecommendResponse,
    ReloadResponse,
    ShadowRequest,
)
from zadanie4.dependencies import RequestContext, ServiceDependencies
from zadanie4.feedback_log import FeedbackLog
from zadanie4.prometheus_metrics import ServiceMetrics, create_metrics
from zadanie4.request_limits import VARIANT_SCOPE_KEY, EventLoopAdmission, RequestLimitsMiddleware, admin_authorized
from zadanie4.service_runtime import FeedbackUnavailable, ServiceRuntime, feedback_records
from zadanie4.settings import ServeSettings

log = logging.getLogger(__name__)
JSON = "application/json"
FASTAPI_BODY_PARSE_ERROR = "There was an error parsing the body"
QueryId = Annotated[int, Field(ge=0, le=MAX_ID)]
"""A product id in the query string (text, so not strict like the body's ids): 0..9e18."""

_ERRORS: dict[int | str, dict[str, Any]] = {
    413: {"model": ErrorResponse, "description": "Request body over the size limit."},
    422: {"model": ErrorResponse, "description": "Invalid input (clear message in `detail`)."},
    503: {"model": ErrorResponse, "description": "Starting up or overloaded; retry shortly."},
}
_ADMIN_ERRORS: dict[int | str, dict[str, Any]] = {
    **_ERRORS,
    401: {"model": ErrorResponse, "description": "Missing or wrong bearer token (or no token configured)."},
}


def _json(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(payload), status_code=status, media_type=JSON, headers=headers)


def _error(
    status: int, detail: str, errors: list[dict[str, Any]] | None = None, *, retry_after: bool = False
) -> Response:
    headers = {"Retry-After": "1"} if retry_after else None
    return _json({"detail": detail, "errors": errors or []}, status, headers)


_WRONG_SHAPE = frozenset({"list_type", "model_type", "model_attributes_type", "dict_type"})


def _without_union_noise(errors: list[Any], limit: int) -> list[Any]:
    """For a body that is "an object or a list of them", keep only the branch the client meant.

    Pydantic reports both union branches (``FeedbackEvent`` and ``list[FeedbackEvent]``); the branch
    whose error is just "wrong shape" (e.g. "Input should be a valid list" for an object) is dropped,
    and the union tags are removed from the locations. At most ``limit`` errors are returned (a bad
    1 MB body can carry 100,000 errors; rebuilding them all kept the event loop busy for 0.6 s).
    """
    tags = {str(e["loc"][1]) for e in errors if len(e.get("loc", ())) > 1 and str(e["loc"][0]) == "body"}
    union_tags = {t for t in tags if t[:1].isupper() or t.startswith("list[")}
    if len(union_tags) < 2:
        return errors[:limit]
    wrong_shape = {str(e["loc"][1]) for e in errors if len(e["loc"]) == 2 and e.get("type") in _WRONG_SHAPE}
    keep = [e for e in errors if str(e["loc"][1]) not in wrong_shape] or errors
    return [{**e, "loc": ("body", *e["loc"][2:])} if str(e["loc"][1]) in union_tags else e for e in keep[:limit]]


def _validation_message(errors: list[Any]) -> tuple[str, list[dict[str, Any]]]:
    """One readable line plus a compact per-field list (no echo of the input)."""
    compact = []
    parts = []
    for err in _without_union_noise(errors, limit=10):
        loc = [str(x) if not isinstance(x, int) else x for x in err.get("loc", ())]
        msg = str(err.get("msg", "invalid value"))
        if err.get("type") == "json_invalid":
            msg = "request body is not valid JSON"
        elif loc == ["body"] and err.get("type") in ("too_short", "too_long"):  # the /feedback list
            ctx = err.get("ctx") or {}
            msg = (
                "the list of events is empty"
                if err.get("type") == "too_short"
                else f"at most {ctx.get('max_length')} events per request, got {ctx.get('actual_length')}"
            )
        compact.append({"loc": loc, "msg": msg, "type": str(err.get("type", "value_error"))})
        where = ".".join(str(x) for x in loc if x not in ("body", "query")) or "body"
        if err.get("type") == "json_invalid":
            where = f"body (at character {loc[-1]})" if len(loc) > 1 else "body"
        parts.append(f"{where}: {msg}")
    return "; ".join(parts) or "invalid request", compact


def _allowed_methods(app: FastAPI, scope: MutableMapping[str, Any]) -> set[str]:
    """Every method some route serves at this request's path (for the ``Allow`` header of a 405)."""
    methods: set[str] = set()
    for route in app.router.routes:
        match, _ = route.matches({**scope, "method": "GET"})
        route_methods = getattr(route, "methods", None)
        if match is not Match.NONE and route_methods:
            methods.update(route_methods)
    return methods


def create_app(
    settings: ServeSettings,
    *,
    dependencies: ServiceDependencies | None = None,
    dependencies_factory: Callable[[ServeSettings], ServiceDependencies] | None = None,
    feedback_log: FeedbackLog | None = None,
    metrics: ServiceMetrics | None = None,
    freeze_gc: bool = False,
) -> FastAPI:
    """Build the service app. Pass real or fake ``dependencies`` (tests), or a ``dependencies_factory``
    (the CLI passes ``zadanie4.wiring.build_dependencies``) that loads them in the background at startup.
    """
    metrics = metrics or create_metrics()
    runtime = ServiceRuntime(
        settings,
        metrics,
        dependencies=dependencies,
        dependencies_factory=dependencies_factory,
        feedback_log=feedback_log,
        freeze_gc=freeze_gc,
    )

    admission = EventLoopAdmission(settings.max_event_loop_busy) if settings.max_event_loop_busy is not None else None
    if admission is not None:
        metrics.admission_share.set_function(lambda: admission.share)
        metrics.event_loop_busy.set_function(admission.busy)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if admission is not None:
            admission.start()
        await runtime.start()
        try:
            yield
        finally:
            await runtime.stop()
            if admission is not None:
                admission.stop()

    app = FastAPI(
        title="recsys: personalized e-commerce recommendations",
        version="1.0",
        description=(
            "Recommendations with a staged cold-start policy, canary and shadow model variants, durable "
            "feedback and Prometheus metrics. Errors are JSON `{detail, errors}`."
        ),
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    app.state.metrics = metrics
    app.add_middleware(
        RequestLimitsMiddleware,
        max_body_bytes=settings.max_body_bytes,
        max_in_flight=settings.max_concurrency,
        metrics=metrics,
        admin_token=settings.admin_token.get_secret_value() if settings.admin_token else None,
        admission=admission,
    )

    @app.exception_handler(RequestValidationError)
    async def _on_validation_error(request: Request, exc: RequestValidationError) -> Response:
        detail, errors = _validation_message(list(exc.errors()))
        return _error(422, detail, errors)

    @app.exception_handler(StarletteHTTPException)
    async def _on_http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 400 and exc.detail == FASTAPI_BODY_PARSE_ERROR:
            # e.g. JSON nested too deeply for the parser (RecursionError): still the client's bad JSON
            return _error(422, "body: request body could not be parsed as JSON (malformed or nested too deeply)")
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            # Starlette lists only the methods of the first route matching the path; /recommend has two.
            headers["Allow"] = ", ".join(sorted(_allowed_methods(app, request.scope)))
        return _json({"detail": str(exc.detail), "errors": []}, exc.status_code, headers or None)

    @app.exception_handler(Exception)
    async def _on_unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s", request.url.path)
        return _error(500, "internal error")

    bearer = HTTPBearer(auto_error=False, description="The admin token (RECSYS_SERVE_ADMIN_TOKEN).")
    admin_token = settings.admin_token.get_secret_value().encode() if settings.admin_token else None

    def _require_admin(request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
        # The middleware already rejected bad tokens before reading the body; this documents the scheme
        # in OpenAPI and keeps the check if the app is mounted without that middleware.
        if not admin_authorized(request.scope, admin_token):
            raise StarletteHTTPException(
                401, "missing or invalid admin bearer token", headers={"WWW-Authenticate": "Bearer"}
            )

    admin = [Depends(_require_admin)]

    # --- recommendations ---------------------------------------------------------------------------
    async def _recommend(request: Request, user_id: int, k: int, context: RequestContext) -> Response:
        service = runtime.service
        if service is None:
            return _error(503, "service is starting: models and features are not loaded yet", retry_after=True)
        outcome = await service.recommend(user_id, k, context)
        request.scope[VARIANT_SCOPE_KEY] = outcome.variant
        return Response(orjson.dumps(outcome.payload), media_type=JSON)

    @app.get(
        "/recommend",
        response_model=RecommendResponse,
        responses=_ERRORS,
        tags=["recommendations"],
        summary="Top-k products for a user",
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

    @app.post(
        "/recommend",
        response_model=RecommendResponse,
        responses=_ERRORS,
        tags=["recommendations"],
        summary="Top-k products for a user, with the page context",
    )
    async def recommend_post(request: Request, body: RecommendRequest) -> Response:
        """Like GET, with the current session's products, the category page and ids to exclude."""
        context = RequestContext(tuple(body.session_product_ids), body.category_id, tuple(body.exclude_product_ids))
        return await _recommend(request, body.user_id, body.k, context)

    # --- feedback ----------------------------------------------------------------------------------
    async def feedback(body: Any) -> Response:
        """Idempotent by ``event_id``: a repeated id is acknowledged as ``duplicate`` and not stored twice.
        A 200 means every event of the request is durably written; on 503 nothing was, retry."""
        events = body if isinstance(body, list) else [body]
        if not events:
            return _error(422, "body: the list of events is empty")
        if len(events) > settings.max_feedback_batch:
            return _error(422, f"body: at most {settings.max_feedback_batch} events per request, got {len(events)}")
        records = feedback_records([e.model_dump() for e in events])
        try:
            outcome = await runtime.record_feedback(records)
        except FeedbackUnavailable as exc:
            return _error(503, f"{exc}; nothing was stored, retry", retry_after=True)
        return _json(
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
    app.post(
        "/feedback",
        response_model=FeedbackResponse,
        responses=_ERRORS,
        tags=["feedback"],
        summary="Store impressions, clicks, carts, purchases (one event or a list)",
    )(feedback)

    # --- health, model, metrics ----------------------------------------------------------------------
    @app.get("/health/live", response_model=HealthResponse, tags=["operations"])
    async def live() -> Response:
        """The process answers (no dependency checked)."""
        return _json({"status": "ok", "checks": {}})

    @app.get(
        "/health/ready",
        response_model=HealthResponse,
        responses={503: {"model": HealthResponse, "description": "Not ready: a model or the features are missing."}},
        tags=["operations"],
    )
    async def ready() -> Response:
        """Ready when a champion model, the product features and the candidate index are loaded."""
        checks = runtime.readiness_checks()
        if runtime.is_ready():
            return _json({"status": "ok", "checks": checks})
        return _json({"status": "not_ready", "checks": checks}, 503)

    @app.get("/model", response_model=ModelInfoResponse, tags=["operations"])
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
            }

        return _json(
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

    @app.get("/metrics", tags=["operations"], response_class=Response, summary="Prometheus metrics")
    async def prometheus() -> Response:
        """Prometheus text exposition (see zadanie4/prometheus_metrics.py for every series)."""
        products = runtime.products
        age = products.age_seconds() if products is not None else None
        if age is not None:
            metrics.set_feature_freshness(age)
        if runtime.shadow is not None:
            metrics.set_queue_size("shadow", runtime.shadow.queue_size)
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    # --- admin ---------------------------------------------------------------------------------------
    def _admin_state() -> Response:
        snapshot = runtime.state.snapshot
        return _json(
            {
                "canary_weight": snapshot.canary_weight,
                "shadow_enabled": snapshot.shadow_enabled,
                "champion_version": snapshot.champion.version if snapshot.champion else None,
                "challenger_version": snapshot.challenger.version if snapshot.challenger else None,
            }
        )

    @app.post(
        "/admin/canary", response_model=AdminStateResponse, responses=_ADMIN_ERRORS, dependencies=admin, tags=["admin"]
    )
    async def admin_canary(body: CanaryRequest) -> Response:
        """Set the share of users (0..1) served by the challenger; sticky per user. ``challenger``:
        ``popularity`` serves those users the popularity list (A/B control), ``registry`` the alias."""
        await runtime.set_canary_weight(body.weight, body.challenger)
        return _admin_state()

    @app.post(
        "/admin/products",
        response_model=ProductsResponse,
        responses=_ADMIN_ERRORS,
        dependencies=admin,
        tags=["admin"],
    )
    async def admin_products(body: ProductsRequest) -> Response:
        """Announce products released since the last feature build (the shop's catalogue feed): they
        enter the new-product exploration pool at once, before any feature row exists for them."""
        pool = runtime.announce_products([(p.product_id, p.category_id, p.price) for p in body.products])
        return _json({"announced": len(body.products), "exploration_pool": pool})

    @app.post(
        "/admin/shadow", response_model=AdminStateResponse, responses=_ADMIN_ERRORS, dependencies=admin, tags=["admin"]
    )
    async def admin_shadow(body: ShadowRequest) -> Response:
        """Turn shadow scoring of champion requests by the challenger on or off."""
        await runtime.set_shadow_enabled(body.enabled)
        return _admin_state()

    @app.post(
        "/admin/reload",
        response_model=ReloadResponse,
        responses={
            **_ADMIN_ERRORS,
            502: {"model": ReloadResponse, "description": "An alias failed to load; the old model is kept."},
        },
        dependencies=admin,
        tags=["admin"],
    )
    async def admin_reload() -> Response:
        """Load the registry aliases again and swap them in without dropping requests."""
        try:
            result = await runtime.reload_models()
        except RuntimeError as exc:
            return _error(503, str(exc), retry_after=True)
        payload = {
            "champion_version": result.champion_version,
            "challenger_version": result.challenger_version,
            "changed": result.changed,
            "errors": result.errors,
        }
        return _json(payload, 502 if result.errors else 200)

    return app
