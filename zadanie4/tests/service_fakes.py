"""In-memory stand-ins for the service's dependencies: a feature reader over computed feature tables
(with fault knobs), a linear ranker, a model provider and a tiny generated shop."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from shared import feature_definitions as fd
from shared.data_generator import GeneratorConfig, generate
from shared.feature_computation import FeatureTables, compute_feature_tables
from zadanie1.candidate_generation import CandidateIndex
from zadanie4.dependencies import LoadedModel, ServiceDependencies
from zadanie4.pipeline.candidate_ranking import CandidateIndexCore, product_block_from_frames


@dataclass
class Shop:
    """A small generated shop: events, feature tables at the cutoff and the candidate index."""

    events: pd.DataFrame
    tables: FeatureTables
    index: CandidateIndex

    def users_with_events(self, minimum: int) -> list[int]:
        stats = self.tables.user_stats
        return stats.index[stats["user_n_events"] > minimum].tolist()

    def users_with_events_between(self, low: int, high: int) -> list[int]:
        n = self.tables.user_stats["user_n_events"]
        return n.index[(n >= low) & (n <= high)].tolist()

    def unknown_user(self) -> int:
        return int(self.tables.user_stats.index.max()) + 10_000


def make_shop(seed: int = 7) -> Shop:
    data = generate(GeneratorConfig(n_users=300, n_products=200, days=14, seed=seed))
    cutoff = data.events["event_time"].max() + pd.Timedelta(seconds=1)
    tables = compute_feature_tables(data.events, cutoff)
    return Shop(data.events, tables, CandidateIndex.build(data.events, cutoff))


def _row_dict(frame: pd.DataFrame, key: Any) -> dict[str, Any]:
    row = frame.loc[key]
    out: dict[str, Any] = {}
    for name, value in row.items():
        if isinstance(value, (list, np.ndarray)):
            out[str(name)] = [v.item() if hasattr(v, "item") else v for v in value]
        elif hasattr(value, "item"):
            out[str(name)] = value.item()
        else:
            out[str(name)] = value
    return out


@dataclass
class InMemoryFeatureReader:
    """The OnlineFeatureReader protocol over feature tables; ``fail``/``delay_s`` inject faults."""

    tables: FeatureTables
    fail: bool = False
    delay_s: float = 0.0
    calls: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _maybe_fault(self) -> None:
        with self._lock:
            self.calls += 1
        if self.delay_s:
            time.sleep(self.delay_s)
        if self.fail:
            raise ConnectionError("store down")

    def read_user(self, user_id: int) -> dict[str, Any] | None:
        self._maybe_fault()
        if user_id not in self.tables.user_stats.index:
            return None
        return _row_dict(self.tables.user_stats, user_id)

    def read_user_products(self, user_id: int, product_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
        self._maybe_fault()
        pairs = self.tables.user_product_interactions
        out = {}
        for product in product_ids:
            if (user_id, product) in pairs.index:
                out[int(product)] = _row_dict(pairs, (user_id, product))
        return out

    def read_products(self, product_ids: Sequence[int]) -> pd.DataFrame:
        self._maybe_fault()
        frame = self.tables.product_stats
        return frame.loc[frame.index.intersection(list(product_ids))]

    def read_categories(self, category_ids: Sequence[int]) -> pd.DataFrame:
        self._maybe_fault()
        frame = self.tables.category_stats
        return frame.loc[frame.index.intersection(list(category_ids))]

    def ping(self) -> bool:
        return not self.fail

    def close(self) -> None:
        pass


class LinearRanker:
    """score = matrix @ weights; ``sleep_s``/``fail`` make a misbehaving challenger."""

    def __init__(self, seed: int = 0, sleep_s: float = 0.0, fail: bool = False) -> None:
        self.feature_names = fd.RANKER_FEATURES
        self.weights = np.random.default_rng(seed).normal(size=len(fd.RANKER_FEATURES))
        self.sleep_s = sleep_s
        self.fail = fail
        self.calls = 0

    def score(self, matrix: np.ndarray) -> np.ndarray:
        self.calls += 1
        if self.sleep_s:
            time.sleep(self.sleep_s)
        if self.fail:
            raise RuntimeError("challenger exploded")
        return np.asarray(matrix, dtype=np.float64) @ self.weights


class DictModelProvider:
    """alias -> LoadedModel; an alias mapped to an Exception raises it on load."""

    def __init__(self, models: dict[str, LoadedModel | Exception] | None = None) -> None:
        self.models: dict[str, LoadedModel | Exception] = dict(models or {})
        self.loads: list[str] = []

    def load(self, alias: str) -> LoadedModel | None:
        self.loads.append(alias)
        model = self.models.get(alias)
        if isinstance(model, Exception):
            raise model
        return model


def model(version: str, ranker: Any | None = None, seed: int = 0) -> LoadedModel:
    return LoadedModel(version=version, ranker=ranker or LinearRanker(seed), source=f"test:{version}")


def two_models() -> DictModelProvider:
    """Champion v1 and a differently weighted challenger v2."""
    return DictModelProvider({"champion": model("1"), "challenger": model("2", seed=1)})


def make_dependencies(
    shop: Shop,
    *,
    reader: Any | None = None,
    models: DictModelProvider | None = None,
    realtime_update: Any = None,
) -> ServiceDependencies:
    core = CandidateIndexCore(shop.index, n_candidates=100, max_per_category=3, warm_threshold_events=5)
    return ServiceDependencies(
        core=core,
        reader=reader or InMemoryFeatureReader(shop.tables),
        models=models or DictModelProvider({"champion": model("1")}),
        product_block_factory=product_block_from_frames,
        realtime_update=realtime_update,
    )
