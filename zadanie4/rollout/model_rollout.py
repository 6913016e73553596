"""Which models serve: registry aliases loaded and swapped in (hot reload), the canary weight, the shadow flag.

A reload loads the aliases off the event loop (the registry is asked by a helper process, see
:mod:`zadanie4.rollout.registry_models`) and then swaps them into the :class:`ServiceState` in one step, so a
request never sees half a change; an alias that fails to load keeps its old model. The challenger slot holds
the registry's challenger, or the popularity policy (the control arm of an A/B test, set with
``POST /admin/canary {"challenger": "popularity"}``). Which user the challenger serves is decided per request
by :mod:`zadanie4.rollout.traffic_router`. Every loaded ranker is handed to the
:class:`~zadanie4.rollout.ranker_compilation.RankerCompiler`, which switches it to its compiled trees
(at once when they are cached, else once compiled in the background).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field

from zadanie4.dependencies import POLICY_POPULARITY, LoadedModel, ModelProvider, popularity_policy
from zadanie4.observability.prometheus_metrics import ServiceMetrics
from zadanie4.rollout.ranker_compilation import RankerCompiler
from zadanie4.rollout.serving_state import ServiceState
from zadanie4.rollout.shadow_scorer import ShadowScorer
from zadanie4.settings import ServeSettings

log = logging.getLogger(__name__)
CHALLENGER_FROM_REGISTRY = "registry"


@dataclass
class ReloadResult:
    champion_version: str | None
    challenger_version: str | None
    changed: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


class ModelRollout:
    """Owns the serving state's model slots; the service attaches the model provider once it is loaded."""

    def __init__(self, settings: ServeSettings, metrics: ServiceMetrics, load_executor: Executor) -> None:
        self.settings = settings
        self.metrics = metrics
        self.state = ServiceState(settings.canary_weight, settings.shadow_enabled)
        self.challenger_source = CHALLENGER_FROM_REGISTRY
        self.models: ModelProvider | None = None
        self.refresh_candidates: Callable[[], bool] | None = None
        self.shadow: ShadowScorer | None = None
        self.compiler = RankerCompiler(settings.resolved_compiled_ranker_dir, enabled=settings.compile_ranker)
        self._executor = load_executor
        self._lock = asyncio.Lock()
        metrics.set_canary_weight(settings.canary_weight)
        metrics.set_shadow_enabled(settings.shadow_enabled)

    def attach(
        self, models: ModelProvider, *, refresh_candidates: Callable[[], bool], shadow: ShadowScorer | None
    ) -> None:
        """Called once the dependencies are loaded: where models come from, how a reload refreshes the
        candidate index, and the shadow scorer whose queue is dropped when shadowing is turned off."""
        self.models, self.refresh_candidates, self.shadow = models, refresh_candidates, shadow

    def _wants_challenger(self) -> bool:
        snapshot = self.state.snapshot
        return self.settings.load_challenger or snapshot.canary_weight > 0 or snapshot.shadow_enabled

    async def reload(self, *, challenger_only: bool = False) -> ReloadResult:
        """Load the aliases off the event loop, then swap them in; a failed alias keeps its old model.

        A full reload also installs a new candidate index when its files changed on disk.
        """
        models = self.models
        if models is None:
            raise RuntimeError("the service is still starting")
        loop = asyncio.get_running_loop()
        async with self._lock:
            before = self.state.snapshot
            errors: list[str] = []
            if not challenger_only and self.refresh_candidates is not None:
                try:
                    await loop.run_in_executor(self._executor, self.refresh_candidates)
                except Exception as exc:
                    errors.append(f"candidates: {type(exc).__name__}: {exc}")

            async def load(alias: str) -> tuple[LoadedModel | None, bool]:
                try:
                    return await loop.run_in_executor(self._executor, self._load_compiled, models, alias), True
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

    def _load_compiled(self, models: ModelProvider, alias: str) -> LoadedModel | None:
        model = models.load(alias)
        if model is not None and model.ranker is not None:
            self.compiler.attach(model.ranker)
        return model

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
        if weight > 0 and self.state.snapshot.challenger is None and self.models is not None:
            await self.reload(challenger_only=True)

    async def set_shadow_enabled(self, enabled: bool) -> None:
        self.state.set_shadow_enabled(enabled)
        self.metrics.set_shadow_enabled(enabled)
        if not enabled and self.shadow is not None:
            self.shadow.discard_queued()
        if enabled and self.state.snapshot.challenger is None and self.models is not None:
            await self.reload(challenger_only=True)
