"""What the service needs from the other parts: small Protocols, and :func:`build_dependencies` for the real ones.

Every room of the service is built against these Protocols (and may import this module), so tests pass
in-memory fakes and the parts evolve independently: zadanie2 provides the :class:`FeatureReader` (online
store), zadanie3 the :class:`ModelProvider` (registry aliases with a local last-good cache), zadanie1 the
:class:`RecommenderCore` (candidates -> features -> score -> filters -> top-k, shared with the offline
evaluation) and the product feature block the core reads item features from.
:func:`build_dependencies` assembles the real ones at startup, in a background thread, never at import.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from zadanie4.settings import ServeSettings

log = logging.getLogger(__name__)

PairRows = Mapping[int, Mapping[str, float]]
"""user_product_interactions rows of one user: product id -> {feature name: value}."""


class FeatureReader(Protocol):
    """The online-store read path (zadanie2's ``OnlineFeatureReader``); every call may block and raise."""

    def read_user(self, user_id: int) -> dict[str, Any] | None: ...

    def read_user_products(self, user_id: int, product_ids: Sequence[int]) -> dict[int, dict[str, Any]]: ...

    def read_products(self, product_ids: Sequence[int]) -> pd.DataFrame: ...

    def read_categories(self, category_ids: Sequence[int]) -> pd.DataFrame: ...

    def ping(self) -> bool: ...

    def close(self) -> None: ...


class Ranker(Protocol):
    """A loaded ranking model (``zadanie1.ranker_artifact.RankerArtifact``)."""

    feature_names: tuple[str, ...]

    def score(self, matrix: np.ndarray) -> np.ndarray: ...


POLICY_RANKER = "ranker"
POLICY_POPULARITY = "popularity"


@dataclass(frozen=True)
class LoadedModel:
    """A ranker and where it came from; ``version`` is the registry version (or ``local:<folder>``).

    ``policy`` is ``ranker`` for a real model; ``popularity`` marks the non-personalised control
    policy of an A/B test (the core's popularity list, ``ranker`` unused), which the canary's
    challenger slot can serve (``POST /admin/canary {"challenger": "popularity"}``).
    """

    version: str
    ranker: Ranker | None
    source: str
    policy: str = POLICY_RANKER


def popularity_policy() -> LoadedModel:
    """The popularity list (the cold-start fallback, by context category) as a servable "model"."""
    return LoadedModel(
        version=POLICY_POPULARITY, ranker=None, source="popularity policy (A/B control)", policy=POLICY_POPULARITY
    )


class ModelProvider(Protocol):
    """Loads the ranker behind a registry alias; None when the alias does not exist. May block for seconds."""

    def load(self, alias: str) -> LoadedModel | None: ...


@dataclass(frozen=True)
class RequestContext:
    """What the shop tells about the current page view."""

    session_product_ids: tuple[int, ...] = ()
    category_id: int | None = None
    exclude_product_ids: tuple[int, ...] = ()


@dataclass(frozen=True)
class ScoredItem:
    """One recommended item as the core returns it (duck-typed: any object with these attributes works)."""

    product_id: int
    score: float
    reason: str


class ItemLike(Protocol):
    @property
    def product_id(self) -> int: ...

    @property
    def score(self) -> float: ...

    @property
    def reason(self) -> str: ...


@runtime_checkable
class RecommenderCore(Protocol):
    """The pure recommendation core: one user's inputs -> ranked items with a reason each.

    ``recommend`` must not do I/O: the user row and pair rows were read by the service (under the
    time budget) and the product features come from the in-process block. ``fallback`` is the
    popularity list used when the online store is unavailable. ``catalogue`` lists every product id
    the core can recommend (what the product feature cache loads).
    """

    def recommend(
        self,
        *,
        user_row: Mapping[str, Any] | None,
        pair_rows: PairRows,
        product_block: Any,
        ranker: Ranker | None,
        k: int,
        context: RequestContext,
        max_per_category: int,
    ) -> Sequence[ItemLike]: ...

    def fallback(self, *, k: int, context: RequestContext) -> Sequence[ItemLike]: ...

    def catalogue(self) -> np.ndarray: ...


ProductBlockFactory = Callable[[pd.DataFrame, pd.DataFrame], Any]
"""Builds the core's product feature block from (product_stats, category_stats) frames."""


@dataclass
class ServiceDependencies:
    """Everything ``create_app`` wires together: tests build it from fakes, :func:`build_dependencies` from
    the real parts."""

    core: RecommenderCore
    reader: FeatureReader
    models: ModelProvider
    product_block_factory: ProductBlockFactory
    realtime_update: Callable[[Sequence[Mapping[str, Any]]], None] | None = None
    core_loader: Callable[[], RecommenderCore | None] | None = None
    """Returns a new core when the candidate artifacts on disk changed since the last call, else None."""
    extra: dict[str, Any] = field(default_factory=dict)


def build_dependencies(settings: ServeSettings) -> ServiceDependencies:
    """The real parts (seconds): the candidate index (zadanie1), the online-store reader (zadanie2: direct
    Redis when the store is Redis, the Feast SDK over SQLite otherwise), the registry's models (zadanie3)
    and zadanie2's real-time feature update fed with stored feedback.

    Imported here, not at module level: the rooms import this module for its Protocols.
    """
    from zadanie2.online_feature_reader import create_feature_reader
    from zadanie2.settings import load_settings as load_feature_settings
    from zadanie4.feedback.realtime_features import realtime_hook
    from zadanie4.pipeline.candidate_ranking import CandidateIndexLoader, product_block_from_frames
    from zadanie4.rollout.registry_models import RegistryModelProvider

    candidates = CandidateIndexLoader(settings)
    core = candidates.load()
    feature_settings = load_feature_settings()
    reader = create_feature_reader(feature_settings)
    hook = None
    try:
        if settings.realtime_updates:
            hook = realtime_hook(feature_settings)
    except Exception as exc:  # the hook is best effort; serving must start without it
        log.warning("real-time feature updates disabled: %s", exc)
        hook = None
    return ServiceDependencies(
        core=core,
        reader=reader,
        models=RegistryModelProvider(settings),
        product_block_factory=product_block_from_frames,
        realtime_update=hook,
        core_loader=candidates.load_if_changed,
    )
