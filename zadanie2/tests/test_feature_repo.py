"""The Feast repository is generated from the shared registry: names, dtypes, entities, ranker_v1."""

from __future__ import annotations

from pathlib import Path

from shared import feature_definitions as fd
from zadanie2.feature_repo.feature_views import RANKER_SERVICE_V1, build_feature_objects, feast_dtype
from zadanie2.tests.conftest import BuiltStore


def test_registry_dtypes_map_to_feast_types() -> None:
    from feast.types import Array, Float32, Int64

    assert feast_dtype("int64") == Int64
    assert feast_dtype("float32") == Float32
    assert feast_dtype("int64_list") == Array(Int64)
    assert feast_dtype("float32_list") == Array(Float32)


def test_every_stored_feature_is_in_its_view_with_the_registry_dtype(tmp_path: Path) -> None:
    objects = build_feature_objects(tmp_path)
    for view in fd.VIEWS:
        fields = {f.name: f.dtype for f in objects.feature_views[view].features}
        assert list(fields) == [s.name for s in fd.features_of(view)]
        assert all(fields[s.name] == feast_dtype(s.dtype) for s in fd.features_of(view))
    assert objects.feature_views[fd.USER_PRODUCT_INTERACTIONS].entities == ["user", "product"]
    assert set(objects.entities) == {"user_id", "product_id", "category_id"}
    # the offline source is the snapshot glob of the view, keyed by the cutoff timestamp
    source = objects.sources[fd.USER_STATS]
    assert source.path == str(tmp_path.resolve() / fd.USER_STATS / "*.parquet")
    assert source.timestamp_field == "event_timestamp"


def test_ranker_v1_serves_every_model_input_and_the_serving_lists(sqlite_store: BuiltStore) -> None:
    # given the applied repo; when the service is read from the registry
    service = sqlite_store.store.get_feature_service(RANKER_SERVICE_V1)
    served = {f.name for projection in service.feature_view_projections for f in projection.features}
    # then every stored model input, and what serving needs to derive and filter, is in it
    stored_inputs = {n for n in fd.RANKER_FEATURES if fd.FEATURES_BY_NAME[n].view != fd.DERIVED}
    assert stored_inputs <= served
    assert {"product_category_id", "user_top_category_ids", "user_top_category_shares"} <= served
    assert {"user_recent_product_ids", "user_purchased_product_ids"} <= served
