"""Offline/online consistency: the same entities read three ways must give the same values.

For a sample of users, products, categories and user-product pairs (taken from the snapshot the
online store was materialized from, plus a few ids that must be absent everywhere) this reads

1. offline: ``get_historical_features`` with ``event_timestamp`` = the materialization end time
   (the point-in-time join picks the newest snapshot at or before it), via duckdb;
2. online through the Feast SDK: ``get_online_features``;
3. online through the service's read path: ``create_feature_reader`` (``RedisFeatureReader`` on
   Redis, ``FeastSdkFeatureReader`` otherwise), exactly as zadanie4 reads;

and compares every feature of every entity: offline vs SDK and offline vs service path. Ints
must be equal, floats within ``tolerance`` (absolute), lists element-wise with equal length,
"no row" must be "no row" on both sides. Any difference is a mismatch; the result is written to
``artifacts/features/consistency.json`` (stamp and first mismatches in ``consistency_details.json``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.compute as pc
import pyarrow.parquet as pq

from shared import feature_definitions as fd
from shared.run_stamp import run_stamp
from zadanie2.feature_repo.feature_views import ENTITY_JOIN_KEYS, EVENT_TIMESTAMP, feature_refs
from zadanie2.offline_snapshots import snapshot_file_name
from zadanie2.online_feature_reader import OnlineFeatureReader
from zadanie2.settings import FeatureStoreSettings

TOLERANCE = 1e-6
ABSENT_IDS_PER_KIND = 5  # ids that exist nowhere: "no row" must agree too
EntityKey = tuple[int, ...]
Row = Mapping[str, Any] | None


@dataclass(frozen=True)
class EntitySample:
    """Entity keys per feature view (pairs as (user_id, product_id))."""

    keys: dict[str, list[EntityKey]]

    @property
    def n_entities(self) -> int:
        return sum(len(v) for v in self.keys.values())


@dataclass
class ConsistencyResult:
    entities_checked: int = 0
    features_checked: int = 0
    values_compared: int = 0
    mismatches: int = 0
    match_rate: float = 1.0
    max_abs_diff: float = 0.0
    online_store: str = "sqlite"
    examples: list[str] = field(default_factory=list)  # first mismatches, for the terminal only

    def as_dict(self) -> dict[str, Any]:
        """Exactly the keys of ``consistency.json``."""
        return {
            "entities_checked": self.entities_checked,
            "features_checked": self.features_checked,
            "values_compared": self.values_compared,
            "mismatches": self.mismatches,
            "match_rate": self.match_rate,
            "max_abs_diff": self.max_abs_diff,
            "online_store": self.online_store,
        }


# --- comparing values (pure) ----------------------------------------------------------------------


def value_difference(expected: Any, actual: Any) -> float:
    """0 when equal; the largest absolute difference otherwise; inf for a structural difference.

    None (no row / no value) equals only None. Lists must have equal length. NaN equals NaN.
    Python ints are compared exactly (ids above 2**53 must not pass through float64).
    """
    if expected is None or actual is None:
        return 0.0 if expected is None and actual is None else math.inf
    if isinstance(expected, list | tuple | np.ndarray) or isinstance(actual, list | tuple | np.ndarray):
        if not isinstance(expected, list | tuple | np.ndarray) or not isinstance(actual, list | tuple | np.ndarray):
            return math.inf
        if len(expected) != len(actual):
            return math.inf
        return max((value_difference(e, a) for e, a in zip(expected, actual, strict=True)), default=0.0)
    if _is_int(expected) and _is_int(actual):
        return 0.0 if int(expected) == int(actual) else abs(float(int(expected) - int(actual)))
    e, a = float(expected), float(actual)
    if math.isnan(e) or math.isnan(a):
        return 0.0 if math.isnan(e) and math.isnan(a) else math.inf
    return abs(e - a)


def _is_int(value: Any) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def compare_rows(
    view: str,
    expected: Mapping[EntityKey, Row],
    actual: Mapping[EntityKey, Row],
    source: str,
    result: ConsistencyResult,
    tolerance: float = TOLERANCE,
) -> None:
    """Compare every feature of every entity of ``expected`` with ``actual``; update ``result``."""
    names = [s.name for s in fd.features_of(view)]
    for key, expected_row in expected.items():
        actual_row = actual.get(key)
        for name in names:
            e = None if expected_row is None else expected_row.get(name)
            a = None if actual_row is None else actual_row.get(name)
            diff = value_difference(e, a)
            result.values_compared += 1
            if diff > tolerance:
                result.mismatches += 1
                if len(result.examples) < 10:
                    result.examples.append(f"{source} {view} {key} {name}: offline={e!r} online={a!r}")
            if math.isfinite(diff):
                result.max_abs_diff = max(result.max_abs_diff, diff)


# --- the three reads ------------------------------------------------------------------------------


def snapshot_at(offline_dir: Path, as_of: pd.Timestamp) -> str:
    """File name of the newest snapshot at or before ``as_of`` (what the PIT join and materialize use)."""
    names = sorted(p.name for p in (Path(offline_dir) / fd.USER_STATS).glob("*.parquet"))
    wanted = snapshot_file_name(as_of)
    candidates = [n for n in names if n <= wanted]
    if not candidates:
        from shared.errors import UserInputError

        raise UserInputError(f"no offline snapshot at or before {as_of}; run `recsys features build`")
    return candidates[-1]


def sample_entities(offline_dir: Path, as_of: pd.Timestamp, n: int, seed: int = 0) -> EntitySample:
    """Up to ``n`` random entities per view from the snapshot behind ``as_of``, plus absent ids."""
    rng = np.random.default_rng(seed)
    name = snapshot_at(offline_dir, as_of)
    keys: dict[str, list[EntityKey]] = {}
    for view in fd.VIEWS:
        join_keys = list(ENTITY_JOIN_KEYS[view])
        table = pq.read_table(Path(offline_dir) / view / name, columns=join_keys)
        columns = [table.column(k).to_numpy() for k in join_keys]
        chosen = np.sort(rng.choice(table.num_rows, size=min(n, table.num_rows), replace=False))
        sample = [tuple(int(c[i]) for c in columns) for i in chosen]
        absent_base = -1000 - np.arange(ABSENT_IDS_PER_KIND)
        sample += [tuple(int(b) for _ in join_keys) for b in absent_base]
        keys[view] = sample
    return EntitySample(keys=keys)


def read_offline(store: Any, view: str, keys: Sequence[EntityKey], as_of: pd.Timestamp) -> dict[EntityKey, Row]:
    """Point-in-time values at ``as_of`` for ``keys`` (None where the entity has no row)."""
    join_keys = list(ENTITY_JOIN_KEYS[view])
    entity_df = pd.DataFrame([list(k) for k in keys], columns=join_keys).astype("int64")
    entity_df[EVENT_TIMESTAMP] = pd.Timestamp(as_of).floor("us")
    entity_df["__row"] = np.arange(len(entity_df))
    table = store.get_historical_features(entity_df=entity_df, features=feature_refs(view)).to_arrow()
    table = table.take(pc.sort_indices(table, sort_keys=[("__row", "ascending")]))
    names = [s.name for s in fd.features_of(view)]
    columns = {n: table.column(n).to_pylist() for n in names}
    out: dict[EntityKey, Row] = {}
    for i, key in enumerate(keys):
        row = {n: columns[n][i] for n in names}
        out[tuple(key)] = None if all(v is None for v in row.values()) else row
    return out


def read_online_sdk(store: Any, view: str, keys: Sequence[EntityKey]) -> dict[EntityKey, Row]:
    join_keys = list(ENTITY_JOIN_KEYS[view])
    rows = [dict(zip(join_keys, map(int, k), strict=True)) for k in keys]
    names = [s.name for s in fd.features_of(view)]
    result = store.get_online_features(features=feature_refs(view), entity_rows=rows).to_dict()
    out: dict[EntityKey, Row] = {}
    for i, key in enumerate(keys):
        row = {n: result[n][i] for n in names}
        out[tuple(key)] = None if all(v is None for v in row.values()) else row
    return out


def _frame_rows(frame: pd.DataFrame, ids: Sequence[int]) -> dict[EntityKey, Row]:
    out: dict[EntityKey, Row] = {}
    records = {int(i): _python_row(r) for i, r in zip(frame.index, frame.to_dict("records"), strict=True)}
    for i in ids:
        out[(int(i),)] = records.get(int(i))
    return out


def _python_row(row: Mapping[str, Any]) -> dict[str, Any]:
    return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in row.items()}


def read_service_path(reader: OnlineFeatureReader, view: str, keys: Sequence[EntityKey]) -> dict[EntityKey, Row]:
    """The values the inference service would get, through its reader."""
    if view == fd.USER_STATS:
        return {tuple(k): reader.read_user(k[0]) for k in keys}
    if view == fd.PRODUCT_STATS:
        ids = [k[0] for k in keys]
        return _frame_rows(reader.read_products(ids), ids)
    if view == fd.CATEGORY_STATS:
        ids = [k[0] for k in keys]
        return _frame_rows(reader.read_categories(ids), ids)
    by_user: dict[int, list[int]] = {}
    for user, product in keys:
        by_user.setdefault(user, []).append(product)
    out: dict[EntityKey, Row] = {}
    for user, products in by_user.items():
        rows = reader.read_user_products(user, products)
        for product in products:
            out[(user, product)] = rows.get(product)
    return out


def run_consistency_check(
    store: Any,
    reader: OnlineFeatureReader,
    *,
    offline_dir: Path,
    online_store: str,
    as_of: pd.Timestamp,
    sample: int = 1000,
    seed: int = 0,
    entities: EntitySample | None = None,
    tolerance: float = TOLERANCE,
) -> ConsistencyResult:
    """Compare offline (at ``as_of``), online SDK and service-path values for sampled entities."""
    entities = entities or sample_entities(offline_dir, as_of, sample, seed)
    result = ConsistencyResult(online_store=online_store, entities_checked=entities.n_entities)
    result.features_checked = sum(len(fd.features_of(v)) for v in fd.VIEWS if entities.keys.get(v))
    for view, keys in entities.keys.items():
        if not keys:
            continue
        offline = read_offline(store, view, keys, as_of)
        compare_rows(view, offline, read_online_sdk(store, view, keys), "sdk", result, tolerance)
        compare_rows(view, offline, read_service_path(reader, view, keys), "service", result, tolerance)
    compared = max(result.values_compared, 1)
    result.match_rate = (result.values_compared - result.mismatches) / compared
    return result


def check_feature_store(
    settings: FeatureStoreSettings, *, sample: int = 1000, seed: int = 0, write: bool = True
) -> ConsistencyResult:
    """The ``recsys features check`` command body: open store + reader, run, write the json."""
    from zadanie2.feature_store_config import open_feature_store
    from zadanie2.materialization import materialized_until
    from zadanie2.online_feature_reader import create_feature_reader

    store = open_feature_store(settings)
    reader = create_feature_reader(settings)
    try:
        result = run_consistency_check(
            store,
            reader,
            offline_dir=settings.paths()["offline"],
            online_store=settings.online_store_kind,
            as_of=materialized_until(store),
            sample=sample,
            seed=seed,
        )
    finally:
        reader.close()
    if write:
        write_result(result, settings.paths()["features"] / "consistency.json")
    return result


def merged_details(previous: Any, result: ConsistencyResult, stamp: Mapping[str, Any]) -> dict[str, Any]:
    """``consistency_details.json``: this check's stamp and first mismatches, plus the last result of every
    online store checked so far (``stores``; consistency.json holds only the latest store's)."""
    stores = previous.get("stores") if isinstance(previous, dict) else None
    stores = dict(stores) if isinstance(stores, dict) else {}
    stores[result.online_store] = {**result.as_dict(), "run": dict(stamp)}
    return {
        "run": dict(stamp),
        "online_store": result.online_store,
        "mismatch_examples": list(result.examples),
        "stores": stores,
    }


def details_path(path: Path) -> Path:
    """``consistency_details.json`` next to ``consistency.json``."""
    return path.with_name(f"{path.stem}_details.json")


def write_result(result: ConsistencyResult, path: Path) -> Path:
    """``consistency.json`` (exactly its agreed keys) and ``consistency_details.json`` beside it, which
    ``make report`` reads for the commit and time of the check."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result.as_dict(), indent=2))
    details = details_path(path)
    try:
        previous = json.loads(details.read_text())
    except (OSError, ValueError):  # first check, or an unreadable file: start over
        previous = None
    details.write_text(json.dumps(merged_details(previous, result, run_stamp()), indent=2))
    return path
