"""POST /feedback: idempotent by event_id, durable across restarts (SQLite and Redis), feeds CTR and hooks."""

from __future__ import annotations

import threading
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from zadanie4.feedback.feedback_log import RedisFeedbackLog, SqliteFeedbackLog, new_recommendation_id, variant_of
from zadanie4.tests.conftest import make_settings, running_service
from zadanie4.tests.service_fakes import make_dependencies

pytestmark = pytest.mark.anyio
TEST_REDIS = "redis://127.0.0.1:6379/12"  # zadanie4's test db index (CONTRACTS.md)


def _value(text: str, name: str, labels: dict[str, str]) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    raise AssertionError(name)


def _event(event_id: str, event_type: str = "click", recommendation_id: str | None = None, **extra):
    return {
        "event_id": event_id,
        "user_id": 11,
        "product_id": 1001,
        "event_type": event_type,
        "recommendation_id": recommendation_id,
        **extra,
    }


async def test_single_event_and_batch_are_acknowledged_with_per_event_status(shop, settings):
    async with running_service(settings, make_dependencies(shop)) as svc:
        single = await svc.client.post("/feedback", json=_event("a1", timestamp="2026-11-01T10:00:00+02:00"))
        batch = await svc.client.post("/feedback", json=[_event("a1"), _event("b2", "impression"), _event("b2")])
    assert single.status_code == 200
    assert single.json() == {"stored": 1, "duplicates": 0, "results": [{"event_id": "a1", "status": "stored"}]}
    assert batch.json() == {
        "stored": 1,
        "duplicates": 2,
        "results": [
            {"event_id": "a1", "status": "duplicate"},
            {"event_id": "b2", "status": "stored"},
            {"event_id": "b2", "status": "duplicate"},
        ],
    }
    stored = SqliteFeedbackLog(settings.resolved_feedback_sqlite_path).read_all()
    assert [(r.event_id, r.event_type) for r in stored] == [("a1", "click"), ("b2", "impression")]
    assert stored[0].timestamp == "2026-11-01T08:00:00+00:00"  # normalised to UTC


@pytest.mark.parametrize(
    "body",
    [
        _event("x", event_type="view"),
        {"event_id": "x", "user_id": 1, "event_type": "click"},
        _event(""),
        _event("x", user_id=-5),
        _event("x", extra_field=1),
        [],
    ],
)
async def test_invalid_feedback_is_422(shop, settings, body):
    async with running_service(settings, make_dependencies(shop)) as svc:
        response = await svc.client.post("/feedback", json=body)
    assert response.status_code == 422 and response.json()["detail"]


async def test_batches_over_the_limit_are_refused(shop, tmp_path):
    settings = make_settings(tmp_path, max_feedback_batch=5)
    async with running_service(settings, make_dependencies(shop)) as svc:
        response = await svc.client.post("/feedback", json=[_event(f"e{i}") for i in range(6)])
    assert response.status_code == 422 and "at most 5 events" in response.json()["detail"]


async def test_sqlite_log_keeps_events_across_a_restart_and_stays_idempotent(shop, settings):
    async with running_service(settings, make_dependencies(shop)) as svc:
        first = await svc.client.post("/feedback", json=[_event(f"e{i}") for i in range(50)])
    assert first.json()["stored"] == 50
    # a new app instance on the same file (as after a crash + restart)
    async with running_service(settings, make_dependencies(shop)) as svc:
        again = await svc.client.post("/feedback", json=[_event(f"e{i}") for i in range(45, 55)])
    assert again.json()["stored"] == 5 and again.json()["duplicates"] == 5
    log = SqliteFeedbackLog(settings.resolved_feedback_sqlite_path)
    assert log.count() == 55 and len({r.event_id for r in log.read_all()}) == 55
    log.close()


def test_sqlite_log_is_idempotent_under_concurrent_writers(tmp_path):
    from zadanie4.feedback.feedback_recorder import feedback_records

    log = SqliteFeedbackLog(tmp_path / "f.db")
    records = feedback_records([_event(f"id{i % 100}") for i in range(400)])
    results: list[bool] = []

    def write(chunk):
        results.extend(log.append(chunk))

    threads = [threading.Thread(target=write, args=(records[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(results) == 100 and log.count() == 100


@pytest.fixture
def redis_db12():
    import redis

    client = redis.Redis.from_url(TEST_REDIS)
    try:
        client.ping()
    except redis.ConnectionError:
        pytest.skip("no Redis on 127.0.0.1:6379")
    client.flushdb()  # db 12 belongs to these tests only
    yield client
    client.flushdb()
    client.close()


@pytest.mark.redis
async def test_redis_stream_log_is_durable_across_restarts_and_idempotent(shop, tmp_path, redis_db12):
    settings = make_settings(tmp_path, redis_url=TEST_REDIS)
    async with running_service(settings, make_dependencies(shop)) as svc:
        assert svc.runtime.feedback.log.kind == "redis"
        first = await svc.client.post("/feedback", json=[_event(f"r{i}") for i in range(20)])
        dup = await svc.client.post("/feedback", json=_event("r3"))
    async with running_service(settings, make_dependencies(shop)) as svc:
        again = await svc.client.post("/feedback", json=[_event("r19"), _event("r20")])
    assert first.json()["stored"] == 20 and dup.json()["duplicates"] == 1
    assert again.json()["stored"] == 1 and again.json()["duplicates"] == 1
    log = RedisFeedbackLog(redis_db12)
    events = log.read_all()
    assert [e.event_id for e in events] == [f"r{i}" for i in range(21)]
    assert events[0].user_id == 11 and events[0].event_type == "click"
    assert redis_db12.ttl(f"{log.dedupe_prefix}r0") > 0  # ids are remembered with an expiry


async def test_clicks_and_impressions_are_counted_by_the_variant_of_their_recommendation(shop, settings):
    async with running_service(settings, make_dependencies(shop)) as svc:
        rec = (await svc.client.get("/recommend", params={"user_id": shop.users_with_events(10)[0]})).json()
        rid = rec["recommendation_id"]
        await svc.client.post(
            "/feedback",
            json=[
                _event("i1", "impression", rid),
                _event("i2", "impression", rid),
                _event("c1", "click", rid),
                _event("c1", "click", rid),
                _event("c2", "click", "not-ours"),
                _event("p1", "purchase", rid),
            ],
        )
        metrics = (await svc.client.get("/metrics")).text
    assert _value(metrics, "recsys_impressions_total", {"variant": "champion"}) == 2
    assert _value(metrics, "recsys_clicks_total", {"variant": "champion"}) == 1  # duplicate and unattributed not
    assert _value(metrics, "recsys_purchases_total", {"variant": "champion"}) == 1
    assert _value(metrics, "recsys_feedback_events_total", {"event_type": "click", "result": "stored"}) == 2
    assert _value(metrics, "recsys_feedback_events_total", {"event_type": "click", "result": "duplicate"}) == 1


def test_recommendation_ids_carry_their_variant():
    assert variant_of(new_recommendation_id("challenger")) == "challenger"
    assert variant_of("fallback-abc") == "fallback"
    assert variant_of("champion") is None and variant_of("other-abc") is None and variant_of(None) is None


async def test_stored_events_reach_the_realtime_hook_and_a_failing_hook_is_contained(shop, settings):
    received: list[dict] = []

    def hook(batch):
        received.extend(batch)
        raise RuntimeError("feature pusher down")

    async with running_service(settings, make_dependencies(shop, realtime_update=hook)) as svc:
        first = await svc.client.post("/feedback", json=[_event("h1"), _event("h2", "cart")])
        second = await svc.client.post("/feedback", json=[_event("h1"), _event("h3")])
        deadline = time.monotonic() + 2
        while len(received) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
    assert first.status_code == second.status_code == 200
    assert [e["event_id"] for e in received] == ["h1", "h2", "h3"]  # the duplicate is not pushed again
    assert received[1]["event_type"] == "cart" and received[0]["user_id"] == 11


async def test_feedback_is_accepted_while_models_are_still_loading(shop, settings):
    import threading as th

    release = th.Event()

    def slow_factory(_settings):
        release.wait(5)
        return make_dependencies(shop)

    import httpx

    from zadanie4.app import create_app

    app = create_app(settings, dependencies_factory=slow_factory)
    transport = httpx.ASGITransport(app=app)
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        response = await client.post("/feedback", json=_event("early"))
        release.set()
        await app.state.runtime.wait_ready(10)
    assert response.status_code == 200 and response.json()["stored"] == 1
