"""Figures for the note: online read latency (Feast SDK vs the service read path) and Redis memory.

``recsys features latency`` times, over ``calls`` calls each (random entities from the final
snapshot, after a warm-up, with ``gc.freeze()`` as the service does after start-up):

* ``user``: one user's user_stats row;
* ``products``: product_stats of ``n_products`` products;
* ``pairs``: user_product_interactions of one user x ``n_products`` products;

each via the Feast SDK (``get_online_features(...).to_dict()``) and via ``create_feature_reader``
(``RedisFeatureReader`` on Redis). Results (p50/p99/mean in ms), the last materialization time and,
for Redis, the memory taken by the project's keys are merged into ``artifacts/features/latency.json``
under the online store's name, so SQLite and Redis runs sit side by side.

Reads of absent keys are fast, so timing an empty, half-materialized or meanwhile flushed store would
report excellent, meaningless figures: the sampled entities are checked to have online rows before and
after the timed calls, and the run fails otherwise.
"""

from __future__ import annotations

import gc
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from shared import column_names as col
from shared import feature_definitions as fd
from shared.errors import UserInputError
from zadanie2.feature_repo.feature_views import feature_refs
from zadanie2.offline_snapshots import snapshot_file_name, snapshot_window
from zadanie2.settings import FeatureStoreSettings, redis_connection_parts

WARMUP_CALLS = 20
PRESENCE_CHECK_USERS = 20


def percentiles_ms(seconds: list[float]) -> dict[str, float]:
    values = np.asarray(seconds) * 1000.0
    return {
        "p50_ms": round(float(np.percentile(values, 50)), 4),
        "p99_ms": round(float(np.percentile(values, 99)), 4),
        "mean_ms": round(float(values.mean()), 4),
        "calls": len(values),
    }


def time_calls(call: Callable[[int], Any], calls: int) -> dict[str, float]:
    """Run ``call(i)`` for warm-up then ``calls`` times; per-call wall time percentiles."""
    for i in range(WARMUP_CALLS):
        call(i)
    timings = []
    for i in range(calls):
        started = time.perf_counter()
        call(i)
        timings.append(time.perf_counter() - started)
    return percentiles_ms(timings)


def verify_rows_present(reader: Any, user_ids: list[int], product_ids: list[int], when: str) -> None:
    """Raise UserInputError when some of these final-snapshot entities have no online row."""
    missing_users = sum(reader.read_user(u) is None for u in user_ids)
    missing_products = len(set(product_ids)) - len(reader.read_products(product_ids))
    if missing_users or missing_products:
        raise UserInputError(
            f"{when} timing, {missing_users}/{len(user_ids)} sampled users and {missing_products}/"
            f"{len(set(product_ids))} products of the final snapshot have no online row: the online store is "
            "not (fully) materialized or was changed meanwhile; run `recsys features materialize` and measure again"
        )


def redis_memory(redis_url: str, project: str) -> dict[str, Any]:
    """Keys of the project and their summed ``MEMORY USAGE`` (bytes), plus the db's ``used_memory``."""
    import redis

    parts = redis_connection_parts(redis_url)
    client = redis.Redis(
        host=str(parts["host"]),
        port=int(parts["port"]),  # type: ignore[call-overload]
        db=int(parts["db"]),  # type: ignore[call-overload]
        username=parts["username"],  # type: ignore[arg-type]
        password=parts["password"],  # type: ignore[arg-type]
        ssl=bool(parts["ssl"]),
    )
    try:
        keys = list(client.scan_iter(match=b"*" + project.encode(), count=5000))
        total = 0
        for start in range(0, len(keys), 5000):
            pipe = client.pipeline(transaction=False)
            for key in keys[start : start + 5000]:
                pipe.memory_usage(key, samples=0)
            total += sum(v or 0 for v in pipe.execute())
        used = int(client.info("memory")["used_memory"])
    finally:
        client.close()
    return {"keys": len(keys), "keys_bytes": total, "keys_mib": round(total / 2**20, 2), "used_memory_bytes": used}


def run_latency_benchmark(
    settings: FeatureStoreSettings, *, calls: int = 300, n_products: int = 200, seed: int = 0
) -> dict[str, Any]:
    """Measure (see module doc) and return this store's section of ``latency.json``."""
    from zadanie2.feature_store_config import open_feature_store
    from zadanie2.online_feature_reader import create_feature_reader

    paths = settings.paths()
    final = snapshot_file_name(snapshot_window(paths["offline"])[1])
    users = pq.read_table(paths["offline"] / fd.USER_STATS / final, columns=[col.USER_ID]).column(0).to_numpy()
    products = pq.read_table(paths["offline"] / fd.PRODUCT_STATS / final, columns=[col.PRODUCT_ID]).column(0)
    products = products.to_numpy()
    rng = np.random.default_rng(seed)
    n_draws = calls + WARMUP_CALLS
    user_draws = rng.choice(users, n_draws).tolist()
    product_draws = [
        rng.choice(products, min(n_products, len(products)), replace=False).tolist() for _ in range(n_draws)
    ]

    store = open_feature_store(settings)
    reader = create_feature_reader(settings)
    user_refs, product_refs = feature_refs(fd.USER_STATS), feature_refs(fd.PRODUCT_STATS)
    pair_refs = feature_refs(fd.USER_PRODUCT_INTERACTIONS)

    def sdk_user(i: int) -> Any:
        return store.get_online_features(features=user_refs, entity_rows=[{col.USER_ID: user_draws[i]}]).to_dict()

    def sdk_products(i: int) -> Any:
        rows = [{col.PRODUCT_ID: p} for p in product_draws[i]]
        return store.get_online_features(features=product_refs, entity_rows=rows).to_dict()

    def sdk_pairs(i: int) -> Any:
        rows = [{col.USER_ID: user_draws[i], col.PRODUCT_ID: p} for p in product_draws[i]]
        return store.get_online_features(features=pair_refs, entity_rows=rows).to_dict()

    check_users, check_products = user_draws[:PRESENCE_CHECK_USERS], product_draws[0]
    verify_rows_present(reader, check_users, check_products, "before")
    gc.collect()
    gc.freeze()
    try:
        section: dict[str, Any] = {
            "online_store": settings.online_store_kind,
            "service_reader": type(reader).__name__,
            "n_products": n_products,
            "machine": {"cpus": os.cpu_count(), "load_average_1m_at_start": round(os.getloadavg()[0], 2)},
            "sdk": {
                "user": time_calls(sdk_user, calls),
                "products": time_calls(sdk_products, calls),
                "pairs": time_calls(sdk_pairs, calls),
            },
            "service_path": {
                "user": time_calls(lambda i: reader.read_user(user_draws[i]), calls),
                "products": time_calls(lambda i: reader.read_products(product_draws[i]), calls),
                "pairs": time_calls(lambda i: reader.read_user_products(user_draws[i], product_draws[i]), calls),
            },
        }
        verify_rows_present(reader, check_users, check_products, "after")
    finally:
        gc.unfreeze()
        reader.close()
    materialization = paths["features"] / f"materialization_{settings.online_store_kind}.json"
    if materialization.exists():
        report = json.loads(materialization.read_text())
        section["materialization_seconds"] = report.get("seconds_total")
        section["materialized_rows"] = report.get("rows_in_final_snapshot")
    if settings.online_store_kind == "redis" and settings.redis_url:
        section["redis_memory"] = redis_memory(settings.redis_url, settings.project)
    return section


def write_latency(settings: FeatureStoreSettings, section: dict[str, Any]) -> Path:
    """Merge ``section`` into latency.json under its online store name."""
    path = settings.paths()["features"] / "latency.json"
    existing = json.loads(path.read_text()) if path.exists() else {}
    existing[section["online_store"]] = section
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(existing, indent=2))
    return path
