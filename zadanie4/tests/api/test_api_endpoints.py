"""Every endpoint over HTTP (httpx on the ASGI app): answers, shapes and clear 4xx errors."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client.parser import text_string_to_metric_families

from zadanie4.tests.conftest import make_settings, running_service
from zadanie4.tests.service_fakes import DictModelProvider, InMemoryFeatureReader, make_dependencies

pytestmark = pytest.mark.anyio
REASONS = {"personalized", "cold_start_popular", "category_popular", "session_similar", "exploration"}


def _sample(text: str, name: str, labels: dict[str, str]) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    raise AssertionError(f"{name}{labels} not exposed")


async def test_warm_user_gets_k_distinct_personalized_items_over_get(shop, settings):
    # given a running service and a user with plenty of history
    user = shop.users_with_events(10)[0]
    async with running_service(settings, make_dependencies(shop)) as svc:
        # when the shop asks for 7 items
        response = await svc.client.get("/recommend", params={"user_id": user, "k": 7})
    # then it gets 7 distinct personalized items from the champion, not degraded
    assert response.status_code == 200
    body = response.json()
    assert body["user_id"] == user and body["variant"] == "champion" and body["model_version"] == "1"
    assert body["degraded"] is False and body["recommendation_id"].startswith("champion-")
    ids = [item["product_id"] for item in body["items"]]
    assert len(ids) == 7 == len(set(ids))
    assert {item["reason"] for item in body["items"]} == {"personalized"}
    scores = [item["score"] for item in body["items"]]
    assert scores == sorted(scores, reverse=True)


async def test_post_recommend_never_returns_excluded_or_purchased_products(shop, settings):
    user = shop.users_with_events(10)[1]
    async with running_service(settings, make_dependencies(shop)) as svc:
        first = (await svc.client.get("/recommend", params={"user_id": user, "k": 5})).json()
        excluded = [item["product_id"] for item in first["items"][:3]]
        response = await svc.client.post(
            "/recommend", json={"user_id": user, "k": 5, "exclude_product_ids": excluded, "category_id": None}
        )
    assert response.status_code == 200
    ids = {item["product_id"] for item in response.json()["items"]}
    purchased = set(shop.tables.user_stats.loc[user, "user_purchased_product_ids"])
    assert len(ids) == 5 and not ids & set(excluded) and not ids & purchased


async def test_unknown_user_gets_cold_start_list_with_200(shop, settings):
    async with running_service(settings, make_dependencies(shop)) as svc:
        response = await svc.client.get("/recommend", params={"user_id": shop.unknown_user(), "k": 10})
        metrics = (await svc.client.get("/metrics")).text
    body = response.json()
    assert response.status_code == 200 and body["degraded"] is False
    assert [i["reason"] for i in body["items"]] == ["cold_start_popular"] * 10
    assert [i["product_id"] for i in body["items"]] == shop.index.popularity.top(10)
    assert _sample(metrics, "recsys_fallbacks_total", {"cause": "unknown_user"}) == 1.0


@pytest.mark.parametrize("k", ["0", "101", "1000000000", "-3", "ten"])
async def test_k_outside_1_to_100_is_422_with_a_clear_message(shop, settings, k):
    async with running_service(settings, make_dependencies(shop)) as svc:
        response = await svc.client.get("/recommend", params={"user_id": 1, "k": k})
        posted = await svc.client.post("/recommend", json={"user_id": 1, "k": k})
    for answer in (response, posted):
        assert answer.status_code == 422
        body = answer.json()
        assert body["detail"].startswith("k: ") and body["errors"][0]["loc"][-1] == "k"


async def test_missing_or_negative_user_id_is_422(shop, settings):
    async with running_service(settings, make_dependencies(shop)) as svc:
        missing = await svc.client.get("/recommend")
        negative = await svc.client.get("/recommend", params={"user_id": -1})
        huge = await svc.client.get("/recommend", params={"user_id": 2**70})
    assert [r.status_code for r in (missing, negative, huge)] == [422, 422, 422]
    assert "user_id" in missing.json()["detail"]


@pytest.mark.parametrize(
    "body", [b"{not json", b'{"user_id": 1, "k": 5', b"\xff\xfe\x00garbage", b"[" * 5000, b'"just a string"']
)
async def test_malformed_json_bodies_are_422(shop, settings, body):
    async with running_service(settings, make_dependencies(shop)) as svc:
        for path in ("/recommend", "/feedback"):
            response = await svc.client.post(path, content=body, headers={"content-type": "application/json"})
            assert response.status_code == 422, (path, response.text)
            assert response.json()["detail"]


async def test_unknown_fields_in_recommend_body_are_422(shop, settings):
    async with running_service(settings, make_dependencies(shop)) as svc:
        response = await svc.client.post("/recommend", json={"user_id": 1, "k": 5, "kk": 3})
    assert response.status_code == 422 and "kk" in response.json()["detail"]


async def test_body_over_the_limit_is_413_by_header_and_by_streamed_size(shop, tmp_path):
    settings = make_settings(tmp_path, max_body_bytes=4096)
    big = b'{"user_id": 1, "pad": "' + b"x" * 10_000 + b'"}'

    async def chunks():
        for i in range(0, len(big), 1000):
            yield big[i : i + 1000]

    async with running_service(settings, make_dependencies(shop)) as svc:
        declared = await svc.client.post("/recommend", content=big, headers={"content-type": "application/json"})
        streamed = await svc.client.post("/feedback", content=chunks(), headers={"content-type": "application/json"})
        small = await svc.client.post("/recommend", json={"user_id": 1})
    assert declared.status_code == 413 and "larger than 4096 bytes" in declared.json()["detail"]
    assert streamed.status_code == 413
    assert small.status_code == 200


async def test_health_live_ready_and_model_describe_the_service(shop, settings):
    async with running_service(settings, make_dependencies(shop)) as svc:
        live = await svc.client.get("/health/live")
        ready = await svc.client.get("/health/ready")
        model = await svc.client.get("/model")
    assert live.json() == {"status": "ok", "checks": {}}
    assert ready.status_code == 200 and ready.json()["status"] == "ok"
    info = model.json()
    assert info["champion"]["version"] == "1" and info["challenger"]["version"] is None
    assert info["canary_weight"] == 0.0 and info["shadow_enabled"] is False
    assert 0.0 <= info["feature_freshness_seconds"] < 60 and info["products_cached"] > 100


async def test_not_ready_without_a_model_but_recommend_still_answers_from_popularity(shop, settings):
    deps = make_dependencies(shop, models=DictModelProvider({}))
    async with running_service(settings, deps, wait_ready=False) as svc:
        await asyncio.sleep(0.2)
        ready = await svc.client.get("/health/ready")
        response = await svc.client.get("/recommend", params={"user_id": shop.users_with_events(10)[0]})
        live = await svc.client.get("/health/live")
    assert ready.status_code == 503 and ready.json()["checks"]["model_loaded"] is False
    body = response.json()
    assert response.status_code == 200 and body["variant"] == "fallback" and body["degraded"] is True
    assert live.status_code == 200


async def test_not_ready_while_product_features_cannot_be_loaded(shop, settings):
    reader = InMemoryFeatureReader(shop.tables, fail=True)
    async with running_service(settings, make_dependencies(shop, reader=reader), wait_ready=False) as svc:
        await asyncio.sleep(0.2)
        ready = await svc.client.get("/health/ready")
    assert ready.status_code == 503 and ready.json()["checks"]["features_loaded"] is False


async def test_metrics_count_requests_by_endpoint_status_variant_and_reason(shop, settings):
    user = shop.users_with_events(10)[0]
    async with running_service(settings, make_dependencies(shop)) as svc:
        for _ in range(3):
            await svc.client.get("/recommend", params={"user_id": user, "k": 4})
        await svc.client.get("/recommend", params={"user_id": user, "k": 0})
        await svc.client.get("/health/live")
        text = (await svc.client.get("/metrics")).text
    assert _sample(text, "recsys_requests_total", {"endpoint": "recommend", "status": "200"}) == 3
    assert _sample(text, "recsys_requests_total", {"endpoint": "recommend", "status": "422"}) == 1
    assert _sample(text, "recsys_requests_total", {"endpoint": "health", "status": "200"}) == 1
    assert _sample(text, "recsys_request_latency_seconds_count", {"endpoint": "recommend", "variant": "champion"}) == 3
    assert _sample(text, "recsys_recommendations_total", {"variant": "champion", "degraded": "false"}) == 3
    assert _sample(text, "recsys_recommended_items_total", {"reason": "personalized"}) == 12
    assert _sample(text, "recsys_model_info", {"variant": "champion", "version": "1"}) == 1


async def test_unknown_path_is_a_json_404(shop, settings):
    async with running_service(settings, make_dependencies(shop)) as svc:
        response = await svc.client.get("/nope")
    assert response.status_code == 404 and response.json()["detail"] == "Not Found"


async def test_openapi_documents_every_endpoint(shop, settings):
    async with running_service(settings, make_dependencies(shop)) as svc:
        spec = (await svc.client.get("/openapi.json")).json()
    paths = spec["paths"]
    for path in (
        "/recommend",
        "/feedback",
        "/health/live",
        "/health/ready",
        "/model",
        "/metrics",
        "/admin/canary",
        "/admin/shadow",
        "/admin/reload",
    ):
        assert path in paths
    assert {"200", "413", "422", "503"} <= set(paths["/recommend"]["get"]["responses"])
    assert "401" in paths["/admin/reload"]["post"]["responses"]


async def test_requests_over_the_concurrency_limit_are_shed_with_503(shop, tmp_path):
    settings = make_settings(tmp_path, max_concurrency=2, feature_budget_ms=1000)
    reader = InMemoryFeatureReader(shop.tables)
    async with running_service(settings, make_dependencies(shop, reader=reader)) as svc:
        reader.delay_s = 0.3
        user = shop.users_with_events(10)[0]
        responses = await asyncio.gather(*(svc.client.get("/recommend", params={"user_id": user}) for _ in range(6)))
        live = await svc.client.get("/health/live")
    codes = sorted(r.status_code for r in responses)
    assert codes == [200, 200, 503, 503, 503, 503]
    shed = next(r for r in responses if r.status_code == 503)
    assert shed.headers["retry-after"] == "1" and "overloaded" in shed.json()["detail"]
    assert live.status_code == 200


async def test_recommend_is_503_while_the_service_is_still_loading(shop, settings):
    import threading

    release = threading.Event()

    def slow_factory(_settings):
        release.wait(5)
        return make_dependencies(shop)

    import httpx

    from zadanie4.app import create_app

    app = create_app(settings, dependencies_factory=slow_factory)
    transport = httpx.ASGITransport(app=app)
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        early = await client.get("/recommend", params={"user_id": 1})
        live = await client.get("/health/live")
        release.set()
        assert await app.state.runtime.wait_ready(10)
        later = await client.get("/recommend", params={"user_id": 1})
    assert early.status_code == 503 and early.headers["retry-after"] == "1"
    assert live.status_code == 200 and later.status_code == 200


async def test_get_recommend_accepts_repeated_context_parameters(shop, settings):
    user = shop.users_with_events(10)[2]
    async with running_service(settings, make_dependencies(shop)) as svc:
        first = (await svc.client.get("/recommend", params={"user_id": user, "k": 4})).json()
        hidden = [item["product_id"] for item in first["items"][:2]]
        response = await svc.client.get(
            "/recommend",
            params={"user_id": user, "k": 4, "exclude_product_ids": hidden, "session_product_ids": hidden[:1]},
        )
        too_many = await svc.client.get("/recommend", params={"user_id": user, "exclude_product_ids": list(range(201))})
    assert response.status_code == 200
    assert not {item["product_id"] for item in response.json()["items"]} & set(hidden)
    assert too_many.status_code == 422 and "exclude_product_ids" in too_many.json()["detail"]
