"""Ids the load test draws from: warm users, never-seen users, products by category (from the served events).

``make loadtest`` writes them to ``artifacts/load_test_results/ids.json`` from the events file the
service was built from; the locustfile reads that file (path in ``RECSYS_LOADTEST_IDS``), or builds
the ids from ``data/events.parquet`` itself when the file is missing.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

# Unseen user ids start far above the largest real one so they stay unseen as the data grows a bit.
COLD_ID_OFFSET = 10_000_000


@dataclass(frozen=True)
class LoadTestIds:
    """What the simulated visitors are made of (plain lists: JSON in, JSON out)."""

    warm_user_ids: list[int]  # users with at least `warm_min_events` events
    cold_user_ids: list[int]  # ids that never appear in the events
    product_ids: list[int]  # products with events, most viewed first
    category_products: dict[str, list[int]]  # category id (as JSON key) -> its products, most viewed first

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> LoadTestIds:
        data = json.loads(text)
        return cls(
            warm_user_ids=[int(u) for u in data["warm_user_ids"]],
            cold_user_ids=[int(u) for u in data["cold_user_ids"]],
            product_ids=[int(p) for p in data["product_ids"]],
            category_products={str(c): [int(p) for p in ps] for c, ps in data["category_products"].items()},
        )


def ids_from_events(
    events: pd.DataFrame,
    *,
    n_warm: int = 1000,
    n_cold: int = 1000,
    n_products: int = 2000,
    warm_min_events: int = 6,
    seed: int = 0,
) -> LoadTestIds:
    """Sample the ids from an event frame (columns user_id, product_id, category_id; reproducible by seed).

    Raises ValueError when no user has ``warm_min_events`` events.
    """
    rng = np.random.default_rng(seed)
    counts = events["user_id"].value_counts()
    warm = np.sort(counts[counts >= warm_min_events].index.to_numpy(dtype=np.int64))
    if len(warm) == 0:
        raise ValueError(f"no user has {warm_min_events} events: the events cannot drive a load test")
    warm = rng.choice(warm, size=min(n_warm, len(warm)), replace=False)
    top_user = int(counts.index.max())
    cold = top_user + COLD_ID_OFFSET + rng.choice(10 * max(n_cold, 1), size=n_cold, replace=False)
    views = events["product_id"].value_counts()
    products = [int(p) for p in views.index[:n_products]]
    by_category: dict[str, list[int]] = {}
    if "category_id" in events.columns:
        pairs = events.loc[events["product_id"].isin(products), ["product_id", "category_id"]].dropna()
        pairs = pairs.drop_duplicates("product_id")
        rank = {p: i for i, p in enumerate(products)}
        for category, group in pairs.groupby("category_id"):
            ids = sorted((int(p) for p in group["product_id"]), key=rank.__getitem__)
            by_category[str(int(category))] = ids
    return LoadTestIds(
        warm_user_ids=[int(u) for u in warm],
        cold_user_ids=[int(u) for u in cold],
        product_ids=products,
        category_products=by_category,
    )


def write_ids(ids: LoadTestIds, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(ids.to_json())
    return path


def read_ids(path: Path) -> LoadTestIds:
    return LoadTestIds.from_json(path.read_text())


def ids_from_events_file(path: Path, **options: int) -> LoadTestIds:
    """:func:`ids_from_events` over an events file (Parquet or CSV), reading only the needed columns."""
    columns = ["user_id", "product_id", "category_id"]
    if path.suffix == ".parquet":
        return ids_from_events(pd.read_parquet(path, columns=columns), **options)
    return ids_from_events(pd.read_csv(path, usecols=columns), **options)
