"""Input scenarios: API fuzzing, input limits, overload, admin auth and feedback durability (issue 10).

Each scenario is ``Callable[[Context], ScenarioResult]`` (listed in :data:`SCENARIOS`); the work is
done by a function that takes a base URL (or a :class:`ServiceProcess`) and sizes, so the fast test
variants run the same code against an in-process service with fake dependencies. Every criterion
is a boolean in ``details["checks"]`` (``passed`` = all of them); the tests assert the deterministic
ones (status codes, counts, state) and leave latency figures to the report.

* API fuzzing - the ``schemathesis`` CLI against ``/openapi.json`` with every check, the admin
  token given (so ``ignored_auth`` also probes the admin endpoints without it), on a service of its
  own (the fuzzer changes canary/shadow/products through the admin API).
* Input limits - oversized bodies (declared and chunked), ``k = 10**9``, invalid UTF-8, deeply
  nested and very wide JSON: each answered 413/422 within 100 ms, RSS growth < 50 MB.
* Overload - a closed-loop step measures the max throughput of /recommend, then a constant load at
  half of it gets a burst on top so that 5x the max is offered; the excess must get 429/503 fast,
  the process must live and the constant load be served normally after the burst.
* Admin auth - 1,000 requests with missing or wrong credentials spread over every ``/admin/*``
  operation of the OpenAPI schema: all 401/403, ``/model`` unchanged; a right token with an empty
  body then gets 422 (so the 401s came from the credentials, and nothing was changed).
* Feedback durability - 100,000 events posted in batches by concurrent clients that retry until
  acknowledged, while the service is killed with SIGKILL twice and restarted; then the store is
  read: every acknowledged event stored exactly once, nothing else stored.
"""

from __future__ import annotations

import asyncio
import json
import math
import multiprocessing
import os
import signal
import sqlite3
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson

from zadanie4.evaluation.bench.open_loop_load import RequestSpec, run_closed_loop
from zadanie4.evaluation.bench.serving_setup import executable
from zadanie4.evaluation.reliability.harness import (
    NO_ANSWER,
    ConstantLoad,
    Context,
    Sample,
    ServiceProcess,
    between,
    http_get,
    non_2xx,
    percentile_ms,
    recommend_urls,
)
from zadanie4.evaluation.reliability.report import ScenarioResult, failed_result

SHED_STATUSES = frozenset({429, 503})
AUTH_STATUSES = frozenset({401, 403})
LIMIT_BUDGET_MS = 100.0  # "413/422 within 100 ms"
RSS_BUDGET_MB = 50.0
MIN_FUZZ_CASES = 1000
FEEDBACK_TYPES = ("impression",) * 17 + ("click",) * 2 + ("cart", "purchase")  # mostly impressions, as in a shop
DURABILITY_USER_BASE = 10**15  # user ids no real user has: the real-time feature updates touch only these


@dataclass(frozen=True)
class InputProfile:
    """Sizes and durations (s) of the input scenarios; rates are derived from the measured throughput."""

    fuzz_max_examples: int
    fuzz_timeout_s: float
    limit_repeats: int
    overload_measure_s: float
    overload_before_s: float
    overload_burst_s: float
    overload_after_s: float
    auth_requests: int
    feedback_events: int
    feedback_batch: int
    feedback_workers: int
    feedback_kills: int


FULL = InputProfile(
    fuzz_max_examples=100,
    fuzz_timeout_s=420.0,
    limit_repeats=20,
    overload_measure_s=5.0,
    overload_before_s=3.0,
    overload_burst_s=5.0,
    overload_after_s=6.0,
    auth_requests=1000,
    feedback_events=100_000,
    feedback_batch=100,
    feedback_workers=8,
    feedback_kills=2,
)
QUICK = InputProfile(
    fuzz_max_examples=10,
    fuzz_timeout_s=180.0,
    limit_repeats=3,
    overload_measure_s=2.0,
    overload_before_s=1.0,
    overload_burst_s=2.0,
    overload_after_s=3.0,
    auth_requests=200,
    feedback_events=5_000,
    feedback_batch=50,
    feedback_workers=4,
    feedback_kills=2,
)


def profile(ctx: Context) -> InputProfile:
    return QUICK if ctx.quick else FULL


def _guarded(name: str, criterion: str, run: Callable[[], ScenarioResult]) -> ScenarioResult:
    """Run a scenario; an exception of its own becomes a failed result (the run goes on)."""
    try:
        return run()
    except Exception as exc:
        return failed_result(name, criterion, exc)


def _p99(latencies_ms: Sequence[float]) -> float | None:
    return float(np.percentile(np.asarray(latencies_ms), 99)) if len(latencies_ms) else None


def own_rss_mb() -> float:
    """Resident memory of this process in MiB (the in-process service of the fast tests)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def tcp_retransmission_timeouts() -> int | None:
    """The machine's count of TCP retransmission timeouts (``TCPTimeouts`` in /proc/net/netstat); None off Linux.

    A refused 10 MB upload that takes ~200 ms instead of ~10 ms is a segment lost on loopback (the kernel
    drops what a full receive buffer cannot take) and sent again after the 200 ms minimum timeout: the
    counter's growth over a probe tells such an outlier from a slow service.
    """
    try:
        lines = Path("/proc/net/netstat").read_text().splitlines()
    except OSError:
        return None
    for names, values in zip(lines[::2], lines[1::2], strict=False):
        if names.startswith("TcpExt:"):
            counters = dict(zip(names.split(), values.split(), strict=False))
            return int(counters["TCPTimeouts"]) if "TCPTimeouts" in counters else None
    return None


def request_counts(url: str) -> Counter[str]:
    """``recsys_requests_total`` of the service summed over endpoints: status code (text) -> count."""
    from prometheus_client.parser import text_string_to_metric_families

    status, body = http_get(url + "/metrics")
    counts: Counter[str] = Counter()
    if status != 200:
        return counts
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            if sample.name == "recsys_requests_total":
                counts[sample.labels.get("status", "?")] += int(sample.value)
    return counts


# --- API fuzzing ------------------------------------------------------------------------------------

API_FUZZING = "API fuzzing"
API_FUZZING_CRITERION = "schemathesis, all checks, >= 1,000 generated cases: 0 server errors, 0 schema violations"
SERVER_ERROR_TYPES = frozenset({"ServerError", "ContentTypeServerError"})
SCHEMA_VIOLATION_TYPES = frozenset(
    {
        "JsonSchemaError",
        "MalformedJson",
        "UndefinedStatusCode",
        "UndefinedContentType",
        "MissingContentType",
        "MalformedMediaType",
        "MissingHeaders",
        "ContentDeserializationError",
    }
)


def schemathesis_command(
    url: str, report_path: Path, *, admin_token: str | None, max_examples: int, seed: int
) -> list[str]:
    """``schemathesis run`` over the service's own OpenAPI schema with every check and a JSON report.

    The token is passed as a header (the report's command line shows it as ``[Filtered]``).
    """
    command = [
        executable("schemathesis"),
        "run",
        f"{url}/openapi.json",
        "--checks",
        "all",
        "--max-examples",
        str(max_examples),
        "--seed",
        str(seed),
        "--workers",
        "1",
        "--request-timeout",
        "10",
        "--report",
        "json",
        "--report-json-path",
        str(report_path),
        "--no-color",
    ]
    if admin_token:
        command += ["--header", f"Authorization: Bearer {admin_token}"]
    return command


def fuzz_api(
    url: str,
    out_dir: Path,
    *,
    admin_token: str | None,
    max_examples: int,
    seed: int = 20261128,
    min_cases: int = MIN_FUZZ_CASES,
    timeout_s: float = 420.0,
) -> ScenarioResult:
    """Run schemathesis against ``url``; figures from its JSON report, status counts from /metrics."""
    out_dir.mkdir(parents=True, exist_ok=True)
    report_path = out_dir / "schemathesis.json"
    report_path.unlink(missing_ok=True)
    before = request_counts(url)
    command = schemathesis_command(url, report_path, admin_token=admin_token, max_examples=max_examples, seed=seed)
    started = time.monotonic()
    env = {**os.environ, "SCHEMATHESIS_TELEMETRY": "false", "NO_COLOR": "1"}
    with (out_dir / "schemathesis.log").open("w") as log:
        completed = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=env, timeout=timeout_s)
    elapsed = time.monotonic() - started
    report = json.loads(report_path.read_text())
    statuses = request_counts(url) - before
    generated = int(report["test_cases"]["generated"])
    failures = report.get("failures", [])
    errors = report.get("errors", [])
    server_errors = sum(int(f["count"]) for f in failures if f["type"] in SERVER_ERROR_TYPES)
    schema_violations = sum(int(f["count"]) for f in failures if f["type"] in SCHEMA_VIOLATION_TYPES)
    checks = {
        "enough_cases": generated >= min_cases,
        "no_server_errors": server_errors == 0 and statuses_5xx(statuses) == 0,
        "no_schema_violations": schema_violations == 0,
        "no_other_failures": len(failures) == 0,
        "no_errors": len(errors) == 0 and bool(report.get("complete")),
    }
    return ScenarioResult(
        name=API_FUZZING,
        passed=all(checks.values()),
        criterion=API_FUZZING_CRITERION,
        requests=generated,
        non_2xx={code: n for code, n in statuses.items() if not code.startswith("2")},
        p99_ms={"before": None, "during": None, "after": None},
        details={
            "generated_cases": generated,
            "server_errors": server_errors,
            "schema_violations": schema_violations,
            "failures": [f"{f['code']} {f['title']} x{f['count']} ({', '.join(f['operations'])})" for f in failures],
            "errors": [f"{e['title']} x{e['count']}" for e in errors],
            "operations_tested": (report.get("operations") or {}).get("tested"),
            "phases": {k: v["status"] for k, v in (report.get("phases") or {}).items()},
            "schemathesis": report.get("schemathesis_version"),
            "seed": seed,
            "max_examples": max_examples,
            "exit_code": completed.returncode,
            "run_s": elapsed,
            "report": str(report_path),
            "checks": checks,
        },
    )


def statuses_5xx(counts: Mapping[str, int]) -> int:
    return sum(n for code, n in counts.items() if code.startswith("5"))


def api_fuzzing(ctx: Context) -> ScenarioResult:
    p = profile(ctx)

    def run() -> ScenarioResult:
        # Its own service: the fuzzer drives the admin API (canary, shadow, announced products).
        service = ctx.start_service("fuzz", {"RECSYS_SERVE_FEEDBACK_STREAM": "reliability:fuzz:feedback"})
        try:
            return fuzz_api(
                service.url,
                ctx.out_dir / "fuzz",
                admin_token=ctx.admin_token,
                max_examples=p.fuzz_max_examples,
                timeout_s=p.fuzz_timeout_s,
                min_cases=MIN_FUZZ_CASES if not ctx.quick else 100,
            )
        finally:
            service.stop()

    return _guarded(API_FUZZING, API_FUZZING_CRITERION, run)


# --- input limits -----------------------------------------------------------------------------------

INPUT_LIMITS = "Input limits"
INPUT_LIMITS_CRITERION = (
    "10 MB body, k=10^9, invalid UTF-8, deeply nested JSON (and wide JSON): 413/422 within 100 ms; RSS growth < 50 MB"
)
TEN_MB = 10 * 1024 * 1024
JSON_HEADERS = {"Content-Type": "application/json"}


@dataclass(frozen=True)
class BadInput:
    """One hostile request and the status it must get."""

    name: str
    method: str
    path: str
    expected: int
    body: bytes | None = None
    chunked: bool = False  # stream the body without Content-Length (the server must count the bytes)
    admin: bool = False  # send the right admin token (the limit must hold behind the auth check too)


def _nested(depth: int, inner: bytes = b"") -> bytes:
    return b"[" * depth + inner + b"]" * depth


def bad_inputs() -> list[BadInput]:
    """The hostile requests of the scenario (each well under a second to build)."""
    padding = b'{"user_id": 1, "k": 10, "pad": "' + b"a" * TEN_MB + b'"}'
    wide = b"{" + b",".join(b'"k%d": 1' % i for i in range(80_000)) + b"}"
    events = b",".join(
        b'{"event_id": "e%d", "user_id": 1, "product_id": 2, "event_type": "click"}' % i for i in range(3)
    )
    return [
        BadInput("body_10mb_declared", "POST", "/recommend", 413, padding),
        BadInput("body_10mb_chunked", "POST", "/feedback", 413, padding, chunked=True),
        BadInput("body_10mb_admin", "POST", "/admin/products", 413, padding, admin=True),
        BadInput("k_1e9_query", "GET", "/recommend?user_id=1&k=1000000000", 422),
        BadInput("k_1e9_body", "POST", "/recommend", 422, b'{"user_id": 1, "k": 1000000000}'),
        BadInput("k_5000_digits", "POST", "/recommend", 422, b'{"user_id": 1, "k": ' + b"9" * 5000 + b"}"),
        BadInput("utf8_invalid_body", "POST", "/recommend", 422, b'{"user_id": 1, "k": "\xff\xfe\xc3"}'),
        BadInput(
            "utf8_invalid_feedback",
            "POST",
            "/feedback",
            422,
            b'[{"event_id": "\xc3\x28\xa0", "user_id": 1, "product_id": 2, "event_type": "click"}, ' + events + b"]",
        ),
        BadInput("utf8_invalid_query", "GET", "/recommend?user_id=%FF%FE&k=1", 422),
        BadInput(
            "utf8_lone_surrogate",
            "POST",
            "/feedback",
            422,
            b'{"event_id": "\\ud800", "user_id": 1, "product_id": 2, "event_type": "click"}',
        ),
        BadInput("nested_arrays_100k", "POST", "/recommend", 422, _nested(100_000)),
        BadInput("nested_objects_50k", "POST", "/feedback", 422, b'{"a": ' * 50_000 + b"1" + b"}" * 50_000),
        BadInput(
            "nested_in_field_100k",
            "POST",
            "/recommend",
            422,
            b'{"user_id": 1, "session_product_ids": ' + _nested(100_000) + b"}",
        ),
        BadInput("wide_object_80k_keys", "POST", "/recommend", 422, wide),
        BadInput(
            "long_list_200k_ids",
            "POST",
            "/recommend",
            422,
            b'{"user_id": 1, "exclude_product_ids": [' + b",".join([b"7"] * 200_000) + b"]}",
        ),
    ]


def _chunks(body: bytes, size: int = 64 * 1024) -> Iterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


@dataclass(frozen=True)
class BadAnswer:
    """One bad request's status (0: the connection failed), latency and where the time went: sending the
    request (headers and body) and waiting for the answer's headers after it was sent (httpcore's trace)."""

    status: int
    ms: float
    send_ms: float | None = None
    wait_ms: float | None = None


def _send_bad(client: httpx.Client, case: BadInput, admin_token: str | None) -> BadAnswer:
    headers = dict(JSON_HEADERS) if case.body is not None else {}
    if case.admin and admin_token:
        headers["Authorization"] = f"Bearer {admin_token}"
    content: bytes | Iterator[bytes] | None = _chunks(case.body) if case.chunked and case.body else case.body
    marks: dict[str, float] = {}

    def trace(event: str, info: Mapping[str, Any]) -> None:  # "http11.send_request_body.complete", ...
        marks[event.partition(".")[2]] = time.perf_counter()

    started = time.perf_counter()
    try:
        response = client.request(case.method, case.path, content=content, headers=headers, extensions={"trace": trace})
        status = response.status_code
    except httpx.HTTPError:
        status = NO_ANSWER
    ms = (time.perf_counter() - started) * 1000
    sent = marks.get("send_request_body.complete") or marks.get("send_request_headers.complete")
    answered = marks.get("receive_response_headers.complete")
    return BadAnswer(
        status,
        ms,
        send_ms=None if sent is None else (sent - started) * 1000,
        wait_ms=None if sent is None or answered is None else (answered - sent) * 1000,
    )


def _normal_requests(client: httpx.Client, users: Sequence[int], n: int) -> list[tuple[int, float]]:
    out = []
    for i in range(n):
        started = time.perf_counter()
        try:
            status = client.get(f"/recommend?user_id={users[i % len(users)]}&k=10").status_code
        except httpx.HTTPError:
            status = NO_ANSWER
        out.append((status, (time.perf_counter() - started) * 1000))
    return out


def probe_input_limits(
    url: str,
    *,
    users: Sequence[int],
    repeats: int,
    rss_mb: Callable[[], float],
    admin_token: str | None,
    cases: Sequence[BadInput] | None = None,
) -> ScenarioResult:
    """Send every bad input ``repeats`` times (after one untimed round that warms the error paths up)."""
    cases = list(cases or bad_inputs())
    with httpx.Client(base_url=url, timeout=10.0) as client:
        for case in cases:  # first use of each error path (imports, caches): not timed
            _send_bad(client, case, admin_token)
        normal_before = _normal_requests(client, users, 50)
        rss_before = rss_mb()
        timeouts_before = tcp_retransmission_timeouts()
        per_case: dict[str, dict[str, Any]] = {}
        answers: list[BadAnswer] = []
        for case in cases:
            results = [_send_bad(client, case, admin_token) for _ in range(repeats)]
            answers += results
            slowest = max(results, key=lambda r: r.ms)
            per_case[case.name] = {
                "expected": case.expected,
                "statuses": dict(Counter(str(r.status) for r in results)),
                "max_ms": slowest.ms,
                # the slowest one's split: a slow send is the transport, a slow wait is the service
                "slowest_send_ms": slowest.send_ms,
                "slowest_wait_ms": slowest.wait_ms,
                "body_bytes": len(case.body or b""),
            }
        rss_after = rss_mb()
        timeouts_after = tcp_retransmission_timeouts()
        normal_after = _normal_requests(client, users, 50)
    wrong = {name: c["statuses"] for name, c in per_case.items() if set(c["statuses"]) != {str(c["expected"])}}
    slow = {name: round(c["max_ms"], 1) for name, c in per_case.items() if c["max_ms"] > LIMIT_BUDGET_MS}
    growth = rss_after - rss_before
    checks = {
        "expected_status": not wrong,
        "within_100ms": not slow,
        "rss_growth_below_50mb": growth < RSS_BUDGET_MB,
        "still_serving": all(s == 200 for s, _ in normal_after),
    }
    counts = Counter(str(a.status) for a in answers)
    return ScenarioResult(
        name=INPUT_LIMITS,
        passed=all(checks.values()),
        criterion=INPUT_LIMITS_CRITERION,
        requests=len(answers) + len(normal_before) + len(normal_after),
        non_2xx={**dict(counts), **non_2xx_pairs(normal_before + normal_after)},
        p99_ms={
            "before": _p99([ms for _, ms in normal_before]),
            "during": _p99([a.ms for a in answers]),
            "after": _p99([ms for _, ms in normal_after]),
        },
        details={
            "cases": len(cases),
            "repeats": repeats,
            "max_answer_ms": max(a.ms for a in answers),
            "rss_before_mb": rss_before,
            "rss_after_mb": rss_after,
            "rss_growth_mb": growth,
            "tcp_retransmission_timeouts": None
            if timeouts_before is None or timeouts_after is None
            else timeouts_after - timeouts_before,
            "wrong_status": wrong,
            "over_100ms": slow,
            "per_case": per_case,
            "checks": checks,
        },
    )


def non_2xx_pairs(answers: Sequence[tuple[int, float]]) -> dict[str, int]:
    counts = Counter("error" if s == NO_ANSWER else str(s) for s, _ in answers if not 200 <= s < 300)
    return dict(counts)


def input_limits(ctx: Context) -> ScenarioResult:
    p = profile(ctx)

    def run() -> ScenarioResult:
        # A service of its own straight on Redis: the shared one has been through every earlier scenario
        # and reads Redis through the delay proxy, a thread of this process beside the measuring client.
        target = ctx.start_service("input_limits")
        try:
            return probe_input_limits(
                target.url,
                users=ctx.warm_users[:200] or [1],
                repeats=p.limit_repeats,
                rss_mb=target.rss_mb,
                admin_token=ctx.admin_token,
            )
        finally:
            target.stop()

    return _guarded(INPUT_LIMITS, INPUT_LIMITS_CRITERION, run)


# --- overload ---------------------------------------------------------------------------------------

OVERLOAD = "Overload"
OVERLOAD_CRITERION = (
    "5x max throughput burst: the excess refused with 429/503 (p99 <= 100 ms) or answered degraded; "
    "p99 <= 1 s; every request answered 2xx/429/503; process alive; all 2xx again after the burst"
)
SHED_P99_BUDGET_MS = 100.0
BURST_P99_BUDGET_MS = 1000.0
EXCESS_SLACK = 2.0  # full answers during the burst may exceed the measured max by this factor (noise)
DEGRADED_MARKER = b'"degraded":true'


def overload_burst(
    url: str,
    urls: Sequence[str],
    *,
    measure_s: float,
    before_s: float,
    burst_s: float,
    after_s: float,
    factor: float = 5.0,
    measure_concurrency: Sequence[int] = (2, 4, 8),
    alive: Callable[[], bool] = lambda: True,
) -> ScenarioResult:
    """Measure the max throughput (closed loop at each of ``measure_concurrency``, ``measure_s`` in all),
    then offer ``factor`` x it for ``burst_s`` on top of a constant load at half of it that runs before,
    during and after the burst."""
    # The max throughput counts full (not degraded) answers: once the feature reads miss their budget
    # the service answers from the popularity fallback, which costs a fraction of a full answer, so
    # counting those would measure the overload itself. Too many connections make the reads queue past
    # their budget (mostly degraded answers), too few leave the service idle: the best level counts.
    specs = [RequestSpec("GET", u, marker=DEGRADED_MARKER, marker_label="degraded") for u in urls]
    steps = [run_closed_loop(specs, c, measure_s / len(measure_concurrency)) for c in measure_concurrency]
    full_rps = [st.status_counts.get("200", 0) / st.window_s if st.window_s > 0 else 0.0 for st in steps]
    best = max(range(len(steps)), key=lambda i: full_rps[i])
    step, max_rps = steps[best], full_rps[best]
    answered = step.status_counts.get("200", 0) + step.status_counts.get("200 degraded", 0)
    if max_rps <= 0:
        raise RuntimeError(f"the throughput steps got no full 2xx answer: {[st.status_counts for st in steps]}")
    base_rps = 0.5 * max_rps
    burst_rps = factor * max_rps - base_rps
    background = ConstantLoad(urls, base_rps, timeout_s=5.0, max_connections=256).start()
    time.sleep(before_s)
    burst = ConstantLoad(
        urls,
        burst_rps,
        timeout_s=5.0,
        max_connections=64,
        warm_url=url + "/health/live",
        max_requests=max(1, round(burst_rps * burst_s)),
    ).start()
    burst_start = burst.wait_started(30.0)
    burst_samples = burst.wait(burst_s + 30.0)
    burst_end = burst_start + burst_s
    time.sleep(max(0.0, burst_end + after_s - time.monotonic()))
    base_samples = background.stop()
    live_status, _ = http_get(url + "/health/live", timeout_s=5.0)

    base_during = between(base_samples, burst_start, burst_end)
    during = base_during + burst_samples
    full_during = sum(1 for s in during if s.ok and s.degraded is False)
    shed = [s for s in during if s.status in SHED_STATUSES]
    other_errors = [s for s in during if not s.ok and s.status not in SHED_STATUSES]
    after = between(base_samples, burst_end, None)
    recovery = _recovery_s(after, burst_end)
    last_second = [s for s in after if s.t_sent >= burst_end + after_s - 1.0]
    sent_span = (max(s.t_sent for s in burst_samples) - min(s.t_sent for s in burst_samples)) if burst_samples else 0.0
    achieved = (len(burst_samples) / sent_span) if sent_span > 0 else 0.0
    checks = {
        # the generator shares the machine with the service: below 70 % of the offered rate the burst
        # would not be the 5x it claims to be
        "generator_reached_offered_rate": achieved + base_rps >= 0.7 * factor * max_rps,
        # the excess is refused (429/503) or answered from the fallback: nothing waits in a queue for long
        "excess_refused_or_degraded": full_during <= EXCESS_SLACK * max_rps * burst_s + len(base_during),
        "refusals_fast": (percentile_ms(shed) or 0.0) <= SHED_P99_BUDGET_MS,
        "answers_within_1s": (percentile_ms(during) or 0.0) <= BURST_P99_BUDGET_MS,
        "every_request_answered_2xx_429_503": not other_errors,
        "process_alive": alive() and live_status == 200,
        "recovered": recovery is not None and all(s.ok for s in last_second) and bool(last_second),
    }
    samples = base_samples + burst_samples
    return ScenarioResult(
        name=OVERLOAD,
        passed=all(checks.values()),
        criterion=OVERLOAD_CRITERION,
        requests=len(samples),
        non_2xx=non_2xx(samples),
        p99_ms={
            "before": percentile_ms(between(base_samples, None, burst_start)),
            "during": percentile_ms(during),
            "after": percentile_ms(after),
        },
        recovery_s=recovery,
        details={
            "max_throughput_rps": max_rps,
            "max_throughput_connections": measure_concurrency[best],
            "full_rps_per_connections": {
                str(c): round(r, 1) for c, r in zip(measure_concurrency, full_rps, strict=True)
            },
            "offered_burst_rps": factor * max_rps,
            "achieved_send_rps": achieved + base_rps,
            "burst_send_lag_max_ms": burst.max_send_lag_ms,
            "burst_requests": len(burst_samples),
            "during_requests": len(during),
            "during_2xx": sum(1 for s in during if s.ok),
            "during_full_answers": full_during,
            "during_degraded": sum(1 for s in during if s.ok and s.degraded),
            "max_step_degraded_share": step.status_counts.get("200 degraded", 0) / answered if answered else 0.0,
            "shed": len(shed),
            "shed_share": len(shed) / len(during) if during else 0.0,
            "shed_p99_ms": percentile_ms(shed),
            "served_p99_during_ms": percentile_ms([s for s in during if s.ok]),
            "other_errors": dict(Counter("error" if s.status == NO_ANSWER else str(s.status) for s in other_errors)),
            "burst_timeline": burst_timeline(between(samples, burst_start - 1.0, burst_end + 1.0), burst_start),
            "checks": checks,
        },
    )


def burst_timeline(samples: Sequence[Sample], burst_start: float, step_s: float = 0.5) -> list[dict[str, Any]]:
    """Per ``step_s`` of send time from the burst's start: requests, refusals and the p99 of each kind
    (shows whether slow answers come at the onset, while the guard closes, or all along)."""
    buckets: dict[int, list[Sample]] = {}
    for s in samples:
        buckets.setdefault(math.floor((s.t_sent - burst_start) / step_s), []).append(s)
    rows = []
    for key in sorted(buckets):
        group = buckets[key]
        shed = [s for s in group if s.status in SHED_STATUSES]
        served = [s for s in group if s.ok]
        rows.append(
            {
                "from_s": round(key * step_s, 2),
                "requests": len(group),
                "shed": len(shed),
                "shed_p99_ms": round(percentile_ms(shed) or 0.0, 1),
                "served_p99_ms": round(percentile_ms(served) or 0.0, 1),
            }
        )
    return rows


def _recovery_s(after: Sequence[Sample], burst_end: float) -> float | None:
    """Seconds from the end of the burst to the send time from which every answer is 2xx; None if never."""
    ordered = sorted(after, key=lambda s: s.t_sent)
    last_bad = max((i for i, s in enumerate(ordered) if not s.ok), default=None)
    if last_bad is None:
        return 0.0
    if last_bad == len(ordered) - 1:
        return None
    return max(ordered[last_bad + 1].t_sent - burst_end, 0.0)


def overload(ctx: Context) -> ScenarioResult:
    p = profile(ctx)

    def run() -> ScenarioResult:
        # Its own service straight on Redis, and the load from a child process: the delay proxy of the
        # shared service and the generator in this process added their own delays to the figures.
        service = ctx.start_service("overload")
        users = [*ctx.warm_users[:400], *ctx.unknown_users[:100]] or [1]
        try:
            with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as child:
                result = child.submit(
                    overload_burst,
                    service.url,
                    recommend_urls(service.url, users),
                    measure_s=p.overload_measure_s,
                    before_s=p.overload_before_s,
                    burst_s=p.overload_burst_s,
                    after_s=p.overload_after_s,
                ).result()
            if not service.alive():  # checked from here too: the child only saw /health/live
                checks = result.details.get("checks")
                result.details["checks"] = {**(checks if isinstance(checks, dict) else {}), "process_alive": False}
                result.passed = False
            return result
        finally:
            service.stop()

    return _guarded(OVERLOAD, OVERLOAD_CRITERION, run)


# --- admin auth -------------------------------------------------------------------------------------

ADMIN_AUTH = "Admin auth"
ADMIN_AUTH_CRITERION = (
    "1,000 requests with missing/wrong tokens to every admin endpoint: 100 % 401/403; state unchanged"
)
VALID_ADMIN_BODIES: dict[str, object] = {
    "/admin/canary": {"weight": 0.5, "challenger": "popularity"},
    "/admin/shadow": {"enabled": True},
    "/admin/products": {"products": [{"product_id": 999_999_001, "category_id": 1, "price": 9.99}]},
}


def bad_credentials(token: str) -> list[tuple[str, dict[str, str], str]]:
    """(name, headers, query suffix) of credentials that must never open the admin API."""
    flipped = token[:-1] + ("A" if token[-1] != "A" else "B")
    swapped = token.swapcase() if token.swapcase() != token else token + "x"
    return [
        ("missing", {}, ""),
        ("empty_authorization", {"Authorization": ""}, ""),
        ("scheme_only", {"Authorization": "Bearer"}, ""),
        ("wrong_token", {"Authorization": "Bearer not-the-admin-token"}, ""),
        ("last_char_changed", {"Authorization": f"Bearer {flipped}"}, ""),
        ("prefix_of_token", {"Authorization": f"Bearer {token[: len(token) // 2]}"}, ""),
        ("token_plus_suffix", {"Authorization": f"Bearer {token}x"}, ""),
        ("case_swapped", {"Authorization": f"Bearer {swapped}"}, ""),
        ("no_scheme", {"Authorization": token}, ""),
        ("basic_scheme", {"Authorization": "Basic " + _b64(f"admin:{token}")}, ""),
        ("token_scheme", {"Authorization": f"Token {token}"}, ""),
        ("other_header", {"X-Admin-Token": token, "X-Api-Key": token}, ""),
        ("query_string", {}, f"?token={token}&access_token={token}"),
        ("cookie", {"Cookie": f"token={token}; admin_token={token}"}, ""),
        ("long_token", {"Authorization": "Bearer " + "x" * 8000}, ""),
    ]


def _b64(text: str) -> str:
    import base64

    return base64.b64encode(text.encode()).decode()


def admin_operations(url: str) -> list[tuple[str, str]]:
    """(method, path) of every ``/admin/*`` operation in the service's OpenAPI schema."""
    status, body = http_get(url + "/openapi.json")
    if status != 200:
        raise RuntimeError(f"GET /openapi.json -> {status}")
    paths = orjson.loads(body)["paths"]
    return sorted((method.upper(), path) for path, ops in paths.items() if path.startswith("/admin/") for method in ops)


def _state(client: httpx.Client) -> dict[str, Any]:
    model = client.get("/model").json()
    model.pop("feature_freshness_seconds", None)  # ages by itself
    return model


def probe_admin_auth(url: str, admin_token: str, *, total: int) -> ScenarioResult:
    """``total`` requests with bad credentials, round-robin over operations x credentials x bodies."""
    operations = admin_operations(url)
    credentials = bad_credentials(admin_token)
    answers: list[tuple[int, float]] = []
    by_credential: dict[str, Counter[str]] = {name: Counter() for name, _, _ in credentials}
    by_operation: dict[str, Counter[str]] = {f"{m} {p}": Counter() for m, p in operations}
    with httpx.Client(base_url=url, timeout=10.0) as client:
        state_before = _state(client)
        counts_before = request_counts(url)
        for i in range(total):
            method, path = operations[i % len(operations)]
            name, headers, query = credentials[(i // len(operations)) % len(credentials)]
            valid = VALID_ADMIN_BODIES.get(path)
            # Alternate a valid body (what an attacker wants to do) and a broken one (auth must come first).
            body = orjson.dumps(valid) if valid is not None and i % 2 == 0 else b'{"weight": "drop table'
            started = time.perf_counter()
            try:
                status = client.request(
                    method, path + query, content=body if method != "GET" else None, headers={**JSON_HEADERS, **headers}
                ).status_code
            except httpx.HTTPError:
                status = NO_ANSWER
            answers.append((status, (time.perf_counter() - started) * 1000))
            by_credential[name][str(status)] += 1
            by_operation[f"{method} {path}"][str(status)] += 1
        state_after = _state(client)
        counts_after = request_counts(url)
        # A right token with an empty body: 422 proves the token is accepted, and it changes nothing.
        control = {
            f"{m} {p}": client.request(
                m, p, content=b"{}", headers={**JSON_HEADERS, "Authorization": f"Bearer {admin_token}"}
            ).status_code
            for m, p in operations
            if p in VALID_ADMIN_BODIES
        }
        state_final = _state(client)
    refused = sum(1 for s, _ in answers if s in AUTH_STATUSES)
    checks = {
        "all_refused_401_403": refused == len(answers),
        "state_unchanged": state_before == state_after == state_final,
        "right_token_accepted": bool(control) and all(s == 422 for s in control.values()),
        "server_counted_them": (counts_after - counts_before).get("401", 0) >= refused,
    }
    return ScenarioResult(
        name=ADMIN_AUTH,
        passed=all(checks.values()),
        criterion=ADMIN_AUTH_CRITERION,
        requests=len(answers),
        non_2xx=non_2xx_pairs(answers),
        p99_ms={"before": None, "during": _p99([ms for _, ms in answers]), "after": None},
        details={
            "operations": [f"{m} {p}" for m, p in operations],
            "credential_variants": len(credentials),
            "refused": refused,
            "refused_share": refused / len(answers) if answers else 0.0,
            "by_credential": {k: dict(v) for k, v in by_credential.items()},
            "by_operation": {k: dict(v) for k, v in by_operation.items()},
            "right_token_empty_body": control,
            "checks": checks,
        },
    )


def admin_auth(ctx: Context) -> ScenarioResult:
    p = profile(ctx)
    return _guarded(
        ADMIN_AUTH,
        ADMIN_AUTH_CRITERION,
        lambda: probe_admin_auth(ctx.main().url, ctx.admin_token, total=p.auth_requests),
    )


# --- feedback durability ----------------------------------------------------------------------------

FEEDBACK_DURABILITY = "Feedback durability"
FEEDBACK_DURABILITY_CRITERION = (
    "100,000 events, service SIGKILLed twice and restarted: stored == acknowledged (2xx); 0 lost, 0 duplicates"
)


@dataclass
class DurabilityRun:
    """What the clients saw: acknowledged ids, answers, kill times and the first 2xx after each kill."""

    acked: set[str] = field(default_factory=set)
    ack_status: Counter[str] = field(default_factory=Counter)  # "stored" / "duplicate" per acknowledged event
    statuses: Counter[str] = field(default_factory=Counter)
    latencies_ms: list[tuple[float, float, int]] = field(default_factory=list)  # (sent, ms, status)
    kills: list[float] = field(default_factory=list)
    first_ok_after_kill: list[float | None] = field(default_factory=list)
    requests: int = 0
    gave_up: int = 0


def feedback_event(run_id: str, i: int) -> dict[str, object]:
    """Event ``i`` of a run: unique id, a user no real user has, a product and a type."""
    return {
        "event_id": f"{run_id}-{i:07d}",
        "user_id": DURABILITY_USER_BASE + i % 997,
        "product_id": 1_000_000 + i % 5003,
        "event_type": FEEDBACK_TYPES[i % len(FEEDBACK_TYPES)],
        "recommendation_id": f"champion-{i % 4099:020x}",
    }


async def _post_until_acked(
    session: Any, url: str, body: bytes, run: DurabilityRun, deadline: float, timeout_s: float
) -> None:
    """POST one batch until a 2xx answer (the same event ids every time: retries are idempotent)."""
    import aiohttp

    while time.monotonic() < deadline:
        sent = time.monotonic()
        status, payload = NO_ANSWER, b""
        try:
            async with session.post(
                url, data=body, headers=JSON_HEADERS, timeout=aiohttp.ClientTimeout(total=timeout_s)
            ) as response:
                payload = await response.read()
                status = response.status
        except (TimeoutError, aiohttp.ClientError, OSError):
            status = NO_ANSWER
        run.requests += 1
        run.statuses["error" if status == NO_ANSWER else str(status)] += 1
        run.latencies_ms.append((sent, (time.monotonic() - sent) * 1000, status))
        if 200 <= status < 300:
            for result in orjson.loads(payload)["results"]:
                run.acked.add(result["event_id"])
                run.ack_status[result["status"]] += 1
            for k, killed_at in enumerate(run.kills):
                if run.first_ok_after_kill[k] is None and sent >= killed_at:
                    run.first_ok_after_kill[k] = time.monotonic() - killed_at
            return
        await asyncio.sleep(0.05)  # refused while restarting, or 503: back off a little and retry
    run.gave_up += 1


async def _drive_feedback(
    service: ServiceProcess,
    batches: Sequence[bytes],
    *,
    total_events: int,
    workers: int,
    kills: int,
    limit_s: float,
    timeout_s: float = 10.0,
) -> DurabilityRun:
    import aiohttp

    run = DurabilityRun()
    deadline = time.monotonic() + limit_s
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for body in batches:
        queue.put_nowait(body)
    url = service.url + "/feedback"
    loop = asyncio.get_running_loop()

    async def worker(session: Any) -> None:
        while not queue.empty():
            body = queue.get_nowait()
            await _post_until_acked(session, url, body, run, deadline, timeout_s)

    async def killer() -> None:
        for k in range(kills):
            threshold = total_events * (k + 1) / (kills + 1)
            while len(run.acked) < threshold and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            await loop.run_in_executor(None, service.kill, signal.SIGKILL)
            run.kills.append(time.monotonic())
            run.first_ok_after_kill.append(None)
            await loop.run_in_executor(None, lambda: service.start(wait_ready=False))

    connector = aiohttp.TCPConnector(limit=workers * 2)
    async with aiohttp.ClientSession(connector=connector, trust_env=False) as session:
        await asyncio.gather(killer(), *(worker(session) for _ in range(workers)))
    return run


@dataclass(frozen=True)
class StoredEvents:
    """The feedback store's content after the run: event ids as stored (duplicates kept)."""

    backend: str
    event_ids: list[str]


def read_redis_stream(client: Any, stream: str, chunk: int = 10_000) -> list[str]:
    """Every ``event_id`` of a Redis feedback stream, in stream order."""
    ids: list[str] = []
    start = "-"
    while True:
        entries = client.xrange(stream, min=start, max="+", count=chunk)
        if not entries:
            return ids
        for _, fields in entries:
            ids.append(fields[b"event_id"].decode())
        last = entries[-1][0].decode()
        start = "(" + last
        if len(entries) < chunk:
            return ids


def read_sqlite_log(path: Path) -> list[str]:
    """Every ``event_id`` of a SQLite feedback log (read-only)."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return [row[0] for row in db.execute("SELECT event_id FROM feedback ORDER BY seq")]
    finally:
        db.close()


def run_feedback_durability(
    service: ServiceProcess,
    read_store: Callable[[], StoredEvents],
    *,
    events: int,
    batch: int,
    workers: int,
    kills: int,
    limit_s: float = 600.0,
    run_id: str | None = None,
) -> tuple[DurabilityRun, StoredEvents, dict[str, Any]]:
    """Post ``events`` (batches of ``batch``) through a service SIGKILLed ``kills`` times; compare with the store."""
    run_id = run_id or f"dur-{uuid.uuid4().hex[:10]}"
    payloads = [feedback_event(run_id, i) for i in range(events)]
    batches = [orjson.dumps(payloads[i : i + batch]) for i in range(0, events, batch)]
    started = time.monotonic()
    run = asyncio.run(
        _drive_feedback(service, batches, total_events=events, workers=workers, kills=kills, limit_s=limit_s)
    )
    elapsed = time.monotonic() - started
    stored = read_store()
    ours = [e for e in stored.event_ids if e.startswith(run_id + "-")]
    unique = set(ours)
    sent = {str(p["event_id"]) for p in payloads}
    figures = {
        "events": events,
        "acknowledged": len(run.acked),
        "stored": len(ours),
        "stored_unique": len(unique),
        "lost": len(run.acked - unique),
        "duplicates": len(ours) - len(unique),
        "stored_not_acknowledged": len(unique - run.acked),
        "never_acknowledged": len(sent - run.acked),
        "acknowledged_as_duplicate": run.ack_status.get("duplicate", 0),
        "kills": len(run.kills),
        "restarts": service.starts - 1,
        "requests": run.requests,
        "batches_given_up": run.gave_up,
        "run_s": elapsed,
        "events_per_s": len(run.acked) / elapsed if elapsed > 0 else 0.0,
    }
    return run, stored, figures


def durability_result(backends: Mapping[str, tuple[DurabilityRun, dict[str, Any]]], kills: int) -> ScenarioResult:
    """One result over the backends run (each must pass on its own)."""
    checks: dict[str, bool] = {}
    details: dict[str, Any] = {}
    statuses: Counter[str] = Counter()
    latencies: list[tuple[float, float, int]] = []
    kill_times: list[float] = []
    recoveries: list[float | None] = []
    for backend, (run, figures) in backends.items():
        checks[f"{backend}_all_acknowledged"] = figures["acknowledged"] == figures["events"]
        checks[f"{backend}_stored_equals_acknowledged"] = (
            figures["stored_unique"] == figures["acknowledged"] and figures["stored_not_acknowledged"] == 0
        )
        checks[f"{backend}_0_lost"] = figures["lost"] == 0
        checks[f"{backend}_0_duplicates"] = figures["duplicates"] == 0
        checks[f"{backend}_killed_{kills}x"] = figures["kills"] == kills
        details[backend] = figures
        # one flat line per backend for the markdown table (which skips nested figures)
        details[f"{backend}_summary"] = (
            f"{figures['acknowledged']} acked / {figures['stored_unique']} stored / {figures['lost']} lost / "
            f"{figures['duplicates']} dup / {figures['kills']} kills / {figures.get('acknowledged_as_duplicate', 0)} "
            "retried events answered duplicate"
        )
        statuses.update(run.statuses)
        latencies += run.latencies_ms
        kill_times += run.kills
        recoveries += run.first_ok_after_kill
    first_kill = min(kill_times) if kill_times else None
    last_kill = max(kill_times) if kill_times else None
    windows = {
        "before": [ms for t, ms, _ in latencies if first_kill is None or t < first_kill],
        "during": [
            ms
            for t, ms, _ in latencies
            if first_kill is not None and last_kill is not None and first_kill <= t < last_kill + 5
        ],
        "after": [ms for t, ms, _ in latencies if last_kill is not None and t >= last_kill + 5],
    }
    known = [r for r in recoveries if r is not None]
    return ScenarioResult(
        name=FEEDBACK_DURABILITY,
        passed=all(checks.values()),
        criterion=FEEDBACK_DURABILITY_CRITERION,
        requests=sum(statuses.values()),
        non_2xx={k: v for k, v in statuses.items() if not k.startswith("2")},
        p99_ms={name: _p99(values) for name, values in windows.items()},
        recovery_s=max(known) if known and len(known) == len(recoveries) else None,
        details={**details, "checks": checks},
    )


def feedback_durability(ctx: Context) -> ScenarioResult:
    p = profile(ctx)

    def run() -> ScenarioResult:
        backends: dict[str, tuple[DurabilityRun, dict[str, Any]]] = {}
        # Redis (the production setup, the dedicated server): a stream of its own.
        if ctx.redis is not None:
            stream = f"reliability:durability:{uuid.uuid4().hex[:8]}"
            redis_client = ctx.redis.client(timeout_s=30.0)
            service = ctx.start_service("durability_redis", {"RECSYS_SERVE_FEEDBACK_STREAM": stream})
            try:
                run_r, _, figures = run_feedback_durability(
                    service,
                    lambda: StoredEvents("redis", read_redis_stream(redis_client, stream)),
                    events=p.feedback_events,
                    batch=p.feedback_batch,
                    workers=p.feedback_workers,
                    kills=p.feedback_kills,
                )
            finally:
                service.stop()
                redis_client.close()
            backends["redis"] = (run_r, figures)
        # SQLite (the embedded default): WAL + synchronous=FULL in a file of its own.
        db_path = (ctx.out_dir / "durability" / "feedback.db").resolve()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db_path}{suffix}").unlink(missing_ok=True)
        service = ctx.start_service(
            "durability_sqlite", {"RECSYS_SERVE_REDIS_URL": "", "RECSYS_SERVE_FEEDBACK_SQLITE_PATH": str(db_path)}
        )
        try:
            run_s, _, figures = run_feedback_durability(
                service,
                lambda: StoredEvents("sqlite", read_sqlite_log(db_path)),
                events=p.feedback_events,
                batch=p.feedback_batch,
                workers=p.feedback_workers,
                kills=p.feedback_kills,
            )
        finally:
            service.stop()
        backends["sqlite"] = (run_s, figures)
        return durability_result(backends, p.feedback_kills)

    return _guarded(FEEDBACK_DURABILITY, FEEDBACK_DURABILITY_CRITERION, run)


SCENARIOS: list[Callable[[Context], ScenarioResult]] = [
    input_limits,
    admin_auth,
    overload,
    api_fuzzing,
    feedback_durability,
]
