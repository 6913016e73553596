"""``create_app(settings, ...)`` builds the FastAPI app of the service (nothing happens at import).

Endpoints (one module each under :mod:`zadanie4.api.routes`): ``GET/POST /recommend``, ``POST /feedback``,
``GET /health/live``, ``GET /health/ready``, ``GET /metrics``, ``GET /model`` and the bearer-protected
``POST /admin/canary|shadow|reload|products``. Errors are JSON ``{detail, errors}`` (:mod:`zadanie4.api.errors`);
the outermost middleware enforces body limits, admin auth and load shedding
(:mod:`zadanie4.api.request_limits`). /recommend never answers 5xx because of a dependency: it degrades to
the popularity list instead.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI

from zadanie4.api.errors import install_error_handlers
from zadanie4.api.overload_guard import EventLoopAdmission
from zadanie4.api.request_limits import RequestLimitsMiddleware
from zadanie4.api.routes.admin import admin_router
from zadanie4.api.routes.feedback import feedback_router
from zadanie4.api.routes.operations import operations_router
from zadanie4.api.routes.recommend import recommend_router
from zadanie4.dependencies import ServiceDependencies
from zadanie4.feedback.feedback_log import FeedbackLog
from zadanie4.observability.prometheus_metrics import ServiceMetrics, create_metrics
from zadanie4.service import ServiceRuntime
from zadanie4.settings import ServeSettings


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
    (the CLI passes ``zadanie4.dependencies.build_dependencies``) that loads them in the background at startup.
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
    install_error_handlers(app)
    app.include_router(recommend_router(runtime))
    app.include_router(feedback_router(runtime, settings))
    app.include_router(operations_router(runtime, metrics))
    app.include_router(admin_router(runtime, settings))
    return app
