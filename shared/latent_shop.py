"""A second synthetic shop whose ground truth is *not* the ranker's features: latent-factor tastes.

The default generator (:mod:`shared.data_generator`) draws clicks from category tastes, brands, prices
and popularity — the very signals the ranker's features describe, so winning there proves little. Here
users and products are random vectors and what a user looks at is a softmax over ``taste x (user .
product)`` plus a long-tail popularity term: the signal is collaborative (who looks at what), which is
what item-kNN, EASE and ALS model and what hand-made features only approximate. Categories are few and
follow the product vectors (each product belongs to its nearest of ``n_categories`` directions), so a
category says something about taste, but not everything.

Each user has 2 to 20 events (a long tail: most users few), spread over the period in sessions of a few
views; a view turns into a cart, and a cart into a purchase, with a probability that grows with the
user's affinity for the product. No prices or brands carry signal (they are drawn at random). The
output has the event schema of ``shared.column_names``, no exact duplicate rows, and is deterministic
for a seed. There is no
ground-truth click model to save: the A/B simulator needs the default shop.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import numpy as np
import pandas as pd

from shared import column_names as col

SECOND_NS = 1_000_000_000


@dataclass(frozen=True)
class LatentShopConfig:
    n_users: int = 3000
    n_products: int = 1500
    days: int = 28
    seed: int = 42
    start: str = "2026-10-01"
    factors: int = 16
    n_categories: int = 6
    taste: float = 8.0  # weight of user . product (std 1/sqrt(factors)) in the choice softmax: ~2 logits
    popularity_exponent: float = 0.8  # long tail: popularity logit = -exponent * log(rank)
    min_events: int = 2
    max_events: int = 20
    session_views: float = 4.0  # mean views per session
    cart_rate: float = 0.08  # chance a view of an average-affinity product becomes a cart
    purchase_rate: float = 0.35  # chance a cart becomes a purchase (same scaling)

    def __post_init__(self) -> None:
        if self.n_users < 10 or self.n_products < 2 * self.n_categories or self.n_categories < 1:
            raise ValueError("need at least 10 users, 1 category and 2 products per category")
        if not 2 <= self.min_events <= self.max_events:
            raise ValueError("events per user: need 2 <= min_events <= max_events")
        if self.days < 2 or self.factors < 1:
            raise ValueError("days >= 2 and factors >= 1 are required")


def generate_latent_shop(config: LatentShopConfig | None = None) -> pd.DataFrame:
    """The event log of one latent-factor shop (sorted by time, REES46 schema)."""
    c = config or LatentShopConfig()
    rng = np.random.default_rng(c.seed)
    scale = 1.0 / np.sqrt(c.factors)
    products = rng.normal(size=(c.n_products, c.factors)) * scale
    users = rng.normal(size=(c.n_users, c.factors)) * scale
    directions = rng.normal(size=(c.n_categories, c.factors))
    product_category = np.argmax(products @ directions.T, axis=1)
    popularity = -c.popularity_exponent * np.log1p(rng.permutation(c.n_products))

    # events per user: a truncated geometric-like tail between min and max
    span = c.max_events - c.min_events
    n_events = c.min_events + np.minimum(rng.geometric(p=1.0 / (1.0 + span / 3.0), size=c.n_users) - 1, span)
    period_s = c.days * 86_400
    rows: list[tuple[int, int, int, int, int]] = []  # (time_s, type code, product, user, session)
    session = 0
    for user in range(c.n_users):
        affinity = users[user] @ products.T
        logits = c.taste * affinity + popularity
        chosen = _softmax_draws(rng, logits, int(n_events[user]))
        lift = np.exp(c.taste * affinity[chosen]) / np.exp(c.taste * affinity).mean()
        n_sessions = max(1, round(len(chosen) / c.session_views))
        starts = np.sort(rng.uniform(0, period_s - 3600, n_sessions))
        of_session = np.sort(rng.integers(0, n_sessions, len(chosen)))
        for i, product in enumerate(chosen.tolist()):
            s = int(of_session[i])
            t = int(starts[s] + rng.uniform(0, 1800))
            rows.append((t, 0, product, user, session + s))
            if rng.random() < min(1.0, c.cart_rate * lift[i]):
                rows.append((t + int(rng.integers(5, 300)), 1, product, user, session + s))
                if rng.random() < min(1.0, c.purchase_rate * np.sqrt(lift[i])):
                    rows.append((t + int(rng.integers(300, 900)), 3, product, user, session + s))
        session += n_sessions
    data = np.array(rows, dtype=np.int64)
    return _frame(c, rng, data, product_category, session)


def _softmax_draws(rng: np.random.Generator, logits: np.ndarray, n: int) -> np.ndarray:
    """``n`` products drawn (with repeats: users come back to what they like) from softmax(logits)."""
    weights = np.exp(logits - logits.max())
    return rng.choice(len(logits), size=n, p=weights / weights.sum())


def _frame(
    c: LatentShopConfig, rng: np.random.Generator, data: np.ndarray, product_category: np.ndarray, n_sessions: int
) -> pd.DataFrame:
    types = np.array([col.VIEW, col.CART, col.REMOVE_FROM_CART, col.PURCHASE])
    product_ids = 1_000_000 + rng.permutation(c.n_products * 3)[: c.n_products]
    user_ids = 500_000_000 + rng.permutation(c.n_users * 5)[: c.n_users]
    category_ids = 2_000_000_000_000_000_000 + np.arange(c.n_categories, dtype=np.int64) * 7_919
    prices = np.round(np.exp(rng.normal(3.5, 0.8, c.n_products)), 2).astype(np.float32)
    brands = np.array([f"brand{int(b)}" for b in rng.integers(0, 40, c.n_products)], dtype=object)
    sessions = np.array([str(uuid.UUID(bytes=rng.bytes(16), version=4)) for _ in range(n_sessions)], dtype=object)
    start_ns = pd.Timestamp(c.start, tz="UTC").value
    product = data[:, 2]
    frame = pd.DataFrame(
        {
            col.EVENT_TIME: pd.to_datetime(start_ns + data[:, 0] * SECOND_NS, utc=True),
            col.EVENT_TYPE: types[data[:, 1]],
            col.PRODUCT_ID: product_ids[product],
            col.CATEGORY_ID: category_ids[product_category[product]],
            col.CATEGORY_CODE: np.array([f"latent.c{k}" for k in range(c.n_categories)], dtype=object)[
                product_category[product]
            ],
            col.BRAND: brands[product],
            col.PRICE: prices[product],
            col.USER_ID: user_ids[data[:, 3]],
            col.USER_SESSION: sessions[data[:, 4]],
        }
    )
    frame = frame[~frame.duplicated()]  # a product viewed twice in one second of one session: one event
    return frame.sort_values(col.EVENT_TIME, kind="stable").reset_index(drop=True)[list(col.ALL_COLUMNS)]
