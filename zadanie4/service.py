"""One service instance: its long-lived parts and their lifecycle (start, ready, stop).

``start()`` opens the feedback log at once (so /feedback and /health/live answer immediately), then
loads in the background: the dependencies (candidate index, feature reader, registry client), the
models, the product features; it warms the request path up and freezes the garbage collector's
view of the long-lived objects (``gc.freeze``: no 100 ms gen-2 pauses on the request path). The
service is *ready* when a champion model, the product features and the core are loaded.

The instance composes the rooms: the request path (:mod:`zadanie4.pipeline`), the model slots and their
hot reload (:class:`zadanie4.rollout.model_rollout.ModelRollout`, ``runtime.rollout``) and the feedback path
(:class:`zadanie4.feedback.feedback_recorder.FeedbackRecorder`, ``runtime.feedback``).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from zadanie4.dependencies import RequestContext, ServiceDependencies
from zadanie4.feedback.feedback_log import FeedbackLog
from zadanie4.feedback.feedback_recorder import FeedbackRecorder
from zadanie4.observability.prometheus_metrics import ServiceMetrics
from zadanie4.pipeline.feature_reads import CircuitBreaker, GuardedFeatureReader
from zadanie4.pipeline.new_product_exploration import ExplorationConfig, ThompsonExplorer
from zadanie4.pipeline.product_feature_cache import ProductFeatureCache, ProductSnapshot
from zadanie4.pipeline.recommendation_service import PipelineConfig, RecommendationService
from zadanie4.pipeline.redis_reads import event_loop_reads_for
from zadanie4.rollout.model_rollout import ModelRollout
from zadanie4.rollout.shadow_scorer import ShadowScorer
from zadanie4.settings import ServeSettings

log = logging.getLogger(__name__)


class ServiceRuntime:
    """Owns the service's parts; built by ``create_app`` and driven by its lifespan."""

    def __init__(
        self,
        settings: ServeSettings,
        metrics: ServiceMetrics,
        *,
        dependencies: ServiceDependencies | None = None,
        dependencies_factory: Callable[[ServeSettings], ServiceDependencies] | None = None,
        feedback_log: FeedbackLog | None = None,
        freeze_gc: bool = False,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self._dependencies = dependencies
        self._dependencies_factory = dependencies_factory
        self.freeze_gc = freeze_gc
        self._load_executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="model-load")
        self.rollout = ModelRollout(settings, metrics, self._load_executor)
        self.state = self.rollout.state
        self._announced_products: dict[int, tuple[int, float | None]] = {}  # POST /admin/products
        self.explorer = ThompsonExplorer(
            ExplorationConfig(
                share=settings.exploration_share,
                max_views=settings.exploration_max_views,
                prior_ctr=settings.exploration_prior_ctr,
                prior_strength=settings.exploration_prior_strength,
            ),
            seed=settings.exploration_seed,
        )
        self.feedback = FeedbackRecorder(
            settings,
            metrics,
            on_stored=self.explorer.record,
            product_facts=self._product_facts,
            feedback_log=feedback_log,
        )
        self.service: RecommendationService | None = None
        self.products: ProductFeatureCache | None = None
        self.features: GuardedFeatureReader | None = None
        self.shadow: ShadowScorer | None = None
        self.startup_error: str | None = None
        self._started = threading.Event()
        self._stopping = threading.Event()
        self._startup_task: asyncio.Task[None] | None = None

    # --- lifecycle ---------------------------------------------------------------------------------
    async def start(self, *, wait: bool = False) -> None:
        """Open the feedback log now; load the rest in the background (or before returning with ``wait``)."""
        self.feedback.open_log()
        self._startup_task = asyncio.get_running_loop().create_task(self._load_everything())
        if wait:
            await self._startup_task

    async def _load_everything(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            deps = self._dependencies
            if deps is None:
                if self._dependencies_factory is None:
                    raise RuntimeError("no dependencies and no factory given")
                deps = await loop.run_in_executor(self._load_executor, self._dependencies_factory, self.settings)
                self._dependencies = deps
            self._assemble(deps)
            await self.rollout.reload()
            assert self.products is not None
            try:
                await loop.run_in_executor(self._load_executor, self.products.refresh)
            except Exception as exc:  # not ready yet; the refresher retries in the background
                self.products.last_error = f"{type(exc).__name__}: {exc}"
                log.error("initial product feature load failed: %s", self.products.last_error)
            self.products.start()
            self._start_candidate_watch()
            self.feedback.start_realtime_worker(deps.realtime_update)
            await self._warm_up()
            if self.freeze_gc:
                gc.collect()
                gc.freeze()
            self._started.set()
        except Exception as exc:
            self.startup_error = f"{type(exc).__name__}: {exc}"
            log.exception("service startup failed")

    def _assemble(self, deps: ServiceDependencies) -> None:
        s = self.settings
        breaker = CircuitBreaker(s.breaker_failures, s.breaker_cooldown_s)
        self.features = GuardedFeatureReader(
            deps.reader,
            threads=s.feature_read_threads,
            breaker=breaker,
            loop_reads=event_loop_reads_for(deps.reader) if s.event_loop_reads else None,
        )
        self.products = ProductFeatureCache(
            deps.reader,
            self._catalogue,
            deps.product_block_factory,
            refresh_s=s.product_refresh_s,
            on_refresh=self._on_products_refreshed,
        )
        service = RecommendationService(
            core=deps.core,
            features=self.features,
            products=self.products,
            state=self.state,
            explorer=self.explorer,
            shadow=None,
            metrics=self.metrics,
            config=PipelineConfig(
                feature_budget_s=s.feature_budget_ms / 1000.0,
                max_per_category=s.max_per_category,
                canary_salt=s.canary_salt,
                shadow_sample_rate=s.shadow_sample_rate,
            ),
        )
        self.shadow = ShadowScorer(service.shadow_score, self.metrics, s.shadow_queue_size, busy=lambda: service.busy)
        self.shadow.start()
        service.shadow = self.shadow
        self.service = service
        self.rollout.attach(deps.models, refresh_candidates=self.refresh_candidates, shadow=self.shadow)

    def _catalogue(self) -> Any:
        """The current core's catalogue (the core may be swapped when new candidates are loaded)."""
        assert self.service is not None
        return self.service.core.catalogue()

    def refresh_candidates(self) -> bool:
        """Load new candidate artifacts if they changed on disk; swap the core in one step (blocking).

        Returns True when a new core was installed (the product features are then re-read, since the
        catalogue may have changed).
        """
        deps, service = self._dependencies, self.service
        if deps is None or deps.core_loader is None or service is None:
            return False
        core = deps.core_loader()
        if core is None:
            return False
        service.core = core
        log.info("installed new candidate index")
        if self.products is not None:
            try:
                self.products.refresh()
            except Exception as exc:
                log.warning("product refresh after new candidates failed: %s", exc)
        return True

    def _start_candidate_watch(self) -> None:
        interval = self.settings.candidates_refresh_s
        if interval <= 0 or self._dependencies is None or self._dependencies.core_loader is None:
            return

        def run() -> None:
            while not self._stopping.wait(interval):
                try:
                    self.refresh_candidates()
                except Exception:  # keep serving the loaded index
                    log.warning("candidate refresh failed", exc_info=True)

        threading.Thread(target=run, name="candidate-refresh", daemon=True).start()

    def _on_products_refreshed(self, snapshot: ProductSnapshot) -> None:
        self.explorer.set_catalogue(snapshot.product_ids, snapshot.category_ids, snapshot.n_views)
        self.metrics.set_feature_freshness(0.0)

    async def _warm_up(self) -> None:
        """Run the core a few times (imports, caches, first allocations) outside any request."""
        service = self.service
        if service is None or self.products is None or self.products.block is None:
            return
        model = self.state.snapshot.champion
        for _ in range(3):
            try:
                service.core.fallback(k=10, context=RequestContext())
                if model is not None:
                    service.core.recommend(
                        user_row=None,
                        pair_rows={},
                        product_block=self.products.block,
                        ranker=model.ranker,
                        k=10,
                        context=RequestContext(),
                        max_per_category=self.settings.max_per_category,
                    )
            except Exception:
                log.warning("warm-up request failed", exc_info=True)
                return

    def is_ready(self) -> bool:
        return bool(
            self._started.is_set()
            and self.service is not None
            and self.state.snapshot.champion is not None
            and self.products is not None
            and self.products.block is not None
        )

    def readiness_checks(self) -> dict[str, bool]:
        return {
            "started": self._started.is_set(),
            "model_loaded": self.state.snapshot.champion is not None,
            "features_loaded": self.products is not None and self.products.block is not None,
            "feedback_log": self.feedback.log is not None,
        }

    async def wait_ready(self, timeout_s: float = 30.0) -> bool:
        """Wait until ready (True) or until startup failed / the timeout passed (False)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.is_ready():
                return True
            if self.startup_error is not None:
                return False
            await asyncio.sleep(0.01)
        return False

    async def stop(self) -> None:
        self._stopping.set()
        if self._startup_task is not None and not self._startup_task.done():
            self._startup_task.cancel()
        if self.products is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.products.stop)
        if self.shadow is not None:
            self.shadow.stop()
        if self.features is not None:
            self.features.close()
        self.feedback.stop()
        self.rollout.compiler.close()
        self._load_executor.shutdown(wait=False, cancel_futures=True)
        close_models = getattr(self._dependencies.models, "close", None) if self._dependencies else None
        if callable(close_models):  # e.g. the registry helper process
            close_models()

    # --- products announced by the shop ------------------------------------------------------------
    def _product_facts(self, product_id: int) -> tuple[int | None, float | None]:
        """Category and price of a product: from the product cache, else from the announced products."""
        snapshot = self.products.snapshot if self.products is not None else None
        facts: tuple[int | None, float | None] = snapshot.describe(product_id) if snapshot is not None else (None, None)
        if facts[0] is None:
            facts = self._announced_products.get(product_id, (None, None))
        return facts

    def announce_products(self, products: Sequence[tuple[int, int, float | None]]) -> int:
        """Products released after the last feature build (the shop's catalogue feed), as
        (product id, category id, price): they join the new-product exploration pool now, and their
        category and price go with their feedback into the real-time feature update. Returns the pool size.
        """
        for product_id, category_id, price in products:
            self._announced_products[int(product_id)] = (int(category_id), price)
        return self.explorer.add_products([p for p, _, _ in products], [c for _, c, _ in products])
