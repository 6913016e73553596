"""The A/B simulator's HTTP edge: the service's public API as the shop would call it (async httpx).

Works against a real service (``http://host:port``) and against an in-process ASGI app (tests pass
an ``httpx.AsyncClient`` with an ``ASGITransport``). Only the documented endpoints are used:
``/recommend``, ``/feedback``, ``/metrics``, ``/model``, ``/health/ready`` and the admin endpoints
``/admin/canary`` and ``/admin/products`` (bearer token).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

import httpx

from shared.errors import UserInputError

FEEDBACK_BATCH = 1000  # the service's max_feedback_batch default
COUNTED_METRICS = (
    "recsys_impressions_total",
    "recsys_clicks_total",
    "recsys_carts_total",
    "recsys_purchases_total",
)


class ServiceError(RuntimeError):
    """The service answered something the simulation cannot go on with."""


class ServiceClient:
    """Thin async wrapper of the service API; retries 503 (overload, feedback store busy) and transport
    errors a few times."""

    def __init__(self, client: httpx.AsyncClient, admin_token: str | None, *, retries: int = 5) -> None:
        self.client = client
        self.admin_token = admin_token
        self.retries = retries

    def _admin_headers(self) -> dict[str, str]:
        if not self.admin_token:
            raise UserInputError("the A/B test needs the service's admin token (RECSYS_SERVE_ADMIN_TOKEN)")
        return {"Authorization": f"Bearer {self.admin_token}"}

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One call, retried on 503 and on transport errors (a reset connection, a timeout under load):
        safe, since /feedback is idempotent by event id and the other calls do not change state twice."""
        delay = 0.05
        for attempt in range(self.retries + 1):
            try:
                response = await self.client.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                if attempt == self.retries:
                    raise ServiceError(f"{method} {path}: {type(exc).__name__}: {exc}") from exc
            else:
                if response.status_code != 503 or attempt == self.retries:
                    break
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)
        if response.status_code == 401:
            raise UserInputError(f"{path}: 401 from the service — wrong or missing admin token")
        if response.status_code >= 400:
            raise ServiceError(f"{method} {path}: HTTP {response.status_code}: {response.text[:300]}")
        return response

    async def ready(self) -> bool:
        try:
            response = await self.client.get("/health/ready")
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    async def model_info(self) -> dict[str, Any]:
        return (await self._request("GET", "/model")).json()

    async def recommend(
        self,
        user_id: int,
        k: int,
        *,
        session_product_ids: Sequence[int] = (),
        category_id: int | None = None,
        exclude_product_ids: Sequence[int] = (),
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"user_id": int(user_id), "k": int(k)}
        if session_product_ids:
            body["session_product_ids"] = [int(p) for p in session_product_ids]
        if category_id is not None:
            body["category_id"] = int(category_id)
        if exclude_product_ids:
            body["exclude_product_ids"] = [int(p) for p in exclude_product_ids]
        return (await self._request("POST", "/recommend", json=body)).json()

    async def feedback(self, events: Sequence[Mapping[str, Any]]) -> int:
        """Post events (in batches the service accepts); returns how many were stored or duplicates."""
        acknowledged = 0
        for i in range(0, len(events), FEEDBACK_BATCH):
            batch = list(events[i : i + FEEDBACK_BATCH])
            body = (await self._request("POST", "/feedback", json=batch)).json()
            acknowledged += int(body.get("stored", 0)) + int(body.get("duplicates", 0))
        return acknowledged

    async def set_canary(self, weight: float, challenger: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"weight": float(weight)}
        if challenger is not None:
            body["challenger"] = challenger
        response = await self.client.post("/admin/canary", json=body, headers=self._admin_headers())
        if response.status_code == 422 and challenger is not None:
            raise ServiceError(
                f"the service does not accept a 'challenger' in /admin/canary (an older build?): {response.text[:200]}"
            )
        if response.status_code == 401:
            raise UserInputError("/admin/canary: 401 from the service — wrong or missing admin token")
        if response.status_code >= 400:
            raise ServiceError(f"/admin/canary: HTTP {response.status_code}: {response.text[:300]}")
        return response.json()

    async def announce_products(self, products: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        response = await self._request(
            "POST", "/admin/products", json={"products": list(products)}, headers=self._admin_headers()
        )
        return response.json()

    async def counters(self) -> dict[str, dict[str, float]]:
        """The service's own feedback counters by variant: metric name -> variant -> value."""
        text = (await self._request("GET", "/metrics")).text
        return parse_counters(text, COUNTED_METRICS, "variant")

    async def metric_samples(self, name: str, label: str) -> dict[str, float]:
        text = (await self._request("GET", "/metrics")).text
        return parse_counters(text, (name,), label).get(name, {})


def parse_counters(text: str, names: Sequence[str], label: str) -> dict[str, dict[str, float]]:
    """Prometheus text -> {metric name: {label value: value}} for counters ``names`` (``_total`` samples)."""
    from prometheus_client.parser import text_string_to_metric_families

    wanted = set(names)
    out: dict[str, dict[str, float]] = {name: {} for name in names}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in wanted:
                key = sample.labels.get(label, "")
                out[sample.name][key] = out[sample.name].get(key, 0.0) + float(sample.value)
    return out


def counter_delta(
    before: Mapping[str, Mapping[str, float]], after: Mapping[str, Mapping[str, float]]
) -> dict[str, dict[str, int]]:
    """``after - before`` per metric and label value (counters only grow while the service runs)."""
    out: dict[str, dict[str, int]] = {}
    for name, values in after.items():
        prior = before.get(name, {})
        out[name] = {key: round(value - prior.get(key, 0.0)) for key, value in values.items()}
    return out
