"""The learning-to-rank dataset: candidates of users active before a cutoff, labelled by the next window.

For one day-aligned ``cutoff`` and ``label_end``:

* Users: every user with at least one event before ``cutoff`` (a user_stats row) **and** at least
  one event in the label window ``[cutoff, label_end)``; optionally a seeded sample of them.
  Users with no label event carry no ranking signal (all-negative groups). Cold users are not in
  the set: they are served by the popularity fallback, not the model.
* Candidates: exactly what the recommender would score at ``cutoff`` — ``CandidateIndex.candidates``
  with the user's recent products and top categories from user_stats, purchased products
  excluded, the light users restricted to the light sources (``shared.cold_start_policy``).
* Labels: ``relevance`` = the user's strongest interaction with the product in the label window:
  purchase 3, cart 2, view or remove_from_cart 1, none 0; ``label`` = relevance > 0 ("any
  interaction", the binary target; LambdaRank uses the grades). Positives the candidate stage
  missed are not added as rows (the ranker only ever sees candidates) but stay in ``relevant`` so
  ranking metrics count them as misses.
* Negative sampling (training sets only): all positives are kept; negatives are sampled uniformly
  *from the user's own candidates* (hard negatives: popular and co-visited products the user did
  not touch), ``negatives_per_positive`` per positive but at least ``min_negatives`` per user.
  Validation and test sets keep every candidate, so their ranking metrics are those of serving.
* Features: one row per (user, product) with ``event_timestamp = cutoff`` goes to an injectable
  :data:`FeatureLookup` (default: the shared feature functions on tables computed at the cutoff;
  zadanie2 provides a Feast point-in-time lookup). Only events strictly before the cutoff can
  reach a feature; labels only come from events at or after it — no leakage by construction
  (and by test).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from shared import column_names as col
from shared import feature_definitions as fd
from shared.cold_start_policy import WARM, ColdStartPolicyConfig, user_stage
from shared.feature_computation import FeatureTables, as_utc, assemble_ranker_matrix, joined_feature_columns
from zadanie1.candidate_generation import SOURCES, CandidateIndex
from zadanie1.recommender import LIGHT_SOURCES

FeatureLookup = Callable[[pd.DataFrame], dict[str, np.ndarray]]
"""(entity rows: user_id, product_id, category_id, event_timestamp) -> the columns
``assemble_ranker_matrix`` wants (stored ranker features, product_category_id and the padded
user_top_category_ids / user_top_category_shares arrays), one value per row."""

RELEVANCE_OF_EVENT = {col.VIEW: 1, col.REMOVE_FROM_CART: 1, col.CART: 2, col.PURCHASE: 3}


@dataclass(frozen=True)
class DatasetConfig:
    """n_candidates: candidates per user (as served); negatives_per_positive / min_negatives: the
    sampling of training sets; max_users: seeded user sample (None = all); seed: the sampling seed."""

    n_candidates: int = 150
    negatives_per_positive: float = 4.0
    min_negatives: int = 10
    max_users: int | None = None
    seed: int = 42


@dataclass
class RankingDataset:
    """Rows grouped by user (contiguous, candidate order), their model input and labels."""

    cutoff: pd.Timestamp
    label_end: pd.Timestamp
    rows: pd.DataFrame  # user_id, product_id, category_id, source, relevance, label
    matrix: np.ndarray  # float32 (n_rows, len(RANKER_FEATURES))
    relevant: dict[int, set[int]]  # every product each user touched in the label window
    sampled_negatives: bool

    @property
    def labels(self) -> np.ndarray:
        return self.rows["label"].to_numpy(dtype=np.int64)

    @property
    def relevance(self) -> np.ndarray:
        return self.rows["relevance"].to_numpy(dtype=np.int64)

    @property
    def group_sizes(self) -> np.ndarray:
        users = self.rows[col.USER_ID].to_numpy()
        if len(users) == 0:
            return np.empty(0, dtype=np.int64)
        starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
        return np.diff(np.r_[starts, len(users)]).astype(np.int64)

    @property
    def group_ptr(self) -> np.ndarray:
        return np.r_[0, np.cumsum(self.group_sizes)].astype(np.int64)

    @property
    def users(self) -> np.ndarray:
        users = self.rows[col.USER_ID].to_numpy()
        return users[self.group_ptr[:-1]] if len(users) else users

    def __len__(self) -> int:
        return len(self.rows)


def window_relevance(events: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
    """(user_id, product_id, relevance) — the strongest interaction of each pair in ``[start, end)``."""
    times = events[col.EVENT_TIME]
    window = events[(times >= as_utc(start)) & (times < as_utc(end))]
    grades = window[col.EVENT_TYPE].astype(str).map(RELEVANCE_OF_EVENT).fillna(0).astype(np.int64)
    frame = pd.DataFrame(
        {col.USER_ID: window[col.USER_ID].to_numpy(), col.PRODUCT_ID: window[col.PRODUCT_ID].to_numpy()}
    )
    frame["relevance"] = grades.to_numpy()
    return frame.groupby([col.USER_ID, col.PRODUCT_ID], sort=True, as_index=False)["relevance"].max()


def relevant_sets(labels: pd.DataFrame) -> dict[int, set[int]]:
    """user -> set of products with relevance > 0."""
    positive = labels[labels["relevance"] > 0]
    grouped = positive.groupby(col.USER_ID, sort=True)[col.PRODUCT_ID].agg(lambda s: set(s.tolist()))
    return {int(u): p for u, p in grouped.items()}


def direct_feature_lookup(tables: FeatureTables) -> FeatureLookup:
    """The default lookup: shared feature functions on tables computed at the dataset's cutoff."""

    def lookup(entity_rows: pd.DataFrame) -> dict[str, np.ndarray]:
        stamps = pd.to_datetime(entity_rows[col.EVENT_TIMESTAMP], utc=True)
        if len(stamps) and (stamps != tables.cutoff).any():
            raise ValueError("direct feature lookup: every event_timestamp must equal the tables' cutoff")
        return joined_feature_columns(entity_rows, tables)

    return lookup


def sample_negatives(rows: pd.DataFrame, negatives_per_positive: float, min_negatives: int, seed: int) -> np.ndarray:
    """Boolean mask keeping every positive and a seeded uniform sample of each user's negatives."""
    rng = np.random.default_rng(seed)
    users = rows[col.USER_ID].to_numpy()
    positive = rows["label"].to_numpy() > 0
    n_pos = pd.Series(positive.astype(np.int64)).groupby(users).transform("sum").to_numpy()
    quota = np.maximum(np.ceil(n_pos * negatives_per_positive), min_negatives)
    order = np.lexsort((rng.random(len(rows)), users))  # users ascending, random order within a user
    negatives = order[~positive[order]]
    rank = np.full(len(rows), -1, dtype=np.int64)
    rank[negatives] = pd.Series(users[negatives]).groupby(users[negatives], sort=False).cumcount().to_numpy()
    return positive | (rank < quota)


def build_ranking_dataset(
    events: pd.DataFrame,
    cutoff: pd.Timestamp,
    label_end: pd.Timestamp,
    *,
    candidate_index: CandidateIndex,
    user_stats: pd.DataFrame,
    feature_lookup: FeatureLookup,
    config: DatasetConfig,
    sample: bool,
    cold_start: ColdStartPolicyConfig | None = None,
) -> RankingDataset:
    """The dataset for one cutoff (see the module docstring). ``sample`` = apply negative sampling.

    ``candidate_index`` and ``user_stats`` must be built at ``cutoff`` (checked).
    """
    cutoff, label_end = as_utc(cutoff), as_utc(label_end)
    if candidate_index.cutoff != cutoff:
        raise ValueError(f"candidate index is as of {candidate_index.cutoff}, dataset cutoff is {cutoff}")
    if label_end <= cutoff:
        raise ValueError("label_end must be after cutoff")
    cold_start = cold_start or ColdStartPolicyConfig()
    labels = window_relevance(events, cutoff, label_end)
    relevant = relevant_sets(labels)
    users = np.array(sorted(u for u in relevant if u in user_stats.index), dtype=np.int64)
    if config.max_users is not None and len(users) > config.max_users:
        rng = np.random.default_rng(config.seed)
        users = np.sort(rng.choice(users, size=config.max_users, replace=False))
    relevant = {int(u): relevant[int(u)] for u in users}

    inputs = user_stats.loc[
        users, ["user_n_events", "user_recent_product_ids", "user_top_category_ids", "user_purchased_product_ids"]
    ]
    user_col: list[int] = []
    product_col: list[int] = []
    source_col: list[str] = []
    for user, n_events, recent, top_categories, purchased in inputs.itertuples(index=True, name=None):
        sources = SOURCES if user_stage(n_events, cold_start) == WARM else LIGHT_SOURCES
        found = candidate_index.candidates(
            recent, top_categories, config.n_candidates, exclude=purchased, sources=sources
        )
        user_col.extend([user] * len(found))
        product_col.extend(c.product_id for c in found)
        source_col.extend(c.source for c in found)
    rows = pd.DataFrame(
        {
            col.USER_ID: np.asarray(user_col, dtype=np.int64),
            col.PRODUCT_ID: np.asarray(product_col, dtype=np.int64),
            "source": pd.Categorical(source_col, categories=list(SOURCES)),
        }
    )
    grades = labels.set_index([col.USER_ID, col.PRODUCT_ID])["relevance"]
    pair_index = pd.MultiIndex.from_arrays([rows[col.USER_ID], rows[col.PRODUCT_ID]])
    rows["relevance"] = grades.reindex(pair_index).fillna(0).to_numpy(dtype=np.int64)
    rows["label"] = (rows["relevance"] > 0).astype(np.int64)
    if sample and len(rows):
        keep = sample_negatives(rows, config.negatives_per_positive, config.min_negatives, config.seed)
        rows = rows[keep].reset_index(drop=True)
    categories = [candidate_index.popularity.product_category.get(int(p)) for p in rows[col.PRODUCT_ID]]
    rows[col.CATEGORY_ID] = pd.array(categories, dtype="Int64")
    rows = rows[[col.USER_ID, col.PRODUCT_ID, col.CATEGORY_ID, "source", "relevance", "label"]]
    matrix = lookup_matrix(rows, cutoff, feature_lookup)
    return RankingDataset(cutoff, label_end, rows, matrix, relevant, sampled_negatives=sample)


def lookup_matrix(rows: pd.DataFrame, cutoff: pd.Timestamp, feature_lookup: FeatureLookup) -> np.ndarray:
    """Model input for ``rows`` via the lookup, assembled by the shared function."""
    entity = rows[[col.USER_ID, col.PRODUCT_ID, col.CATEGORY_ID]].copy()
    entity[col.EVENT_TIMESTAMP] = cutoff
    if entity.empty:
        return np.empty((0, len(fd.RANKER_FEATURES)), dtype=np.float32)
    columns = feature_lookup(entity)
    return assemble_ranker_matrix(columns, len(entity))
