"""The long-lived parts of one service instance and their lifecycle: start, reload, feedback, stop.

``start()`` opens the feedback log at once (so /feedback and /health/live answer immediately), then
loads in the background: the dependencies (candidate index, feature reader, registry client), the
models, the product features; it warms the request path up and freezes the garbage collector's
view of the long-lived objects (``gc.freeze``: no 100 ms gen-2 pauses on the request path). The
service is *ready* when a champion model, the product features and the core are loaded.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from zadanie4.dependencies import (
    POLICY_POPULARITY,
    LoadedModel,
    RequestContext,
    ServiceDependencies,
    popularity_policy,
)
from zadanie4.event_loop_reads import event_loop_reads_for
from zadanie4.exploration import ExplorationConfig, ThompsonExplorer
from zadanie4.feature_access import CircuitBreaker, GuardedFeatureReader
from zadanie4.feedback_log import FeedbackLog, FeedbackRecord, open_feedback_log, variant_of
from zadanie4.product_feature_cache import ProductFeatureCache, ProductSnapshot
from zadanie4.prometheus_metrics import ServiceMetrics
from zadanie4.request_pipeline import PipelineConfig, RecommendationService
from zadanie4.service_state import ServiceState
from zadanie4.settings import ServeSettings
from zadanie4.shadow_scorer import ShadowScorer

log = logging.getLogger(__name__)
REALTIME_BATCH_EVENTS = 5000  # most feedback events coalesced into one real-time feature update
CHALLENGER_FROM_REGISTRY = "registry"


class FeedbackUnavailable(Exception):
    """The feedback log could not write; nothing of the batch is acknowledged."""


@dataclass
class ReloadResult:
    champion_version: str | None
    challenger_version: str | None
    changed: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


@dataclass
class FeedbackOutcome:
    results: list[tuple[str, bool]]  # (event_id, stored now)

    @property
    def stored(self) -> int:
        return sum(1 for _, new in self.results if new)

    @property
    def duplicates(self) -> int:
        return len(self.results) - self.stored


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
        self.feedback_log: FeedbackLog | None = feedback_log
        self.freeze_gc = freeze_gc
        self.state = ServiceState(settings.canary_weight, settings.shadow_enabled)
        # What fills the challenger slot: the registry's challenger alias, or the popularity policy
        # (the control arm of an A/B test, set with POST /admin/canary {"challenger": "popularity"}).
        self.challenger_source = CHALLENGER_FROM_REGISTRY
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
        self.service: RecommendationService | None = None
        self.products: ProductFeatureCache | None = None
        self.features: GuardedFeatureReader | None = None
        self.shadow: ShadowScorer | None = None
        self.startup_error: str | None = None
        self._started = threading.Event()
        self._stopping = threading.Event()
        self._feedback_executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="feedback-write")
        self._load_executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="model-load")
        self._reload_lock = asyncio.Lock()
        self._realtime_queue: queue.Queue[Any] = queue.Queue(maxsize=settings.feedback_queue_size)
        self._realtime_thread: threading.Thread | None = None
        self._startup_task: asyncio.Task[None] | None = None
        metrics.set_canary_weight(settings.canary_weight)
        metrics.set_shadow_enabled(settings.shadow_enabled)

    # --- lifecycle ---------------------------------------------------------------------------------
    async def start(self, *, wait: bool = False) -> None:
        """Open the feedback log now; load the rest in the background (or before returning with ``wait``)."""
        if self.feedback_log is None:
            try:
                self.feedback_log = open_feedback_log(
                    redis_url=self.settings.redis_url,
                    sqlite_path=self.settings.resolved_feedback_sqlite_path,
                    stream=self.settings.feedback_stream,
                    dedupe_ttl_s=self.settings.feedback_dedupe_ttl_s,
                    timeout_s=self.settings.redis_timeout_s,
                )
            except Exception as exc:  # /feedback answers 503 until it can write; recommendations still work
                log.error("feedback log unavailable: %s", exc)
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
            await self.reload_models()
            assert self.products is not None
            try:
                await loop.run_in_executor(self._load_executor, self.products.refresh)
            except Exception as exc:  # not ready yet; the refresher retries in the background
                self.products.last_error = f"{type(exc).__name__}: {exc}"
                log.error("initial product feature load failed: %s", self.products.last_error)
            self.products.start()
            self._start_candidate_watch()
            self._start_realtime_worker(deps)
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
            "feedback_log": self.feedback_log is not None,
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
        if self._realtime_thread is not None:
            with contextlib.suppress(queue.Full):
                self._realtime_queue.put_nowait(None)
            self._realtime_thread.join(timeout=2.0)
        if self.features is not None:
            self.features.close()
        self._feedback_executor.shutdown(wait=True)
        self._load_executor.shutdown(wait=False, cancel_futures=True)
        close_models = getattr(self._dependencies.models, "close", None) if self._dependencies else None
        if callable(close_models):  # e.g. the registry helper process
            close_models()
        if self.feedback_log is not None:
            self.feedback_log.close()

    # --- models ------------------------------------------------------------------------------------
    def _wants_challenger(self) -> bool:
        snapshot = self.state.snapshot
        return self.settings.load_challenger or snapshot.canary_weight > 0 or snapshot.shadow_enabled

    async def reload_models(self, *, challenger_only: bool = False) -> ReloadResult:
        """Load the aliases off the event loop, then swap them in; a failed alias keeps its old model."""
        deps = self._dependencies
        if deps is None:
            raise RuntimeError("the service is still starting")
        loop = asyncio.get_running_loop()
        async with self._reload_lock:
            before = self.state.snapshot
            errors: list[str] = []
            if not challenger_only and self.service is not None:
                try:
                    await loop.run_in_executor(self._load_executor, self.refresh_candidates)
                except Exception as exc:
                    errors.append(f"candidates: {type(exc).__name__}: {exc}")

            async def load(alias: str) -> tuple[LoadedModel | None, bool]:
                try:
                    return await loop.run_in_executor(self._load_executor, deps.models.load, alias), True
                except Exception as exc:
                    errors.append(f"{alias}: {type(exc).__name__}: {exc}")
                    log.error("loading model alias %s failed: %s", alias, exc)
                    return None, False

            champion, champion_ok = (before.champion, True)
            if not challenger_only:
                champion, champion_ok = await load(self.settings.champion_alias)
                if champion_ok and champion is None:
                    errors.append(f"{self.settings.champion_alias}: alias not found")
                    champion_ok = False
            challenger, challenger_ok = None, True
            if self._wants_challenger():
                if self.challenger_source == POLICY_POPULARITY:
                    challenger, challenger_ok = popularity_policy(), True
                else:
                    challenger, challenger_ok = await load(self.settings.challenger_alias)
            after = self.state.swap_models(
                champion, challenger, keep_champion=not champion_ok, keep_challenger=not challenger_ok
            )
            self._publish_models(after.champion, after.challenger)
            changed = [
                name
                for name, old, new in (
                    ("champion", before.champion, after.champion),
                    ("challenger", before.challenger, after.challenger),
                )
                if (old.version if old else None) != (new.version if new else None)
            ]
            return ReloadResult(
                champion_version=after.champion.version if after.champion else None,
                challenger_version=after.challenger.version if after.challenger else None,
                changed=changed,
                errors=errors,
            )

    def _publish_models(self, champion: LoadedModel | None, challenger: LoadedModel | None) -> None:
        for variant, model in (("champion", champion), ("challenger", challenger)):
            if model is None:
                self.metrics.clear_model_info(variant)
            else:
                self.metrics.set_model_info(variant, model.version[:64])

    async def set_canary_weight(self, weight: float, challenger: str | None = None) -> None:
        """Set the challenger's share of users; ``challenger`` (``registry`` | ``popularity``) also
        switches what fills the challenger slot (the slot is swapped before the new weight applies)."""
        if challenger is not None and challenger != self.challenger_source:
            self.challenger_source = challenger
            new = popularity_policy() if challenger == POLICY_POPULARITY else None
            after = self.state.swap_models(None, new, keep_champion=True)
            self._publish_models(after.champion, after.challenger)
        self.state.set_canary_weight(weight)
        self.metrics.set_canary_weight(weight)
        if weight > 0 and self.state.snapshot.challenger is None and self._dependencies is not None:
            await self.reload_models(challenger_only=True)

    async def set_shadow_enabled(self, enabled: bool) -> None:
        self.state.set_shadow_enabled(enabled)
        self.metrics.set_shadow_enabled(enabled)
        if not enabled and self.shadow is not None:
            self.shadow.discard_queued()
        if enabled and self.state.snapshot.challenger is None and self._dependencies is not None:
            await self.reload_models(challenger_only=True)

    # --- feedback ----------------------------------------------------------------------------------
    async def record_feedback(self, records: Sequence[FeedbackRecord]) -> FeedbackOutcome:
        """Write durably (off the loop), then count, update exploration and queue the real-time update."""
        feedback_log = self.feedback_log
        if feedback_log is None:
            for r in records:
                self.metrics.count_feedback(r.event_type, "failed")
            raise FeedbackUnavailable("feedback log is not available")
        loop = asyncio.get_running_loop()
        try:
            flags = await loop.run_in_executor(self._feedback_executor, feedback_log.append, records)
        except Exception as exc:
            log.error("feedback write failed: %s", exc)
            for r in records:
                self.metrics.count_feedback(r.event_type, "failed")
            raise FeedbackUnavailable(f"feedback store unavailable ({type(exc).__name__})") from exc
        stored: list[FeedbackRecord] = []
        for record, new in zip(records, flags, strict=True):
            if new:
                stored.append(record)
                self.metrics.count_feedback(record.event_type, "stored", record.variant)
                self.explorer.record(record.product_id, record.event_type)
            else:
                self.metrics.count_feedback(record.event_type, "duplicate")
        if stored and self._realtime_thread is not None:
            try:
                self._realtime_queue.put_nowait([self._with_product_facts(r.as_dict()) for r in stored])
            except queue.Full:
                log.warning("real-time feature update queue full: %d events left to the batch path", len(stored))
            self.metrics.set_queue_size("feedback", self._realtime_queue.qsize())
        return FeedbackOutcome([(r.event_id, new) for r, new in zip(records, flags, strict=True)])

    def _with_product_facts(self, record: dict[str, Any]) -> dict[str, Any]:
        """Add the product's category and price (from the product cache, else from the announced
        products) so feature updates can use them."""
        snapshot = self.products.snapshot if self.products is not None else None
        if snapshot is not None:
            record["category_id"], record["price"] = snapshot.describe(int(record["product_id"]))
        if record.get("category_id") is None:
            record["category_id"], record["price"] = self._announced_products.get(
                int(record["product_id"]), (None, None)
            )
        return record

    def announce_products(self, products: Sequence[tuple[int, int, float | None]]) -> int:
        """Products released after the last feature build (the shop's catalogue feed), as
        (product id, category id, price): they join the new-product exploration pool now, and their
        category and price go with their feedback into the real-time feature update. Returns the pool size.
        """
        for product_id, category_id, price in products:
            self._announced_products[int(product_id)] = (int(category_id), price)
        return self.explorer.add_products([p for p, _, _ in products], [c for _, c, _ in products])

    def _start_realtime_worker(self, deps: ServiceDependencies) -> None:
        update = deps.realtime_update
        if update is None or not self.settings.realtime_updates:
            return

        interval_s = self.settings.realtime_update_interval_s

        def run() -> None:
            last = 0.0
            while True:
                batch = self._realtime_queue.get()
                if batch is None:
                    return
                # At most one update per interval: an update recomputes whole users in pandas (GIL-bound
                # for ~0.1 s), so batching bounds its share of the CPU whatever the feedback rate.
                wait_s = last + interval_s - time.monotonic()
                if wait_s > 0:
                    time.sleep(wait_s)
                last = time.monotonic()
                stop = False
                while len(batch) < REALTIME_BATCH_EVENTS:  # coalesce what queued up meanwhile: one update call
                    try:
                        more = self._realtime_queue.get_nowait()
                    except queue.Empty:
                        break
                    if more is None:
                        stop = True
                        break
                    batch.extend(more)
                try:
                    update(batch)
                except Exception:  # the durable log has the events; the update is best effort
                    log.warning("real-time feature update failed", exc_info=True)
                self.metrics.set_queue_size("feedback", self._realtime_queue.qsize())
                if stop:
                    return

        self._realtime_thread = threading.Thread(target=run, name="realtime-feature-update", daemon=True)
        self._realtime_thread.start()


def feedback_records(events: Sequence[Mapping[str, Any]]) -> list[FeedbackRecord]:
    """API events (dicts of validated fields) -> records with variant and a UTC ISO timestamp."""
    now = datetime.now(UTC)
    out = []
    for e in events:
        stamp = e.get("timestamp") or now
        if stamp.tzinfo is None:
            stamp = stamp.replace(tzinfo=UTC)
        recommendation_id = e.get("recommendation_id")
        out.append(
            FeedbackRecord(
                event_id=e["event_id"],
                user_id=int(e["user_id"]),
                product_id=int(e["product_id"]),
                event_type=e["event_type"],
                recommendation_id=recommendation_id,
                variant=variant_of(recommendation_id),
                timestamp=stamp.astimezone(UTC).isoformat(),
            )
        )
    return out
