"""Consistency is proven: 0 mismatches on SQLite and the real Redis, and injected drift is caught."""

from __future__ import annotations

import json
import math
from collections.abc import Callable

import pandas as pd
import pytest

from shared import feature_definitions as fd
from zadanie2.consistency_check import (
    EntitySample,
    check_feature_store,
    run_consistency_check,
    sample_entities,
    value_difference,
)
from zadanie2.materialization import materialized_until
from zadanie2.online_feature_reader import RedisFeatureReader, create_feature_reader
from zadanie2.tests.conftest import REDIS_TEST_URL, BuiltStore

JSON_KEYS = {
    "entities_checked",
    "features_checked",
    "values_compared",
    "mismatches",
    "match_rate",
    "max_abs_diff",
    "online_store",
}


@pytest.mark.parametrize(
    ("expected", "actual", "difference"),
    [
        (None, None, 0.0),
        (None, 0, math.inf),
        (2053902111092659954, 2053902111092659955, 1.0),  # ids above 2**53 stay exact
        (0.5, 0.5000005, pytest.approx(5e-7)),
        ([1, 2], [1, 2, 3], math.inf),
        ([0.25, 0.5], [0.25, 0.75], 0.25),
        (float("nan"), float("nan"), 0.0),
    ],
)
def test_value_difference(expected: object, actual: object, difference: float) -> None:
    assert value_difference(expected, actual) == difference


def test_check_on_sqlite_has_no_mismatch_and_writes_the_json(sqlite_store: BuiltStore) -> None:
    # given the materialized SQLite store; when the CLI's check runs over every entity
    result = check_feature_store(sqlite_store.settings, sample=10_000)
    # then everything matches and the json has exactly the agreed keys
    written = json.loads((sqlite_store.settings.paths()["features"] / "consistency.json").read_text())
    assert set(written) == JSON_KEYS
    assert written["mismatches"] == 0 and written["match_rate"] == 1.0 and written["online_store"] == "sqlite"
    assert result.features_checked == sum(len(fd.features_of(v)) for v in fd.VIEWS)
    assert result.values_compared == 2 * sum(
        len(keys) * len(fd.features_of(view)) for view, keys in _sample(sqlite_store).keys.items()
    )


@pytest.mark.redis
def test_check_on_real_redis_has_no_mismatch(redis_store: BuiltStore) -> None:
    # given the store materialized into Redis db 11; when offline, SDK and direct-Redis reads are compared
    result = check_feature_store(redis_store.settings, sample=10_000, write=False)
    # then 0 mismatches within 1e-6 over every user, product, category and pair (+ absent ids)
    assert result.mismatches == 0, result.examples
    assert result.max_abs_diff <= 1e-6
    assert result.online_store == "redis"
    assert result.entities_checked == _sample(redis_store).n_entities > 600


def _sample(store: BuiltStore) -> EntitySample:
    return sample_entities(store.offline.offline_dir, store.data_end, 10_000)


def _check(store: BuiltStore, entities: EntitySample | None = None):  # type: ignore[no-untyped-def]
    reader = create_feature_reader(store.settings)
    try:
        return run_consistency_check(
            store.store,
            reader,
            offline_dir=store.offline.offline_dir,
            online_store=store.settings.online_store_kind,
            as_of=materialized_until(store.store),
            entities=entities or _sample(store),
        )
    finally:
        reader.close()


@pytest.mark.redis
def test_changed_online_value_is_detected(fresh_store: Callable[[str], BuiltStore]) -> None:
    # given a consistent Redis store
    store = fresh_store("redis")
    assert _check(store).mismatches == 0
    # when one user's online value is changed (a newer write with a different purchase count)
    user_id = int(pd.read_parquet(next((store.offline.offline_dir / fd.USER_STATS).glob("*.parquet")))["user_id"][0])
    row = RedisFeatureReader.from_settings(store.settings).read_user(user_id)
    assert row is not None
    drifted = {**row, "user_n_purchases": row["user_n_purchases"] + 1}
    frame = pd.DataFrame([{"user_id": user_id, **drifted, "event_timestamp": pd.Timestamp.now(tz="UTC")}])
    store.store.write_to_online_store(fd.USER_STATS, frame)
    # then the check fails on exactly that value, through the SDK and through the service path
    result = _check(store)
    assert result.mismatches == 2
    assert result.match_rate < 1.0
    assert all(f"({user_id},) user_n_purchases" in example for example in result.examples)
    assert result.max_abs_diff == 1.0


@pytest.mark.redis
def test_corrupted_redis_field_is_detected_by_the_service_path(fresh_store: Callable[[str], BuiltStore]) -> None:
    # given a consistent Redis store; when a product's price bytes are overwritten in place
    import redis
    from feast.infra.online_stores.helpers import _mmh3
    from feast.protos.feast.types.Value_pb2 import Value

    store = fresh_store("redis")
    reader = RedisFeatureReader.from_settings(store.settings)
    product_id = int(reader.read_products([p for (p,) in _sample(store).keys[fd.PRODUCT_STATS][:1]]).index[0])
    key = reader._keys[fd.PRODUCT_STATS].key(product_id)
    client = redis.Redis.from_url(REDIS_TEST_URL)
    client.hset(key, _mmh3("product_stats:product_price"), Value(float_val=-123.0).SerializeToString())
    client.close()
    # then both online paths disagree with the offline store on that one value
    only_products = EntitySample(keys={fd.PRODUCT_STATS: [(product_id,)]})
    result = _check(store, only_products)
    assert result.mismatches == 2 and result.values_compared == 2 * len(fd.features_of(fd.PRODUCT_STATS))
