"""The feature registry: every feature's name, dtype, default and meaning, defined once.

Training (zadanie1), the Feast repository (zadanie2) and serving (zadanie4) all read this module,
so a feature cannot mean one thing offline and another online. ``RANKER_FEATURES`` is the
ordered input of the ranking model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

DType = Literal["int64", "float32", "int64_list", "float32_list"]

USER_STATS: Final = "user_stats"
PRODUCT_STATS: Final = "product_stats"
CATEGORY_STATS: Final = "category_stats"
USER_PRODUCT_INTERACTIONS: Final = "user_product_interactions"
DERIVED: Final = "derived"  # computed from the others when a feature vector is assembled
VIEWS: Final = (USER_STATS, PRODUCT_STATS, CATEGORY_STATS, USER_PRODUCT_INTERACTIONS)

TOP_CATEGORIES: Final = 5  # length of the user's top-category arrays
RECENT_PRODUCTS: Final = 20  # length of the user's recent-products array
PURCHASED_PRODUCTS: Final = 100  # most recent purchases kept for the "already bought" filter
NO_RECENCY_DAYS: Final = 365.0  # recency used when there was never an event
UNKNOWN_PRICE: Final = -1.0
UNKNOWN_ID: Final = -1


@dataclass(frozen=True)
class FeatureSpec:
    name: str
    view: str
    dtype: DType
    default: float | int | None
    description: str
    model_input: bool = True


def _f(name: str, view: str, dtype: DType, default: float | int | None, description: str, model: bool = True):
    return FeatureSpec(name, view, dtype, default, description, model)


FEATURES: Final[tuple[FeatureSpec, ...]] = (
    # user_stats: one row per user, as of the snapshot time
    _f("user_n_views", USER_STATS, "int64", 0, "views by the user"),
    _f("user_n_carts", USER_STATS, "int64", 0, "add-to-cart events by the user"),
    _f("user_n_purchases", USER_STATS, "int64", 0, "purchases by the user"),
    _f("user_n_events", USER_STATS, "int64", 0, "all events by the user"),
    _f("user_n_sessions", USER_STATS, "int64", 0, "distinct sessions of the user"),
    _f("user_n_products", USER_STATS, "int64", 0, "distinct products the user touched"),
    _f("user_n_categories", USER_STATS, "int64", 0, "distinct categories the user touched"),
    _f("user_avg_price", USER_STATS, "float32", UNKNOWN_PRICE, "mean price of viewed products (-1 unknown)"),
    _f("user_recency_days", USER_STATS, "float32", NO_RECENCY_DAYS, "days since the user's last event"),
    _f("user_tenure_days", USER_STATS, "float32", 0.0, "days since the user's first event"),
    _f("user_cart_rate", USER_STATS, "float32", 0.0, "carts / (views + 1)"),
    _f("user_purchase_rate", USER_STATS, "float32", 0.0, "purchases / (views + 1)"),
    _f("user_top_category_share", USER_STATS, "float32", 0.0, "share of events in the top category"),
    _f("user_top_category_ids", USER_STATS, "int64_list", None, "top categories by events", False),
    _f("user_top_category_shares", USER_STATS, "float32_list", None, "event shares of those", False),
    _f(
        "user_recent_product_ids",
        USER_STATS,
        "int64_list",
        None,
        "last distinct products, newest first",
        False,
    ),
    _f("user_purchased_product_ids", USER_STATS, "int64_list", None, "products bought, newest first", False),
    # product_stats: one row per product seen before the snapshot time
    _f(
        "product_category_id",
        PRODUCT_STATS,
        "int64",
        UNKNOWN_ID,
        "category of the product (-1 unknown)",
        False,
    ),
    _f("product_n_views", PRODUCT_STATS, "int64", 0, "views of the product"),
    _f("product_n_carts", PRODUCT_STATS, "int64", 0, "add-to-carts of the product"),
    _f("product_n_purchases", PRODUCT_STATS, "int64", 0, "purchases of the product"),
    _f("product_n_users", PRODUCT_STATS, "int64", 0, "distinct users who touched the product"),
    _f("product_views_7d", PRODUCT_STATS, "int64", 0, "views in the last 7 days"),
    _f("product_trend", PRODUCT_STATS, "float32", 1.0, "(views 7d + 1) / (weekly views in days 8-28 + 1)"),
    _f("product_cart_rate", PRODUCT_STATS, "float32", 0.0, "carts / views, smoothed toward the global rate"),
    _f("product_conversion_rate", PRODUCT_STATS, "float32", 0.0, "purchases / views, smoothed"),
    _f("product_price", PRODUCT_STATS, "float32", UNKNOWN_PRICE, "last seen price (-1 unknown)"),
    _f("product_age_days", PRODUCT_STATS, "float32", 0.0, "days since the product's first event"),
    # category_stats: one row per category; lets the ranker score products with no history
    _f("category_n_views", CATEGORY_STATS, "int64", 0, "views in the category"),
    _f("category_n_purchases", CATEGORY_STATS, "int64", 0, "purchases in the category"),
    _f("category_n_products", CATEGORY_STATS, "int64", 0, "distinct products in the category"),
    _f("category_conversion_rate", CATEGORY_STATS, "float32", 0.0, "purchases / views, smoothed"),
    _f("category_trend", CATEGORY_STATS, "float32", 1.0, "(views 7d + 1) / (weekly views days 8-28 + 1)"),
    _f("category_avg_price", CATEGORY_STATS, "float32", UNKNOWN_PRICE, "mean price of viewed items"),
    # user_product_interactions: one row per (user, product) pair with any event
    _f("up_n_views", USER_PRODUCT_INTERACTIONS, "int64", 0, "views of this product by this user"),
    _f("up_n_carts", USER_PRODUCT_INTERACTIONS, "int64", 0, "carts of this product by this user"),
    _f("up_n_purchases", USER_PRODUCT_INTERACTIONS, "int64", 0, "purchases of this product by this user"),
    _f("up_recency_days", USER_PRODUCT_INTERACTIONS, "float32", NO_RECENCY_DAYS, "days since last touch"),
    # derived when a feature vector is assembled (same code offline and online)
    _f("uc_affinity", DERIVED, "float32", 0.0, "user's event share in the product's category"),
    _f("price_ratio", DERIVED, "float32", 1.0, "product price / user's mean viewed price (1 unknown)"),
)

FEATURES_BY_NAME: Final = {f.name: f for f in FEATURES}
RANKER_FEATURES: Final[tuple[str, ...]] = tuple(f.name for f in FEATURES if f.model_input)


def features_of(view: str) -> tuple[FeatureSpec, ...]:
    """Specs of the features stored in one feature view (or the derived ones)."""
    return tuple(f for f in FEATURES if f.view == view)


def stored_ranker_features(view: str) -> tuple[str, ...]:
    """Model inputs that are stored in ``view``, in ranker order."""
    return tuple(n for n in RANKER_FEATURES if FEATURES_BY_NAME[n].view == view)


def default_of(name: str) -> float:
    spec = FEATURES_BY_NAME[name]
    return float(spec.default) if spec.default is not None else float("nan")
