"""The service read path: same values as the snapshot, via Redis directly and via the Feast SDK."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest

from shared import feature_definitions as fd
from shared.feature_computation import compute_feature_tables
from zadanie2.online_feature_reader import (
    EntityKeyEncoder,
    FeastSdkFeatureReader,
    FeatureStoreTimeout,
    FeatureStoreUnavailable,
    OnlineFeatureReader,
    RedisFeatureReader,
    _ValueDecoder,
    create_feature_reader,
)
from zadanie2.tests.conftest import REDIS_TEST_URL, BuiltStore


@pytest.fixture
def reader(any_store: BuiltStore) -> Iterator[OnlineFeatureReader]:
    built = create_feature_reader(any_store.settings)
    yield built
    built.close()


def final_tables(store: BuiltStore):  # type: ignore[no-untyped-def]
    return compute_feature_tables(store.offline.events, store.data_end)


def test_reader_kind_follows_the_online_store(any_store: BuiltStore, reader: OnlineFeatureReader) -> None:
    expected = RedisFeatureReader if any_store.settings.online_store_kind == "redis" else FeastSdkFeatureReader
    assert isinstance(reader, expected)
    assert isinstance(reader, OnlineFeatureReader)
    assert reader.ping()


def test_user_row_equals_the_materialized_snapshot(any_store: BuiltStore, reader: OnlineFeatureReader) -> None:
    tables = final_tables(any_store)
    user_id = int(tables.user_stats.index[3])
    row = reader.read_user(user_id)
    assert row is not None and list(row) == [s.name for s in fd.features_of(fd.USER_STATS)]
    expected = tables.user_stats.loc[user_id]
    for spec in fd.features_of(fd.USER_STATS):
        if spec.dtype.endswith("_list"):
            assert isinstance(row[spec.name], list)
            np.testing.assert_allclose(row[spec.name], expected[spec.name], atol=1e-6)
        elif spec.dtype == "int64":
            assert row[spec.name] == expected[spec.name] and isinstance(row[spec.name], int)
        else:
            assert row[spec.name] == pytest.approx(float(expected[spec.name]), abs=1e-6)


def test_unknown_user_is_none(reader: OnlineFeatureReader) -> None:
    assert reader.read_user(123_456_789) is None


def test_product_and_category_frames_look_like_the_shared_tables(
    any_store: BuiltStore, reader: OnlineFeatureReader
) -> None:
    tables = final_tables(any_store)
    wanted = [*tables.product_stats.index[:10].tolist(), 777_777]  # the unknown id is left out
    products = reader.read_products(wanted)
    pd.testing.assert_frame_equal(products, tables.product_stats.loc[wanted[:-1]], check_exact=False, atol=1e-6)
    categories = reader.read_categories([*tables.category_stats.index.tolist(), -1])
    pd.testing.assert_frame_equal(categories, tables.category_stats, check_exact=False, atol=1e-6)
    assert reader.read_products([]).empty and list(reader.read_products([]).columns) == list(products.columns)


def test_pair_rows_only_for_pairs_that_exist(any_store: BuiltStore, reader: OnlineFeatureReader) -> None:
    pairs = final_tables(any_store).user_product_interactions
    user_id = int(pairs.index[0][0])
    own = pairs.loc[user_id]
    rows = reader.read_user_products(user_id, [*own.index.tolist(), 999_999])
    assert sorted(rows) == sorted(own.index.tolist())
    first = int(own.index[0])
    assert rows[first]["up_n_views"] == own.loc[first, "up_n_views"]
    assert rows[first]["up_recency_days"] == pytest.approx(float(own.loc[first, "up_recency_days"]), abs=1e-6)
    assert reader.read_user_products(user_id, []) == {}


@pytest.mark.redis
def test_redis_reader_and_sdk_reader_agree(redis_store: BuiltStore) -> None:
    direct = RedisFeatureReader.from_settings(redis_store.settings)
    sdk = FeastSdkFeatureReader(redis_store.store)
    tables = final_tables(redis_store)
    for user_id in tables.user_stats.index[:5]:
        assert direct.read_user(int(user_id)) == sdk.read_user(int(user_id))
    ids = tables.product_stats.index.tolist()
    pd.testing.assert_frame_equal(direct.read_products(ids), sdk.read_products(ids))
    direct.close()


def test_entity_keys_match_feast_serialization() -> None:
    from feast.infra.key_encoding_utils import serialize_entity_key
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    rng = np.random.default_rng(0)
    pair = EntityKeyEncoder(["user_id", "product_id"], "proj", 3)
    single = EntityKeyEncoder(["category_id"], "proj", 3)
    for user, product in rng.integers(-(2**62), 2**62, size=(50, 2)).tolist():
        key = EntityKey(
            join_keys=["user_id", "product_id"], entity_values=[Value(int64_val=user), Value(int64_val=product)]
        )
        assert pair.key(user, product) == serialize_entity_key(key, entity_key_serialization_version=3) + b"proj"
        one = EntityKey(join_keys=["category_id"], entity_values=[Value(int64_val=user)])
        assert single.key(user) == serialize_entity_key(one, entity_key_serialization_version=3) + b"proj"


def test_bulk_column_decoding_equals_per_value_decoding() -> None:
    from feast.protos.feast.types.Value_pb2 import Value

    decoder = _ValueDecoder()
    ints = [Value(int64_val=v).SerializeToString() for v in (0, 1, -5, 2**62, 300)]
    floats = [Value(float_val=v).SerializeToString() for v in (0.0, 0.1, -2.5, 1e30)]
    np.testing.assert_array_equal(decoder.decode_column(ints, "int64"), [0, 1, -5, 2**62, 300])
    np.testing.assert_array_equal(decoder.decode_column(floats, "float32"), np.float32([0.0, 0.1, -2.5, 1e30]))
    # a missing or differently typed value falls back to the per-value path (no silent shift)
    mixed = [ints[0], None, Value(double_val=2.0).SerializeToString(), Value().SerializeToString()]
    assert decoder.decode_column(mixed, "int64") == [0, None, 2.0, None]


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A TCP server that accepts connections and never answers (a hung Redis)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    for conn in accepted:
        conn.close()
    server.close()


def test_hung_redis_raises_timeout_within_the_budget(silent_server: int) -> None:
    import time

    reader = RedisFeatureReader(f"redis://127.0.0.1:{silent_server}/11", "p", timeout_s=0.05)
    started = time.perf_counter()
    with pytest.raises(FeatureStoreTimeout):
        reader.read_user(1)
    with pytest.raises(FeatureStoreTimeout):
        reader.read_products([1, 2, 3])
    assert time.perf_counter() - started < 1.0
    assert reader.ping() is False


def test_stopped_redis_raises_unavailable() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    reader = RedisFeatureReader(f"redis://127.0.0.1:{port}/11", "p", timeout_s=0.2)
    with pytest.raises(FeatureStoreUnavailable):
        reader.read_user(1)
    with pytest.raises(FeatureStoreUnavailable):
        reader.read_user_products(1, [2, 3])


@pytest.mark.redis
def test_reader_recovers_after_a_failed_pipelined_read(redis_store: BuiltStore) -> None:
    # given a reader whose pipelined read fails half-way (WRONGTYPE on a non-hash key)
    import redis

    reader = RedisFeatureReader.from_settings(redis_store.settings)
    client = redis.Redis.from_url(REDIS_TEST_URL)
    bad_key = reader._keys[fd.PRODUCT_STATS].key(555_555)
    client.set(bad_key, b"not a hash")
    try:
        with pytest.raises(FeatureStoreUnavailable):
            reader.read_products([555_555, *final_tables(redis_store).product_stats.index[:3].tolist()])
        # then the next read on the same pool is correct (no stale replies left on a connection)
        user_id = int(final_tables(redis_store).user_stats.index[0])
        assert reader.read_user(user_id) == FeastSdkFeatureReader(redis_store.store).read_user(user_id)
    finally:
        client.delete(bad_key)
        client.close()
        reader.close()


@pytest.mark.redis
def test_the_services_event_loop_reads_equal_the_reader(redis_store: BuiltStore) -> None:
    """zadanie4 reads the hot path on its event loop with this reader's commands and decoding:
    the same user and pair rows must come back as through the reader itself."""
    import asyncio
    import time

    from zadanie4.pipeline.redis_reads import event_loop_reads_for

    direct = RedisFeatureReader.from_settings(redis_store.settings)
    loop_reads = event_loop_reads_for(direct)
    assert loop_reads is not None
    pairs = final_tables(redis_store).user_product_interactions
    users = sorted({int(u) for u, _ in pairs.index})[:5]

    async def read_all() -> list[tuple[dict | None, dict]]:
        out = []
        for user_id in [*users, 987_654_321]:  # the last one is unknown
            own = [int(p) for p in pairs.loc[user_id].index] if user_id in users else []
            out.append(await loop_reads.read_user_and_pairs(user_id, time.monotonic() + 5.0, lambda _row, own=own: own))
        return out

    got = asyncio.run(read_all())
    for user_id, (row, pair_rows) in zip([*users, 987_654_321], got, strict=True):
        assert row == direct.read_user(user_id)
        own = [int(p) for p in pairs.loc[user_id].index] if user_id in users else []
        assert pair_rows == (direct.read_user_products(user_id, own) if row is not None else {})
    direct.close()
