"""Feast objects (entities, sources, feature views, feature services) built from the shared registry.

Nothing here is hand-typed per feature: names, dtypes and descriptions come from
``shared.feature_definitions``, so the Feast schema cannot drift from what training and serving
compute. Sources are the Parquet snapshots written by ``recsys features build`` (one file per
cutoff, read through a glob by the duckdb offline store); ``event_timestamp`` is the cutoff.
TTL is 0 (no expiry): each snapshot holds every entity seen so far, and data may be older than
"now", so an expiry would hide valid rows offline and online.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from shared import column_names as col
from shared import feature_definitions as fd

EVENT_TIMESTAMP = col.EVENT_TIMESTAMP
ENTITY_JOIN_KEYS: dict[str, tuple[str, ...]] = {
    fd.USER_STATS: (col.USER_ID,),
    fd.PRODUCT_STATS: (col.PRODUCT_ID,),
    fd.CATEGORY_STATS: (col.CATEGORY_ID,),
    fd.USER_PRODUCT_INTERACTIONS: (col.USER_ID, col.PRODUCT_ID),
}
ENTITY_NAMES: dict[str, str] = {col.USER_ID: "user", col.PRODUCT_ID: "product", col.CATEGORY_ID: "category"}
RANKER_SERVICE_V1 = "ranker_v1"


@dataclass(frozen=True)
class FeatureRepoObjects:
    """Every Feast object of the repository, by role."""

    entities: dict[str, Any]
    sources: dict[str, Any]
    feature_views: dict[str, Any]
    feature_services: dict[str, Any]

    def all(self) -> list[Any]:
        """The list ``FeatureStore.apply`` takes."""
        return [
            *self.entities.values(),
            *self.sources.values(),
            *self.feature_views.values(),
            *self.feature_services.values(),
        ]


def feast_dtype(dtype: fd.DType) -> Any:
    """Registry dtype -> Feast type (int64 -> Int64, float32_list -> Array(Float32), ...)."""
    from feast.types import Array, Float32, Int64

    scalar = {"int64": Int64, "float32": Float32}
    if dtype.endswith("_list"):
        return Array(scalar[dtype.removesuffix("_list")])
    return scalar[dtype]


def snapshot_glob(offline_dir: Path, view: str) -> str:
    """The Parquet glob of one view's snapshots (absolute: Feast resolves paths against its repo)."""
    return str(Path(offline_dir).resolve() / view / "*.parquet")


def build_feature_objects(offline_dir: Path) -> FeatureRepoObjects:
    """Entities user/product/category, the four feature views and the ``ranker_v1`` service."""
    from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
    from feast.data_format import ParquetFormat
    from feast.types import Int64

    entities = {
        key: Entity(name=name, join_keys=[key], value_type=ValueType.INT64, description=f"{name} id ({key})")
        for key, name in ENTITY_NAMES.items()
    }
    sources: dict[str, Any] = {}
    views: dict[str, Any] = {}
    for view in fd.VIEWS:
        keys = ENTITY_JOIN_KEYS[view]
        sources[view] = FileSource(
            name=f"{view}_source",
            path=snapshot_glob(offline_dir, view),
            file_format=ParquetFormat(),
            timestamp_field=EVENT_TIMESTAMP,
            description=f"{view} snapshots written by `recsys features build` (event_timestamp = cutoff)",
        )
        schema = [Field(name=key, dtype=Int64) for key in keys]
        schema += [
            Field(name=spec.name, dtype=feast_dtype(spec.dtype), description=spec.description)
            for spec in fd.features_of(view)
        ]
        views[view] = FeatureView(
            name=view,
            entities=[entities[key] for key in keys],
            ttl=timedelta(0),
            schema=schema,
            source=sources[view],
            online=True,
            description=f"{view} as of each snapshot cutoff (shared.feature_computation)",
            tags={"owner": "zadanie2", "generated_from": "shared.feature_definitions"},
        )
    services = {
        RANKER_SERVICE_V1: FeatureService(
            name=RANKER_SERVICE_V1,
            features=[views[view] for view in fd.VIEWS],
            description="Ranker v1: every model input (RANKER_FEATURES minus derived) plus what serving "
            "needs to derive the rest and filter (top categories, recent and purchased products).",
            tags={"model": "ranker", "version": "1"},
        )
    }
    return FeatureRepoObjects(entities=entities, sources=sources, feature_views=views, feature_services=services)


def feature_refs(view: str, names: tuple[str, ...] | None = None) -> list[str]:
    """``view:feature`` references for ``names`` (default: every feature of the view)."""
    chosen = names if names is not None else tuple(spec.name for spec in fd.features_of(view))
    return [f"{view}:{name}" for name in chosen]
