"""The request path of ``/recommend``: route -> user row (budgeted) -> pair rows -> core -> exploration -> shadow.

1. The user is routed to ``champion`` or ``challenger`` by the sticky canary hash (only while a
   challenger is loaded).
2. Their user_stats row is read from the online store, and then the user_product_interactions rows
   of their recent products, both within one time budget (``feature_budget_ms``), off the event loop.
3. The core (zadanie1) takes candidates from its precomputed index, assembles feature vectors from
   the user row, the in-process product block and the pair rows, scores them with the variant's ranker,
   filters (purchased, excluded) and applies the per-category cap; it also runs the cold-start
   stages (reason per item).
4. A share of the slots goes to new products by Thompson sampling (``exploration``).
5. Champion responses are copied to the shadow queue when shadow is on.

Any failure of the store (error, timeout, breaker open) or of the core degrades the request to the
popularity list with ``degraded: true`` and ``variant: fallback`` — never an error response.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from zadanie4.dependencies import POLICY_POPULARITY, ItemLike, LoadedModel, RecommenderCore, RequestContext
from zadanie4.feedback.feedback_log import new_recommendation_id
from zadanie4.observability.prometheus_metrics import ServiceMetrics
from zadanie4.pipeline.feature_reads import GuardedFeatureReader, StoreFailure
from zadanie4.pipeline.new_product_exploration import ThompsonExplorer, interleave
from zadanie4.pipeline.product_feature_cache import ProductFeatureCache
from zadanie4.rollout.serving_state import ServiceState
from zadanie4.rollout.shadow_scorer import ShadowJob, ShadowScorer
from zadanie4.rollout.traffic_router import assign_variant

log = logging.getLogger(__name__)
MAX_PAIR_PRODUCTS = 50


@dataclass(frozen=True)
class CoreInputs:
    """What the core was given for one request (reused by the shadow challenger, no second read)."""

    user_row: Mapping[str, Any] | None
    pair_rows: Mapping[int, Mapping[str, Any]]
    product_block: Any
    context: RequestContext
    k: int


@dataclass(frozen=True)
class RecommendOutcome:
    payload: dict[str, Any]
    variant: str
    degraded: bool


@dataclass(frozen=True)
class PipelineConfig:
    feature_budget_s: float = 0.025
    max_per_category: int = 5
    canary_salt: str = "recsys-canary-v1"
    shadow_sample_rate: float = 1.0


def _id_list(row: Mapping[str, Any] | None, name: str) -> list[int]:
    if not row:
        return []
    values = row.get(name)
    if values is None:
        return []
    try:
        return [int(v) for v in values]
    except (TypeError, ValueError):
        return []


def _finite(score: float) -> float:
    """A JSON-safe score: NaN/inf from a broken model become 0.0 (the order is already decided)."""
    value = float(score)
    return value if math.isfinite(value) else 0.0


def _pair_products(user_row: Mapping[str, Any]) -> list[int]:
    """Products whose user x product rows a request reads: the user's recent ones (newest first)."""
    return _id_list(user_row, "user_recent_product_ids")[:MAX_PAIR_PRODUCTS]


class RecommendationService:
    """Stateless per request; holds the long-lived parts (reader guard, cache, explorer, shadow, metrics)."""

    def __init__(
        self,
        *,
        core: RecommenderCore,
        features: GuardedFeatureReader,
        products: ProductFeatureCache,
        state: ServiceState,
        explorer: ThompsonExplorer,
        shadow: ShadowScorer | None,
        metrics: ServiceMetrics,
        config: PipelineConfig,
    ) -> None:
        self.core = core
        self.features = features
        self.products = products
        self.state = state
        self.explorer = explorer
        self.shadow = shadow
        self.metrics = metrics
        self.config = config
        self.in_flight = 0  # requests inside recommend() now (the shadow scorer waits for 0)

    @property
    def busy(self) -> bool:
        return self.in_flight > 0

    async def recommend(self, user_id: int, k: int, context: RequestContext) -> RecommendOutcome:
        self.in_flight += 1
        try:
            return await self._recommend(user_id, k, context)
        finally:
            self.in_flight -= 1

    async def _recommend(self, user_id: int, k: int, context: RequestContext) -> RecommendOutcome:
        snapshot = self.state.snapshot
        routed = assign_variant(user_id, snapshot.effective_canary_weight, self.config.canary_salt)
        model: LoadedModel | None = snapshot.challenger if routed == "challenger" else snapshot.champion
        variant: str = routed
        degraded = False
        user_row: Mapping[str, Any] | None = None
        inputs: CoreInputs | None = None
        block = self.products.block
        try:
            if model is None:
                raise _Fallback("no_model")
            if block is None:
                raise _Fallback("missing_features")
            deadline = time.monotonic() + self.config.feature_budget_s
            user_row, pair_rows = await self.features.read_user_and_pairs(user_id, deadline, _pair_products)
            if user_row is None:
                self.metrics.count_fallback("unknown_user")
            inputs = CoreInputs(user_row, pair_rows, block, context, k)
            items = self._run_core(model, inputs)
        except StoreFailure as failure:
            if not failure.skipped:
                self.metrics.count_feature_store_error(failure.kind)
            cause = "store_timeout" if failure.kind == "timeout" else "store_unavailable"
            items, variant, degraded, inputs = self._fallback(cause, k, context), "fallback", True, None
        except _Fallback as fallback:
            items, variant, degraded, inputs = self._fallback(fallback.cause, k, context), "fallback", True, None
        except Exception:  # a bug or bad data in the core: answer from popularity, keep the trace in the log
            log.exception("recommendation core failed for user %s", user_id)
            items, variant, degraded, inputs = self._fallback("missing_features", k, context), "fallback", True, None

        out = [(int(i.product_id), _finite(i.score), str(i.reason)) for i in items][:k]
        out = self._explore(out, k, context, user_row)
        if (
            inputs is not None
            and variant == "champion"
            and snapshot.shadow_enabled
            and snapshot.challenger
            and (self.config.shadow_sample_rate >= 1.0 or random.random() < self.config.shadow_sample_rate)
        ):
            self._submit_shadow(user_id, k, out, inputs, snapshot.challenger)

        self.metrics.count_recommendation(variant, degraded, [reason for _, _, reason in out])
        payload = {
            "recommendation_id": new_recommendation_id(variant),
            "user_id": user_id,
            "model_version": model.version if (model is not None and variant != "fallback") else None,
            "variant": variant,
            "degraded": degraded,
            "items": [{"product_id": p, "score": s, "reason": r} for p, s, r in out],
        }
        return RecommendOutcome(payload, variant, degraded)

    def _run_core(self, model: LoadedModel, inputs: CoreInputs) -> Sequence[ItemLike]:
        if model.policy == POLICY_POPULARITY:  # the A/B control arm: the non-personalised list
            return self.core.fallback(k=inputs.k, context=inputs.context)
        return self.core.recommend(
            user_row=inputs.user_row,
            pair_rows=inputs.pair_rows,
            product_block=inputs.product_block,
            ranker=model.ranker,
            k=inputs.k,
            context=inputs.context,
            max_per_category=self.config.max_per_category,
        )

    def _fallback(self, cause: str, k: int, context: RequestContext) -> Sequence[ItemLike]:
        self.metrics.count_fallback(cause)
        try:
            return self.core.fallback(k=k, context=context)
        except Exception:
            log.exception("popularity fallback failed")
            return []

    def _explore(
        self,
        items: list[tuple[int, float, str]],
        k: int,
        context: RequestContext,
        user_row: Mapping[str, Any] | None,
    ) -> list[tuple[int, float, str]]:
        n = self.explorer.n_slots(k)
        if n == 0:
            return items
        exclude = {p for p, _, _ in items}
        exclude.update(context.exclude_product_ids)
        exclude.update(_id_list(user_row, "user_purchased_product_ids"))
        preferred = [c for c in (context.category_id, *_id_list(user_row, "user_top_category_ids")) if c is not None]
        picks = self.explorer.choose(n, exclude, preferred)
        if not picks:
            return items
        explored = [(p.product_id, p.sampled_ctr, "exploration") for p in picks]
        return interleave(items, explored, k)  # type: ignore[return-value]

    def _submit_shadow(
        self, user_id: int, k: int, served: list[tuple[int, float, str]], inputs: CoreInputs, challenger: LoadedModel
    ) -> None:
        if self.shadow is None:
            return
        # Compare ranked lists, not exploration draws: only the model-chosen items count.
        served_ids = tuple(p for p, _, reason in served if reason != "exploration")
        self.shadow.submit(ShadowJob(user_id, k, served_ids, inputs, challenger))

    def shadow_score(self, job: ShadowJob) -> list[int]:
        """The challenger's list for a shadow job (runs on the shadow thread)."""
        inputs: CoreInputs = job.inputs
        items = self._run_core(job.challenger, inputs)
        return [int(i.product_id) for i in items][: len(job.served_product_ids) or job.k]


class _Fallback(Exception):
    def __init__(self, cause: str) -> None:
        super().__init__(cause)
        self.cause = cause
