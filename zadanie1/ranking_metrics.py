"""Top-k ranking metrics with binary relevance, as used by the comparison table and offline evaluation.

Conventions (the same everywhere in this part):
* ``recommended`` is an ordered list of product ids (best first); only its first ``k`` count.
* ``relevant`` is the set of products the user interacted with in the evaluation window — including
  products the candidate generator never produced, so a missed product costs recall/NDCG.
* A list shorter than ``k`` is treated as padded with non-relevant items (precision divides by k).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

METRIC_NAMES = ("precision", "hitrate", "ndcg", "map")


def precision_at_k(recommended: Sequence[int], relevant: Collection[int], k: int) -> float:
    """Share of the first ``k`` slots holding a relevant product (0..1)."""
    _check_k(k)
    return sum(1 for p in recommended[:k] if p in relevant) / k


def hitrate_at_k(recommended: Sequence[int], relevant: Collection[int], k: int) -> float:
    """1.0 when at least one of the first ``k`` products is relevant, else 0.0."""
    _check_k(k)
    return 1.0 if any(p in relevant for p in recommended[:k]) else 0.0


def _discounts(k: int) -> np.ndarray:
    return 1.0 / np.log2(np.arange(2, k + 2))


def ndcg_at_k(recommended: Sequence[int], relevant: Collection[int], k: int) -> float:
    """Binary-gain NDCG: sum 1/log2(rank + 1) over hits, divided by the best possible for min(|relevant|, k)."""
    _check_k(k)
    if not relevant:
        return 0.0
    dcg = sum(1.0 / math.log2(i + 2) for i, p in enumerate(recommended[:k]) if p in relevant)
    ideal = float(_discounts(min(len(relevant), k)).sum())
    return dcg / ideal


def average_precision_at_k(recommended: Sequence[int], relevant: Collection[int], k: int) -> float:
    """AP@k: mean of precision@i at each hit position i <= k, divided by min(|relevant|, k)."""
    _check_k(k)
    if not relevant:
        return 0.0
    hits, total = 0, 0.0
    for i, p in enumerate(recommended[:k]):
        if p in relevant:
            hits += 1
            total += hits / (i + 1)
    return total / min(len(relevant), k)


def coverage(recommendation_lists: Iterable[Sequence[int]], catalogue_size: int, k: int) -> float:
    """Share of the catalogue (``catalogue_size`` products) appearing in any user's top ``k`` (0..1)."""
    if catalogue_size <= 0:
        return 0.0
    shown: set[int] = set()
    for items in recommendation_lists:
        shown.update(int(p) for p in items[:k])
    return len(shown) / catalogue_size


@dataclass(frozen=True)
class RankingScores:
    """Mean per-user metrics over ``n_users`` users (plus catalogue coverage when known)."""

    k: int
    n_users: int
    precision: float
    hitrate: float
    ndcg: float
    map: float
    coverage: float = float("nan")

    def as_dict(self) -> dict[str, float]:
        """Keys as in offline_eval.json: ``precision_at_10``, ``hitrate_at_10``, ..., ``coverage``."""
        return {
            f"precision_at_{self.k}": self.precision,
            f"hitrate_at_{self.k}": self.hitrate,
            f"ndcg_at_{self.k}": self.ndcg,
            f"map_at_{self.k}": self.map,
            "coverage": self.coverage,
        }


def mean_ranking_metrics(
    recommendations: Sequence[Sequence[int]],
    relevant_sets: Sequence[Collection[int]],
    k: int,
    *,
    catalogue_size: int | None = None,
) -> RankingScores:
    """Average precision/hitrate/NDCG/MAP@k over users (one list and one relevant set per user).

    Users with an empty list still count (they score 0), so a model cannot win by abstaining.
    """
    if len(recommendations) != len(relevant_sets):
        raise ValueError("one relevant set per recommendation list is required")
    _check_k(k)
    n = len(recommendations)
    if n == 0:
        nan = float("nan")
        return RankingScores(k, 0, nan, nan, nan, nan, nan)
    sums = np.zeros(4)
    for items, relevant in zip(recommendations, relevant_sets, strict=True):
        sums += (
            precision_at_k(items, relevant, k),
            hitrate_at_k(items, relevant, k),
            ndcg_at_k(items, relevant, k),
            average_precision_at_k(items, relevant, k),
        )
    precision, hitrate, ndcg, ap = (float(m) for m in sums / n)
    cov = coverage(recommendations, catalogue_size, k) if catalogue_size is not None else float("nan")
    return RankingScores(k, n, precision, hitrate, ndcg, ap, coverage=cov)


def top_k_per_group(scores: np.ndarray, items: np.ndarray, group_ptr: np.ndarray, k: int) -> list[list[int]]:
    """For rows grouped contiguously (``group_ptr`` = start offsets + final end), the top ``k`` items by score.

    Ties break by the order of the rows (stable), which callers make deterministic.
    """
    out: list[list[int]] = []
    for start, end in itertools.pairwise(group_ptr):
        block = scores[start:end]
        order = np.argsort(-block, kind="stable")[:k]
        out.append([int(x) for x in items[start:end][order]])
    return out


def _check_k(k: int) -> None:
    if k <= 0:
        raise ValueError(f"k must be positive, got {k}")
