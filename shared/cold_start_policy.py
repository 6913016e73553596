"""Cold-start policy: how much history a user has decides how they are served.

Stages by the user's event count before the request (``user_n_events`` from the user_stats view):

* ``cold``  — 0 events (unknown user): popularity lists, by the context category when one is given
  (e.g. the category page the user is on), topped up from the global list; optionally a share of
  trending products.
* ``light`` — 1..``warm_threshold_events`` events: too little history for full personalisation;
  candidates come from the user's session/recent products and categories and are ranked by the model.
* ``warm``  — more than ``warm_threshold_events`` events: the full personalised pipeline.

The offline evaluation (zadanie1) and the service (zadanie4) use these same functions, so the
cold-user numbers in ``offline_eval.json`` are what the service does.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Final, Literal

from shared.popularity import PopularityModel

Stage = Literal["cold", "light", "warm"]
COLD: Final = "cold"
LIGHT: Final = "light"
WARM: Final = "warm"

REASON_COLD_START_POPULAR: Final = "cold_start_popular"
REASON_CATEGORY_POPULAR: Final = "category_popular"
REASON_EXPLORATION: Final = "exploration"


@dataclass(frozen=True)
class ColdStartPolicyConfig:
    """Knobs of the policy.

    warm_threshold_events: users with more events than this are ``warm``; 1..this are ``light`` (>= 0).
    trending_share: share (0..1) of a cold user's slots filled from the trending list, interleaved
        after the popular ones; 0 keeps the list equal to the popularity baseline.
    """

    warm_threshold_events: int = 5
    trending_share: float = 0.0

    def __post_init__(self) -> None:
        if self.warm_threshold_events < 0:
            raise ValueError("warm_threshold_events must be >= 0")
        if not 0.0 <= self.trending_share <= 1.0:
            raise ValueError("trending_share must be within 0..1")


@dataclass(frozen=True)
class FallbackItem:
    """One popularity-based recommendation; ``score`` falls from 1.0 with the position."""

    product_id: int
    score: float
    reason: str


def user_stage(n_events: int | float | None, config: ColdStartPolicyConfig | None = None) -> Stage:
    """``cold`` for 0 (or unknown) events, ``light`` for 1..threshold, ``warm`` above the threshold."""
    config = config or ColdStartPolicyConfig()
    count = 0 if n_events is None or n_events != n_events else int(n_events)  # NaN -> 0
    if count <= 0:
        return COLD
    return LIGHT if count <= config.warm_threshold_events else WARM


def fallback_items(
    popularity: PopularityModel,
    k: int,
    *,
    category_id: int | None = None,
    exclude: Collection[int] = (),
    config: ColdStartPolicyConfig | None = None,
) -> list[FallbackItem]:
    """The cold-start list: ``k`` products, never one in ``exclude``, deterministic.

    With ``category_id`` the category's most popular products come first (reason
    ``category_popular``), then the global list (``cold_start_popular``); ``trending_share`` of the
    slots go to trending products not already chosen (also ``cold_start_popular``).
    """
    config = config or ColdStartPolicyConfig()
    if k <= 0:
        return []
    excluded = set(exclude)
    chosen: list[tuple[int, str]] = []
    n_trending = round(k * config.trending_share)
    n_main = k - n_trending

    if category_id is not None and category_id in popularity.by_category:
        for product in popularity.by_category[category_id].top(n_main, excluded):
            chosen.append((product, REASON_CATEGORY_POPULAR))
    taken = excluded | {p for p, _ in chosen}
    for product in popularity.popular.top(n_main - len(chosen), taken):
        chosen.append((product, REASON_COLD_START_POPULAR))
    taken = excluded | {p for p, _ in chosen}
    for product in popularity.trending(k - len(chosen), exclude=taken):
        chosen.append((product, REASON_COLD_START_POPULAR))
    if len(chosen) < k:  # trending too short: top up from the global list
        taken = excluded | {p for p, _ in chosen}
        chosen += [(p, REASON_COLD_START_POPULAR) for p in popularity.popular.top(k - len(chosen), taken)]
    return [FallbackItem(product_id=p, score=1.0 - i / k, reason=reason) for i, (p, reason) in enumerate(chosen)]
