"""Candidates, scoring, filters and cold start of /recommend: zadanie1's recommender over the candidate index.

:class:`CandidateIndexCore` is the service's :class:`RecommenderCore`; :class:`CandidateIndexLoader` loads it
from ``artifacts/train/candidates`` and again whenever those files change. The service reads the user row
and the pair rows itself (under its time budget) and hands them over; zadanie1's ``recommend`` does
candidates -> ``assemble_ranker_matrix`` -> score -> filters -> diversity cap -> top-k with the staged
cold-start policy, exactly as in the offline evaluation.
Exploration is the service's (Thompson sampling), so zadanie1's own trending exploration slots are off.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from shared.cold_start_policy import ColdStartPolicyConfig, fallback_items
from shared.errors import UserInputError
from zadanie1.candidate_generation import ARRAYS_FILE, META_FILE, CandidateIndex
from zadanie1.recommender import (
    ProductFeatureBlock,
    RecommendationContext,
    RecommendedItem,
    RecommenderConfig,
    recommend,
)
from zadanie4.dependencies import PairRows, Ranker, RequestContext
from zadanie4.settings import ServeSettings


class CandidateIndexCore:
    """zadanie1's recommender over one loaded :class:`CandidateIndex` (and its popularity lists)."""

    def __init__(
        self,
        index: CandidateIndex,
        *,
        n_candidates: int = 150,
        max_per_category: int = 5,
        warm_threshold_events: int = 5,
    ) -> None:
        self.index = index
        self.config = RecommenderConfig(
            n_candidates=n_candidates,
            max_per_category=max_per_category,
            exploration_slots=0,
            cold_start=ColdStartPolicyConfig(warm_threshold_events=warm_threshold_events),
        )
        self._configs = {max_per_category: self.config}
        self._catalogue = _catalogue_of(index)

    def _config_for(self, max_per_category: int) -> RecommenderConfig:
        config = self._configs.get(max_per_category)
        if config is None:
            config = replace(self.config, max_per_category=max_per_category)
            self._configs[max_per_category] = config
        return config

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
    ) -> Sequence[RecommendedItem]:
        return recommend(
            user_row,
            product_block,
            lambda _ids: pair_rows,
            self.index,
            self.index.popularity,
            ranker,
            k,
            RecommendationContext(context.session_product_ids, context.category_id, context.exclude_product_ids),
            self._config_for(max_per_category),
        )

    def fallback(self, *, k: int, context: RequestContext) -> Sequence[Any]:
        return fallback_items(
            self.index.popularity,
            k,
            category_id=context.category_id,
            exclude=set(context.exclude_product_ids),
            config=self.config.cold_start,
        )

    def catalogue(self) -> np.ndarray:
        return self._catalogue


def _catalogue_of(index: CandidateIndex) -> np.ndarray:
    """Every product the index can return: popular list, per-category lists and neighbours."""
    popularity = index.popularity
    parts = [
        popularity.popular.product_ids,
        popularity.trending_list.product_ids,
        np.fromiter(popularity.product_category.keys(), dtype=np.int64, count=len(popularity.product_category)),
        index.neighbor_ids,
    ]
    return np.unique(np.concatenate([np.asarray(p, dtype=np.int64) for p in parts]))


def product_block_from_frames(product_stats: Any, category_stats: Any) -> ProductFeatureBlock:
    """The core's product block (sorted ids + float columns) from the store's frames."""
    return ProductFeatureBlock.from_frames(product_stats, category_stats)


class CandidateIndexLoader:
    """Builds the core from the candidate folder; ``load_if_changed`` only when its files changed."""

    def __init__(self, settings: ServeSettings) -> None:
        self.settings = settings
        self.folder = settings.resolved_candidates_dir
        self._stamp: tuple[tuple[int, int], ...] | None = None

    def _file_stamp(self) -> tuple[tuple[int, int], ...]:
        stamps = []
        for name in (ARRAYS_FILE, META_FILE):
            stat = (self.folder / name).stat()
            stamps.append((stat.st_mtime_ns, stat.st_size))
        return tuple(stamps)

    def load(self) -> CandidateIndexCore:
        if not self.folder.is_dir():
            raise UserInputError(f"{self.folder}: no candidate index (run `recsys train` first)")
        stamp = self._file_stamp()
        index = CandidateIndex.load(self.folder)
        self._stamp = stamp
        return CandidateIndexCore(
            index,
            n_candidates=self.settings.n_candidates,
            max_per_category=self.settings.max_per_category,
            warm_threshold_events=self.settings.warm_threshold_events,
        )

    def load_if_changed(self) -> CandidateIndexCore | None:
        """A new core when the files differ from the last load (and are complete), else None."""
        try:
            stamp = self._file_stamp()
        except OSError:  # being rewritten right now: try again next time
            return None
        if stamp == self._stamp:
            return None
        return self.load()
