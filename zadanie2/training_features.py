"""Training features through Feast: a point-in-time lookup with the shape zadanie1's ranking set wants.

``feast_feature_lookup(store_or_settings)`` returns a function of an entity frame
(user_id, product_id, category_id, event_timestamp) that calls ``get_historical_features`` and
returns exactly the columns of ``shared.feature_computation.joined_feature_columns``: every
stored ranker feature as float64 (NaN = no row), ``product_category_id`` and the padded
(n, TOP_CATEGORIES) ``user_top_category_ids`` / ``user_top_category_shares``. With
``event_timestamp`` = a snapshot cutoff the values are identical to the shared functions at that
cutoff (tested), because the snapshots *are* those functions' output.

Category features follow the same rule as the shared join: the product's stored category, or
the category given in the entity row when the product has no (known) category yet. Feast joins
category_stats on the entity row's ``category_id``; rows whose effective category differs are
looked up again with the effective one (usually none). Ids stay int64 end to end (REES46
category ids exceed 2**53, where float64 would merge neighbours).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from shared import column_names as col
from shared import feature_definitions as fd
from shared.errors import UserInputError
from shared.feature_computation import pad_lists
from zadanie2.feature_repo.feature_views import EVENT_TIMESTAMP, feature_refs
from zadanie2.settings import FeatureStoreSettings

FeatureLookup = Callable[[pd.DataFrame], dict[str, np.ndarray]]
ROW_ID = "__row_id"
_LIST_COLUMNS = ("user_top_category_ids", "user_top_category_shares")


def _scalar_names(view: str) -> tuple[str, ...]:
    return tuple(s.name for s in fd.features_of(view) if s.dtype in ("int64", "float32"))


def training_feature_refs(include_categories: bool) -> list[str]:
    """Feature references the lookup asks Feast for (no recent/purchased lists: not model inputs)."""
    refs = feature_refs(fd.USER_STATS, (*_scalar_names(fd.USER_STATS), *_LIST_COLUMNS))
    refs += feature_refs(fd.PRODUCT_STATS)
    refs += feature_refs(fd.USER_PRODUCT_INTERACTIONS)
    if include_categories:
        refs += feature_refs(fd.CATEGORY_STATS)
    return refs


def entity_frame(rows: pd.DataFrame) -> pd.DataFrame:
    """Validated Feast entity frame: int64 keys, UTC timestamps floored to µs (duckdb), a row id.

    A missing ``category_id`` (absent column or <NA>) becomes -1, which has no category row.
    Raises UserInputError when a required column is missing.
    """
    missing = [c for c in (col.USER_ID, col.PRODUCT_ID, EVENT_TIMESTAMP) if c not in rows.columns]
    if missing:
        raise UserInputError(f"entity rows need columns {', '.join(missing)}")
    stamps = pd.to_datetime(rows[EVENT_TIMESTAMP], utc=True).dt.floor("us")
    return pd.DataFrame(
        {
            col.USER_ID: rows[col.USER_ID].to_numpy(dtype=np.int64),
            col.PRODUCT_ID: rows[col.PRODUCT_ID].to_numpy(dtype=np.int64),
            col.CATEGORY_ID: _given_categories(rows),
            EVENT_TIMESTAMP: stamps.array,
            ROW_ID: np.arange(len(rows), dtype=np.int64),
        }
    )


def _given_categories(rows: pd.DataFrame) -> np.ndarray:
    if col.CATEGORY_ID not in rows.columns:
        return np.full(len(rows), fd.UNKNOWN_ID, dtype=np.int64)
    return rows[col.CATEGORY_ID].astype("Int64").fillna(fd.UNKNOWN_ID).to_numpy(dtype=np.int64)


def _historical(store: Any, entities: pd.DataFrame, refs: list[str]) -> pa.Table:
    """get_historical_features as an Arrow table in ``ROW_ID`` order (Feast does not keep the order)."""
    table = store.get_historical_features(entity_df=entities, features=refs).to_arrow()
    return table.take(pc.sort_indices(table, sort_keys=[(ROW_ID, "ascending")]))


def _float_column(table: pa.Table, name: str) -> np.ndarray:
    """Numeric column -> float64 with NaN for null (exactly what the shared join returns)."""
    return table.column(name).cast(pa.float64(), safe=False).to_numpy(zero_copy_only=False)


def _int_column(table: pa.Table, name: str, fill: int) -> np.ndarray:
    return pc.fill_null(table.column(name), fill).to_numpy(zero_copy_only=False).astype(np.int64)


def columns_from_tables(first: pa.Table, categories: pa.Table, given: np.ndarray) -> dict[str, np.ndarray]:
    """Assemble the lookup's output from the Arrow results (pure; see module doc for the category rule)."""
    out: dict[str, np.ndarray] = {}
    for name in _scalar_names(fd.USER_STATS):
        out[name] = _float_column(first, name)
    out["user_top_category_ids"] = pad_lists(
        first.column("user_top_category_ids").to_pylist(), fd.TOP_CATEGORIES, fd.UNKNOWN_ID, "float64"
    )
    out["user_top_category_shares"] = pad_lists(
        first.column("user_top_category_shares").to_pylist(), fd.TOP_CATEGORIES, 0.0, "float32"
    )
    for spec in fd.features_of(fd.PRODUCT_STATS):
        out[spec.name] = _float_column(first, spec.name)
    out["product_category_id"] = effective_categories(first, given).astype(np.float64)
    for spec in fd.features_of(fd.CATEGORY_STATS):
        out[spec.name] = _float_column(categories, spec.name)
    for spec in fd.features_of(fd.USER_PRODUCT_INTERACTIONS):
        out[spec.name] = _float_column(first, spec.name)
    return out


def effective_categories(first: pa.Table, given: np.ndarray) -> np.ndarray:
    """The product's stored category, else the given one (-1 when neither is known), as int64."""
    stored = _int_column(first, "product_category_id", fd.UNKNOWN_ID)
    return np.where(stored >= 0, stored, given)


def lookup_features(store: Any, rows: pd.DataFrame) -> dict[str, np.ndarray]:
    """Point-in-time features for ``rows`` (see module doc), one value per row in the input order."""
    entities = entity_frame(rows)
    if entities.empty:
        raise UserInputError("no entity rows to look up")
    _check_snapshot_coverage(store, entities[EVENT_TIMESTAMP])
    given = entities[col.CATEGORY_ID].to_numpy()
    first = _historical(store, entities, training_feature_refs(include_categories=True))
    effective = effective_categories(first, given)
    categories = first.select([s.name for s in fd.features_of(fd.CATEGORY_STATS)])
    redo = np.flatnonzero(effective != given)
    if len(redo):
        again = entities.iloc[redo][[col.CATEGORY_ID, EVENT_TIMESTAMP, ROW_ID]].copy()
        again[col.CATEGORY_ID] = effective[redo]
        fixed = _historical(store, again, feature_refs(fd.CATEGORY_STATS))
        categories = _replace_rows(categories, redo, fixed.select(categories.column_names))
    return columns_from_tables(first, categories, given)


def _check_snapshot_coverage(store: Any, stamps: pd.Series) -> None:
    """Refuse timestamps outside [first snapshot, data end]: Feast would quietly answer NaN / stale rows.

    Raises UserInputError naming the window and the fix.
    """
    from zadanie2.offline_snapshots import read_manifest

    source_glob = Path(store.get_feature_view(fd.USER_STATS).batch_source.path)
    manifest = read_manifest(source_glob.parent.parent)
    if not manifest.get("data_end"):
        raise UserInputError(f"no offline snapshots in {source_glob.parent.parent}; run `recsys features build`")
    first, end = pd.Timestamp(str(manifest["first_cutoff"])), pd.Timestamp(str(manifest["data_end"]))
    if stamps.min() < first or stamps.max() > end:
        raise UserInputError(
            f"event_timestamp {stamps.min()} .. {stamps.max()} is outside the offline snapshots {first} .. {end}; "
            "run `recsys features build` on the training events first"
        )
    cutoffs = {pd.Timestamp(str(c)) for c in manifest.get("cutoffs") or ()}  # type: ignore[attr-defined]
    between = sorted(t for t in pd.unique(stamps) if cutoffs and pd.Timestamp(t) not in cutoffs)
    if len(between) and str(manifest.get("freq")) != "1D":
        # Between two sparse snapshots Feast answers the older one: features days stale, silently.
        raise UserInputError(
            f"no offline snapshot at {pd.Timestamp(between[0])} (snapshots every {manifest.get('freq')}); "
            "rebuild with `recsys features build --freq 1D` or a spacing that divides the training cutoffs"
        )


def _replace_rows(table: pa.Table, positions: np.ndarray, replacement: pa.Table) -> pa.Table:
    """``table`` with the rows at ``positions`` replaced by ``replacement`` (same order)."""
    frame = table.to_pandas()
    patch = replacement.to_pandas()
    for name in table.column_names:
        values = frame[name].astype("float64").to_numpy(copy=True)
        values[positions] = patch[name].astype("float64").to_numpy()
        frame[name] = values
    return pa.Table.from_pandas(frame, preserve_index=False)


def feast_feature_lookup(store_or_settings: Any | None = None) -> FeatureLookup:
    """A ``FeatureLookup`` for zadanie1's ranking dataset backed by Feast's offline store (duckdb).

    ``store_or_settings``: a ``feast.FeatureStore``, :class:`FeatureStoreSettings`, or None for
    ``load_settings()`` (the environment). The store is opened once and reused by every call.
    """
    if store_or_settings is None or isinstance(store_or_settings, FeatureStoreSettings):
        from zadanie2.feature_store_config import open_feature_store
        from zadanie2.settings import load_settings

        store = open_feature_store(store_or_settings or load_settings())
    else:
        store = store_or_settings

    def lookup(rows: pd.DataFrame) -> dict[str, np.ndarray]:
        return lookup_features(store, rows)

    return lookup
