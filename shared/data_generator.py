"""Synthetic e-commerce shop: the embedded default event log (REES46 schema) and its ground truth.

The generator draws a latent shop (catalogue, users with tastes) and simulates the users'
sessions over a period, producing an event log in the REES46 schema. The same latent
parameters are kept as a :class:`GroundTruth`, which the simulated online A/B test uses as the
"real" users: it answers "with which probability does this user click this product at this
position?". Because events and clicks come from one utility, a ranker that learns the users'
tastes from the log beats popularity in the simulation (tastes are concentrated on purpose).

Behaviour modelled (all vectorised with numpy; one seed -> byte-identical events)

* Categories: a fixed two-level taxonomy (``n_top_categories`` top levels x leaves, e.g.
  ``electronics.smartphone``); events carry leaf categories. ``category_id`` is a stable,
  REES46-like large int64 derived from the code (a hash), so it is the same for every seed.
* Brands: each top level has a pool of brand names (some shared, e.g. samsung); each leaf uses
  4-10 of them; a product's brand is drawn from its leaf's brands with Zipf weights.
* Prices: log-normal per leaf (median from the taxonomy, times a per-brand premium, sigma
  ``price_sigma``), rounded to cents. ``price_z`` = standardised log price within the leaf.
* Products: leaf by catalogue weight (Dirichlet), latent quality ``q = zipf_exponent *
  (-log rank)`` centred (rank a random permutation), i.e. Zipf-like popularity.
  ``new_product_share`` of the products are released during the period (after day 0, uniform
  in time); they get no events before their release. ``future_products`` more are released only
  after the period (within ``future_horizon_days``): they exist only in the ground truth.
* Users: hierarchical Dirichlet taste (top level ``taste_concentration_top`` x leaf within top
  ``taste_concentration_leaf``, mean per-component alpha; small = concentrated), 1 + Poisson
  favourite brands with affinity ``brand_affinity_strength`` (plus N(0, 0.25) noise for every
  brand), price sensitivity ~ N(``price_sensitivity_mean``, ``price_sensitivity_sd``), activity
  (sessions per day) ~ Gamma(``activity_shape``) with mean ``sessions_per_user_day``.
  ``new_user_share`` of the users first visit during the period (after day 0; their first
  session starts exactly at ``first_seen``); ``future_users`` more arrive after the period.
* Affinity (the utility used everywhere):
  ``u(user, product) = log(taste[user, leaf] + taste_epsilon) + quality + brand_affinity[user, brand]
  - price_sensitivity[user] * price_z``.
* Sessions: every in-period user has 1 + Poisson(activity x active days) sessions, with start
  times drawn from a weekly x hourly intensity (evening peak in local time,
  ``timezone_offset_hours``; weekend dip on Fri/Sat, high Sunday). A session has 1 + NegBin views
  (mean ``views_per_session_mean``, up to several tens) ~30 s apart (log-normal gaps). It has a
  primary leaf drawn from the user's taste and, with probability ``second_category_share``, a
  second one. Each view is popularity-driven browsing with probability ``explore_share``
  (product ~ exp(quality) among released products), otherwise from the session's leaf (70/30
  primary/secondary) with probability ~ exp(u) among the leaf's released products; repeated
  views of a product are possible, as in REES46.
* Funnel: each view becomes a cart with ``sigmoid(cart_intercept + cart_slope * u)`` (about 5-10 %
  of views overall); a cart is purchased at the session's checkout with
  ``sigmoid(purchase_intercept + purchase_slope * u)`` (about 30-50 %); an unpurchased cart is
  removed (``remove_from_cart``) with probability ``remove_share``.
* Times are whole seconds in UTC; events at or after the end of the period are dropped; rows are
  unique and sorted by time (ties: view < cart < remove < purchase, then by session).

Ground-truth click model (for the A/B simulation)::

    P(click | user, product, position) = sigmoid(click_intercept + click_slope * u) / log2(position + 2)

with 0-based positions: ~2-8 % at position 0 for a random product, ~30-50 % for a user's best
products. ``cart_probability`` / ``purchase_probability`` are P(cart | click) and
P(purchase | click) from the same funnel as the sessions.

Default config (3 000 users, 1 500 products, 28 days) gives ~1.9e5 events in ~0.3 s; 20 000 users x
5 000 products x 30 days gives ~1.3e6 events in ~3-5 s (2 cores).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pandas as pd

from shared import column_names as col

FORMAT_VERSION: Final = 1
GROUND_TRUTH_ARRAYS_FILE: Final = "ground_truth.npz"
GROUND_TRUTH_META_FILE: Final = "ground_truth.json"

SEGMENT_WARM: Final = 0
"""Entity existed before the period (users: visited before; products: released before)."""
SEGMENT_NEW: Final = 1
"""Entity first appears inside the period, after day 0."""
SEGMENT_FUTURE: Final = 2
"""Entity first appears after the period; it exists only in the ground truth."""
SEGMENT_NAMES: Final = ("warm", "new", "future")

SECOND: Final = 1_000_000_000  # ns
DAY_SECONDS: Final = 86_400
HOUR_SECONDS: Final = 3_600
HISTORY_DAYS: Final = 365
"""Warm users/products first appeared uniformly 1..HISTORY_DAYS days before the period."""

# Event type codes in the order of EVENT_TYPES (also the tie-break order within one second).
_VIEW, _CART, _REMOVE, _PURCHASE = 0, 1, 2, 3

# Local-time hourly intensity (0..23 h) with an evening peak, and Monday..Sunday weights.
HOURLY_PROFILE: Final = (
    0.30, 0.18, 0.11, 0.08, 0.08, 0.12, 0.25, 0.45, 0.65, 0.80, 0.90, 0.95,
    1.00, 1.00, 0.95, 0.95, 1.00, 1.10, 1.25, 1.42, 1.50, 1.35, 0.98, 0.58,
)  # fmt: skip
WEEKLY_PROFILE: Final = (1.00, 1.03, 1.00, 0.98, 0.90, 0.86, 1.08)

# Top level -> (leaf suffixes with median price in currency units, brand pool in popularity order).
# fmt: off
TAXONOMY: Final[tuple[tuple[str, tuple[tuple[str, float], ...], tuple[str, ...]], ...]] = (
    (
        "electronics",
        (
            ("smartphone", 320.0), ("audio.headphone", 55.0), ("video.tv", 480.0), ("tablet", 260.0),
            ("clocks", 140.0), ("camera.photo", 520.0), ("audio.acoustic", 90.0), ("telephone", 35.0),
        ),
        ("samsung", "apple", "xiaomi", "huawei", "sony", "lg", "oppo", "jbl", "philips", "nokia",
         "canon", "nikon", "garmin", "lenovo"),
    ),
    (
        "appliances",
        (
            ("kitchen.refrigerators", 520.0), ("kitchen.washer", 390.0), ("environment.vacuum", 160.0),
            ("kitchen.microwave", 95.0), ("iron", 40.0), ("environment.air_conditioner", 430.0),
            ("kitchen.kettle", 30.0), ("personal.hair_cutter", 35.0),
        ),
        ("bosch", "samsung", "lg", "philips", "indesit", "beko", "tefal", "redmond", "dyson", "midea",
         "electrolux", "braun", "polaris"),
    ),
    (
        "computers",
        (
            ("notebook", 690.0), ("desktop", 610.0), ("peripherals.mouse", 18.0), ("peripherals.keyboard", 28.0),
            ("components.videocards", 380.0), ("peripherals.printer", 170.0), ("peripherals.monitor", 210.0),
        ),
        ("lenovo", "hp", "asus", "acer", "apple", "dell", "msi", "logitech", "a4tech", "gigabyte",
         "canon", "epson", "samsung"),
    ),
    (
        "apparel",
        (
            ("shoes", 75.0), ("shoes.sandals", 35.0), ("jeans", 45.0), ("jacket", 95.0),
            ("costume", 60.0), ("shirt", 25.0),
        ),
        ("nike", "adidas", "puma", "reebok", "levis", "zara", "xiaomi", "asics", "new-balance",
         "tommy-hilfiger", "columbia"),
    ),
    (
        "furniture",
        (
            ("living_room.sofa", 420.0), ("bedroom.bed", 380.0), ("kitchen.table", 150.0),
            ("office.chair", 110.0), ("living_room.cabinet", 190.0),
        ),
        ("ikea", "hoff", "askona", "lazurit", "shatura", "ormatek", "brw", "stool-group"),
    ),
    (
        "construction",
        (
            ("tools.drill", 85.0), ("tools.saw", 120.0), ("tools.light", 22.0), ("tools.generator", 340.0),
            ("components.faucet", 60.0),
        ),
        ("bosch", "makita", "dewalt", "metabo", "interskol", "karcher", "hammer", "grohe", "stanley"),
    ),
    (
        "kids",
        (("toys", 25.0), ("carriage", 260.0), ("skates", 55.0), ("swing", 70.0), ("fmcg.diapers", 20.0)),
        ("lego", "chicco", "hasbro", "mattel", "pampers", "huggies", "happy-baby", "tomy", "bburago"),
    ),
    (
        "sport",
        (("bicycle", 310.0), ("trainer", 240.0), ("tennis", 45.0), ("ski", 210.0), ("diving", 55.0)),
        ("stern", "stels", "forward", "torneo", "wilson", "head", "atomic", "salomon", "xiaomi", "nordway"),
    ),
    (
        "auto",
        (("accessories.player", 95.0), ("accessories.videoregistrar", 70.0), ("accessories.alarm", 120.0)),
        ("pioneer", "neoline", "starline", "xiaomi", "sho-me", "kenwood", "alpine"),
    ),
    (
        "accessories",
        (("bag", 45.0), ("umbrella", 18.0), ("wallet", 30.0)),
        ("samsonite", "tommy-hilfiger", "guess", "wenger", "fabretti", "xiaomi"),
    ),
)
# fmt: on
MAX_LEAF_CATEGORIES: Final = sum(len(leaves) for _, leaves, _ in TAXONOMY)

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GeneratorConfig:
    """Everything that shapes the synthetic shop; equal configs give byte-identical events.

    Sizes and time
        n_users: users who visit during the period (>= 10), including the new ones.
        n_products: products sold during the period (>= 3 x n_leaf_categories), including new ones.
        days: length of the period in days (2..366); events lie in [start, start + days).
        seed: random seed (any int >= 0).
        start: first day of the period, "YYYY-MM-DD" (midnight UTC).
        new_user_share: share of ``n_users`` whose first visit is inside the period, after day 0
            (0..0.9).
        new_product_share: share of ``n_products`` released inside the period, after day 0 (0..0.9).
        future_users: extra users who first arrive after the period (ground truth only, for the
            A/B simulation); ``None`` = 10 % of ``n_users``.
        future_products: extra products released after the period; ``None`` = 10 % of ``n_products``.
        future_horizon_days: future users/products arrive within this many days after the end (> 0).
        timezone_offset_hours: shop local time minus UTC in hours (-12..14); shapes the daily cycle.

    Catalogue
        n_top_categories: top-level categories (1..10).
        n_leaf_categories: leaf categories (n_top_categories..56), spread round-robin over tops.
        zipf_exponent: product popularity exponent s; quality = s * -log(rank) (0..3; ~1 = Zipf).
        price_sigma: log-normal sigma of prices within a leaf (0..2).

    Users
        taste_concentration_top: mean Dirichlet alpha per top category (> 0; 0.1-0.5 concentrated).
        taste_concentration_leaf: mean Dirichlet alpha per leaf within a top (> 0).
        taste_epsilon: floor added to taste before the log in the affinity (> 0; bounds dislike).
        favourite_brands_mean: mean number of extra favourite brands (1 + Poisson(mean)).
        brand_affinity_strength: utility bonus of a favourite brand (log-odds units, >= 0).
        price_sensitivity_mean / price_sensitivity_sd: utility per standard deviation of
            (cheaper) log price; negative values = premium seekers.

    Sessions
        sessions_per_user_day: mean sessions per user per active day (> 0).
        activity_shape: Gamma shape of user activity (> 0; small = heavy-tailed activity).
        views_per_session_mean: mean views per session (>= 1).
        explore_share: share of views that are popularity-driven browsing (0..1).
        second_category_share: share of sessions with a second leaf category (0..1).

    Funnel and clicks (logistic in the affinity u)
        cart_intercept, cart_slope: P(cart | view or click).
        purchase_intercept, purchase_slope: P(purchase | cart).
        remove_share: P(remove_from_cart | cart not purchased) (0..1).
        click_intercept, click_slope: P(click at position 0) for the A/B ground truth.
    """

    n_users: int = 3000
    n_products: int = 1500
    days: int = 28
    seed: int = 42
    start: str = "2026-10-01"
    new_user_share: float = 0.3
    new_product_share: float = 0.2
    future_users: int | None = None
    future_products: int | None = None
    future_horizon_days: float = 14.0
    timezone_offset_hours: int = 3

    n_top_categories: int = 8
    n_leaf_categories: int = 36
    zipf_exponent: float = 0.7
    price_sigma: float = 0.45

    taste_concentration_top: float = 0.2
    taste_concentration_leaf: float = 0.2
    taste_epsilon: float = 1e-4
    favourite_brands_mean: float = 1.0
    brand_affinity_strength: float = 1.2
    price_sensitivity_mean: float = 0.5
    price_sensitivity_sd: float = 0.4

    sessions_per_user_day: float = 0.25
    activity_shape: float = 1.0
    views_per_session_mean: float = 8.0
    explore_share: float = 0.15
    second_category_share: float = 0.35

    cart_intercept: float = -2.4
    cart_slope: float = 0.3
    purchase_intercept: float = -0.5
    purchase_slope: float = 0.15
    remove_share: float = 0.35
    click_intercept: float = -1.3
    click_slope: float = 0.45

    def __post_init__(self) -> None:
        _validate_config(self)

    @property
    def n_future_users(self) -> int:
        """Users that arrive after the period (``future_users`` or 10 % of ``n_users``)."""
        return self.future_users if self.future_users is not None else round(0.1 * self.n_users)

    @property
    def n_future_products(self) -> int:
        """Products released after the period (``future_products`` or 10 % of ``n_products``)."""
        return self.future_products if self.future_products is not None else round(0.1 * self.n_products)

    @property
    def start_timestamp(self) -> pd.Timestamp:
        """Start of the period (UTC)."""
        return pd.Timestamp(self.start, tz="UTC")

    @property
    def end_timestamp(self) -> pd.Timestamp:
        """End of the period (UTC, exclusive)."""
        return self.start_timestamp + pd.Timedelta(days=self.days)


def _validate_config(c: GeneratorConfig) -> None:
    def need(ok: bool, message: str) -> None:
        if not ok:
            raise ValueError(f"GeneratorConfig: {message}")

    need(c.n_users >= 10, f"n_users must be >= 10, got {c.n_users}")
    need(2 <= c.days <= 366, f"days must be in 2..366, got {c.days}")
    need(c.seed >= 0, f"seed must be >= 0, got {c.seed}")
    need(1 <= c.n_top_categories <= len(TAXONOMY), f"n_top_categories must be in 1..{len(TAXONOMY)}")
    available_leaves = sum(len(leaves) for _, leaves, _ in TAXONOMY[: c.n_top_categories])
    need(
        c.n_top_categories <= c.n_leaf_categories <= available_leaves,
        f"n_leaf_categories must be in {c.n_top_categories}..{available_leaves} "
        f"for {c.n_top_categories} top categories, got {c.n_leaf_categories}",
    )
    need(0.0 <= c.new_user_share <= 0.9, f"new_user_share must be in 0..0.9, got {c.new_user_share}")
    need(0.0 <= c.new_product_share <= 0.9, f"new_product_share must be in 0..0.9, got {c.new_product_share}")
    warm_products = c.n_products - round(c.new_product_share * c.n_products)
    need(
        warm_products >= 2 * c.n_leaf_categories and c.n_products >= 3 * c.n_leaf_categories,
        f"n_products={c.n_products} is too small for {c.n_leaf_categories} leaf categories "
        f"(need >= {3 * c.n_leaf_categories} and >= 2 released before the period per leaf)",
    )
    for name in ("future_users", "future_products"):
        value = getattr(c, name)
        need(value is None or value >= 0, f"{name} must be None or >= 0, got {value}")
    need(c.future_horizon_days > 0, f"future_horizon_days must be > 0, got {c.future_horizon_days}")
    need(-12 <= c.timezone_offset_hours <= 14, "timezone_offset_hours must be in -12..14")
    try:
        start = pd.Timestamp(c.start)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"GeneratorConfig: start must be a date like 2026-10-01, got {c.start!r}") from exc
    need(start == start.normalize() and start.tzinfo is None, f"start must be a date (midnight UTC), got {c.start!r}")
    positive = (
        "taste_concentration_top", "taste_concentration_leaf", "taste_epsilon", "sessions_per_user_day",
        "activity_shape",
    )  # fmt: skip
    for name in positive:
        need(getattr(c, name) > 0, f"{name} must be > 0, got {getattr(c, name)}")
    for name in ("explore_share", "second_category_share", "remove_share"):
        need(0.0 <= getattr(c, name) <= 1.0, f"{name} must be in 0..1, got {getattr(c, name)}")
    need(c.views_per_session_mean >= 1.0, f"views_per_session_mean must be >= 1, got {c.views_per_session_mean}")
    need(0.0 <= c.zipf_exponent <= 3.0, f"zipf_exponent must be in 0..3, got {c.zipf_exponent}")
    need(0.0 <= c.price_sigma <= 2.0, f"price_sigma must be in 0..2, got {c.price_sigma}")
    need(c.favourite_brands_mean >= 0, "favourite_brands_mean must be >= 0")
    need(c.brand_affinity_strength >= 0, "brand_affinity_strength must be >= 0")
    need(c.price_sensitivity_sd >= 0, "price_sensitivity_sd must be >= 0")


# --------------------------------------------------------------------------------------------
# Ground truth
# --------------------------------------------------------------------------------------------


def sigmoid(x: npt.ArrayLike) -> FloatArray:
    """Logistic function, numerically safe for large |x|."""
    z = np.asarray(x, dtype=np.float64)
    return np.asarray(0.5 * (1.0 + np.tanh(0.5 * z)), dtype=np.float64)


def position_bias(positions: npt.ArrayLike) -> FloatArray:
    """Examination probability of a 0-based list position: 1 / log2(position + 2) (1.0 at the top)."""
    pos = np.asarray(positions)
    if pos.size and (not np.issubdtype(pos.dtype, np.number) or np.any(pos < 0) or np.any(pos != np.floor(pos))):
        raise ValueError("positions must be non-negative integers (0 = top of the list)")
    return np.asarray(1.0 / np.log2(pos.astype(np.float64) + 2.0), dtype=np.float64)


@dataclass(frozen=True, eq=False)
class GroundTruth:
    """Latent parameters of the synthetic shop and the click model derived from them.

    Arrays are indexed by user / product / leaf-category / brand *index*; public methods take
    ids and raise ``ValueError`` for ids the shop does not know. Times are int64 ns since the
    epoch (UTC). ``segment`` arrays hold SEGMENT_WARM / SEGMENT_NEW / SEGMENT_FUTURE.
    """

    config: GeneratorConfig
    period_start_ns: int
    period_end_ns: int
    category_ids: IntArray  # (L,) int64
    category_codes: tuple[str, ...]  # (L,)
    brand_names: tuple[str, ...]  # (B,)
    user_ids: IntArray  # (U,) int64
    user_first_seen_ns: IntArray  # (U,) int64
    user_segment: npt.NDArray[np.int8]  # (U,)
    user_taste: npt.NDArray[np.float32]  # (U, L), rows sum to 1
    user_brand_affinity: npt.NDArray[np.float32]  # (U, B) utility units
    user_price_sensitivity: npt.NDArray[np.float32]  # (U,)
    user_activity: npt.NDArray[np.float32]  # (U,) sessions per day
    product_ids: IntArray  # (P,) int64
    product_release_ns: IntArray  # (P,) int64
    product_segment: npt.NDArray[np.int8]  # (P,)
    product_category: npt.NDArray[np.int32]  # (P,) leaf index
    product_brand: npt.NDArray[np.int32]  # (P,) brand index
    product_price: npt.NDArray[np.float32]  # (P,) currency units
    product_price_z: npt.NDArray[np.float32]  # (P,) standardised log price within the leaf
    product_quality: npt.NDArray[np.float32]  # (P,) Zipf log-popularity, centred
    _user_order: IntArray = field(init=False, repr=False)
    _product_order: IntArray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_user_order", np.argsort(self.user_ids, kind="stable"))
        object.__setattr__(self, "_product_order", np.argsort(self.product_ids, kind="stable"))

    # ---- id lookup -------------------------------------------------------------------------

    def user_index(self, user_ids: npt.ArrayLike) -> IntArray:
        """Row indices of ``user_ids``; ``ValueError`` naming the unknown ids if any."""
        return _lookup(self.user_ids, self._user_order, user_ids, "user_id")

    def product_index(self, product_ids: npt.ArrayLike) -> IntArray:
        """Row indices of ``product_ids``; ``ValueError`` naming the unknown ids if any."""
        return _lookup(self.product_ids, self._product_order, product_ids, "product_id")

    # ---- utilities and probabilities --------------------------------------------------------

    def pair_affinity_by_index(self, user_idx: npt.ArrayLike, product_idx: npt.ArrayLike) -> FloatArray:
        """Affinity u for (user index, product index) pairs (broadcast); the sessions' utility."""
        u = np.asarray(user_idx, dtype=np.int64)
        p = np.asarray(product_idx, dtype=np.int64)
        cat = self.product_category[p]
        taste = self.user_taste[u, cat].astype(np.float64)
        return (
            np.log(taste + self.config.taste_epsilon)
            + self.product_quality[p]
            + self.user_brand_affinity[u, self.product_brand[p]]
            - self.user_price_sensitivity[u] * self.product_price_z[p]
        ).astype(np.float64)

    def affinity(self, user_id: int, product_ids: npt.ArrayLike) -> FloatArray:
        """Utility of each product for the user (log choice weight; higher = preferred).

        ``u = log(taste[leaf] + taste_epsilon) + quality + brand_affinity[brand]
        - price_sensitivity * price_z``: the same utility that picks products in sessions.
        """
        user = self.user_index(np.asarray([user_id]))[0]
        return self.pair_affinity_by_index(user, self.product_index(product_ids))

    def pair_affinity(self, user_ids: npt.ArrayLike, product_ids: npt.ArrayLike) -> FloatArray:
        """Affinity for aligned arrays of (user id, product id) pairs."""
        return self.pair_affinity_by_index(self.user_index(user_ids), self.product_index(product_ids))

    def click_probabilities(
        self, user_id: int, product_ids: npt.ArrayLike, positions: npt.ArrayLike | None = None
    ) -> FloatArray:
        """P(click) of each product shown to the user at its 0-based position (default 0..n-1).

        ``sigmoid(click_intercept + click_slope * u) / log2(position + 2)``, in [0, 1].
        """
        products = np.atleast_1d(np.asarray(product_ids))
        pos = np.arange(products.size) if positions is None else np.atleast_1d(np.asarray(positions))
        if pos.shape != products.shape:
            raise ValueError(f"positions has shape {pos.shape}, product_ids has shape {products.shape}")
        return self.click_base(user_id, products) * position_bias(pos)

    def pair_click_probabilities(
        self, user_ids: npt.ArrayLike, product_ids: npt.ArrayLike, positions: npt.ArrayLike
    ) -> FloatArray:
        """P(click) for aligned (user id, product id, position) arrays (many users at once)."""
        u = self.pair_affinity(user_ids, product_ids)
        return self._click_from_utility(u) * position_bias(positions)

    def click_base(self, user_id: int, product_ids: npt.ArrayLike) -> FloatArray:
        """P(click) at the top position (no position discount)."""
        return self._click_from_utility(self.affinity(user_id, product_ids))

    def probability(self, user_id: int, product_id: int, position: int) -> float:
        """P(click) of one product shown to the user at a 0-based position."""
        return float(self.click_probabilities(user_id, [product_id], [position])[0])

    def cart_probability(self, user_id: int, product_ids: npt.ArrayLike) -> FloatArray:
        """P(cart | click or view) = sigmoid(cart_intercept + cart_slope * u); ~5-15 %."""
        u = self.affinity(user_id, product_ids)
        return sigmoid(self.config.cart_intercept + self.config.cart_slope * u)

    def purchase_probability(self, user_id: int, product_ids: npt.ArrayLike) -> FloatArray:
        """P(purchase | click or view) = P(cart | click) * P(purchase | cart); ~2-6 %."""
        u = self.affinity(user_id, product_ids)
        c = self.config
        return sigmoid(c.cart_intercept + c.cart_slope * u) * sigmoid(c.purchase_intercept + c.purchase_slope * u)

    def _click_from_utility(self, u: FloatArray) -> FloatArray:
        return sigmoid(self.config.click_intercept + self.config.click_slope * u)

    def best_products(self, user_id: int, k: int, *, available_at: pd.Timestamp | None = None) -> IntArray:
        """Oracle: the user's ``k`` highest-affinity products (released by ``available_at`` if given)."""
        user = self.user_index(np.asarray([user_id]))[0]
        candidates = np.arange(self.product_ids.size)
        if available_at is not None:
            candidates = candidates[self.product_release_ns <= _to_ns(available_at)]
        scores = self.pair_affinity_by_index(user, candidates)
        top = candidates[np.lexsort((self.product_ids[candidates], -scores))[:k]]
        return self.product_ids[top]

    # ---- listing helpers --------------------------------------------------------------------

    def warm_user_ids(self) -> IntArray:
        """Users who visited before the period (all of them have events in it)."""
        return self.user_ids[self.user_segment == SEGMENT_WARM]

    def new_user_ids(self) -> IntArray:
        """Users whose first visit is inside the period (after day 0)."""
        return self.user_ids[self.user_segment == SEGMENT_NEW]

    def future_user_ids(self) -> IntArray:
        """Users who first arrive after the period (no events; brand-new in the A/B test)."""
        return self.user_ids[self.user_segment == SEGMENT_FUTURE]

    def warm_product_ids(self) -> IntArray:
        """Products released before the period."""
        return self.product_ids[self.product_segment == SEGMENT_WARM]

    def new_product_ids(self) -> IntArray:
        """Products released inside the period (after day 0)."""
        return self.product_ids[self.product_segment == SEGMENT_NEW]

    def future_product_ids(self) -> IntArray:
        """Products released after the period (no events; brand-new in the A/B test)."""
        return self.product_ids[self.product_segment == SEGMENT_FUTURE]

    def available_product_ids(self, at: pd.Timestamp | str) -> IntArray:
        """Products released at or before ``at``."""
        return self.product_ids[self.product_release_ns <= _to_ns(at)]

    def product_category_ids(self, product_ids: npt.ArrayLike) -> IntArray:
        """Leaf ``category_id`` of each product."""
        return self.category_ids[self.product_category[self.product_index(product_ids)]]

    def products_frame(self) -> pd.DataFrame:
        """The catalogue (incl. future products): id, category, brand, price, release, segment, quality."""
        return pd.DataFrame(
            {
                col.PRODUCT_ID: self.product_ids,
                col.CATEGORY_ID: self.category_ids[self.product_category],
                col.CATEGORY_CODE: np.asarray(self.category_codes, dtype=object)[self.product_category],
                col.BRAND: np.asarray(self.brand_names, dtype=object)[self.product_brand],
                col.PRICE: self.product_price,
                "release_time": pd.to_datetime(self.product_release_ns, utc=True),
                "segment": np.asarray(SEGMENT_NAMES, dtype=object)[self.product_segment],
                "quality": self.product_quality,
            }
        )

    def users_frame(self) -> pd.DataFrame:
        """Users (incl. future ones): id, first_seen, segment, top leaf category, activity, price sensitivity."""
        top = np.argmax(self.user_taste, axis=1)
        return pd.DataFrame(
            {
                col.USER_ID: self.user_ids,
                "first_seen": pd.to_datetime(self.user_first_seen_ns, utc=True),
                "segment": np.asarray(SEGMENT_NAMES, dtype=object)[self.user_segment],
                "top_category_id": self.category_ids[top],
                "top_category_share": self.user_taste[np.arange(top.size), top],
                "sessions_per_day": self.user_activity,
                "price_sensitivity": self.user_price_sensitivity,
            }
        )

    # ---- persistence ------------------------------------------------------------------------

    def save(self, directory: str | Path) -> Path:
        """Write ``ground_truth.npz`` (arrays) and ``ground_truth.json`` (config, names) into ``directory``."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(out / GROUND_TRUTH_ARRAYS_FILE, **{name: getattr(self, name) for name in _ARRAY_FIELDS})
        meta = {
            "format_version": FORMAT_VERSION,
            "config": dataclasses.asdict(self.config),
            "period_start_ns": int(self.period_start_ns),
            "period_end_ns": int(self.period_end_ns),
            "period_start": pd.Timestamp(self.period_start_ns, tz="UTC").isoformat(),
            "period_end": pd.Timestamp(self.period_end_ns, tz="UTC").isoformat(),
            "category_codes": list(self.category_codes),
            "brand_names": list(self.brand_names),
            "segments": list(SEGMENT_NAMES),
            "click_model": "sigmoid(click_intercept + click_slope * affinity) / log2(position + 2)",
        }
        (out / GROUND_TRUTH_META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        return out

    @classmethod
    def load(cls, directory: str | Path) -> GroundTruth:
        """Read a ground truth written by :meth:`save` (no pickle)."""
        src = Path(directory)
        arrays_path, meta_path = src / GROUND_TRUTH_ARRAYS_FILE, src / GROUND_TRUTH_META_FILE
        for path in (arrays_path, meta_path):
            if not path.is_file():
                raise FileNotFoundError(f"{path}: ground truth file not found (run `recsys data generate`)")
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{meta_path}: unsupported format_version {meta.get('format_version')!r}")
        with np.load(arrays_path, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in _ARRAY_FIELDS}
        return cls(
            config=GeneratorConfig(**meta["config"]),
            period_start_ns=int(meta["period_start_ns"]),
            period_end_ns=int(meta["period_end_ns"]),
            category_codes=tuple(meta["category_codes"]),
            brand_names=tuple(meta["brand_names"]),
            **arrays,
        )


_ARRAY_FIELDS: Final = tuple(
    f.name
    for f in dataclasses.fields(GroundTruth)
    if f.init and f.name not in ("config", "period_start_ns", "period_end_ns", "category_codes", "brand_names")
)


def _lookup(ids: IntArray, order: IntArray, query: npt.ArrayLike, name: str) -> IntArray:
    q = np.atleast_1d(np.asarray(query))
    if q.size == 0:
        return np.zeros(0, dtype=np.int64)
    if not np.issubdtype(q.dtype, np.integer):
        try:
            as_int = q.astype(np.int64)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{name} must be integers, got {q[:3].tolist()}") from exc
        if np.any(as_int != q):
            raise ValueError(f"{name} must be integers, got {q[:3].tolist()}")
        q = as_int
    q = q.astype(np.int64, copy=False)
    sorted_ids = ids[order]
    pos = np.searchsorted(sorted_ids, q).clip(0, sorted_ids.size - 1)
    found = sorted_ids[pos] == q
    if not found.all():
        unknown = np.unique(q[~found])
        shown = ", ".join(str(v) for v in unknown[:5]) + (" ..." if unknown.size > 5 else "")
        raise ValueError(f"unknown {name} ({unknown.size} not in the ground truth): {shown}")
    return order[pos].astype(np.int64)


def _to_ns(at: pd.Timestamp | str) -> int:
    ts = pd.Timestamp(at)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return int(ts.value)


# --------------------------------------------------------------------------------------------
# Generation
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GeneratedData:
    """The event log (REES46 schema, sorted by time) and the latent shop that produced it."""

    events: pd.DataFrame
    ground_truth: GroundTruth


@dataclass(frozen=True)
class _Catalogue:
    category_ids: IntArray
    category_codes: tuple[str, ...]
    brand_names: tuple[str, ...]
    leaf_top: npt.NDArray[np.int64]  # (L,) top index of each leaf
    leaf_brands: tuple[IntArray, ...]  # per leaf: brand indices, popularity order


def generate(config: GeneratorConfig | None = None) -> GeneratedData:
    """Draw the latent shop for ``config`` and simulate its event log over the period.

    Returns events with columns exactly ``column_names.ALL_COLUMNS``: event_time
    datetime64[ns, UTC] (whole seconds), event_type Categorical(EVENT_TYPES), product_id /
    category_id / user_id int64, category_code / brand / user_session pandas "string", price
    float32; sorted by time, no exact duplicate rows.
    """
    config = config or GeneratorConfig()
    streams = np.random.SeedSequence(config.seed).spawn(6)
    rng_catalogue, rng_products, rng_users, rng_sessions, rng_views, rng_ids = (
        np.random.default_rng(s) for s in streams
    )
    grid = _IntensityGrid.build(config)
    catalogue = _build_catalogue(config, rng_catalogue)
    ground_truth = _build_ground_truth(config, catalogue, grid, rng_products, rng_users, rng_ids)
    sessions = _sample_sessions(config, ground_truth, grid, rng_sessions)
    events = _simulate_events(config, ground_truth, sessions, rng_views)
    frame = _events_frame(ground_truth, sessions, events, rng_ids)
    return GeneratedData(events=frame, ground_truth=ground_truth)


@dataclass(frozen=True)
class _IntensityGrid:
    """Piecewise-constant (hourly) arrival intensity from period start to the end of the future horizon."""

    cumulative: FloatArray  # (H + 1,) CDF at hour boundaries (unnormalised)
    weights: FloatArray  # (H,)

    @classmethod
    def build(cls, config: GeneratorConfig) -> _IntensityGrid:
        hours = int(np.ceil((config.days + config.future_horizon_days) * 24))
        local_hour = np.arange(hours) + config.timezone_offset_hours
        start_weekday = config.start_timestamp.weekday()
        weekday = (start_weekday + np.floor_divide(local_hour, 24)) % 7
        weights = np.asarray(HOURLY_PROFILE)[local_hour % 24] * np.asarray(WEEKLY_PROFILE)[weekday]
        return cls(np.concatenate([[0.0], np.cumsum(weights)]), weights)

    def cdf(self, seconds: FloatArray) -> FloatArray:
        h = seconds / HOUR_SECONDS
        i = np.clip(np.floor(h).astype(np.int64), 0, self.weights.size - 1)
        return np.asarray(self.cumulative[i] + (h - i) * self.weights[i], dtype=np.float64)

    def sample(self, lo: FloatArray, hi: FloatArray, u01: FloatArray) -> FloatArray:
        """Times (s from period start) in [lo, hi) drawn with the intensity, by inverse CDF."""
        target = self.cdf(lo) + u01 * (self.cdf(hi) - self.cdf(lo))
        i = np.clip(np.searchsorted(self.cumulative, target, side="right") - 1, 0, self.weights.size - 1)
        t = (i + (target - self.cumulative[i]) / self.weights[i]) * HOUR_SECONDS
        return np.asarray(np.clip(t, lo, np.nextafter(hi, lo)), dtype=np.float64)


def _stable_category_id(code: str) -> int:
    """REES46-looking int64 id (~2.05e18) derived from the code, identical for every seed."""
    digest = int.from_bytes(hashlib.blake2b(code.encode(), digest_size=8).digest(), "big")
    return 2_053_013_552_000_000_000 + digest % 1_000_000_000_000_000


def _build_catalogue(config: GeneratorConfig, rng: np.random.Generator) -> _Catalogue:
    tops = TAXONOMY[: config.n_top_categories]
    leaves: list[tuple[int, str]] = []  # (top index, code), round-robin over tops
    depth = 0
    while len(leaves) < config.n_leaf_categories:
        for t, (top_name, top_leaves, _) in enumerate(tops):
            if depth < len(top_leaves) and len(leaves) < config.n_leaf_categories:
                leaves.append((t, f"{top_name}.{top_leaves[depth][0]}"))
        depth += 1
    leaves.sort(key=lambda item: (item[0], item[1]))
    brand_names = tuple(dict.fromkeys(b for _, _, pool in tops for b in pool))
    brand_index = {b: i for i, b in enumerate(brand_names)}
    leaf_brands: list[IntArray] = []
    for t, _code in leaves:
        pool = tops[t][2]
        k = min(len(pool), 4 + int(rng.poisson(3.0)), 10)
        pool_weights = 1.0 / np.arange(1, len(pool) + 1) ** 0.8
        chosen = rng.choice(len(pool), size=k, replace=False, p=pool_weights / pool_weights.sum())
        leaf_brands.append(np.asarray([brand_index[pool[i]] for i in np.sort(chosen)], dtype=np.int64))
    codes = tuple(code for _, code in leaves)
    return _Catalogue(
        category_ids=np.asarray([_stable_category_id(c) for c in codes], dtype=np.int64),
        category_codes=codes,
        brand_names=brand_names,
        leaf_top=np.asarray([t for t, _ in leaves], dtype=np.int64),
        leaf_brands=tuple(leaf_brands),
    )


def _median_price(code: str) -> float:
    top_name, _, suffix = code.partition(".")
    for name, leaves, _ in TAXONOMY:
        if name == top_name:
            return dict(leaves)[suffix]
    raise KeyError(code)


def _segment_counts(total: int, new_share: float, future: int) -> tuple[int, int, int]:
    new = round(new_share * total)
    return total - new, new, future


def _shuffled_ids(rng: np.random.Generator, base: int, n: int, spread: int) -> IntArray:
    """``n`` distinct ids in [base, base + spread * n), in random order (no leakage of segment)."""
    return base + rng.choice(spread * n, size=n, replace=False).astype(np.int64)


def _build_ground_truth(
    config: GeneratorConfig,
    catalogue: _Catalogue,
    grid: _IntensityGrid,
    rng_products: np.random.Generator,
    rng_users: np.random.Generator,
    rng_ids: np.random.Generator,
) -> GroundTruth:
    start_ns = int(config.start_timestamp.value)
    period_s = config.days * DAY_SECONDS
    horizon_s = config.future_horizon_days * DAY_SECONDS
    n_leaf = len(catalogue.category_codes)
    n_brand = len(catalogue.brand_names)

    # ---- products
    warm_p, new_p, future_p = _segment_counts(config.n_products, config.new_product_share, config.n_future_products)
    n_p = warm_p + new_p + future_p
    segment_p = np.repeat(np.asarray([SEGMENT_WARM, SEGMENT_NEW, SEGMENT_FUTURE], np.int8), [warm_p, new_p, future_p])
    release_s = np.concatenate(
        [
            -rng_products.uniform(1, HISTORY_DAYS, warm_p) * DAY_SECONDS,
            rng_products.uniform(DAY_SECONDS, period_s, new_p),
            period_s + rng_products.uniform(0, horizon_s, future_p),
        ]
    )
    leaf_weight = rng_products.dirichlet(np.full(n_leaf, 4.0))
    category = rng_products.choice(n_leaf, size=n_p, p=leaf_weight)
    category[: 2 * n_leaf] = np.tile(np.arange(n_leaf), 2)  # every leaf has >= 2 warm products
    brand = np.empty(n_p, dtype=np.int64)
    for leaf in range(n_leaf):
        members = np.flatnonzero(category == leaf)
        brands = catalogue.leaf_brands[leaf]
        w = 1.0 / np.arange(1, brands.size + 1) ** 1.1
        brand[members] = brands[rng_products.choice(brands.size, size=members.size, p=w / w.sum())]
    brand_premium = np.exp(rng_products.normal(0.0, 0.25, n_brand))
    medians = np.asarray([_median_price(c) for c in catalogue.category_codes])
    log_price = np.log(medians[category] * brand_premium[brand]) + config.price_sigma * rng_products.standard_normal(
        n_p
    )
    price = np.maximum(np.round(np.exp(log_price), 2), 0.5).astype(np.float32)
    price_z = _standardise_within(np.log(price.astype(np.float64)), category, n_leaf)
    rank = rng_products.permutation(n_p) + 1
    quality = -config.zipf_exponent * np.log(rank)
    quality -= quality.mean()

    # ---- users
    warm_u, new_u, future_u = _segment_counts(config.n_users, config.new_user_share, config.n_future_users)
    n_u = warm_u + new_u + future_u
    segment_u = np.repeat(np.asarray([SEGMENT_WARM, SEGMENT_NEW, SEGMENT_FUTURE], np.int8), [warm_u, new_u, future_u])
    first_seen_s = np.concatenate(
        [
            -rng_users.uniform(1, HISTORY_DAYS, warm_u) * DAY_SECONDS,
            _arrivals(grid, new_u, float(DAY_SECONDS), float(period_s), rng_users),
            _arrivals(grid, future_u, float(period_s), period_s + horizon_s, rng_users),
        ]
    )
    taste = _hierarchical_taste(config, catalogue, rng_users, n_u)
    brand_aff = _brand_affinity(config, rng_users, n_u, n_brand)
    price_sens = rng_users.normal(config.price_sensitivity_mean, config.price_sensitivity_sd, n_u)
    activity = rng_users.gamma(config.activity_shape, config.sessions_per_user_day / config.activity_shape, n_u)

    return GroundTruth(
        config=config,
        period_start_ns=start_ns,
        period_end_ns=start_ns + period_s * SECOND,
        category_ids=catalogue.category_ids,
        category_codes=catalogue.category_codes,
        brand_names=catalogue.brand_names,
        user_ids=_shuffled_ids(rng_ids, 512_000_000, n_u, 8),
        user_first_seen_ns=start_ns + np.floor(first_seen_s).astype(np.int64) * SECOND,
        user_segment=segment_u,
        user_taste=taste.astype(np.float32),
        user_brand_affinity=brand_aff.astype(np.float32),
        user_price_sensitivity=price_sens.astype(np.float32),
        user_activity=activity.astype(np.float32),
        product_ids=_shuffled_ids(rng_ids, 1_000_000, n_p, 20),
        product_release_ns=start_ns + np.floor(release_s).astype(np.int64) * SECOND,
        product_segment=segment_p,
        product_category=category.astype(np.int32),
        product_brand=brand.astype(np.int32),
        product_price=price,
        product_price_z=price_z.astype(np.float32),
        product_quality=quality.astype(np.float32),
    )


def _arrivals(grid: _IntensityGrid, n: int, lo: float, hi: float, rng: np.random.Generator) -> FloatArray:
    """``n`` first-visit times (s from period start) in [lo, hi), following the weekly x hourly intensity."""
    return grid.sample(np.full(n, lo), np.full(n, hi), rng.random(n))


def _standardise_within(values: FloatArray, groups: IntArray, n_groups: int) -> FloatArray:
    count = np.bincount(groups, minlength=n_groups).astype(np.float64)
    mean = np.bincount(groups, values, n_groups) / np.maximum(count, 1)
    var = np.bincount(groups, (values - mean[groups]) ** 2, n_groups) / np.maximum(count, 1)
    return np.asarray((values - mean[groups]) / np.sqrt(np.maximum(var, 1e-12))[groups], dtype=np.float64)


def _dirichlet_rows(rng: np.random.Generator, alpha: FloatArray, n: int) -> FloatArray:
    """Dirichlet rows via normalised gammas; tiny floor so very small alphas never give 0/0."""
    g = rng.standard_gamma(np.broadcast_to(alpha, (n, alpha.size))) + 1e-300
    return np.asarray(g / g.sum(axis=1, keepdims=True), dtype=np.float64)


def _hierarchical_taste(
    config: GeneratorConfig, catalogue: _Catalogue, rng: np.random.Generator, n_users: int
) -> FloatArray:
    """taste[u, leaf] = P(top | u) * P(leaf | top, u); both Dirichlet, popular tops more often liked."""
    n_top = int(catalogue.leaf_top.max()) + 1
    top_popularity = rng.dirichlet(np.full(n_top, 3.0))
    top_taste = _dirichlet_rows(rng, config.taste_concentration_top * n_top * top_popularity, n_users)
    leaf_popularity = rng.dirichlet(np.full(catalogue.leaf_top.size, 3.0))
    taste = np.empty((n_users, catalogue.leaf_top.size))
    for t in range(n_top):
        leaves = np.flatnonzero(catalogue.leaf_top == t)
        base = leaf_popularity[leaves] / leaf_popularity[leaves].sum()
        within = _dirichlet_rows(rng, config.taste_concentration_leaf * leaves.size * base, n_users)
        taste[:, leaves] = top_taste[:, [t]] * within
    return taste / taste.sum(axis=1, keepdims=True)


def _brand_affinity(config: GeneratorConfig, rng: np.random.Generator, n_users: int, n_brands: int) -> FloatArray:
    """N(0, 0.25) for every brand plus ``brand_affinity_strength`` for 1 + Poisson favourites."""
    popularity = 1.0 / np.arange(1, n_brands + 1) ** 0.7
    n_favourites = np.minimum(1 + rng.poisson(config.favourite_brands_mean, n_users), n_brands)
    keys = np.log(popularity) + rng.gumbel(size=(n_users, n_brands))  # Gumbel top-k = weighted sampling
    rank = np.argsort(np.argsort(-keys, axis=1), axis=1)
    favourite = rank < n_favourites[:, None]
    return np.asarray(rng.normal(0.0, 0.25, (n_users, n_brands)) + config.brand_affinity_strength * favourite)


# ---- sessions ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Sessions:
    user: IntArray  # (S,) user index
    start_s: FloatArray  # (S,) seconds from period start (whole seconds)
    n_views: IntArray  # (S,)
    primary: IntArray  # (S,) leaf index
    secondary: IntArray  # (S,) leaf index or -1


def _sample_sessions(
    config: GeneratorConfig, gt: GroundTruth, grid: _IntensityGrid, rng: np.random.Generator
) -> _Sessions:
    period_s = float(config.days * DAY_SECONDS)
    in_period = np.flatnonzero(gt.user_segment != SEGMENT_FUTURE)
    first_seen_s = (gt.user_first_seen_ns[in_period] - gt.period_start_ns) // SECOND
    active_from = np.maximum(first_seen_s, 0).astype(np.float64)
    active_days = (period_s - active_from) / DAY_SECONDS
    extra = rng.poisson(gt.user_activity[in_period].astype(np.float64) * active_days)
    counts = 1 + extra
    user = np.repeat(in_period, counts)
    lo = np.repeat(active_from, counts)
    start = grid.sample(lo, np.full(lo.size, period_s), rng.random(lo.size))
    # A new user's first session starts exactly at first_seen.
    first_of_user = np.concatenate([[0], np.cumsum(counts)[:-1]])
    is_new = gt.user_segment[in_period] == SEGMENT_NEW
    start[first_of_user[is_new]] = active_from[is_new]
    start = np.floor(start)
    order = np.lexsort((user, start))
    user, start = user[order], start[order]

    n_sessions = user.size
    r = 1.5  # NegBin shape: over-dispersed session lengths, a few to tens of views
    mean_extra = max(config.views_per_session_mean - 1.0, 1e-9)
    n_views = 1 + rng.negative_binomial(r, r / (r + mean_extra), n_sessions)
    log_taste = np.log(gt.user_taste[user].astype(np.float64) + 1e-12)
    primary = np.argmax(log_taste + rng.gumbel(size=log_taste.shape), axis=1)
    secondary = np.argmax(log_taste + rng.gumbel(size=log_taste.shape), axis=1)
    secondary = np.where(rng.random(n_sessions) < config.second_category_share, secondary, -1)
    return _Sessions(user, start, n_views.astype(np.int64), primary.astype(np.int64), secondary.astype(np.int64))


# ---- views and funnel ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Events:
    session: IntArray
    product: IntArray
    event_type: npt.NDArray[np.int8]
    time_s: IntArray


def _simulate_events(
    config: GeneratorConfig, gt: GroundTruth, sessions: _Sessions, rng: np.random.Generator
) -> _Events:
    n_views = int(sessions.n_views.sum())
    session = np.repeat(np.arange(sessions.user.size), sessions.n_views)
    first_view = np.concatenate([[0], np.cumsum(sessions.n_views)[:-1]])
    # Inter-view gaps: log-normal, median 30 s, at least 1 s; the first view is at the session start.
    gaps = np.maximum(1.0, np.round(rng.lognormal(np.log(30.0), 0.9, n_views)))
    gaps[first_view] = 0.0
    offset = np.cumsum(gaps)
    offset -= np.repeat(offset[first_view], sessions.n_views)
    view_time = sessions.start_s[session] + offset

    # Which source each view comes from: popularity browsing, primary or secondary leaf.
    explore = rng.random(n_views) < config.explore_share
    use_secondary = (sessions.secondary[session] >= 0) & (rng.random(n_views) < 0.3)
    u01 = rng.random(n_views)

    product = np.full(n_views, -1, dtype=np.int64)
    taste_driven = np.flatnonzero(~explore)
    slot_key = session[taste_driven] * 2 + use_secondary[taste_driven]
    keys, key_of_view = np.unique(slot_key, return_inverse=True)
    key_session = keys // 2
    key_leaf = np.where(keys % 2 == 1, sessions.secondary[key_session], sessions.primary[key_session])
    product[taste_driven] = _sample_from_leaf(
        gt, sessions.user[key_session], key_leaf, sessions.start_s[key_session], key_of_view, u01[taste_driven]
    )
    popular = np.flatnonzero(product < 0)  # explore views, and leaves with nothing released yet
    product[popular] = _sample_by_popularity(gt, sessions.start_s[session[popular]], rng.random(popular.size))

    # Funnel.
    user = sessions.user[session]
    utility = gt.pair_affinity_by_index(user, product)
    carted = rng.random(n_views) < sigmoid(config.cart_intercept + config.cart_slope * utility)
    cart_idx = np.flatnonzero(carted)
    cart_time = view_time[cart_idx] + np.maximum(1.0, np.round(rng.lognormal(np.log(15.0), 0.7, cart_idx.size)))
    p_purchase = sigmoid(config.purchase_intercept + config.purchase_slope * utility[cart_idx])
    purchased = rng.random(cart_idx.size) < p_purchase
    removed = ~purchased & (rng.random(cart_idx.size) < config.remove_share)
    remove_time = cart_time[removed] + np.maximum(1.0, np.round(rng.lognormal(np.log(90.0), 1.0, int(removed.sum()))))
    # Checkout: after the session's last view (and after the cart), items a few seconds apart.
    last_view = view_time[np.cumsum(sessions.n_views) - 1]
    checkout = last_view + np.round(rng.lognormal(np.log(60.0), 0.8, sessions.user.size)) + 1.0
    buy = cart_idx[purchased]
    purchase_time = np.maximum(checkout[session[buy]], cart_time[purchased] + 1.0) + np.arange(buy.size) % 5

    ev_session = np.concatenate([session, session[cart_idx], session[cart_idx[removed]], session[buy]])
    ev_product = np.concatenate([product, product[cart_idx], product[cart_idx[removed]], product[buy]])
    ev_type = np.repeat(
        np.asarray([_VIEW, _CART, _REMOVE, _PURCHASE], dtype=np.int8),
        [n_views, cart_idx.size, int(removed.sum()), buy.size],
    )
    ev_time = np.floor(np.concatenate([view_time, cart_time, remove_time, purchase_time])).astype(np.int64)

    keep = ev_time < config.days * DAY_SECONDS
    ev_session, ev_product, ev_type, ev_time = ev_session[keep], ev_product[keep], ev_type[keep], ev_time[keep]
    order = np.lexsort((ev_product, ev_session, ev_type, ev_time))
    ev_session, ev_product, ev_type, ev_time = ev_session[order], ev_product[order], ev_type[order], ev_time[order]
    # Drop exact repeats (same session, product, type and second): the loader would drop them anyway.
    repeat = np.zeros(ev_time.size, dtype=bool)
    repeat[1:] = (
        (ev_time[1:] == ev_time[:-1])
        & (ev_type[1:] == ev_type[:-1])
        & (ev_session[1:] == ev_session[:-1])
        & (ev_product[1:] == ev_product[:-1])
    )
    keep = ~repeat
    return _Events(ev_session[keep], ev_product[keep], ev_type[keep], ev_time[keep])


def _sample_from_leaf(
    gt: GroundTruth,
    key_user: IntArray,
    key_leaf: IntArray,
    key_time_s: FloatArray,
    key_of_view: IntArray,
    u01: FloatArray,
    max_cells: int = 4_000_000,
) -> IntArray:
    """For each view pick a product of its key's leaf, released by the key's time, with P ~ exp(u).

    A key is (session, slot): the padded leaf x product matrix is scored once per key in chunks
    and every view of the key draws from the key's CDF by one ``searchsorted``. Returns -1 for
    views whose leaf has no released product yet.
    """
    n_leaf = gt.category_ids.size
    members = [np.flatnonzero(gt.product_category == leaf) for leaf in range(n_leaf)]
    width = max(m.size for m in members)
    padded = np.full((n_leaf, width), -1, dtype=np.int64)
    for leaf, m in enumerate(members):
        padded[leaf, : m.size] = m
    release_s = (gt.product_release_ns - gt.period_start_ns) // SECOND
    base = gt.product_quality.astype(np.float64)

    out = np.full(key_of_view.size, -1, dtype=np.int64)
    view_order = np.argsort(key_of_view, kind="stable")
    sorted_keys = key_of_view[view_order]
    chunk = max(1, max_cells // width)
    for lo in range(0, key_user.size, chunk):
        hi = min(lo + chunk, key_user.size)
        cand = padded[key_leaf[lo:hi]]
        valid = cand >= 0
        safe = np.where(valid, cand, 0)
        users = key_user[lo:hi, None]
        logits = (
            base[safe]
            + gt.user_brand_affinity[users, gt.product_brand[safe]]
            - gt.user_price_sensitivity[users] * gt.product_price_z[safe]
        )
        available = valid & (release_s[safe] <= key_time_s[lo:hi, None])
        logits = np.where(available, logits, -np.inf)
        row_max = logits.max(axis=1, keepdims=True)
        empty = ~np.isfinite(row_max[:, 0])
        row_max[empty] = 0.0
        cdf = np.cumsum(np.exp(logits - row_max), axis=1)
        total = cdf[:, -1:].copy()
        total[empty] = 1.0
        # Rows are [0, 1] CDFs shifted by 2 * row, so one searchsorted serves all views of the chunk.
        rows = np.arange(hi - lo)
        flat = (cdf / total + 2.0 * rows[:, None]).ravel()
        v_lo, v_hi = np.searchsorted(sorted_keys, [lo, hi])
        views = view_order[v_lo:v_hi]
        row = key_of_view[views] - lo
        draw = np.minimum(u01[views], 1.0 - 1e-9) + 2.0 * row
        column = np.searchsorted(flat, draw, side="right") - row * width
        column = np.minimum(column, width - 1)
        picked = cand[row, column]
        out[views] = np.where(empty[row], -1, picked)
    return out


def _sample_by_popularity(gt: GroundTruth, time_s: FloatArray, u01: FloatArray) -> IntArray:
    """Products ~ exp(quality) among those released by ``time_s`` (exact, via release-sorted CDF)."""
    release_s = (gt.product_release_ns - gt.period_start_ns) // SECOND
    order = np.argsort(release_s, kind="stable")
    cdf = np.cumsum(np.exp(gt.product_quality[order].astype(np.float64)))
    n_available = np.searchsorted(release_s[order], time_s, side="right")
    n_available = np.maximum(n_available, 1)  # the config guarantees warm products exist
    target = u01 * cdf[n_available - 1]
    pos = np.minimum(np.searchsorted(cdf, target, side="right"), n_available - 1)
    return np.asarray(order[pos], dtype=np.int64)


# ---- frame -----------------------------------------------------------------------------------------


def _session_uuids(rng: np.random.Generator, n: int) -> npt.NDArray[np.object_]:
    """Deterministic version-4-looking UUID strings, one per session."""
    hexed = rng.bytes(16 * n).hex()
    variant = "89ab"
    out = np.empty(n, dtype=object)
    for i in range(n):
        h = hexed[32 * i : 32 * i + 32]
        out[i] = f"{h[0:8]}-{h[8:12]}-4{h[13:16]}-{variant[int(h[16], 16) & 3]}{h[17:20]}-{h[20:32]}"
    return out


def _events_frame(gt: GroundTruth, sessions: _Sessions, events: _Events, rng: np.random.Generator) -> pd.DataFrame:
    session_ids = _session_uuids(rng, sessions.user.size)
    codes = pd.Categorical.from_codes(gt.product_category[events.product], categories=list(gt.category_codes))
    brands = pd.Categorical.from_codes(gt.product_brand[events.product], categories=list(gt.brand_names))
    event_time = pd.DatetimeIndex((gt.period_start_ns + events.time_s * SECOND).view("M8[ns]")).tz_localize("UTC")
    frame = pd.DataFrame(
        {
            col.EVENT_TIME: event_time,
            col.EVENT_TYPE: pd.Categorical.from_codes(events.event_type, categories=list(col.EVENT_TYPES)),
            col.PRODUCT_ID: gt.product_ids[events.product],
            col.CATEGORY_ID: gt.category_ids[gt.product_category[events.product]],
            col.CATEGORY_CODE: codes.astype(col.TEXT_DTYPE),
            col.BRAND: brands.astype(col.TEXT_DTYPE),
            col.PRICE: gt.product_price[events.product],
            col.USER_ID: gt.user_ids[sessions.user[events.session]],
            col.USER_SESSION: pd.array(session_ids[events.session], dtype=col.TEXT_DTYPE),
        }
    )
    return frame[list(col.ALL_COLUMNS)]


# ---- output ----------------------------------------------------------------------------------------


def write_events(events: pd.DataFrame, path: str | Path) -> Path:
    """Write events as Parquet (``.parquet``/``.pq``) or Kaggle-style CSV (``.csv``/``.csv.gz``).

    CSV times look like ``2019-10-01 00:00:00 UTC`` (whole seconds), as in the REES46 files.
    """
    out = Path(path)
    name = out.name.lower()
    out.parent.mkdir(parents=True, exist_ok=True)
    if name.endswith((".parquet", ".pq")):
        events.to_parquet(out, index=False)
    elif name.endswith((".csv", ".csv.gz")):
        text = events.copy()
        seconds = text[col.EVENT_TIME].dt.tz_convert("UTC").dt.tz_localize(None).to_numpy().astype("M8[s]")
        text[col.EVENT_TIME] = (
            pd.Series(np.datetime_as_string(seconds, unit="s"), index=text.index).str.replace("T", " ", regex=False)
            + " UTC"
        )
        # mtime=0 keeps .csv.gz files byte-identical for equal events.
        compression: Any = {"method": "gzip", "mtime": 0} if name.endswith(".gz") else None
        text.to_csv(out, index=False, compression=compression, lineterminator="\n")
    else:
        raise ValueError(f"{out}: unsupported events file type; use .parquet, .csv or .csv.gz")
    return out


def describe(events: pd.DataFrame) -> dict[str, Any]:
    """Headline numbers of a generated log: counts, funnel rates, events per session (for reports)."""
    counts = events[col.EVENT_TYPE].value_counts()
    views, carts = int(counts.get(col.VIEW, 0)), int(counts.get(col.CART, 0))
    return {
        "events": len(events),
        "users": int(events[col.USER_ID].nunique()),
        "products": int(events[col.PRODUCT_ID].nunique()),
        "sessions": int(events[col.USER_SESSION].nunique()),
        **{t: int(counts.get(t, 0)) for t in col.EVENT_TYPES},
        "cart_per_view": carts / max(views, 1),
        "purchase_per_cart": int(counts.get(col.PURCHASE, 0)) / max(carts, 1),
        "remove_per_cart": int(counts.get(col.REMOVE_FROM_CART, 0)) / max(carts, 1),
    }


__all__: Sequence[str] = (
    "SEGMENT_FUTURE",
    "SEGMENT_NEW",
    "SEGMENT_WARM",
    "GeneratedData",
    "GeneratorConfig",
    "GroundTruth",
    "describe",
    "generate",
    "position_bias",
    "write_events",
)


def generated_marker(path: str | Path) -> Path:
    """The file beside a generated events file that says the generator wrote it (``<name>.generated.json``)."""
    path = Path(path)
    return path.with_name(path.name + ".generated.json")


def mark_generated_file(path: str | Path, config: Mapping[str, object]) -> Path:
    """Record that ``path`` was just written by the generator: its size and modification time, so a file
    copied over it later (a user's own log) is not taken for generated."""
    stat = Path(path).stat()
    marker = generated_marker(path)
    marker.write_text(json.dumps({"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "config": dict(config)}))
    return marker


def is_generated_file(path: str | Path) -> bool:
    """True when ``path`` is exactly the file the generator last wrote there (safe to overwrite)."""
    marker = generated_marker(path)
    try:
        recorded = json.loads(marker.read_text())
        stat = Path(path).stat()
    except (OSError, ValueError):
        return False
    return bool(recorded.get("size") == stat.st_size and recorded.get("mtime_ns") == stat.st_mtime_ns)
