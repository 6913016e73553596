"""Exploration budget for new products: Thompson sampling on click/impression counts with category priors.

New products (at most ``max_views`` views in the product features) have no history for the ranker to
learn from, so a configurable share of slots goes to them. Each new product's click-through rate has
a Beta posterior: the prior is centred on its category's observed CTR (itself shrunk toward a global
prior), with ``prior_strength`` pseudo-impressions, and the product's own impressions/clicks from
``POST /feedback`` update it. Per request one CTR is sampled per eligible product and the best samples
win the exploration slots — products that get clicked keep being shown, those that never do fade out.

The number of slots is ``k * share`` rounded randomly (``floor`` plus a Bernoulli draw of the
fraction), so the share holds in expectation for every ``k``; the slots are spread evenly over the
list, ending at the last position (k=10, share=0.1 -> position 10).
"""

from __future__ import annotations

import threading
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from zadanie1.candidate_generation import stable_groups

MAX_SAMPLED = 256  # products sampled per request at most (keeps the cost flat whatever the catalogue)


@dataclass(frozen=True)
class ExplorationConfig:
    share: float = 0.1  # share of slots, 0..0.5
    max_views: int = 20  # products with at most this many views are "new"
    prior_ctr: float = 0.05  # global prior click-through rate
    prior_strength: float = 20.0  # pseudo-impressions of every prior


@dataclass(frozen=True)
class ExplorationPick:
    product_id: int
    sampled_ctr: float


class ThompsonExplorer:
    """Keeps the new-product pool and its click/impression counts; picks products for exploration slots.

    Counts live in dense numpy arrays (per pool product and per category) so a request costs a few
    vectorised operations; ``record`` and ``choose`` may run on different threads (a lock guards them).
    """

    def __init__(self, config: ExplorationConfig, seed: int | None = None) -> None:
        self.config = config
        self._rng = np.random.default_rng(seed)
        self._lock = threading.Lock()
        self._pool_ids = np.empty(0, dtype=np.int64)
        self._pool_category_index = np.empty(0, dtype=np.int64)
        self._pool_categories = np.empty(0, dtype=np.int64)
        self._pool_position: dict[int, int] = {}
        self._pool_by_category: dict[int, np.ndarray] = {}  # category -> positions in the pool
        self._impressions = np.empty(0, dtype=np.float64)  # per pool product
        self._clicks = np.empty(0, dtype=np.float64)
        self._category_index: dict[int, int] = {}  # category id -> dense index
        self._category_of_product: dict[int, int] = {}  # product id -> dense category index
        self._category_impressions = np.empty(0, dtype=np.float64)
        self._category_clicks = np.empty(0, dtype=np.float64)
        self._total = np.zeros(2, dtype=np.float64)  # impressions, clicks over all products
        empty = np.empty(0, dtype=np.int64)
        self._catalogue: tuple[np.ndarray, np.ndarray, np.ndarray] = (empty, empty, np.empty(0))
        self._announced: dict[int, int] = {}  # product id -> category id, from add_products

    # --- state --------------------------------------------------------------------------------
    def set_catalogue(self, product_ids: np.ndarray, category_ids: np.ndarray, n_views: np.ndarray) -> None:
        """Replace the pool with the catalogue's new products (called on every product-feature refresh).

        Counts of products and categories that are still there are kept. Products announced with
        :meth:`add_products` that the catalogue does not list yet stay in the pool.
        """
        with self._lock:
            self._catalogue = (
                np.asarray(product_ids, dtype=np.int64),
                np.asarray(category_ids, dtype=np.int64),
                np.asarray(n_views, dtype=np.float64),
            )
            self._install_locked()

    def add_products(self, product_ids: Sequence[int], category_ids: Sequence[int]) -> int:
        """Announce products released after the last feature build (the shop's catalogue feed).

        They join the pool at once with no views (so they are "new" until the features count their
        views) and keep their place across catalogue refreshes. Returns the pool size.
        """
        with self._lock:
            for product, category in zip(product_ids, category_ids, strict=True):
                self._announced[int(product)] = int(category)
            self._install_locked()
            return len(self._pool_ids)

    def _install_locked(self) -> None:
        product_ids, category_ids, n_views = self._catalogue
        if self._announced:
            listed = set(product_ids.tolist())
            extra = [(p, c) for p, c in self._announced.items() if p not in listed]
            if extra:
                product_ids = np.concatenate([product_ids, np.array([p for p, _ in extra], dtype=np.int64)])
                category_ids = np.concatenate([category_ids, np.array([c for _, c in extra], dtype=np.int64)])
                n_views = np.concatenate([n_views, np.zeros(len(extra))])
        is_new = n_views <= self.config.max_views
        old_counts = self._product_counts_locked()
        old_categories = {
            c: (self._category_impressions[i], self._category_clicks[i]) for c, i in self._category_index.items()
        }
        unique_categories = np.unique(category_ids)
        self._category_index = {int(c): i for i, c in enumerate(unique_categories.tolist())}
        self._category_impressions = np.array(
            [old_categories.get(int(c), (0.0, 0.0))[0] for c in unique_categories.tolist()], dtype=np.float64
        )
        self._category_clicks = np.array(
            [old_categories.get(int(c), (0.0, 0.0))[1] for c in unique_categories.tolist()], dtype=np.float64
        )
        dense = np.searchsorted(unique_categories, category_ids)
        self._category_of_product = dict(zip(product_ids.tolist(), dense.tolist(), strict=True))
        self._pool_ids = product_ids[is_new]
        self._pool_categories = category_ids[is_new]
        self._pool_category_index = dense[is_new]
        self._pool_position = {p: i for i, p in enumerate(self._pool_ids.tolist())}
        self._pool_by_category = {
            int(c): np.flatnonzero(self._pool_categories == c) for c in np.unique(self._pool_categories).tolist()
        }
        counts = [old_counts.get(p, (0.0, 0.0)) for p in self._pool_ids.tolist()]
        self._impressions = np.array([c[0] for c in counts], dtype=np.float64)
        self._clicks = np.array([c[1] for c in counts], dtype=np.float64)

    def _product_counts_locked(self) -> dict[int, tuple[float, float]]:
        return {p: (float(self._impressions[i]), float(self._clicks[i])) for p, i in self._pool_position.items()}

    @property
    def pool_size(self) -> int:
        return len(self._pool_ids)

    def counts(self, product_id: int) -> tuple[float, float]:
        """(impressions, clicks) recorded for a pool product; (0, 0) when it is not in the pool."""
        with self._lock:
            position = self._pool_position.get(product_id)
            if position is None:
                return 0.0, 0.0
            return float(self._impressions[position]), float(self._clicks[position])

    def record(self, product_id: int, event_type: str) -> None:
        """Count a feedback event: ``impression`` adds a trial, ``click`` a success (others are ignored)."""
        if event_type == "impression":
            slot = 0
        elif event_type == "click":
            slot = 1
        else:
            return
        with self._lock:
            self._total[slot] += 1.0
            category = self._category_of_product.get(product_id)
            if category is not None:
                (self._category_impressions if slot == 0 else self._category_clicks)[category] += 1.0
            position = self._pool_position.get(product_id)
            if position is not None:
                (self._impressions if slot == 0 else self._clicks)[position] += 1.0

    # --- choosing -------------------------------------------------------------------------------
    def _sample_positions(self, n: int, exclude: Collection[int], preferred_categories: Iterable[int]) -> np.ndarray:
        """Pool positions to sample this request: the preferred categories' products when at least ``n`` of
        them are not excluded, else the whole pool; a random ``MAX_SAMPLED`` of them when there are more.

        The cost depends on ``MAX_SAMPLED`` and on the excluded ids, never on the pool's size: positions are
        drawn as numbers and mapped into the categories' position arrays, nothing is concatenated.
        """
        preferred = [c for c in dict.fromkeys(preferred_categories) if c in self._pool_by_category]
        if preferred:
            parts = [self._pool_by_category[c] for c in preferred]
            wanted = set(preferred)
            excluded_there = sum(
                1
                for product in exclude
                if (position := self._pool_position.get(product)) is not None
                and int(self._pool_categories[position]) in wanted
            )
            sizes = np.array([len(part) for part in parts], dtype=np.int64)
            total = int(sizes.sum())
            if total - excluded_there >= n:
                if total <= MAX_SAMPLED:
                    return np.concatenate(parts) if len(parts) > 1 else parts[0]
                # the same draw as indexing the concatenated parts, without building it
                drawn = _sorted_unique(self._rng.integers(0, total, MAX_SAMPLED))
                starts = np.cumsum(sizes) - sizes
                part_of = np.searchsorted(starts, drawn, side="right") - 1
                positions = np.empty(len(drawn), dtype=np.int64)
                for p, part in enumerate(parts):
                    mask = part_of == p
                    positions[mask] = part[drawn[mask] - starts[p]]
                return positions
        size = len(self._pool_ids)
        if size <= MAX_SAMPLED:
            return np.arange(size)
        return _sorted_unique(self._rng.integers(0, size, MAX_SAMPLED))

    def n_slots(self, k: int) -> int:
        """Exploration slots for a list of ``k``: ``k * share`` with a random rounding of the fraction."""
        expected = k * self.config.share
        whole = int(expected)
        return min(k, whole + int(self._rng.random() < expected - whole))

    def choose(
        self, n: int, exclude: Collection[int] = (), preferred_categories: Iterable[int] = ()
    ) -> list[ExplorationPick]:
        """Up to ``n`` new products by Thompson sampling, skipping ``exclude``; preferred categories first.

        Products of ``preferred_categories`` (the request's category, the user's top categories) are
        sampled alone when there are enough of them, otherwise the whole pool is; at most
        ``MAX_SAMPLED`` products (a random subset) are sampled per request.
        """
        if n <= 0 or len(self._pool_ids) == 0:
            return []
        with self._lock:
            pool_ids = self._pool_ids
            candidates = self._sample_positions(n, exclude, preferred_categories)
            strength, prior = self.config.prior_strength, self.config.prior_ctr
            global_mean = (self._total[1] + strength * prior) / (self._total[0] + strength)
            category = self._pool_category_index[candidates]
            means = (self._category_clicks[category] + strength * global_mean) / (
                self._category_impressions[category] + strength
            )
            means = np.clip(means, 1e-4, 1.0 - 1e-4)
            clicks = self._clicks[candidates]
            alpha = strength * means + clicks
            beta = strength * (1.0 - means) + np.maximum(self._impressions[candidates] - clicks, 0.0)
            samples = self._rng.beta(alpha, beta)
        if n == 1:  # the common case (k=10, share 0.1): the best sample, unless it is excluded
            best = int(np.argmax(samples))
            product = int(pool_ids[candidates[best]])
            if product not in exclude:
                return [ExplorationPick(product, float(samples[best]))]
        picks: list[ExplorationPick] = []
        for order in np.argsort(-samples, kind="stable").tolist():
            product = int(pool_ids[candidates[order]])
            if product in exclude:
                continue
            picks.append(ExplorationPick(product, float(samples[order])))
            if len(picks) == n:
                break
        return picks


def _sorted_unique(values: np.ndarray) -> np.ndarray:
    """``np.unique(values)`` for a request's few hundred draws (numpy 2's unique costs ~10x the sort)."""
    order, first = stable_groups(values)
    return values[order][first]


def exploration_positions(k: int, n: int) -> list[int]:
    """0-based positions of ``n`` exploration slots in a list of ``k``, evenly spread, the last at k-1."""
    if n <= 0:
        return []
    n = min(n, k)
    return sorted({min(k - 1, (j + 1) * k // n - 1) for j in range(n)})


def interleave(base: Sequence[object], picks: Sequence[object], k: int) -> list[object]:
    """``base`` items with ``picks`` placed at :func:`exploration_positions`; at most ``k`` items."""
    positions = set(exploration_positions(k, len(picks)))
    base_iter, pick_iter = iter(base), iter(picks)
    out: list[object] = []
    for position in range(k):
        source = pick_iter if position in positions else base_iter
        item = next(source, None)
        if item is None:  # one source ran out: top up from the other
            item = next(base_iter if source is pick_iter else pick_iter, None)
        if item is None:
            break
        out.append(item)
    return out
