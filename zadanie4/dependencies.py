"""What the service needs from the other parts, as small Protocols (the real ones are wired in ``wiring.py``).

The service is built against these so tests can pass in-memory fakes and the parts can evolve
independently: zadanie2 provides the :class:`FeatureReader` (online store), zadanie3 the
:class:`ModelProvider` (registry aliases with a local last-good cache), zadanie1 the
:class:`RecommenderCore` (candidates -> features -> score -> filters -> top-k, shared with the
offline evaluation) and the product feature block the core reads item features from.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np
import pandas as pd

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
    """Everything ``create_app`` wires together; tests build it from fakes, ``wiring.py`` from real parts."""

    core: RecommenderCore
    reader: FeatureReader
    models: ModelProvider
    product_block_factory: ProductBlockFactory
    realtime_update: Callable[[Sequence[Mapping[str, Any]]], None] | None = None
    core_loader: Callable[[], RecommenderCore | None] | None = None
    """Returns a new core when the candidate artifacts on disk changed since the last call, else None."""
    extra: dict[str, Any] = field(default_factory=dict)
