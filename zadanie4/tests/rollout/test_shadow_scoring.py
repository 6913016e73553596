"""Shadow scoring never changes a response nor its latency, and reports overlap@k and latency."""

from __future__ import annotations

import asyncio
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from zadanie4.observability.prometheus_metrics import create_metrics
from zadanie4.rollout.shadow_scorer import ShadowJob, ShadowScorer, overlap_at_k
from zadanie4.tests.conftest import admin_headers, make_settings, running_service
from zadanie4.tests.service_fakes import DictModelProvider, LinearRanker, make_dependencies, model

pytestmark = pytest.mark.anyio


def _value(text: str, name: str, labels: dict[str, str] | None = None) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in (labels or {}).items()):
                return sample.value
    raise AssertionError(name)


def test_overlap_at_k_counts_shared_items_of_the_top_k():
    assert overlap_at_k([1, 2, 3, 4], [4, 3, 9, 8], 4) == 0.5
    assert overlap_at_k([1, 2], [1, 2, 3], 2) == 1.0
    assert overlap_at_k([1, 2], [3, 4], 2) == 0.0
    assert overlap_at_k([], [], 0) == 1.0


def test_full_queue_drops_jobs_instead_of_blocking():
    metrics = create_metrics()
    scorer = ShadowScorer(lambda job: [1], metrics, max_queue=2)  # worker not started: the queue fills
    job = ShadowJob(1, 3, (1, 2, 3), None, None)
    started = time.perf_counter()
    accepted = [scorer.submit(job) for _ in range(5)]
    assert time.perf_counter() - started < 0.05
    assert accepted == [True, True, False, False, False]
    assert _value(metrics.render()[0].decode(), "recsys_shadow_requests_total", {"result": "dropped"}) == 3


async def _serve(shop, settings, challenger_ranker, shadow: bool, users):
    models = DictModelProvider({"champion": model("1"), "challenger": model("2", ranker=challenger_ranker)})
    settings = settings.model_copy(update={"shadow_enabled": shadow})
    async with running_service(settings, make_dependencies(shop, models=models)) as svc:
        started = time.perf_counter()
        bodies = []
        for user in users:
            body = (await svc.client.get("/recommend", params={"user_id": user, "k": 8})).json()
            bodies.append((body["variant"], body["model_version"], body["items"]))
        elapsed = time.perf_counter() - started
        deadline = time.monotonic() + 5
        while shadow and svc.runtime.shadow.completed == 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        metrics = (await svc.client.get("/metrics")).text
    return bodies, elapsed, metrics


@pytest.mark.parametrize("misbehaviour", ["raises", "sleeps_2s"])
async def test_misbehaving_challenger_changes_no_response_and_adds_no_latency(shop, tmp_path, misbehaviour):
    users = [*shop.users_with_events(3)[:20], shop.unknown_user()]
    settings = make_settings(tmp_path, shadow_queue_size=4)
    bad = LinearRanker(9, fail=True) if misbehaviour == "raises" else LinearRanker(9, sleep_s=2.0)
    baseline, base_time, _ = await _serve(shop, settings, LinearRanker(9), False, users)
    shadowed, shadow_time, metrics = await _serve(shop, settings, bad, True, users)
    assert shadowed == baseline
    assert {variant for variant, _, _ in shadowed} == {"champion"}
    # 21 requests with a 2 s challenger: any waiting on it would add >= 2 s
    assert shadow_time < base_time + 0.5
    if misbehaviour == "raises":
        assert _value(metrics, "recsys_shadow_requests_total", {"result": "error"}) >= 1
    else:
        assert _value(metrics, "recsys_shadow_requests_total", {"result": "dropped"}) >= 1


async def test_shadow_records_overlap_and_latency_of_a_working_challenger(shop, settings):
    users = shop.users_with_events(10)[:10]
    _, _, metrics = await _serve(shop, settings, LinearRanker(0), True, users)
    # same weights as the champion -> identical lists -> overlap 1.0
    scored = _value(metrics, "recsys_shadow_requests_total", {"result": "scored"})
    assert scored >= 1
    assert _value(metrics, "recsys_shadow_overlap_ratio_sum") == pytest.approx(scored)
    assert _value(metrics, "recsys_shadow_latency_seconds_count") == scored


async def test_only_the_sampled_share_of_champion_requests_is_shadowed(shop, tmp_path):
    # Given shadow scoring of a 20 % sample, when 300 champion requests are served
    settings = make_settings(tmp_path, shadow_sample_rate=0.2, shadow_queue_size=1000)
    users = shop.users_with_events(3)[:30] * 10
    _, _, metrics = await _serve(shop, settings, LinearRanker(0), True, users)
    # then about 60 went to the challenger (binomial sd ~7), not all 300
    shadowed = sum(
        _value(metrics, "recsys_shadow_requests_total", {"result": result}) for result in ("scored", "error", "dropped")
    )
    assert 25 <= shadowed <= 100


def test_the_shadow_worker_waits_for_a_moment_without_live_requests():
    # Given a scorer whose service is busy serving
    busy = [True]
    scorer = ShadowScorer(lambda job: [1, 2, 3], create_metrics(), busy=lambda: busy[0])
    scorer.start()
    try:
        # when a job is queued, it is not scored while requests are in flight
        scorer.submit(ShadowJob(1, 3, (1, 2, 3), None, None))
        time.sleep(0.1)
        assert scorer.completed == 0
        # then it is scored as soon as the service is idle
        busy[0] = False
        deadline = time.monotonic() + 2
        while scorer.completed == 0 and time.monotonic() < deadline:
            time.sleep(0.005)
        assert scorer.completed == 1
    finally:
        scorer.stop()


def test_a_failing_challenger_logs_one_traceback_and_counts_every_failure(caplog):
    # Given a challenger that fails on every job
    metrics = create_metrics()

    def fail(job):
        raise RuntimeError("broken challenger")

    scorer = ShadowScorer(fail, metrics)
    scorer.start()
    try:
        # When 20 jobs are scored
        with caplog.at_level("WARNING", logger="zadanie4.rollout.shadow_scorer"):
            for _ in range(20):
                scorer.submit(ShadowJob(1, 3, (1, 2, 3), None, None))
            deadline = time.monotonic() + 5
            while scorer.completed < 20 and time.monotonic() < deadline:
                time.sleep(0.01)
    finally:
        scorer.stop()
    # Then every failure is counted, and only the first one is logged with its traceback
    assert scorer.completed == 20
    from prometheus_client import generate_latest

    text = generate_latest(metrics.registry).decode()
    assert _value(text, "recsys_shadow_requests_total", {"result": "error"}) == 20
    failures = [r for r in caplog.records if "shadow scoring failed" in r.getMessage()]
    assert len(failures) == 1 and failures[0].exc_info is not None


def test_discarding_drops_the_queued_jobs_and_counts_them():
    # Given three jobs waiting (worker not started)
    metrics = create_metrics()
    scorer = ShadowScorer(lambda job: [1], metrics, max_queue=8)
    for _ in range(3):
        scorer.submit(ShadowJob(1, 3, (1, 2, 3), None, None))
    # When the queue is discarded
    discarded = scorer.discard_queued()
    # Then nothing waits any more and the three are counted as dropped
    assert discarded == 3
    assert scorer.queue_size == 0
    assert _value(metrics.render()[0].decode(), "recsys_shadow_requests_total", {"result": "dropped"}) == 3
    assert scorer.discard_queued() == 0


async def test_turning_the_shadow_off_stops_a_slow_challengers_backlog(shop, tmp_path):
    # Given a 0.5 s challenger with a backlog of shadow jobs
    settings = make_settings(tmp_path, shadow_enabled=True, shadow_sample_rate=1.0, shadow_queue_size=50)
    slow = LinearRanker(9, sleep_s=0.5)
    models = DictModelProvider({"champion": model("1"), "challenger": model("2", ranker=slow)})
    async with running_service(settings, make_dependencies(shop, models=models)) as svc:
        for user in shop.users_with_events(3)[:10]:
            assert (await svc.client.get("/recommend", params={"user_id": user, "k": 5})).status_code == 200
        assert svc.runtime.shadow.queue_size > 0
        # When the operator turns the shadow off
        response = await svc.client.post("/admin/shadow", json={"enabled": False}, headers=admin_headers())
        assert response.status_code == 200
        # Then no job waits, and the challenger scores at most the one it was on
        assert svc.runtime.shadow.queue_size == 0
        calls_at_off = slow.calls
        await asyncio.sleep(1.2)
        assert slow.calls <= calls_at_off + 1
