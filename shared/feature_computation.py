"""Pure, vectorised feature functions, computed as of a cutoff time.

Every function uses only events strictly before ``cutoff`` — an event at the cutoff or later can
never change a feature — so a table computed at time T is what a system running at T could have
known. The same functions write Feast's offline snapshots (zadanie2) and the training set
(zadanie1); :func:`assemble_ranker_matrix` turns stored values into model input the same way for
training and serving.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from shared import column_names as col
from shared import feature_definitions as fd

DAY = pd.Timedelta(days=1)
RATE_PRIOR_VIEWS_PRODUCT = 20.0  # pseudo-views pulling a product's rates toward the global rate
RATE_PRIOR_VIEWS_CATEGORY = 100.0
TREND_RECENT_DAYS = 7
TREND_BASE_DAYS = 21  # the 21 days before the recent window


@dataclass(frozen=True)
class FeatureTables:
    """All stored feature views as of ``cutoff`` (indexes: user_id, product_id, category_id, pair)."""

    cutoff: pd.Timestamp
    user_stats: pd.DataFrame
    product_stats: pd.DataFrame
    category_stats: pd.DataFrame
    user_product_interactions: pd.DataFrame


def as_utc(ts: str | pd.Timestamp) -> pd.Timestamp:
    stamp = pd.Timestamp(ts)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def events_before(events: pd.DataFrame, cutoff: str | pd.Timestamp) -> pd.DataFrame:
    """Events strictly before ``cutoff`` — the only events any feature may see.

    A time-sorted frame (every validated log is) is sliced, which shares its columns instead of copying
    the whole log once per cutoff; the rows, their order and index are the same either way.
    """
    position = _sorted_position(events, cutoff)
    return events.iloc[:position] if position is not None else events[events[col.EVENT_TIME] < as_utc(cutoff)]


def events_from(events: pd.DataFrame, cutoff: str | pd.Timestamp) -> pd.DataFrame:
    """Events at or after ``cutoff`` (a holdout); sliced like :func:`events_before` when time-sorted."""
    position = _sorted_position(events, cutoff)
    return events.iloc[position:] if position is not None else events[events[col.EVENT_TIME] >= as_utc(cutoff)]


def _sorted_position(events: pd.DataFrame, cutoff: str | pd.Timestamp) -> int | None:
    """The row where ``cutoff`` splits a time-sorted frame; None when the frame is not sorted by time."""
    times = events[col.EVENT_TIME]
    if not times.is_monotonic_increasing:
        return None
    return int(times.searchsorted(as_utc(cutoff), side="left"))


def _type_counts(events: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    counts = events.groupby([*keys, col.EVENT_TYPE], observed=True).size().unstack(col.EVENT_TYPE, fill_value=0)
    return counts.reindex(columns=list(col.EVENT_TYPES), fill_value=0)


def _days_between(later: pd.Timestamp, earlier: pd.Series) -> pd.Series:
    return ((later - earlier) / DAY).astype("float64")


def _empty(index_name: str | list[str], view: str) -> pd.DataFrame:
    columns = [f.name for f in fd.features_of(view)]
    if isinstance(index_name, list):
        index = pd.MultiIndex.from_arrays([[] for _ in index_name], names=index_name)
    else:
        index = pd.Index([], dtype="int64", name=index_name)
    return _typed(pd.DataFrame(index=index, columns=columns), view)


def _typed(frame: pd.DataFrame, view: str) -> pd.DataFrame:
    for spec in fd.features_of(view):
        if spec.dtype in ("int64", "float32"):
            frame[spec.name] = frame[spec.name].fillna(spec.default).astype(spec.dtype)
    return frame[[f.name for f in fd.features_of(view)]]


def _ranked_lists(
    frame: pd.DataFrame, group: str, value: str, order: list[str], ascending: list[bool], limit: int
) -> pd.Series:
    """Per ``group`` (sorted), the first ``limit`` values of ``value`` after sorting by ``order``, as lists
    of Python scalars.

    The lists are sliced from one ``tolist()`` at the group boundaries: ``groupby(...).agg(list)`` runs
    Python per group and took two thirds of a snapshot's time.
    """
    ordered = frame.sort_values([group, *order], ascending=[True, *ascending], kind="stable")
    top = ordered.groupby(group, sort=False).head(limit)
    groups = top[group].to_numpy()
    if len(groups) == 0:
        return pd.Series([], index=pd.Index(groups, name=group), dtype=object)
    starts = np.flatnonzero(np.r_[True, groups[1:] != groups[:-1]])
    ends = np.r_[starts[1:], len(groups)]
    values = top[value].tolist()
    lists = [values[a:b] for a, b in zip(starts.tolist(), ends.tolist(), strict=True)]
    return pd.Series(lists, index=pd.Index(groups[starts], name=group), dtype=object)


def compute_user_stats(events: pd.DataFrame, cutoff: str | pd.Timestamp) -> pd.DataFrame:
    """One row per user with any event before ``cutoff`` (see ``feature_definitions.USER_STATS``)."""
    cutoff = as_utc(cutoff)
    ev = events_before(events, cutoff)
    if ev.empty:
        return _empty(col.USER_ID, fd.USER_STATS)
    by_user = ev.groupby(col.USER_ID, sort=True)
    counts = _type_counts(ev, [col.USER_ID])
    out = pd.DataFrame(index=by_user.size().index)
    out["user_n_views"] = counts[col.VIEW]
    out["user_n_carts"] = counts[col.CART]
    out["user_n_purchases"] = counts[col.PURCHASE]
    out["user_n_events"] = by_user.size()
    out["user_n_sessions"] = by_user[col.USER_SESSION].nunique()
    out["user_n_products"] = by_user[col.PRODUCT_ID].nunique()
    out["user_n_categories"] = by_user[col.CATEGORY_ID].nunique()
    priced_views = ev[(ev[col.EVENT_TYPE] == col.VIEW) & (ev[col.PRICE] > 0)]
    out["user_avg_price"] = priced_views.groupby(col.USER_ID)[col.PRICE].mean().astype("float64")
    out["user_recency_days"] = _days_between(cutoff, by_user[col.EVENT_TIME].max())
    out["user_tenure_days"] = _days_between(cutoff, by_user[col.EVENT_TIME].min())
    out["user_cart_rate"] = out["user_n_carts"] / (out["user_n_views"] + 1.0)
    out["user_purchase_rate"] = out["user_n_purchases"] / (out["user_n_views"] + 1.0)

    per_category = (
        ev.dropna(subset=[col.CATEGORY_ID]).groupby([col.USER_ID, col.CATEGORY_ID]).size().rename("n").reset_index()
    )
    per_category["share"] = per_category["n"] / out["user_n_events"].reindex(per_category[col.USER_ID]).to_numpy()
    top_ids = _ranked_lists(
        per_category, col.USER_ID, col.CATEGORY_ID, ["n", col.CATEGORY_ID], [False, True], fd.TOP_CATEGORIES
    )
    top_shares = _ranked_lists(
        per_category, col.USER_ID, "share", ["n", col.CATEGORY_ID], [False, True], fd.TOP_CATEGORIES
    )
    out["user_top_category_ids"] = _list_column(top_ids, out.index)
    out["user_top_category_shares"] = _list_column(top_shares, out.index)
    out["user_top_category_share"] = top_shares.map(lambda v: v[0]).reindex(out.index).fillna(0.0)

    last_touch = ev.groupby([col.USER_ID, col.PRODUCT_ID])[col.EVENT_TIME].max().rename("t").reset_index()
    recent = _ranked_lists(
        last_touch, col.USER_ID, col.PRODUCT_ID, ["t", col.PRODUCT_ID], [False, True], fd.RECENT_PRODUCTS
    )
    out["user_recent_product_ids"] = _list_column(recent, out.index)
    bought = ev[ev[col.EVENT_TYPE] == col.PURCHASE]
    last_buy = bought.groupby([col.USER_ID, col.PRODUCT_ID])[col.EVENT_TIME].max().rename("t").reset_index()
    purchased = _ranked_lists(
        last_buy, col.USER_ID, col.PRODUCT_ID, ["t", col.PRODUCT_ID], [False, True], fd.PURCHASED_PRODUCTS
    )
    out["user_purchased_product_ids"] = _list_column(purchased, out.index)
    out.index = out.index.astype("int64")
    return _typed(out, fd.USER_STATS)


def _list_column(values: pd.Series, index: pd.Index) -> pd.Series:
    aligned = values.reindex(index)
    return aligned.map(lambda v: v if isinstance(v, list) else [])


def _trend(recent: pd.Series, base: pd.Series) -> pd.Series:
    weekly_base = base / (TREND_BASE_DAYS / TREND_RECENT_DAYS)
    return (recent + 1.0) / (weekly_base + 1.0)


def _window_views(ev: pd.DataFrame, key: str, cutoff: pd.Timestamp) -> tuple[pd.Series, pd.Series]:
    views = ev[ev[col.EVENT_TYPE] == col.VIEW]
    recent_start = cutoff - TREND_RECENT_DAYS * DAY
    base_start = recent_start - TREND_BASE_DAYS * DAY
    recent = views[views[col.EVENT_TIME] >= recent_start].groupby(key).size()
    base = views[(views[col.EVENT_TIME] >= base_start) & (views[col.EVENT_TIME] < recent_start)].groupby(key).size()
    return recent, base


def _smoothed(successes: pd.Series, trials: pd.Series, prior_rate: float, prior_trials: float) -> pd.Series:
    return (successes + prior_trials * prior_rate) / (trials + prior_trials)


def _global_rate(counts: pd.DataFrame, numerator: str) -> float:
    views = float(counts[col.VIEW].sum())
    return float(counts[numerator].sum()) / views if views > 0 else 0.0


def compute_product_stats(events: pd.DataFrame, cutoff: str | pd.Timestamp) -> pd.DataFrame:
    """One row per product with any event before ``cutoff``."""
    cutoff = as_utc(cutoff)
    ev = events_before(events, cutoff)
    if ev.empty:
        return _empty(col.PRODUCT_ID, fd.PRODUCT_STATS)
    by_product = ev.groupby(col.PRODUCT_ID, sort=True)
    counts = _type_counts(ev, [col.PRODUCT_ID])
    out = pd.DataFrame(index=by_product.size().index)
    out["product_category_id"] = by_product[col.CATEGORY_ID].last()  # last non-null
    out["product_n_views"] = counts[col.VIEW]
    out["product_n_carts"] = counts[col.CART]
    out["product_n_purchases"] = counts[col.PURCHASE]
    out["product_n_users"] = by_product[col.USER_ID].nunique()
    recent, base = _window_views(ev, col.PRODUCT_ID, cutoff)
    out["product_views_7d"] = recent.reindex(out.index).fillna(0)
    out["product_trend"] = _trend(out["product_views_7d"], base.reindex(out.index).fillna(0))
    cart_rate, buy_rate = _global_rate(counts, col.CART), _global_rate(counts, col.PURCHASE)
    views = out["product_n_views"].astype("float64")
    out["product_cart_rate"] = _smoothed(out["product_n_carts"], views, cart_rate, RATE_PRIOR_VIEWS_PRODUCT)
    out["product_conversion_rate"] = _smoothed(out["product_n_purchases"], views, buy_rate, RATE_PRIOR_VIEWS_PRODUCT)
    priced = ev[ev[col.PRICE] > 0]
    out["product_price"] = priced.groupby(col.PRODUCT_ID)[col.PRICE].last().astype("float64")
    out["product_age_days"] = _days_between(cutoff, by_product[col.EVENT_TIME].min())
    out.index = out.index.astype("int64")
    return _typed(out, fd.PRODUCT_STATS)


def compute_category_stats(events: pd.DataFrame, cutoff: str | pd.Timestamp) -> pd.DataFrame:
    """One row per category with any event before ``cutoff``."""
    cutoff = as_utc(cutoff)
    ev = events_before(events, cutoff).dropna(subset=[col.CATEGORY_ID])
    if ev.empty:
        return _empty(col.CATEGORY_ID, fd.CATEGORY_STATS)
    ev = ev.assign(**{col.CATEGORY_ID: ev[col.CATEGORY_ID].astype("int64")})
    by_category = ev.groupby(col.CATEGORY_ID, sort=True)
    counts = _type_counts(ev, [col.CATEGORY_ID])
    out = pd.DataFrame(index=by_category.size().index)
    out["category_n_views"] = counts[col.VIEW]
    out["category_n_purchases"] = counts[col.PURCHASE]
    out["category_n_products"] = by_category[col.PRODUCT_ID].nunique()
    out["category_conversion_rate"] = _smoothed(
        out["category_n_purchases"],
        out["category_n_views"].astype("float64"),
        _global_rate(counts, col.PURCHASE),
        RATE_PRIOR_VIEWS_CATEGORY,
    )
    recent, base = _window_views(ev, col.CATEGORY_ID, cutoff)
    out["category_trend"] = _trend(recent.reindex(out.index).fillna(0), base.reindex(out.index).fillna(0))
    priced_views = ev[(ev[col.EVENT_TYPE] == col.VIEW) & (ev[col.PRICE] > 0)]
    out["category_avg_price"] = priced_views.groupby(col.CATEGORY_ID)[col.PRICE].mean().astype("float64")
    out.index = out.index.astype("int64")
    return _typed(out, fd.CATEGORY_STATS)


def compute_user_product_interactions(events: pd.DataFrame, cutoff: str | pd.Timestamp) -> pd.DataFrame:
    """One row per (user, product) pair with any event before ``cutoff``."""
    cutoff = as_utc(cutoff)
    ev = events_before(events, cutoff)
    keys = [col.USER_ID, col.PRODUCT_ID]
    if ev.empty:
        return _empty(keys, fd.USER_PRODUCT_INTERACTIONS)
    counts = _type_counts(ev, keys)
    out = pd.DataFrame(index=counts.index)
    out["up_n_views"] = counts[col.VIEW]
    out["up_n_carts"] = counts[col.CART]
    out["up_n_purchases"] = counts[col.PURCHASE]
    out["up_recency_days"] = _days_between(cutoff, ev.groupby(keys)[col.EVENT_TIME].max())
    return _typed(out, fd.USER_PRODUCT_INTERACTIONS)


def compute_user_category_affinity(events: pd.DataFrame, cutoff: str | pd.Timestamp) -> pd.DataFrame:
    """Share of each user's events per category (index user_id, category_id; column ``affinity``)."""
    ev = events_before(events, cutoff).dropna(subset=[col.CATEGORY_ID])
    if ev.empty:
        return pd.DataFrame(
            {"affinity": []}, index=pd.MultiIndex.from_arrays([[], []], names=[col.USER_ID, col.CATEGORY_ID])
        )
    totals = events_before(events, cutoff).groupby(col.USER_ID).size()
    per = ev.groupby([col.USER_ID, col.CATEGORY_ID]).size()
    share = per / totals.reindex(per.index.get_level_values(col.USER_ID)).to_numpy()
    return share.rename("affinity").to_frame()


def compute_feature_tables(
    events: pd.DataFrame, cutoff: str | pd.Timestamp, *, users: Sequence[int] | None = None
) -> FeatureTables:
    """All four stored feature views as of ``cutoff``.

    ``users``: only their user and pair rows (all users when None). Those rows depend only on the user's own
    events, so they are computed from those events alone (a test checks they equal the full tables' rows);
    products and categories always come from every event.
    """
    cutoff = as_utc(cutoff)
    own = events if users is None else events[events[col.USER_ID].isin(np.asarray(users, dtype=np.int64))]
    return FeatureTables(
        cutoff=cutoff,
        user_stats=compute_user_stats(own, cutoff),
        product_stats=compute_product_stats(events, cutoff),
        category_stats=compute_category_stats(events, cutoff),
        user_product_interactions=compute_user_product_interactions(own, cutoff),
    )


# --- assembling model input (shared by training and serving) -------------------------------------


def pad_lists(values: object, width: int, fill: float, dtype: str) -> np.ndarray:
    """Rows of variable-length lists (None/NaN = empty) -> a (n, width) array padded with ``fill``."""
    rows = list(values)  # type: ignore[call-overload]
    out = np.full((len(rows), width), fill, dtype=dtype)
    for i, row in enumerate(rows):
        if row is None or (isinstance(row, float) and np.isnan(row)):
            continue
        items = list(row)[:width]
        if items:
            out[i, : len(items)] = items
    return out


def assemble_ranker_matrix(columns: Mapping[str, object], n_rows: int) -> np.ndarray:
    """Model input (n_rows, len(RANKER_FEATURES)) float32 from stored feature values.

    ``columns`` maps every stored ranker feature, ``product_category_id``, and the padded
    (n, TOP_CATEGORIES) arrays ``user_top_category_ids`` / ``user_top_category_shares`` to
    values that broadcast to ``n_rows`` (a scalar for the one user of a serving request, a
    column for a training set). Missing values (NaN) take the registry default, then the
    derived features are computed. This is the one place that turns stored values into
    model input, offline and online.
    """
    matrix = np.empty((n_rows, len(fd.RANKER_FEATURES)), dtype=np.float32)
    for j, name in enumerate(fd.RANKER_FEATURES):
        if fd.FEATURES_BY_NAME[name].view == fd.DERIVED:
            continue
        matrix[:, j] = np.broadcast_to(np.asarray(columns[name], dtype=np.float32), (n_rows,))
        missing = np.isnan(matrix[:, j])
        if missing.any():
            matrix[missing, j] = fd.default_of(name)
    add_derived_features(
        matrix, columns["product_category_id"], columns["user_top_category_ids"], columns["user_top_category_shares"]
    )
    return matrix


_POSITION: dict[str, int] = {name: j for j, name in enumerate(fd.RANKER_FEATURES)}


def add_derived_features(matrix: np.ndarray, category: object, top_ids: object, top_shares: object) -> None:
    """Fill the DERIVED columns of a ranker matrix whose stored columns are already filled (in place).

    ``category``: the products' category ids (n,) or a scalar; ``top_ids`` / ``top_shares``: the padded
    (n, TOP_CATEGORIES) or (TOP_CATEGORIES,) user arrays. Used by :func:`assemble_ranker_matrix` and by
    the serving core's preassembled path, so derived features have one definition.
    """
    n_rows = len(matrix)
    categories = np.broadcast_to(np.asarray(category, dtype=np.float64), (n_rows,))
    ids = np.broadcast_to(np.asarray(top_ids, dtype=np.float64), (n_rows, fd.TOP_CATEGORIES))
    shares = np.broadcast_to(np.asarray(top_shares, dtype=np.float32), (n_rows, fd.TOP_CATEGORIES))
    same_category = (ids == categories[:, None]) & (categories[:, None] >= 0)
    matrix[:, _POSITION["uc_affinity"]] = np.where(same_category, shares, 0.0).sum(axis=1)

    product_price = matrix[:, _POSITION["product_price"]]
    user_price = matrix[:, _POSITION["user_avg_price"]]
    known = (product_price > 0) & (user_price > 0)
    ratio = np.divide(product_price, user_price, out=np.ones_like(product_price), where=known)
    matrix[:, _POSITION["price_ratio"]] = ratio


def joined_feature_columns(pairs: pd.DataFrame, tables: FeatureTables) -> dict[str, np.ndarray]:
    """Look up every stored feature for (user_id, product_id[, category_id]) rows.

    A ``category_id`` column in ``pairs`` supplies the category of products that have no
    product_stats row yet (a new product known from the catalogue).
    """
    users = pairs[col.USER_ID].to_numpy(dtype="int64")
    products = pairs[col.PRODUCT_ID].to_numpy(dtype="int64")
    out: dict[str, np.ndarray] = {}

    user_pos = tables.user_stats.index.get_indexer(users)
    for spec in fd.features_of(fd.USER_STATS):
        if spec.dtype in ("int64", "float32"):
            out[spec.name] = _take(tables.user_stats[spec.name].to_numpy(dtype="float64"), user_pos)
    top_ids = pad_lists(tables.user_stats["user_top_category_ids"], fd.TOP_CATEGORIES, fd.UNKNOWN_ID, "float64")
    top_shares = pad_lists(tables.user_stats["user_top_category_shares"], fd.TOP_CATEGORIES, 0.0, "float32")
    out["user_top_category_ids"] = _take_rows(top_ids, user_pos, fd.UNKNOWN_ID)
    out["user_top_category_shares"] = _take_rows(top_shares, user_pos, 0.0)

    product_pos = tables.product_stats.index.get_indexer(products)
    for spec in fd.features_of(fd.PRODUCT_STATS):
        out[spec.name] = _take(tables.product_stats[spec.name].to_numpy(dtype="float64"), product_pos)
    # Category ids stay int64 for the lookup: REES46-style ids (~2e18) do not survive a float64 round trip.
    known = tables.product_stats["product_category_id"].to_numpy(dtype="int64")
    category = (
        np.where(product_pos >= 0, known[np.clip(product_pos, 0, None)], fd.UNKNOWN_ID)
        if len(known)
        else np.full(len(products), fd.UNKNOWN_ID, dtype="int64")
    )
    if col.CATEGORY_ID in pairs:
        given = pairs[col.CATEGORY_ID].astype("Int64").to_numpy(dtype="int64", na_value=fd.UNKNOWN_ID)
        category = np.where(category < 0, given, category)
    out["product_category_id"] = category.astype("float64")

    category_pos = tables.category_stats.index.get_indexer(category)
    for spec in fd.features_of(fd.CATEGORY_STATS):
        out[spec.name] = _take(tables.category_stats[spec.name].to_numpy(dtype="float64"), category_pos)

    pair_index = pd.MultiIndex.from_arrays([users, products], names=[col.USER_ID, col.PRODUCT_ID])
    pair_pos = tables.user_product_interactions.index.get_indexer(pair_index)
    for spec in fd.features_of(fd.USER_PRODUCT_INTERACTIONS):
        out[spec.name] = _take(tables.user_product_interactions[spec.name].to_numpy(dtype="float64"), pair_pos)
    return out


def _take(values: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """values[positions] with NaN where the position is -1 (no row)."""
    if len(values) == 0:
        return np.full(len(positions), np.nan)
    taken = values[np.clip(positions, 0, None)]
    return np.where(positions >= 0, taken, np.nan)


def _take_rows(values: np.ndarray, positions: np.ndarray, fill: float) -> np.ndarray:
    if len(values) == 0:
        return np.full((len(positions), values.shape[1]), fill, dtype=values.dtype)
    taken = values[np.clip(positions, 0, None)]
    taken[positions < 0] = fill
    return taken


def build_ranker_matrix(pairs: pd.DataFrame, tables: FeatureTables) -> np.ndarray:
    """Model input for (user_id, product_id) rows from feature tables computed at one cutoff."""
    return assemble_ranker_matrix(joined_feature_columns(pairs, tables), len(pairs))
