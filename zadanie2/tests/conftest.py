"""Fixtures of the feature store tests: one small event log, its snapshots, and stores built from them.

``import feast`` and a store build cost seconds, so the offline snapshots are built once per session
and shared; the SQLite and Redis stores built on them are session-scoped and read-only. Tests
that write to a store (drift, real-time updates) ask ``fresh_store`` for their own Feast project.
Redis tests use db 11 only; it is flushed before and after the session.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from shared.event_loader import validate_events
from zadanie2.offline_snapshots import BuildReport, build_snapshots
from zadanie2.settings import FeatureStoreSettings, load_settings

REDIS_TEST_URL = "redis://127.0.0.1:6379/11"
START = pd.Timestamp("2026-03-01", tz="UTC")
DAYS = 6
CATEGORIES = (10, 11, 12, 13)


def make_events(n_users: int = 30, n_products: int = 24, n_events: int = 1200, seed: int = 7) -> pd.DataFrame:
    """A small validated event log over ``DAYS`` days: several event types, sessions, some gaps.

    Products 900+ have no category (null), a few prices are missing; categories are small ints so
    the shared float64-based category join is exact for them.
    """
    rng = np.random.default_rng(seed)
    users = rng.integers(1, n_users + 1, n_events)
    products = rng.integers(100, 100 + n_products, n_events)
    uncategorised = rng.random(n_events) < 0.03
    products[uncategorised] = 900 + rng.integers(0, 3, int(uncategorised.sum()))
    category_of = {p: CATEGORIES[p % len(CATEGORIES)] for p in range(100, 100 + n_products)}
    seconds = np.sort(rng.integers(0, DAYS * 86400, n_events))
    types = rng.choice(["view", "cart", "remove_from_cart", "purchase"], n_events, p=[0.75, 0.12, 0.05, 0.08])
    prices = np.round(rng.uniform(5, 200, n_events), 2).astype(object)
    prices[rng.random(n_events) < 0.05] = None
    frame = pd.DataFrame(
        {
            "event_time": START + pd.to_timedelta(seconds, unit="s"),
            "event_type": types,
            "product_id": products,
            "category_id": pd.array([category_of.get(int(p)) for p in products], dtype="Int64"),
            "price": prices,
            "user_id": users,
            "user_session": [f"s{u}-{s // 7200}" for u, s in zip(users, seconds, strict=True)],
        }
    )
    return validate_events(frame).events


@dataclass
class OfflineData:
    root: Path
    events_path: Path
    offline_dir: Path
    events: pd.DataFrame
    report: BuildReport


@dataclass
class BuiltStore:
    settings: FeatureStoreSettings
    store: Any
    offline: OfflineData

    @property
    def data_end(self) -> pd.Timestamp:
        return self.offline.report.data_end


@pytest.fixture(scope="session")
def offline_data(tmp_path_factory: pytest.TempPathFactory) -> OfflineData:
    root = tmp_path_factory.mktemp("feature_store")
    events = make_events()
    events_path = root / "events.parquet"
    events.to_parquet(events_path, index=False)
    offline_dir = root / "offline"
    report = build_snapshots(events, offline_dir, freq="1D")
    return OfflineData(root, events_path, offline_dir, events, report)


def store_settings(
    offline: OfflineData, kind: str, project: str, folder: Path, **overrides: object
) -> FeatureStoreSettings:
    """Settings of one store on the shared snapshots; registry, online DB and event log in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    return load_settings(
        project=project,
        repo_path=folder / "repo",
        online_store=kind,
        redis_url=REDIS_TEST_URL if kind == "redis" else None,
        events_path=offline.events_path,
        features_dir=folder,
        offline_dir=offline.offline_dir,
        realtime_event_log_dir=folder / "realtime_events",
        registry_cache_ttl_seconds=0,
        **overrides,
    )


def build_store(settings: FeatureStoreSettings, offline: OfflineData) -> BuiltStore:
    from zadanie2.feature_store_config import open_feature_store
    from zadanie2.materialization import apply_feature_repo, materialize_views

    store = open_feature_store(settings)
    apply_feature_repo(settings, store)
    materialize_views(settings, store=store)
    return BuiltStore(settings, store, offline)


def _flush_test_db() -> None:
    import redis

    client = redis.Redis.from_url(REDIS_TEST_URL)
    try:
        client.flushdb()
    finally:
        client.close()


@pytest.fixture(scope="session")
def redis_test_db() -> Iterator[str]:
    """Redis db 11, empty at the start and flushed at the end; skips when no Redis is running."""
    import redis

    try:
        redis.Redis.from_url(REDIS_TEST_URL, socket_connect_timeout=1).ping()
    except redis.RedisError:
        pytest.skip("no Redis on 127.0.0.1:6379")
    _flush_test_db()
    yield REDIS_TEST_URL
    _flush_test_db()


@pytest.fixture(scope="session")
def sqlite_store(offline_data: OfflineData) -> BuiltStore:
    return build_store(
        store_settings(offline_data, "sqlite", "recsys_test", offline_data.root / "sqlite"), offline_data
    )


@pytest.fixture(scope="session")
def redis_store(offline_data: OfflineData, redis_test_db: str) -> BuiltStore:
    return build_store(store_settings(offline_data, "redis", "recsys_test", offline_data.root / "redis"), offline_data)


_counter = itertools.count()


@pytest.fixture
def fresh_store(
    offline_data: OfflineData, tmp_path: Path, request: pytest.FixtureRequest
) -> Callable[[str], BuiltStore]:
    """Factory: a newly applied + materialized store of ``kind`` in its own Feast project (writable)."""

    def make(kind: str) -> BuiltStore:
        if kind == "redis":
            request.getfixturevalue("redis_test_db")
        project = f"recsys_w{next(_counter)}_{uuid.uuid4().hex[:6]}"
        return build_store(store_settings(offline_data, kind, project, tmp_path / project), offline_data)

    return make


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def any_store(request: pytest.FixtureRequest) -> BuiltStore:
    """The session store of each kind (read-only)."""
    return request.getfixturevalue(f"{request.param}_store")
