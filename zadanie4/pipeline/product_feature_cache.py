"""In-process product + category features, refreshed from the online store in the background.

Item features change slowly (they are daily snapshots) while every request needs them for hundreds
of candidates, so the service keeps them in memory: every ``refresh_s`` seconds a background thread
reads all catalogue products and their categories through the same :class:`FeatureReader` the
request path uses (so the values are the Feast-served ones), builds the recommender core's product
feature block (a contiguous float32 matrix) and swaps it in with one assignment. A failed refresh
keeps the previous block and retries after ``retry_s``. Only the user row (and a few pair rows) are
read per request.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from zadanie4.dependencies import FeatureReader, ProductBlockFactory

log = logging.getLogger(__name__)
READ_CHUNK = 2000  # products per read call, so one call never holds the store for long


@dataclass(frozen=True)
class ProductSnapshot:
    """One refresh: the core's block plus the arrays the exploration pool needs."""

    block: Any
    product_ids: np.ndarray  # int64
    category_ids: np.ndarray  # int64, -1 unknown
    n_views: np.ndarray  # float64
    loaded_at: float  # time.time() of the refresh
    prices: np.ndarray | None = None  # float64, NaN unknown

    @property
    def n_products(self) -> int:
        return len(self.product_ids)

    def describe(self, product_id: int) -> tuple[int | None, float | None]:
        """(category id, last price) of a catalogue product; Nones when unknown."""
        ids = self.product_ids
        position = int(np.searchsorted(ids, product_id))
        if position >= len(ids) or ids[position] != product_id:
            return None, None
        category = int(self.category_ids[position])
        price = float(self.prices[position]) if self.prices is not None else float("nan")
        return (category if category >= 0 else None), (price if np.isfinite(price) and price > 0 else None)


def read_product_frames(
    reader: FeatureReader, product_ids: Sequence[int], chunk: int = READ_CHUNK
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """product_stats (index product_id) for ``product_ids`` and category_stats of their categories."""
    parts = [reader.read_products(list(product_ids[i : i + chunk])) for i in range(0, len(product_ids), chunk)]
    products = pd.concat(parts) if parts else pd.DataFrame()
    products = products[~products.index.duplicated(keep="last")]
    if "product_category_id" in products:
        categories = pd.to_numeric(products["product_category_id"], errors="coerce").dropna().astype("int64")
        category_ids = sorted({c for c in categories.tolist() if c >= 0})
    else:
        category_ids = []
    category_parts = [reader.read_categories(category_ids[i : i + chunk]) for i in range(0, len(category_ids), chunk)]
    categories_frame = pd.concat(category_parts) if category_parts else pd.DataFrame()
    return products, categories_frame


def _catalogue_column(
    products: pd.DataFrame, name: str, product_ids: np.ndarray, fill: float, dtype: type
) -> np.ndarray:
    """``products[name]`` aligned to ``product_ids`` with ``fill`` for missing rows.

    Integer ids are aligned as nullable Int64 (never through float64, which cannot hold
    19-digit category ids exactly).
    """
    if name not in products:
        return np.full(len(product_ids), fill, dtype=dtype)
    column = products[name]
    if dtype is np.int64:
        aligned = pd.to_numeric(column, errors="coerce").astype("Int64").reindex(product_ids)
        return aligned.fillna(int(fill)).to_numpy(dtype=np.int64)
    return pd.to_numeric(column, errors="coerce").reindex(product_ids).to_numpy(dtype=np.float64, na_value=fill)


class ProductFeatureCache:
    """Holds the latest :class:`ProductSnapshot`; ``refresh()`` is blocking, ``start()`` runs it periodically."""

    def __init__(
        self,
        reader: FeatureReader,
        catalogue: Callable[[], np.ndarray],
        block_factory: ProductBlockFactory,
        *,
        refresh_s: float = 300.0,
        retry_s: float = 10.0,
        on_refresh: Callable[[ProductSnapshot], None] | None = None,
    ) -> None:
        self._reader = reader
        self._catalogue = catalogue
        self._block_factory = block_factory
        self.refresh_s = refresh_s
        self.retry_s = retry_s
        self._on_refresh = on_refresh
        self.snapshot: ProductSnapshot | None = None
        self.last_error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def block(self) -> Any:
        snapshot = self.snapshot
        return None if snapshot is None else snapshot.block

    def age_seconds(self) -> float | None:
        snapshot = self.snapshot
        return None if snapshot is None else max(0.0, time.time() - snapshot.loaded_at)

    def refresh(self) -> ProductSnapshot:
        """Read every catalogue product's features now and swap them in; raises when the read fails."""
        product_ids = np.asarray(self._catalogue(), dtype=np.int64)
        products, categories = read_product_frames(self._reader, product_ids.tolist())
        # The block gets the rows as read: catalogue products without a row get the defaults when scored.
        block = self._block_factory(products, categories)
        category_ids = _catalogue_column(products, "product_category_id", product_ids, -1, np.int64)
        n_views = _catalogue_column(products, "product_n_views", product_ids, 0, np.float64)
        prices = _catalogue_column(products, "product_price", product_ids, np.nan, np.float64)
        order = np.argsort(product_ids, kind="stable")  # describe() bisects the ids
        snapshot = ProductSnapshot(
            block,
            product_ids[order],
            category_ids[order],
            n_views[order],
            time.time(),
            prices[order],
        )
        self.snapshot = snapshot
        self.last_error = None
        if self._on_refresh is not None:
            self._on_refresh(snapshot)
        return snapshot

    def start(self) -> None:
        """Refresh every ``refresh_s`` seconds in a daemon thread (after ``retry_s`` when one failed)."""
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="product-feature-refresh", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        wait = self.refresh_s if self.snapshot is not None else self.retry_s
        while not self._stop.wait(wait):
            try:
                self.refresh()
                wait = self.refresh_s
            except Exception as exc:  # keep serving the previous block; try again soon
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("product feature refresh failed: %s", self.last_error)
                wait = self.retry_s

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            self._thread = None
