"""Locust load test of the recommendation service: a realistic mix of shop visitors.

Each simulated visitor (``ShopVisitor``) waits 0.5-2 s between page views and does one of:

* ``GET /recommend [warm]`` (weight 6): a known user (ids from the served events) on the home page;
* ``GET /recommend [cold]`` (weight 2): a user id that never appears in the events (cold start);
* ``POST /recommend [session]`` (weight 2): a user (warm, or cold one time in three) on a category page
  who just looked at 1-4 products of that category, one of them excluded;

and, for a share of the lists it was shown (``RECSYS_LOADTEST_FEEDBACK_SHARE``, default 0.5),
``POST /feedback`` with an impression per shown item plus a click on one of them with probability
``RECSYS_LOADTEST_CLICK_RATE`` (default 0.3), quoting the response's ``recommendation_id``.

Ids come from ``RECSYS_LOADTEST_IDS`` (written by ``make loadtest``: ``artifacts/load_test_results/ids.json``),
else from the events file (``RECSYS_DATA_DIR``/events.parquet). Run by ``make loadtest``
(``python -m zadanie4.evaluation.bench.loadtest_runner``) or directly::

    locust -f zadanie4/evaluation/bench/locustfile.py --headless -u 50 -r 10 -t 60s --host http://127.0.0.1:8000
"""

from __future__ import annotations

import os
import random
import uuid
from pathlib import Path
from typing import Any

from locust import FastHttpUser, between, events, task

from zadanie4.evaluation.bench.load_test_ids import LoadTestIds, ids_from_events_file, read_ids

IDS: LoadTestIds | None = None


def _float_env(name: str, default: float) -> float:
    value = os.environ.get(name, "").strip()
    return float(value) if value else default


@events.init.add_listener
def _load_ids(environment: Any, **_kwargs: Any) -> None:
    """Load the ids once per locust process (not at import: the file may be written just before)."""
    global IDS
    path = os.environ.get("RECSYS_LOADTEST_IDS")
    if path and Path(path).exists():
        IDS = read_ids(Path(path))
        return
    from shared.settings import load_shared_settings

    IDS = ids_from_events_file(load_shared_settings().default_events_path)


class ShopVisitor(FastHttpUser):
    """One shop visitor: page views that ask for recommendations, and feedback on what was shown."""

    wait_time = between(0.5, 2.0)

    def on_start(self) -> None:
        if IDS is None:
            raise RuntimeError("load test ids not loaded")
        self.ids = IDS
        self.categories = [c for c, ps in IDS.category_products.items() if ps]
        self.feedback_share = _float_env("RECSYS_LOADTEST_FEEDBACK_SHARE", 0.5)
        self.click_rate = _float_env("RECSYS_LOADTEST_CLICK_RATE", 0.3)

    @task(6)
    def warm_user_home_page(self) -> None:
        user = random.choice(self.ids.warm_user_ids)
        self._recommend_get(user, "GET /recommend [warm]")

    @task(2)
    def cold_user_home_page(self) -> None:
        user = random.choice(self.ids.cold_user_ids)
        self._recommend_get(user, "GET /recommend [cold]")

    @task(2)
    def category_page_with_session(self) -> None:
        pool = self.ids.cold_user_ids if random.random() < 1 / 3 else self.ids.warm_user_ids
        user = random.choice(pool)
        category = random.choice(self.categories) if self.categories else None
        products = self.ids.category_products.get(category, []) if category else self.ids.product_ids
        seen = random.sample(products[:50], k=min(len(products[:50]), random.randint(1, 4))) if products else []
        body: dict[str, Any] = {"user_id": user, "k": 10, "session_product_ids": seen}
        if category is not None:
            body["category_id"] = int(category)
        if seen:
            body["exclude_product_ids"] = seen[:1]
        with self.client.post(
            "/recommend", json=body, name="POST /recommend [session]", catch_response=True
        ) as response:
            payload = self._check(response)
        if payload:
            self._maybe_feedback(user, payload)

    def _recommend_get(self, user: int, name: str) -> None:
        with self.client.get(f"/recommend?user_id={user}&k=10", name=name, catch_response=True) as response:
            payload = self._check(response)
        if payload:
            self._maybe_feedback(user, payload)

    @staticmethod
    def _check(response: Any) -> dict[str, Any] | None:
        """The JSON body when it is a 200 with a list of items; otherwise mark the request failed."""
        if response.status_code != 200:
            response.failure(f"HTTP {response.status_code}")
            return None
        try:
            payload = response.json()
        except ValueError:
            response.failure("response is not JSON")
            return None
        if not isinstance(payload, dict) or not isinstance(payload.get("items"), list):
            response.failure("response has no items list")
            return None
        response.success()
        return payload

    def _maybe_feedback(self, user: int, payload: dict[str, Any]) -> None:
        """Impressions for every shown item, and sometimes a click on one, as one batch."""
        items = payload["items"]
        if not items or random.random() >= self.feedback_share:
            return
        recommendation_id = payload.get("recommendation_id")
        batch = [
            {
                "event_id": uuid.uuid4().hex,
                "user_id": user,
                "product_id": item["product_id"],
                "event_type": "impression",
                "recommendation_id": recommendation_id,
            }
            for item in items
        ]
        if random.random() < self.click_rate:
            clicked = random.choice(items)
            batch.append(
                {
                    "event_id": uuid.uuid4().hex,
                    "user_id": user,
                    "product_id": clicked["product_id"],
                    "event_type": "click",
                    "recommendation_id": recommendation_id,
                }
            )
        with self.client.post("/feedback", json=batch, name="POST /feedback", catch_response=True) as response:
            if response.status_code == 200:
                response.success()
            else:
                response.failure(f"HTTP {response.status_code}")
