"""Fixtures of the fast reliability variants (``make test``): a real dedicated redis-server behind a real
delay proxy, and the service app (``create_app``) served by uvicorn in a thread on loopback.

Fixtures of the fault scenarios are prefixed ``fault_``. The app runs on the small generated shop of
the service tests; its user rows and user x product rows live in the dedicated Redis as JSON (one key
per entity, read with redis-py through the proxy under a socket timeout), so stopping Redis, slowing
the proxy or expiring a key hits the request path exactly as the Feast layout does in the full runs.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from shared import feature_definitions as fd
from zadanie4.app import create_app
from zadanie4.dependencies import LoadedModel, ServiceDependencies
from zadanie4.evaluation.reliability.harness import Context, DelayProxy, InProcessService, RedisServer
from zadanie4.pipeline.candidate_ranking import CandidateIndexCore, product_block_from_frames
from zadanie4.settings import ServeSettings, load_settings
from zadanie4.tests.service_fakes import Shop, make_shop, two_models

FAULT_ADMIN_TOKEN = "reliability-test-token"


def _jsonable_row(row: pd.Series) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in row.items():
        if isinstance(value, (list, tuple, np.ndarray)):
            out[str(name)] = [v.item() if hasattr(v, "item") else v for v in value]
        elif hasattr(value, "item"):
            out[str(name)] = value.item()
        else:
            out[str(name)] = value
    return out


class JsonKeys:
    """Keys of :class:`RedisJsonFeatureReader` (the ``StoreKeys`` of the missing-features scenario)."""

    def user_key(self, user_id: int) -> bytes:
        return b"user:%d" % user_id

    def product_key(self, product_id: int) -> bytes:
        return b"product:%d" % product_id

    def pairs_key(self, user_id: int) -> bytes:
        return b"pairs:%d" % user_id


class RedisJsonFeatureReader:
    """The service's FeatureReader over a real Redis: users and pairs as JSON, product presence by key
    (the product values themselves come from the shop's tables)."""

    def __init__(self, redis_url: str, shop: Shop, timeout_s: float = 0.1) -> None:
        import redis

        self.tables = shop.tables
        self.keys = JsonKeys()
        self.client = redis.Redis.from_url(redis_url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)

    def load(self) -> None:
        """Write every user row, pair row and product marker (run once, before the service starts)."""
        pipe = self.client.pipeline(transaction=False)
        for user_id, row in self.tables.user_stats.iterrows():
            pipe.set(self.keys.user_key(int(user_id)), json.dumps(_jsonable_row(row)))
        for (user_id, product_id), row in self.tables.user_product_interactions.iterrows():
            pipe.hset(self.keys.pairs_key(int(user_id)), str(int(product_id)), json.dumps(_jsonable_row(row)))
        for product_id in self.tables.product_stats.index:
            pipe.set(self.keys.product_key(int(product_id)), b"1")
        pipe.execute()

    def read_user(self, user_id: int) -> dict[str, Any] | None:
        raw = self.client.get(self.keys.user_key(user_id))
        return None if raw is None else dict(json.loads(raw))

    def read_user_products(self, user_id: int, product_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
        if not product_ids:
            return {}
        raws = self.client.hmget(self.keys.pairs_key(user_id), [str(int(p)) for p in product_ids])
        return {int(p): json.loads(r) for p, r in zip(product_ids, raws, strict=True) if r is not None}

    def read_products(self, product_ids: Sequence[int]) -> pd.DataFrame:
        ids = [int(p) for p in product_ids]
        present = self.client.mget([self.keys.product_key(p) for p in ids]) if ids else []
        kept = [p for p, flag in zip(ids, present, strict=True) if flag is not None]
        frame = self.tables.product_stats
        return frame.loc[frame.index.intersection(kept)]

    def read_categories(self, category_ids: Sequence[int]) -> pd.DataFrame:
        frame = self.tables.category_stats
        return frame.loc[frame.index.intersection(list(category_ids))]

    def ping(self) -> bool:
        return bool(self.client.ping())

    def close(self) -> None:
        self.client.close()


@pytest.fixture(scope="session")
def fault_shop() -> Shop:
    return make_shop()


@pytest.fixture(scope="session")
def fault_ranker_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real (tiny) LightGBM ranker folder over the registry's feature list, as training writes it."""
    import lightgbm as lgb

    from zadanie1.ranker_artifact import save_ranker

    rng = np.random.default_rng(3)
    x = rng.normal(size=(400, len(fd.RANKER_FEATURES)))
    y = (x[:, 0] + rng.normal(scale=0.5, size=400) > 0).astype(int)
    booster = lgb.train(
        {"objective": "binary", "num_leaves": 4, "verbose": -1, "num_threads": 1},
        lgb.Dataset(x, y, feature_name=list(fd.RANKER_FEATURES)),
        num_boost_round=5,
    )
    return save_ranker(booster, fd.RANKER_FEATURES, {}, tmp_path_factory.mktemp("ranker") / "ranker")


@dataclass
class FaultWorld:
    """A context of the fast variants plus the parts a test may poke at."""

    ctx: Context
    redis: RedisServer
    proxy: DelayProxy
    shop: Shop
    keys: JsonKeys
    services: list[InProcessService] = field(default_factory=list)

    def start_app(self, models: Any, **settings: Any) -> InProcessService:
        """The service app on this world's Redis (through the proxy), served on loopback."""
        reader = RedisJsonFeatureReader(self.redis.url(port=self.proxy.port), self.shop)
        core = CandidateIndexCore(self.shop.index, n_candidates=100, max_per_category=3, warm_threshold_events=5)
        deps = ServiceDependencies(
            core=core, reader=reader, models=models, product_block_factory=product_block_from_frames
        )
        service = InProcessService(create_app(fault_settings(self.ctx.out_dir, **settings), dependencies=deps))
        self.services.append(service)
        return service.start()


def fault_settings(tmp_path: Path, **overrides: Any) -> ServeSettings:
    values: dict[str, Any] = {
        "artifacts_dir": tmp_path,
        "admin_token": FAULT_ADMIN_TOKEN,
        "redis_url": None,
        "feedback_sqlite_path": tmp_path / "feedback.db",
        "exploration_share": 0.0,
        "exploration_seed": 1,
        "feature_budget_ms": 200.0,  # generous on a busy test machine; the slow proxy still exceeds it
        "realtime_update_interval_s": 0.0,
        "shadow_sample_rate": 1.0,  # every champion request, so tests see each job
        # The load generator, the delay proxy and the app share this process's GIL: the overload guard would
        # read their contention as overload and refuse (503s at 200 req/s in a CI run). The guard has its own
        # tests and the overload scenario of make reliability, on a service process of its own.
        "max_event_loop_busy": None,
    }
    values.update(overrides)
    return load_settings(**values)


@pytest.fixture
def fault_world(tmp_path: Path, fault_shop: Shop) -> Iterator[FaultWorld]:
    """Dedicated Redis (password) with the shop's rows, a 0 ms proxy, and a quick Context whose main
    service is started lazily by ``main_factory`` (replace it to serve other models)."""
    redis = RedisServer(password="test-pass")
    redis.start()
    proxy = DelayProxy(redis.port)
    proxy.start()
    RedisJsonFeatureReader(redis.url(), fault_shop).load()
    warm = fault_shop.users_with_events(5)
    unknown = [fault_shop.unknown_user() + i for i in range(500)]
    ctx = Context(
        out_dir=tmp_path,
        admin_token=FAULT_ADMIN_TOKEN,
        env={},
        redis=redis,
        proxy=proxy,
        warm_users=list(warm),
        unknown_users=unknown,
        quick=True,
    )
    world = FaultWorld(ctx, redis, proxy, fault_shop, JsonKeys())
    ctx.main_factory = lambda _ctx: world.start_app(two_models())
    try:
        yield world
    finally:
        for service in world.services:
            service.stop()
        ctx.close()
        proxy.stop()
        redis.close()


ModelFactory = Callable[[], LoadedModel]
