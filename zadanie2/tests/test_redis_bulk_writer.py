"""The Redis bulk writer writes exactly the hashes Feast's own materialization writes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from zadanie2.tests.conftest import REDIS_TEST_URL, OfflineData, build_store, store_settings

pytestmark = pytest.mark.redis


def _hashes(client, project: str) -> dict[bytes, dict[bytes, bytes]]:
    """Every hash of one Feast project, keyed without the project suffix."""
    suffix = project.encode()
    return {
        key[: -len(suffix)]: client.hgetall(key)
        for key in client.scan_iter(match=b"*" + suffix, count=1000)
        if key.endswith(suffix)
    }


def test_bulk_load_writes_the_same_hashes_as_feast_materialize(
    offline_data: OfflineData, redis_test_db: str, tmp_path: Path
) -> None:
    import redis

    # given the same snapshots materialized by Feast and by the bulk writer, in two projects
    by_feast = build_store(
        store_settings(offline_data, "redis", "bulk_ref", tmp_path / "feast", redis_bulk_load=False), offline_data
    )
    by_bulk = build_store(store_settings(offline_data, "redis", "bulk_new", tmp_path / "bulk"), offline_data)
    client = redis.Redis.from_url(REDIS_TEST_URL)
    # then every key, field and value is identical
    expected, actual = _hashes(client, "bulk_ref"), _hashes(client, "bulk_new")
    assert len(expected) == 661  # 30 users, 27 products, 4 categories, 600 pairs
    assert actual == expected
    # and the registry records the same materialization interval
    for view in ("user_stats", "user_product_interactions"):
        assert (
            by_bulk.store.get_feature_view(view).most_recent_end_time
            == by_feast.store.get_feature_view(view).most_recent_end_time
        )
    report = (tmp_path / "bulk" / "materialization_redis.json").read_text()
    assert '"user_product_interactions": "redis_bulk"' in report


def test_rows_not_newer_than_the_stored_ones_are_skipped_like_feast(
    offline_data: OfflineData, redis_test_db: str, tmp_path: Path
) -> None:
    import redis

    from zadanie2.feature_store_config import ENTITY_KEY_SERIALIZATION_VERSION
    from zadanie2.offline_snapshots import snapshot_file_name
    from zadanie2.redis_bulk_writer import RedisBulkWriter

    client = redis.Redis.from_url(REDIS_TEST_URL)
    writer = RedisBulkWriter(REDIS_TEST_URL, "bulk_skip", ENTITY_KEY_SERIALIZATION_VERSION, batch_rows=7)
    path = offline_data.offline_dir / "user_stats" / snapshot_file_name(offline_data.report.data_end)
    # given a first load, and one user whose stored row is newer (as a real-time update leaves it)
    first = writer.write_file("user_stats", path)
    assert first.written == first.rows > 7
    newest = next(iter(_hashes(client, "bulk_skip")))
    client.hset(newest + b"bulk_skip", b"_ts:user_stats", b"\x08\xff\xff\xff\xff\x0f")  # far in the future
    client.hset(newest + b"bulk_skip", b"marker", b"kept")
    # when the same snapshot is loaded again
    second = writer.write_file("user_stats", path)
    # then no row is rewritten (equal times are not newer, as in Feast) and the newer row is untouched
    assert (second.written, second.skipped_not_newer) == (0, first.rows)
    assert client.hget(newest + b"bulk_skip", b"marker") == b"kept"


def test_column_encoders_match_feast_on_awkward_values() -> None:
    from feast.type_map import python_values_to_proto_values
    from feast.value_type import ValueType

    from zadanie2.redis_bulk_writer import ValueColumnEncoder

    encoder = ValueColumnEncoder()
    floats = np.array([0.0, -0.0, np.nan, 1.5, -1e-40, np.inf, 7.25], dtype=np.float32)
    ints = np.array([0, -1, 2**40, -(2**62), 5, 5, 0], dtype=np.int64)
    lists = [[1, 2, 3], [], [-5, 2053013555631882655, 128]]
    float_lists = [[0.5, -0.0], [], [np.float32(1e-40)]]
    for values, dtype, value_type in (
        (floats, "float32", ValueType.FLOAT),
        (ints, "int64", ValueType.INT64),
        (lists, "int64_list", ValueType.INT64_LIST),
        (float_lists, "float32_list", ValueType.FLOAT_LIST),
    ):
        expected = [p.SerializeToString() for p in python_values_to_proto_values(values, value_type)]
        arrow = pa.array(values, pa.list_(pa.float32())) if dtype == "float32_list" else pa.array(values)
        assert encoder.encode(arrow, dtype) == expected
