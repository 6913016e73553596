"""Stored feedback -> zadanie2's real-time feature update (the user's features move within seconds).

A click is the view of the product page it leads to, a cart a cart, a purchase a purchase; impressions
change no feature. The update itself (:class:`zadanie2.realtime_updates.RealtimeFeatureUpdater`) writes
the recomputed rows to the online store with the same feature functions as the batch path.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

# Feedback event -> REES46 event type for the real-time feature update (impressions change no feature).
FEEDBACK_TO_EVENT_TYPE = {"click": "view", "cart": "cart", "purchase": "purchase"}


def feedback_as_events(records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Stored feedback records -> REES46-shaped events (view/cart/purchase) for the real-time update.

    A click is the view of the product page it leads to; impressions change no feature and are
    dropped. Category and price come from the service's product cache when it knows the product.
    """
    out = []
    for r in records:
        event_type = FEEDBACK_TO_EVENT_TYPE.get(str(r["event_type"]))
        if event_type is None:
            continue
        event = {
            "event_time": r["timestamp"],
            "event_type": event_type,
            "product_id": int(r["product_id"]),
            "user_id": int(r["user_id"]),
            "user_session": r.get("recommendation_id"),
        }
        if r.get("category_id") is not None:
            event["category_id"] = int(r["category_id"])
        if r.get("price") is not None:
            event["price"] = float(r["price"])
        out.append(event)
    return out


def realtime_hook(feature_settings: Any) -> Callable[[Sequence[Mapping[str, Any]]], None]:
    """zadanie2's :class:`RealtimeFeatureUpdater` taking the service's stored feedback records."""
    from zadanie2.realtime_updates import RealtimeFeatureUpdater

    updater = RealtimeFeatureUpdater(feature_settings)

    def update(records: Sequence[Mapping[str, Any]]) -> None:
        events = feedback_as_events(records)
        if events:
            updater.apply_records(events)

    return update
