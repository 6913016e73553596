"""Fast variant of the feedback durability scenario: a real ``recsys serve`` process SIGKILLed twice.

The service runs without models (an empty artifacts folder: it never becomes ready) because
``/feedback`` is answered from the moment the process listens; the feedback log is the SQLite file
(WAL, synchronous=FULL) or a stream in a dedicated password-protected redis-server.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from zadanie4.evaluation.bench.serving_setup import env_with
from zadanie4.evaluation.reliability import scenarios_inputs as si
from zadanie4.evaluation.reliability.harness import RedisServer, ServiceProcess, base_env

EVENTS = 2_000


def _service(tmp_path: Path, **env: str) -> ServiceProcess:
    environment = env_with(
        {
            "RECSYS_SERVE_ARTIFACTS_DIR": str(tmp_path / "no-artifacts"),
            "RECSYS_SERVE_REALTIME_UPDATES": "false",
            **env,
        },
        base_env(),
    )
    return ServiceProcess(environment, tmp_path / "service.log", name="durability test service")


@pytest.fixture
def inputs_redis() -> Iterator[RedisServer]:
    server = RedisServer(password="durability-test-password")
    server.start()
    yield server
    server.close()


def _assert_exactly_once(figures: dict[str, object]) -> None:
    assert figures["kills"] == 2 and figures["restarts"] == 2
    assert figures["acknowledged"] == EVENTS
    assert figures["stored"] == figures["stored_unique"] == EVENTS
    assert figures["lost"] == 0 and figures["duplicates"] == 0 and figures["stored_not_acknowledged"] == 0


def test_sqlite_log_keeps_every_acknowledged_event_once_across_two_sigkills(tmp_path):
    # Given the service on its SQLite feedback log
    db = tmp_path / "feedback.db"
    service = _service(tmp_path, RECSYS_SERVE_FEEDBACK_SQLITE_PATH=str(db))
    service.start(wait_ready=False)
    try:
        # when 2,000 events are posted by 4 clients (retrying until acknowledged) while it is SIGKILLed twice
        run, stored, figures = si.run_feedback_durability(
            service,
            lambda: si.StoredEvents("sqlite", si.read_sqlite_log(db)),
            events=EVENTS,
            batch=25,
            workers=4,
            kills=2,
            limit_s=120,
        )
    finally:
        service.stop()
    # then the file holds exactly the acknowledged events, each once
    _assert_exactly_once(figures)
    assert set(stored.event_ids) == run.acked
    # and the clients did see the kills (refused connections), so the retries were exercised
    assert run.statuses.get("error", 0) > 0


def test_redis_stream_keeps_every_acknowledged_event_once_across_two_sigkills(tmp_path, inputs_redis):
    # Given the service on a stream of a password-protected Redis
    stream = "inputs-test:feedback"
    service = _service(
        tmp_path, RECSYS_SERVE_REDIS_URL=inputs_redis.url(), RECSYS_SERVE_FEEDBACK_STREAM=stream, REDIS_URL=""
    )
    service.start(wait_ready=False)
    client = inputs_redis.client()
    try:
        # when the same run happens
        run, stored, figures = si.run_feedback_durability(
            service,
            lambda: si.StoredEvents("redis", si.read_redis_stream(client, stream, chunk=500)),
            events=EVENTS,
            batch=25,
            workers=4,
            kills=2,
            limit_s=120,
        )
    finally:
        service.stop()
        client.close()
    # then the stream holds exactly the acknowledged events, each once
    _assert_exactly_once(figures)
    assert set(stored.event_ids) == run.acked


def test_durability_result_fails_on_a_lost_or_duplicated_event():
    # Given figures of two runs: one clean, one that lost an event and stored another twice
    clean = {
        "events": 10,
        "acknowledged": 10,
        "stored_unique": 10,
        "stored_not_acknowledged": 0,
        "lost": 0,
        "duplicates": 0,
        "kills": 2,
    }
    broken = {**clean, "stored_unique": 9, "lost": 1, "duplicates": 1}
    # then the scenario passes only on the clean one, and names the failed checks
    assert si.durability_result({"sqlite": (si.DurabilityRun(), clean)}, kills=2).passed
    result = si.durability_result({"redis": (si.DurabilityRun(), broken)}, kills=2)
    assert not result.passed
    failed = {name for name, ok in result.details["checks"].items() if not ok}
    assert failed == {"redis_stored_equals_acknowledged", "redis_0_lost", "redis_0_duplicates"}
