"""The validation gate's metrics: vectorised ROC-AUC, ndcg@k per query, accuracy and F1 of a ranker's scores.

Written for repeated use inside bootstrap loops: the weighted AUC is O(n) once the scores' tie
groups are known, and ndcg is computed per query once, so resamples are weighted means.
These score the candidate rows of the evaluation set (label per row); ``zadanie1.ranking_metrics``
scores final recommendation lists against relevant sets (including items the candidates missed).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class RankedScores:
    """Scores pre-sorted into tie groups so a (weighted) ROC-AUC costs two bincounts."""

    tie_group: np.ndarray  # per row: index of its distinct score, ascending
    n_groups: int
    labels: np.ndarray  # float64 0/1

    @classmethod
    def of(cls, scores: np.ndarray, labels: np.ndarray) -> RankedScores:
        _, inverse = np.unique(np.asarray(scores, dtype=np.float64), return_inverse=True)
        inverse = inverse.reshape(-1)
        return cls(
            tie_group=inverse, n_groups=int(inverse.max()) + 1 if len(inverse) else 0, labels=labels.astype(float)
        )

    def auc(self, weights: np.ndarray | None = None) -> float:
        """Weighted ROC-AUC (ties count one half); NaN when either class has zero weight."""
        w = np.ones(len(self.labels)) if weights is None else np.asarray(weights, dtype=np.float64)
        pos = np.bincount(self.tie_group, weights=w * self.labels, minlength=self.n_groups)
        neg = np.bincount(self.tie_group, weights=w * (1.0 - self.labels), minlength=self.n_groups)
        total_pos, total_neg = pos.sum(), neg.sum()
        if total_pos <= 0 or total_neg <= 0:
            return float("nan")
        negatives_below = np.cumsum(neg) - neg
        return float(np.sum(pos * (negatives_below + 0.5 * neg)) / (total_pos * total_neg))


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC-AUC in [0, 1] (0.5 = random); NaN when only one class is present."""
    return RankedScores.of(scores, labels).auc()


def ndcg_per_query(
    labels: np.ndarray, scores: np.ndarray, query_ids: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """ndcg@k of every query that has at least one positive, and those queries' ids.

    ``query_ids`` must be dense ints 0..Q-1. Within a query rows are ranked by descending score;
    ties are broken pessimistically (negatives first), so a constant scorer cannot look good
    just because positives happen to come first in the file.
    """
    labels = np.asarray(labels, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    query_ids = np.asarray(query_ids, dtype=np.int64)
    if len(labels) == 0:
        return np.empty(0), np.empty(0, dtype=np.int64)
    n_queries = int(query_ids.max()) + 1
    dcg = _dcg(query_ids, np.lexsort((labels, -scores, query_ids)), labels, k, n_queries)
    ideal = _dcg(query_ids, np.lexsort((-labels, query_ids)), labels, k, n_queries)
    has_positive = ideal > 0
    return dcg[has_positive] / ideal[has_positive], np.flatnonzero(has_positive)


def _dcg(query_ids: np.ndarray, order: np.ndarray, labels: np.ndarray, k: int, n_queries: int) -> np.ndarray:
    sorted_queries = query_ids[order]
    starts = np.searchsorted(sorted_queries, np.arange(n_queries))
    rank = np.arange(len(order)) - starts[sorted_queries]  # 0-based position inside its query
    gains = np.where(rank < k, labels[order] / np.log2(rank + 2.0), 0.0)
    return np.bincount(sorted_queries, weights=gains, minlength=n_queries)


def mean_ndcg(labels: np.ndarray, scores: np.ndarray, query_ids: np.ndarray, k: int) -> float:
    """Mean ndcg@k over queries with a positive; NaN when there is none."""
    values, _ = ndcg_per_query(labels, scores, query_ids, k)
    return float(values.mean()) if len(values) else float("nan")


def decision_threshold(scores: np.ndarray, labels: np.ndarray, *, probabilistic: bool) -> float:
    """Threshold turning scores into yes/no for accuracy and F1.

    Probabilities use 0.5. Raw ranking scores have no natural cut, so the top share of rows equal
    to the positive rate is called positive (the threshold is that score quantile).
    """
    if probabilistic:
        return 0.5
    if len(scores) == 0:
        return 0.0
    positive_rate = float(np.mean(labels))
    return float(np.quantile(scores, 1.0 - positive_rate)) if positive_rate > 0 else float(np.max(scores)) + 1.0


def accuracy_and_f1(labels: np.ndarray, scores: np.ndarray, threshold: float) -> tuple[float, float]:
    """Accuracy and F1 of ``score >= threshold`` against binary labels (F1 = 0 with no predicted/true positives)."""
    predicted = np.asarray(scores) >= threshold
    truth = np.asarray(labels).astype(bool)
    if len(truth) == 0:
        return float("nan"), float("nan")
    accuracy = float(np.mean(predicted == truth))
    tp = float(np.sum(predicted & truth))
    denominator = float(np.sum(predicted) + np.sum(truth))
    f1 = 2.0 * tp / denominator if denominator > 0 else 0.0
    return accuracy, f1
