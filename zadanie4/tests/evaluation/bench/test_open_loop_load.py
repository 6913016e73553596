"""The load generator against a tiny local HTTP server: counts, status labels, markers, timeouts.

Only outcomes are asserted (how many requests, which statuses), never how long anything took.
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from zadanie4.evaluation.bench.open_loop_load import RequestSpec, collector_paused, run_closed_loop, run_open_loop


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        if self.path == "/slow":
            time.sleep(1.0)
        status, body = {
            "/ok": (200, b'{"degraded":false}'),
            "/degraded": (200, b'{"degraded":true}'),
            "/fail": (500, b"{}"),
            "/slow": (200, b"{}"),
        }.get(self.path, (404, b"{}"))
        self.send_response(status)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _spec(base_url: str, path: str) -> RequestSpec:
    return RequestSpec("GET", base_url + path, marker=b'"degraded":true', marker_label="degraded")


def test_open_loop_sends_the_scheduled_number_of_requests_and_labels_each_answer(base_url: str) -> None:
    # given three kinds of answers, cycled
    specs = [_spec(base_url, "/ok"), _spec(base_url, "/degraded"), _spec(base_url, "/fail")]
    # when 30 requests are scheduled (100/s for 0.3 s)
    result = run_open_loop(specs, 100.0, 0.3, timeout_s=5.0, prime=0)
    # then every one is accounted for; marked bodies keep their 2xx status, 5xx are errors
    assert len(result.latencies_s) == 30
    assert result.status_counts == {"200": 10, "200 degraded": 10, "500": 10}
    assert result.errors == 10
    summary = result.summary()
    assert summary["requests"] == 30 and summary["errors"] == 10
    assert summary["rate_rps"] == 100.0 and summary["concurrency"] is None


def test_requests_unanswered_at_their_deadline_count_as_timeouts(base_url: str) -> None:
    # given a server that answers after 1 s and a 0.2 s deadline
    result = run_open_loop([_spec(base_url, "/slow")], 20.0, 0.1, timeout_s=0.2, prime=0, drain_s=3.0)
    # then both scheduled requests are timeouts, timed from their due time up to the deadline or beyond
    assert result.status_counts == {"timeout": 2}
    assert result.errors == 2
    # (the client's timer may fire a few tens of microseconds early: seen 0.19997 s in CI)
    assert (result.latencies_s >= 0.2 - 0.001).all()


def test_closed_loop_counts_every_answer_of_every_connection(base_url: str) -> None:
    result = run_closed_loop([_spec(base_url, "/ok")], concurrency=2, duration_s=0.2, prime=0)
    assert result.rate_rps is None and result.concurrency == 2
    assert len(result.latencies_s) >= 2 and result.errors == 0
    assert set(result.status_counts) == {"200"}
    assert len(result.send_lags_s) == 0


def test_unreachable_targets_are_errors_not_exceptions() -> None:
    result = run_open_loop([RequestSpec("GET", "http://127.0.0.1:9/x")], 50.0, 0.1, timeout_s=1.0, prime=0)
    assert result.errors == len(result.latencies_s) == 5
    assert "timeout" not in result.status_counts


def test_invalid_steps_are_refused() -> None:
    with pytest.raises(ValueError):
        run_open_loop([], 10.0, 1.0)
    with pytest.raises(ValueError):
        run_closed_loop([RequestSpec("GET", "http://127.0.0.1:9/")], 0, 1.0)


def test_a_nested_collector_pause_keeps_the_outer_one():
    # Given a scenario paused around a load step that pauses too
    assert gc.isenabled()
    with collector_paused():
        with collector_paused():
            assert not gc.isenabled()
        # then the step's end leaves the collector off for the rest of the scenario
        assert not gc.isenabled()
    assert gc.isenabled()
