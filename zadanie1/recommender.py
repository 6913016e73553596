"""The recommendation core shared by offline evaluation (zadanie1) and the online service (zadanie4).

One call serves one user: cold-start stage -> candidates -> feature vectors -> model scores ->
filters -> top-k. It is pure (no I/O: the caller passes the stored feature values and a lookup
for the user x product rows), numpy-based and fast (~0.3 ms for 500 candidates excluding
``ranker.score``). Feature vectors follow :func:`shared.feature_computation.assemble_ranker_matrix`,
the function training uses, so a feature means the same thing offline and online: the product block
keeps its rows already assembled that way (registry defaults applied, category features joined), a
request gathers them with one indexing operation, and the derived features come from the same
shared function (equality with ``assemble_ranker_matrix`` is tested bit for bit).

Stages (``shared.cold_start_policy``):

* cold (0 events) without session context -> popularity (by context category when given);
* cold with session context, or light (1..threshold events) -> recent/session co-visitation and
  category candidates (plus popular fill), ranked by the model;
* warm -> every candidate source, ranked by the model.

Filters: products the user purchased (``user_purchased_product_ids``) and the context's excluded
ids never appear; at most ``max_per_category`` items of one category (diversity). Lists shorter
than ``k`` are topped up from the popularity fallback.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

import numpy as np
import pandas as pd

from shared import feature_definitions as fd
from shared.cold_start_policy import (
    COLD,
    REASON_CATEGORY_POPULAR,
    REASON_EXPLORATION,
    WARM,
    ColdStartPolicyConfig,
    fallback_items,
    user_stage,
)
from shared.feature_computation import add_derived_features, pad_lists
from shared.popularity import PopularityModel
from zadanie1.candidate_generation import (
    SOURCE_CATEGORY_POPULAR,
    SOURCE_COVISITATION,
    SOURCE_POPULAR,
    SOURCE_RECENT,
    SOURCES,
    CandidateIndex,
)

REASON_PERSONALIZED: Final = "personalized"
REASON_SESSION_SIMILAR: Final = "session_similar"
REASONS: Final = (
    REASON_PERSONALIZED,
    "cold_start_popular",
    REASON_CATEGORY_POPULAR,
    REASON_SESSION_SIMILAR,
    REASON_EXPLORATION,
)
LIGHT_SOURCES: Final = (SOURCE_RECENT, SOURCE_COVISITATION, SOURCE_CATEGORY_POPULAR, SOURCE_POPULAR)
_LIGHT_REASON: Final = {
    SOURCE_RECENT: REASON_SESSION_SIMILAR,
    SOURCE_COVISITATION: REASON_SESSION_SIMILAR,
    SOURCE_CATEGORY_POPULAR: REASON_CATEGORY_POPULAR,
}

USER_INPUTS: Final = fd.stored_ranker_features(fd.USER_STATS)
PRODUCT_INPUTS: Final = tuple(f.name for f in fd.features_of(fd.PRODUCT_STATS))  # incl. product_category_id
CATEGORY_INPUTS: Final = tuple(f.name for f in fd.features_of(fd.CATEGORY_STATS))
PAIR_INPUTS: Final = fd.stored_ranker_features(fd.USER_PRODUCT_INTERACTIONS)

_COLUMN: Final = {name: j for j, name in enumerate(fd.RANKER_FEATURES)}
_N_FEATURES: Final = len(fd.RANKER_FEATURES)


def _column_index(names: Sequence[str]) -> slice | np.ndarray:
    """Matrix columns of ``names``: a slice when they are adjacent (the registry groups them by view)."""
    columns = [_COLUMN[n] for n in names]
    if columns == list(range(columns[0], columns[0] + len(columns))):
        return slice(columns[0], columns[0] + len(columns))
    return np.asarray(columns, dtype=np.intp)


def _defaults(names: Sequence[str]) -> np.ndarray:
    return np.array([fd.default_of(n) for n in names], dtype=np.float32)


def _with_defaults(values: np.ndarray, defaults: np.ndarray) -> np.ndarray:
    """``values`` as float32 with NaN replaced by the registry default of its column (as training does)."""
    out = np.asarray(values, dtype=np.float32)
    return np.where(np.isnan(out), defaults, out)


_USER_COLUMNS: Final = _column_index(USER_INPUTS)
_USER_DEFAULTS: Final = _defaults(USER_INPUTS)
_PAIR_COLUMNS: Final = _column_index(PAIR_INPUTS)
_PAIR_DEFAULTS: Final = _defaults(PAIR_INPUTS)
_CATEGORY_MODEL_INPUTS: Final = tuple(n for n in CATEGORY_INPUTS if n in _COLUMN)
_CATEGORY_COLUMNS: Final = np.asarray([_COLUMN[n] for n in _CATEGORY_MODEL_INPUTS], dtype=np.intp)

PairLookup = Callable[[Sequence[int]], Mapping[int, Mapping[str, float]]]
"""product ids -> {product_id: user_product_interactions row} for the pairs that have a row."""


class Scorer(Protocol):
    def score(self, matrix: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class RecommendedItem:
    product_id: int
    score: float
    reason: str  # one of REASONS


@dataclass(frozen=True)
class RecommendationContext:
    """What the request is about: session products (newest first), category page, ids to hide."""

    session_product_ids: tuple[int, ...] = ()
    category_id: int | None = None
    exclude_product_ids: tuple[int, ...] = ()


@dataclass(frozen=True)
class RecommenderConfig:
    """n_candidates: candidates scored per request; max_per_category: diversity cap (0 = off);
    exploration_slots: last slots given to trending products the list lacks (reason exploration)."""

    n_candidates: int = 150  # as in training (zadanie1 settings N_CANDIDATES)
    max_per_category: int = 5
    exploration_slots: int = 0
    cold_start: ColdStartPolicyConfig = field(default_factory=ColdStartPolicyConfig)


@dataclass
class ProductFeatureBlock:
    """Stored product_stats and category_stats values as contiguous float64 columns (NaN = missing).

    Built once (serving refreshes it in the background) and indexed per request with
    ``np.searchsorted`` — no pandas on the hot path. Category ids are kept as int64: REES46-style
    ids (~2e18) do not survive a float64 round trip. On construction the block also assembles, once,
    each product's slice of the model input (float32, registry defaults applied, its category's
    features joined; one extra row for unknown products), which :meth:`gather` indexes per request.
    """

    product_ids: np.ndarray  # int64, sorted
    product_columns: dict[str, np.ndarray]  # PRODUCT_INPUTS, aligned with product_ids
    product_category_ids: np.ndarray  # int64, -1 unknown, aligned with product_ids
    category_ids: np.ndarray  # int64, sorted
    category_columns: dict[str, np.ndarray]  # CATEGORY_INPUTS, aligned with category_ids
    _rows: np.ndarray = field(init=False, repr=False)  # (n_products + 1, len(RANKER_FEATURES)) float32
    _row_categories: np.ndarray = field(init=False, repr=False)  # (n_products + 1,) int64, last row -1
    _category_rows: np.ndarray = field(init=False, repr=False)  # (n_categories + 1, category inputs) float32

    def __post_init__(self) -> None:
        n = len(self.product_ids)
        rows = np.zeros((n + 1, _N_FEATURES), dtype=np.float32)
        for name, values in self.product_columns.items():
            if name in _COLUMN:
                default = _defaults([name])
                rows[:n, _COLUMN[name]] = _with_defaults(values, default)
                rows[n, _COLUMN[name]] = default[0]
        n_categories = len(self.category_ids)
        category_rows = np.tile(_defaults(_CATEGORY_MODEL_INPUTS), (n_categories + 1, 1))
        for k, name in enumerate(_CATEGORY_MODEL_INPUTS):
            column = self.category_columns.get(name)
            if column is not None and n_categories:
                category_rows[:n_categories, k] = _with_defaults(column, category_rows[n_categories, k])
        self._category_rows = category_rows
        self._row_categories = np.append(
            np.asarray(self.product_category_ids, dtype=np.int64) if n else np.empty(0, np.int64), fd.UNKNOWN_ID
        )
        rows[:, _CATEGORY_COLUMNS] = self._category_features(self._row_categories)
        self._rows = rows

    def _category_features(self, category_ids: np.ndarray) -> np.ndarray:
        """Category inputs (float32, defaults for unknown categories) of each id."""
        positions = _positions(self.category_ids, category_ids)
        return self._category_rows[np.where(positions >= 0, positions, len(self.category_ids))]

    def gather(
        self, product_ids: np.ndarray, fallback_category_ids: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """A new (n, len(RANKER_FEATURES)) float32 matrix with the product and category inputs filled.

        Same values as :meth:`take` followed by ``assemble_ranker_matrix`` (other columns are zero);
        also returns the categories (int64, -1 unknown), ``fallback_category_ids`` used for products
        without a category.
        """
        positions = _positions(self.product_ids, product_ids)
        rows = np.where(positions >= 0, positions, len(self.product_ids))
        matrix = self._rows[rows]
        categories = self._row_categories[rows]
        if fallback_category_ids is not None:
            unknown = categories < 0
            if unknown.any():
                fixed = np.where(unknown, fallback_category_ids, categories)
                changed = np.flatnonzero(fixed != categories)
                categories = fixed
                if len(changed):
                    _set_block(matrix, changed, _CATEGORY_COLUMNS, self._category_features(categories[changed]))
        return matrix, categories

    @classmethod
    def from_frames(cls, product_stats: pd.DataFrame, category_stats: pd.DataFrame) -> ProductFeatureBlock:
        """From product_stats (index product_id) and category_stats (index category_id) frames."""
        products = product_stats.sort_index()
        categories = category_stats.sort_index()
        if "product_category_id" in products:
            product_categories = (
                products["product_category_id"].astype("Int64").to_numpy(dtype=np.int64, na_value=fd.UNKNOWN_ID)
            )
        else:
            product_categories = np.full(len(products), fd.UNKNOWN_ID, dtype=np.int64)
        return cls(
            product_ids=products.index.to_numpy(dtype=np.int64),
            product_columns={n: _float_column(products, n) for n in PRODUCT_INPUTS if n != "product_category_id"},
            product_category_ids=product_categories,
            category_ids=categories.index.to_numpy(dtype=np.int64),
            category_columns={n: _float_column(categories, n) for n in CATEGORY_INPUTS},
        )

    def __len__(self) -> int:
        return len(self.product_ids)

    def take(
        self, product_ids: np.ndarray, fallback_category_ids: np.ndarray | None = None
    ) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Product and category columns for ``product_ids`` (NaN for unknown products), and their categories.

        ``fallback_category_ids`` (int64, -1 = unknown) gives the category of products without a row.
        Returns ``(columns, category ids int64 with -1 unknown)``.
        """
        positions = _positions(self.product_ids, product_ids)
        found = positions >= 0
        safe = np.where(found, positions, 0)
        n = len(product_ids)
        out: dict[str, np.ndarray] = {}
        for name, values in self.product_columns.items():
            out[name] = np.where(found, values[safe], np.nan) if len(values) else np.full(n, np.nan)
        if len(self.product_category_ids):
            category = np.where(found, self.product_category_ids[safe], fd.UNKNOWN_ID)
        else:
            category = np.full(n, fd.UNKNOWN_ID, dtype=np.int64)
        if fallback_category_ids is not None:
            category = np.where(category < 0, fallback_category_ids, category)
        out["product_category_id"] = category.astype(np.float64)
        cat_positions = _positions(self.category_ids, category)
        cat_found = cat_positions >= 0
        cat_safe = np.where(cat_found, cat_positions, 0)
        for name, values in self.category_columns.items():
            out[name] = np.where(cat_found, values[cat_safe], np.nan) if len(values) else np.full(n, np.nan)
        return out, category


def _float_column(frame: pd.DataFrame, name: str) -> np.ndarray:
    if name not in frame:
        return np.full(len(frame), np.nan)
    return pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


def _positions(sorted_ids: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Index of each query id in ``sorted_ids`` or -1."""
    if len(sorted_ids) == 0:
        return np.full(len(query), -1, dtype=np.int64)
    pos = np.searchsorted(sorted_ids, query)
    pos = np.minimum(pos, len(sorted_ids) - 1)
    return np.where(sorted_ids[pos] == query, pos, -1)


def _as_list(value: Any) -> list[int]:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return []
    return [int(v) for v in value]


def user_feature_columns(user_row: Mapping[str, Any] | None) -> dict[str, Any]:
    """The user's stored values as scalars / (TOP_CATEGORIES,) arrays, NaN where missing."""
    row = user_row or {}
    out: dict[str, Any] = {}
    for name in USER_INPUTS:
        value = row.get(name)
        out[name] = np.nan if value is None else float(value)
    out["user_top_category_ids"] = pad_lists(
        [row.get("user_top_category_ids")], fd.TOP_CATEGORIES, fd.UNKNOWN_ID, "float64"
    )[0]
    out["user_top_category_shares"] = pad_lists(
        [row.get("user_top_category_shares")], fd.TOP_CATEGORIES, 0.0, "float32"
    )[0]
    return out


def feature_matrix(
    user_row: Mapping[str, Any] | None,
    products: ProductFeatureBlock,
    pair_rows: Mapping[int, Mapping[str, float]],
    product_ids: np.ndarray,
    fallback_category_ids: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Model input for one user x ``product_ids`` and the products' category ids.

    Returns ``(matrix (n, len(RANKER_FEATURES)) float32, category ids (n,) int64, -1 unknown)``.
    """
    product_ids = np.asarray(product_ids, dtype=np.int64)
    matrix, categories = products.gather(product_ids, fallback_category_ids)
    user = user_feature_columns(user_row)
    user_values = np.array([user[name] for name in USER_INPUTS], dtype=np.float64)
    matrix[:, _USER_COLUMNS] = _with_defaults(user_values, _USER_DEFAULTS)
    matrix[:, _PAIR_COLUMNS] = _PAIR_DEFAULTS
    if pair_rows:
        _fill_pair_rows(matrix, product_ids, pair_rows)
    add_derived_features(
        matrix, categories.astype(np.float64), user["user_top_category_ids"], user["user_top_category_shares"]
    )
    return matrix, categories


def _fill_pair_rows(matrix: np.ndarray, product_ids: np.ndarray, pair_rows: Mapping[int, Mapping[str, Any]]) -> None:
    """Write the pair inputs of the products that have a row (the last occurrence of a repeated id)."""
    order = np.argsort(product_ids, kind="stable")
    sorted_ids = product_ids[order]
    keys = np.fromiter((int(p) for p in pair_rows), dtype=np.int64, count=len(pair_rows))
    at = np.searchsorted(sorted_ids, keys, side="right") - 1
    hit = at >= 0
    hit[hit] = sorted_ids[at[hit]] == keys[hit]
    if not hit.any():
        return
    rows = list(pair_rows.values())
    values = np.array(
        [
            [np.nan if (value := rows[i].get(name)) is None else float(value) for name in PAIR_INPUTS]
            for i in np.flatnonzero(hit).tolist()
        ],
        dtype=np.float64,
    )
    _set_block(matrix, order[at[hit]], _PAIR_COLUMNS, _with_defaults(values, _PAIR_DEFAULTS))


def _set_block(matrix: np.ndarray, rows: np.ndarray, columns: slice | np.ndarray, values: np.ndarray) -> None:
    """``matrix[rows x columns] = values`` for a slice or an array of columns."""
    if isinstance(columns, slice):
        matrix[rows, columns] = values
    else:
        matrix[np.ix_(rows, columns)] = values


def recommend(
    user_row: Mapping[str, Any] | None,
    products: ProductFeatureBlock,
    pair_lookup: PairLookup,
    candidate_index: CandidateIndex,
    popularity: PopularityModel,
    ranker: Scorer | None,
    k: int,
    context: RecommendationContext | None = None,
    config: RecommenderConfig | None = None,
) -> list[RecommendedItem]:
    """Top-``k`` products for one user (``user_row`` = stored user_stats values, None when unknown).

    Deterministic for equal inputs; never returns purchased or excluded products; returns fewer
    than ``k`` only when the catalogue is exhausted. ``ranker=None`` (no model loaded) serves the
    popularity fallback — by the context category or else the user's top category.
    """
    context = context or RecommendationContext()
    config = config or RecommenderConfig()
    if k <= 0:
        return []
    row = user_row or {}
    stage = user_stage(row.get("user_n_events"), config.cold_start)
    exclude = set(_as_list(row.get("user_purchased_product_ids"))) | {int(p) for p in context.exclude_product_ids}
    top_categories = _as_list(row.get("user_top_category_ids"))

    def fallback(n: int, taken: set[int]) -> list[RecommendedItem]:
        category = context.category_id
        if category is None and top_categories:
            category = top_categories[0]
        items = fallback_items(popularity, n, category_id=category, exclude=taken, config=config.cold_start)
        return [RecommendedItem(i.product_id, i.score, i.reason) for i in items]

    if ranker is None or (stage == COLD and not context.session_product_ids):
        return _with_exploration(fallback(k, exclude), popularity, k, exclude, config)

    candidate_ids, sources = candidate_index.merged(
        _as_list(row.get("user_recent_product_ids")),
        top_categories,
        config.n_candidates,
        context_product_ids=tuple(int(p) for p in context.session_product_ids),
        context_category_id=context.category_id,
        exclude=exclude,
        sources=SOURCES if stage == WARM else LIGHT_SOURCES,
    )
    if not candidate_ids:
        return _with_exploration(fallback(k, exclude), popularity, k, exclude, config)
    ids = np.asarray(candidate_ids, dtype=np.int64)
    matrix, categories = feature_matrix(
        row, products, pair_lookup(candidate_ids), ids, candidate_index.categories_of(ids)
    )
    scores = np.asarray(ranker.score(matrix), dtype=np.float64)
    order = np.lexsort((ids, -scores))  # score desc, product id asc on ties

    chosen: list[RecommendedItem] = []
    per_category: dict[int, int] = {}
    cap = config.max_per_category
    for i in order.tolist():
        category = int(categories[i])
        if cap > 0 and category >= 0 and per_category.get(category, 0) >= cap:
            continue
        per_category[category] = per_category.get(category, 0) + 1
        source = sources[i]
        reason = REASON_PERSONALIZED if stage == WARM else _LIGHT_REASON.get(source, REASON_PERSONALIZED)
        chosen.append(RecommendedItem(int(ids[i]), float(scores[i]), reason))
        if len(chosen) == k:
            break
    if len(chosen) < k:
        taken = exclude | {item.product_id for item in chosen}
        chosen += fallback(k - len(chosen), taken)
    return _with_exploration(chosen, popularity, k, exclude, config)


def _with_exploration(
    items: list[RecommendedItem],
    popularity: PopularityModel,
    k: int,
    exclude: set[int],
    config: RecommenderConfig,
) -> list[RecommendedItem]:
    """Replace the last ``exploration_slots`` items with trending products the list lacks."""
    slots = min(config.exploration_slots, k)
    if slots <= 0:
        return items[:k]
    keep = items[: k - slots]
    taken = exclude | {i.product_id for i in keep}
    explore = popularity.trending(slots, exclude=taken)
    floor = keep[-1].score if keep else 0.0
    out = keep + [RecommendedItem(p, floor, REASON_EXPLORATION) for p in explore]
    if len(out) < k:  # not enough trending products: give the slots back to the ranked list
        shown = {i.product_id for i in out}
        out += [i for i in items[k - slots :] if i.product_id not in shown][: k - len(out)]
    return out
