"""Peer baselines of the offline evaluation: what a shop could deploy instead of the ranker.

Each baseline is fitted on the events strictly before a cutoff and gives top-k lists with the
ranker's exclusion (nothing the user purchased before the cutoff). A user a baseline cannot place
(no events before the cutoff, or only products it does not model) gets the tuned popularity list,
and so does every slot a baseline leaves empty: that is what a shop deploying it would show.

* ``popularity_tuned``: weighted event counts decayed with a half-life; ``inf`` = all training time counts
  alike (the project's own baseline is the 7-day half-life);
* ``category_popularity``: the popular lists of the user's top categories (by their event weight),
  taking slots in proportion to the user's shares;
* ``item_knn``: item-item neighbours of the user's products, cosine or BM25-weighted (implicit's
  nearest-neighbour models), ``K`` neighbours kept per item;
* ``ease``: the closed-form item-item ridge regression of Steck (2019) over the ``max_items``
  products with the most users (its Gram matrix is dense, items x items);
* ``als`` and ``bpr``: implicit's matrix factorisations of the user x product confidence matrix.

Interactions are the event weights of :mod:`shared.popularity` summed per user and product.
Every baseline has a small grid of settings (also: whether products the user already touched may
be recommended again); :func:`tune_and_fit` picks the setting with the best precision@k on a
validation window carved from the end of the training period and refits it on all training events.
The holdout is never looked at.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import numpy as np
import pandas as pd
import scipy.sparse as sp

from shared import column_names as col
from shared.feature_computation import DAY, as_utc, events_before
from shared.popularity import DEFAULT_EVENT_WEIGHTS
from zadanie1.ranking_metrics import mean_ranking_metrics
from zadanie1.settings import PEER_BASELINES

BASELINES = PEER_BASELINES
SCORE_BLOCK_CELLS = 1 << 23  # users x products scored at once (64 MiB of float64 per block)


@dataclass(frozen=True)
class Interactions:
    """The user x product confidence matrix of the events before ``cutoff`` (CSR, float32)."""

    cutoff: pd.Timestamp
    user_ids: np.ndarray  # sorted int64
    product_ids: np.ndarray  # sorted int64
    matrix: sp.csr_matrix
    age_days: np.ndarray  # per event: days before the cutoff (popularity decay)
    event_products: np.ndarray  # per event: column index
    event_weights: np.ndarray  # per event: type weight
    product_category: np.ndarray  # per column: category id, -1 unknown
    purchased: sp.csr_matrix  # user x product, 1 where purchased
    touched: sp.csr_matrix  # user x product, 1 where any event (what "seen" means)

    @classmethod
    def from_events(cls, events: pd.DataFrame, cutoff: str | pd.Timestamp) -> Interactions:
        cutoff = as_utc(cutoff)
        ev = events_before(events, cutoff)
        weights = ev[col.EVENT_TYPE].astype(str).map(DEFAULT_EVENT_WEIGHTS).fillna(0.0).to_numpy(np.float64)
        users, user_codes = np.unique(ev[col.USER_ID].to_numpy(np.int64), return_inverse=True)
        products, product_codes = np.unique(ev[col.PRODUCT_ID].to_numpy(np.int64), return_inverse=True)
        shape = (len(users), len(products))
        matrix = sp.csr_matrix((weights.astype(np.float32), (user_codes, product_codes)), shape=shape)
        matrix.sum_duplicates()
        matrix.eliminate_zeros()  # removals only: no confidence
        bought = (ev[col.EVENT_TYPE].astype(str) == col.PURCHASE).to_numpy()
        purchased = _indicator(user_codes[bought], product_codes[bought], shape)
        touched = _indicator(user_codes, product_codes, shape)
        category = np.full(len(products), -1, dtype=np.int64)
        known = ev[col.CATEGORY_ID].notna().to_numpy()
        category[product_codes[known]] = ev[col.CATEGORY_ID].to_numpy()[known].astype(np.int64)  # last one wins
        age = ((cutoff - ev[col.EVENT_TIME]) / DAY).to_numpy(np.float64)
        return cls(cutoff, users, products, matrix, age, product_codes, weights, category, purchased, touched)

    def rows_of(self, user_ids: Sequence[int]) -> np.ndarray:
        """Row of each user, -1 for users without events before the cutoff."""
        query = np.asarray(user_ids, dtype=np.int64)
        if len(self.user_ids) == 0:
            return np.full(len(query), -1, dtype=np.int64)
        pos = np.minimum(np.searchsorted(self.user_ids, query), len(self.user_ids) - 1)
        return np.where(self.user_ids[pos] == query, pos, -1)


def _indicator(rows: np.ndarray, columns: np.ndarray, shape: tuple[int, int]) -> sp.csr_matrix:
    matrix = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, columns)), shape=shape)
    matrix.data[:] = 1.0  # duplicates summed: back to 1
    return matrix


class FittedScores(Protocol):
    def scores(self, rows: np.ndarray) -> np.ndarray:
        """(len(rows), n_products) scores of known users (rows >= 0); higher = better, <= 0 = not proposed."""
        ...


@dataclass(frozen=True)
class Baseline:
    """One baseline with one setting, fitted: lists for users; ``fallback`` fills what it cannot answer."""

    name: str
    params: Mapping[str, Any]
    data: Interactions
    scorer: FittedScores | None  # None: popularity itself
    popularity: np.ndarray  # per column, the tuned popularity scores used as fallback
    exclude_seen: bool
    fit_seconds: float

    def recommend(self, user_ids: Sequence[int], k: int) -> list[list[int]]:
        rows = self.data.rows_of(user_ids)
        out: list[list[int]] = []
        fallback_order = np.lexsort((self.data.product_ids, -self.popularity))  # popularity desc, id asc
        batch_size = max(1, SCORE_BLOCK_CELLS // max(len(self.data.product_ids), 1))
        for start in range(0, len(rows), batch_size):
            batch = rows[start : start + batch_size]
            known = batch >= 0
            block = np.zeros((len(batch), len(self.data.product_ids)), dtype=np.float64)
            if self.scorer is not None and known.any():
                block[known] = self.scorer.scores(batch[known])
            out.extend(self._top(block, batch, k, fallback_order))
        return out

    def _top(self, block: np.ndarray, rows: np.ndarray, k: int, fallback_order: np.ndarray) -> Iterable[list[int]]:
        ids, pop = self.data.product_ids, self.popularity
        never = self.data.touched if self.exclude_seen else self.data.purchased
        for scores, row in zip(block, rows, strict=True):
            blocked = never.indices[never.indptr[row] : never.indptr[row + 1]] if row >= 0 else np.empty(0, np.int32)
            scores = scores.copy()
            scores[blocked] = -np.inf
            candidates = np.flatnonzero(scores > 0)
            if len(candidates) > k:
                candidates = candidates[np.argpartition(-scores[candidates], k - 1)[:k]]
            chosen = candidates[np.lexsort((ids[candidates], -scores[candidates]))].tolist()
            if len(chosen) < k:  # popularity fills the slots, with the same exclusions
                taken = set(chosen) | set(blocked.tolist())
                for column in fallback_order:
                    if len(chosen) == k:
                        break
                    if int(column) not in taken and pop[column] > 0:
                        chosen.append(int(column))
            yield [int(ids[c]) for c in chosen]


# --- the scorers ---------------------------------------------------------------------------------------


def popularity_scores(data: Interactions, half_life_days: float) -> np.ndarray:
    """Per column: event weights decayed by ``0.5 ** (age / half_life)`` (``inf``: not decayed)."""
    decay = np.ones_like(data.age_days) if math.isinf(half_life_days) else np.power(0.5, data.age_days / half_life_days)
    return np.bincount(data.event_products, weights=data.event_weights * decay, minlength=len(data.product_ids))


@dataclass(frozen=True)
class CategoryPopularity:
    """The user's category shares times each product's share of its category's popularity."""

    data: Interactions
    popularity: np.ndarray
    top_categories: int = 3
    # derived once from data and popularity (__post_init__), used by every batch
    _codes: np.ndarray = field(init=False, repr=False)  # category ids, sorted (-1 = unknown)
    _category_index: np.ndarray = field(init=False, repr=False)  # per product: index into _codes
    _within: np.ndarray = field(init=False, repr=False)  # per product: share of its category's popularity
    _product_to_category: sp.csr_matrix = field(init=False, repr=False)

    def __post_init__(self) -> None:
        categories = self.data.product_category
        codes, category_index = np.unique(categories, return_inverse=True)
        per_category = np.bincount(category_index, weights=self.popularity, minlength=len(codes))
        totals = per_category[category_index]
        within = np.divide(self.popularity, totals, out=np.zeros_like(self.popularity), where=totals > 0)
        indicator = sp.csr_matrix(
            (np.ones(len(categories)), (np.arange(len(categories)), category_index)),
            shape=(len(categories), len(codes)),
        )
        for name, value in (
            ("_codes", codes),
            ("_category_index", category_index),
            ("_within", within),
            ("_product_to_category", indicator),
        ):
            object.__setattr__(self, name, value)

    def scores(self, rows: np.ndarray) -> np.ndarray:
        user_weight = np.asarray((self.data.matrix[rows] @ self._product_to_category).todense())
        user_weight[:, self._codes < 0] = 0.0
        if user_weight.shape[1] > self.top_categories:  # keep each user's top categories only
            cut = np.partition(user_weight, -self.top_categories, axis=1)[:, -self.top_categories][:, None]
            user_weight[user_weight < cut] = 0.0
        shares = user_weight / np.maximum(user_weight.sum(axis=1, keepdims=True), 1e-12)
        return shares[:, self._category_index] * self._within[None, :]


@dataclass(frozen=True)
class SparseItemScores:
    """``user row @ item-item similarity`` (item-kNN)."""

    data: Interactions
    similarity: sp.csr_matrix

    def scores(self, rows: np.ndarray) -> np.ndarray:
        return np.asarray((self.data.matrix[rows] @ self.similarity).todense(), dtype=np.float64)


@dataclass(frozen=True)
class EaseScores:
    """``binary user row @ B`` over the modelled columns; other columns score 0."""

    data: Interactions
    columns: np.ndarray
    weights: np.ndarray  # (len(columns), len(columns)) float32

    def scores(self, rows: np.ndarray) -> np.ndarray:
        x = self.data.matrix[rows][:, self.columns]
        x.data[:] = 1.0
        out = np.zeros((len(rows), len(self.data.product_ids)))
        out[:, self.columns] = np.asarray(x @ self.weights)
        return out


@dataclass(frozen=True)
class FactorScores:
    """Dot products of user and item factors (ALS, BPR)."""

    user_factors: np.ndarray
    item_factors: np.ndarray

    def scores(self, rows: np.ndarray) -> np.ndarray:
        return np.asarray(self.user_factors[rows] @ self.item_factors.T, dtype=np.float64)


def fit_ease(data: Interactions, regularization: float, max_items: int) -> EaseScores:
    users_per_item = np.diff(data.matrix.tocsc().indptr)
    columns = np.sort(np.argsort(-users_per_item, kind="stable")[:max_items])
    x = data.matrix[:, columns].astype(np.float64)
    x.data[:] = 1.0
    gram = np.asarray((x.T @ x).todense())
    gram[np.diag_indices_from(gram)] += regularization
    inverse = np.linalg.inv(gram)
    weights = -inverse / np.diag(inverse)[None, :]
    np.fill_diagonal(weights, 0.0)
    return EaseScores(data, columns, weights.astype(np.float32))


def _implicit_threads() -> Any:
    from threadpoolctl import threadpool_limits

    return threadpool_limits(1, "blas")  # implicit's own threads do the work; BLAS threads would fight them


def fit_item_knn(data: Interactions, weighting: str, neighbours: int, threads: int) -> SparseItemScores:
    from implicit.nearest_neighbours import BM25Recommender, CosineRecommender

    with _implicit_threads(), warnings.catch_warnings():
        # implicit's cosine model normalises into a COO matrix itself and then warns about it
        warnings.filterwarnings("ignore", message="Method expects CSR input")
        model = (
            BM25Recommender(K=neighbours, num_threads=threads)
            if weighting == "bm25"
            else CosineRecommender(K=neighbours, num_threads=threads)
        )
        model.fit(data.matrix, show_progress=False)
    return SparseItemScores(data, model.similarity.tocsr())


def fit_factors(
    data: Interactions, method: str, factors: int, regularization: float, threads: int, seed: int
) -> FactorScores:
    from implicit.cpu.als import AlternatingLeastSquares
    from implicit.cpu.bpr import BayesianPersonalizedRanking

    with _implicit_threads():  # ALS checks the BLAS threads when it is built
        if method == "als":
            model: Any = AlternatingLeastSquares(
                factors=factors, regularization=regularization, iterations=15, num_threads=threads, random_state=seed
            )
        else:
            # one thread: BPR's parallel SGD (Hogwild) makes the factors differ from run to run
            model = BayesianPersonalizedRanking(
                factors=factors, regularization=regularization, iterations=60, num_threads=1, random_state=seed
            )
        model.fit(data.matrix, show_progress=False)
    return FactorScores(np.asarray(model.user_factors), np.asarray(model.item_factors))


# --- grids, tuning -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BaselineSettings:
    popularity_half_lives: tuple[float, ...] = (1.0, 3.0, 7.0, 14.0, math.inf)
    knn_neighbours: tuple[int, ...] = (20, 100)
    ease_regularization: tuple[float, ...] = (100.0, 500.0, 2000.0)
    ease_max_items: int = 5000
    factors: tuple[int, ...] = (32, 64)
    bpr_factors: tuple[int, ...] = (32,)  # BPR is single-threaded (see fit_factors): ~100 s per fit at 5 M events
    als_regularization: float = 0.05
    bpr_regularization: float = 0.01
    validation_days: float = 5.0
    validation_max_users: int = 5000
    threads: int = 2
    seed: int = 42


def grid(name: str, settings: BaselineSettings) -> list[dict[str, Any]]:
    """The settings tried for one baseline (each also with and without already-seen products)."""
    base: list[dict[str, Any]]
    if name == "popularity_tuned":
        return [{"half_life_days": h, "exclude_seen": False} for h in settings.popularity_half_lives]
    if name == "category_popularity":
        base = [{"top_categories": n} for n in (1, 3)]
    elif name == "item_knn":
        base = [{"weighting": w, "neighbours": n} for w in ("cosine", "bm25") for n in settings.knn_neighbours]
    elif name == "ease":
        base = [{"regularization": r, "max_items": settings.ease_max_items} for r in settings.ease_regularization]
    elif name == "als":
        base = [{"factors": f} for f in settings.factors]
    elif name == "bpr":
        base = [{"factors": f} for f in settings.bpr_factors]
    else:
        raise ValueError(f"unknown baseline {name!r}; known: {', '.join(BASELINES)}")
    return [{**params, "exclude_seen": seen} for params in base for seen in (False, True)]


def fit_baseline(
    name: str, params: Mapping[str, Any], data: Interactions, popularity: np.ndarray, settings: BaselineSettings
) -> Baseline:
    """One baseline with one setting, fitted on ``data``; ``popularity`` is the tuned fallback."""
    started = time.perf_counter()
    scorer: FittedScores | None
    if name == "popularity_tuned":
        popularity = popularity_scores(data, float(params["half_life_days"]))
        scorer = None
    elif name == "category_popularity":
        scorer = CategoryPopularity(data, popularity, int(params["top_categories"]))
    elif name == "item_knn":
        scorer = fit_item_knn(data, str(params["weighting"]), int(params["neighbours"]), settings.threads)
    elif name == "ease":
        scorer = fit_ease(data, float(params["regularization"]), int(params["max_items"]))
    elif name in ("als", "bpr"):
        regularization = settings.als_regularization if name == "als" else settings.bpr_regularization
        scorer = fit_factors(data, name, int(params["factors"]), regularization, settings.threads, settings.seed)
    else:
        raise ValueError(f"unknown baseline {name!r}; known: {', '.join(BASELINES)}")
    return Baseline(
        name, dict(params), data, scorer, popularity, bool(params["exclude_seen"]), time.perf_counter() - started
    )


@dataclass
class TunedBaseline:
    baseline: Baseline
    validation: list[dict[str, Any]] = field(default_factory=list)  # every setting's validation precision@k


def tune_and_fit(
    names: Sequence[str],
    events: pd.DataFrame,
    cutoff: pd.Timestamp,
    relevant_for: Callable[[pd.Timestamp, pd.Timestamp], dict[int, set[int]]],
    settings: BaselineSettings,
    k: int = 10,
) -> dict[str, TunedBaseline]:
    """Choose each baseline's setting on the validation window before ``cutoff``, refit on all of it.

    ``relevant_for(start, end)`` gives the products each user touched in ``[start, end)`` (the
    evaluation's own relevance). ``popularity_tuned`` is tuned first: its best half-life is every
    other baseline's fallback.
    """
    validation_cutoff = as_utc(cutoff) - settings.validation_days * DAY
    relevant = relevant_for(validation_cutoff, as_utc(cutoff))
    users = sorted(relevant)
    if len(users) > settings.validation_max_users:
        picked = np.random.default_rng(settings.seed).choice(len(users), settings.validation_max_users, replace=False)
        users = [users[i] for i in np.sort(picked)]
    truth = [relevant[u] for u in users]
    early = Interactions.from_events(events, validation_cutoff)
    full = Interactions.from_events(events, cutoff)

    def precision(baseline: Baseline) -> float:
        lists = baseline.recommend(users, k)
        return float(mean_ranking_metrics(lists, truth, k).precision) if users else 0.0

    tuned: dict[str, TunedBaseline] = {}
    early_pop, full_pop = popularity_scores(early, 7.0), popularity_scores(full, 7.0)
    for name in ["popularity_tuned", *[n for n in names if n != "popularity_tuned"]]:
        tried: list[dict[str, Any]] = []
        fitted: dict[str, Baseline] = {}  # one fit per setting; exclude_seen only changes the lists
        for params in grid(name, settings):
            model_params = {key: value for key, value in params.items() if key != "exclude_seen"}
            key = repr(sorted(model_params.items()))
            if key not in fitted:
                fitted[key] = fit_baseline(name, params, early, early_pop, settings)
            candidate = replace(fitted[key], params=dict(params), exclude_seen=bool(params["exclude_seen"]))
            tried.append({"params": params, f"precision_at_{k}": precision(candidate)})
        best = max(tried, key=lambda t: t[f"precision_at_{k}"])  # first of equals: the grid's order
        final = fit_baseline(name, best["params"], full, full_pop, settings)
        if name == "popularity_tuned":  # the fallback of every other baseline
            early_pop = popularity_scores(early, float(best["params"]["half_life_days"]))
            full_pop = final.popularity
        if name in names:
            tuned[name] = TunedBaseline(final, tried)
    return tuned
