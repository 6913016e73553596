"""Popularity and trending lists: the cold-start fallback and the baseline every model must beat.

Scores are time-decayed, weighted event counts as of a cutoff: an event ``age`` days old counts
``weight(event_type) * 0.5 ** (age / half_life_days)``. Ties break by ascending product id, so the
lists are deterministic.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from shared import column_names as col
from shared.feature_computation import DAY, as_utc, events_before

DEFAULT_EVENT_WEIGHTS: Mapping[str, float] = {
    col.VIEW: 1.0,
    col.CART: 3.0,
    col.REMOVE_FROM_CART: 0.0,
    col.PURCHASE: 5.0,
}
TRENDING_RECENT_DAYS = 3.0
TRENDING_BASE_DAYS = 14.0


@dataclass
class RankedList:
    """Products in descending score order (ties by product id)."""

    product_ids: np.ndarray
    scores: np.ndarray

    def top(self, k: int, exclude: Collection[int] = ()) -> list[int]:
        if k <= 0:
            return []
        if not exclude:
            return [int(p) for p in self.product_ids[:k]]
        out: list[int] = []
        for product in self.product_ids:
            if int(product) not in exclude:
                out.append(int(product))
                if len(out) == k:
                    break
        return out


def _ranked(scores: pd.Series) -> RankedList:
    frame = scores[scores > 0].rename("score").reset_index()
    frame.columns = ["product_id", "score"]
    frame = frame.sort_values(["score", "product_id"], ascending=[False, True], kind="stable")
    return RankedList(frame["product_id"].to_numpy(dtype="int64"), frame["score"].to_numpy(dtype="float64"))


@dataclass
class PopularityModel:
    """Global and per-category popularity plus trending, fitted as of ``cutoff``."""

    cutoff: pd.Timestamp
    half_life_days: float
    popular: RankedList
    trending_list: RankedList
    by_category: dict[int, RankedList] = field(default_factory=dict)
    product_category: dict[int, int] = field(default_factory=dict)

    @classmethod
    def fit(
        cls,
        events: pd.DataFrame,
        cutoff: str | pd.Timestamp,
        *,
        half_life_days: float = 7.0,
        event_weights: Mapping[str, float] = DEFAULT_EVENT_WEIGHTS,
    ) -> PopularityModel:
        """Fit on events strictly before ``cutoff``; ``half_life_days`` > 0."""
        if half_life_days <= 0:
            raise ValueError("half_life_days must be > 0")
        cutoff = as_utc(cutoff)
        ev = events_before(events, cutoff)
        weights = ev[col.EVENT_TYPE].astype(str).map(event_weights).fillna(0.0).to_numpy(dtype="float64")
        age_days = ((cutoff - ev[col.EVENT_TIME]) / DAY).to_numpy(dtype="float64")
        decayed = weights * np.power(0.5, age_days / half_life_days)
        scores = pd.Series(decayed, index=ev[col.PRODUCT_ID].to_numpy()).groupby(level=0).sum()

        recent = age_days <= TRENDING_RECENT_DAYS
        base = (age_days > TRENDING_RECENT_DAYS) & (age_days <= TRENDING_RECENT_DAYS + TRENDING_BASE_DAYS)
        products = ev[col.PRODUCT_ID].to_numpy()
        recent_rate = pd.Series(weights[recent], index=products[recent]).groupby(level=0).sum() / TRENDING_RECENT_DAYS
        base_rate = pd.Series(weights[base], index=products[base]).groupby(level=0).sum() / TRENDING_BASE_DAYS
        # Growth times volume: a product going 1 -> 3 views is not "trending" over one going 100 -> 200.
        recent_rate, base_rate = recent_rate.align(base_rate, fill_value=0.0)
        trending = recent_rate * (recent_rate + 1.0) / (base_rate + 1.0)

        categories = ev.dropna(subset=[col.CATEGORY_ID]).groupby(col.PRODUCT_ID)[col.CATEGORY_ID].last().astype("int64")
        by_category: dict[int, RankedList] = {}
        if len(categories):
            category_of = categories.reindex(scores.index)
            for category_id, group in scores.groupby(category_of.to_numpy()):
                if not pd.isna(category_id):
                    by_category[int(category_id)] = _ranked(group)
        return cls(
            cutoff=cutoff,
            half_life_days=half_life_days,
            popular=_ranked(scores),
            trending_list=_ranked(trending),
            by_category=by_category,
            product_category={int(p): int(c) for p, c in categories.items()},
        )

    def top(self, k: int, *, category_id: int | None = None, exclude: Collection[int] = ()) -> list[int]:
        """The ``k`` most popular products (in ``category_id`` when given), skipping ``exclude``.

        A category with fewer than ``k`` products is topped up from the global list.
        """
        if category_id is None or category_id not in self.by_category:
            return self.popular.top(k, exclude)
        chosen = self.by_category[category_id].top(k, exclude)
        if len(chosen) < k:
            chosen += self.popular.top(k - len(chosen), set(exclude) | set(chosen))
        return chosen

    def trending(self, k: int, *, exclude: Collection[int] = ()) -> list[int]:
        """Products whose recent event rate grew most, weighted by volume."""
        return self.trending_list.top(k, exclude)

    def score_of(self, product_ids: Collection[int]) -> np.ndarray:
        lookup = dict(zip(self.popular.product_ids.tolist(), self.popular.scores.tolist(), strict=True))
        return np.array([lookup.get(int(p), 0.0) for p in product_ids], dtype="float64")
