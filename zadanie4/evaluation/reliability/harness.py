"""Processes, faults and load of the reliability scenarios (side effects live here; scenarios measure).

* :class:`RedisServer` - a dedicated ``redis-server`` on a free loopback port in a temp dir (optional
  password); ``stop()``/``start()`` keep the port and the data (``SHUTDOWN SAVE`` + reload of the RDB
  file). It never touches the machine's shared Redis on 127.0.0.1:6379.
* :class:`DelayProxy` - a TCP proxy on loopback that holds every chunk ``delay_ms`` per direction
  (order and pipelining kept); the delay can be changed while connections are open.
* :class:`ServiceProcess` - ``recsys serve`` (or any command) as a subprocess on a free 127.0.0.1 port,
  waited for until ``/health/ready`` answers 200; kill with any signal, restart on the same port.
* :class:`InProcessService` - an app served by uvicorn in a thread (the fast test variants).
* :class:`ConstantLoad` - open-loop requests at a fixed rate in a background thread; every request is
  a :class:`Sample` (monotonic send time, status, latency, ``degraded``/``variant`` of the JSON), so a
  scenario can cut before/during/after windows around its fault.
* :class:`Context` / :func:`prepare_context` - the shared set-up of ``make reliability``: the dedicated
  Redis (with a password), its online store materialized by ``recsys features apply/materialize``
  with a Feast registry under ``artifacts/reliability/``, an MLflow registry of its own with a
  champion and a challenger, and the environment a ``recsys serve`` needs to use all that.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

import numpy as np
import orjson

from shared.errors import UserInputError
from zadanie4.evaluation.bench.serving_setup import env_with, executable, free_port, run_step
from zadanie4.evaluation.reliability.raw_http import NoAnswer, RawHttpClient, encode_request

SHARED_REDIS_PORT = 6379  # the machine's Redis: never started, stopped or written by these scenarios
NO_ANSWER = 0  # Sample.status of a request that got no HTTP answer (refused, reset, timed out)
OUT_DIR = Path("artifacts") / "reliability"
# Environment knobs the reliability runs set themselves: inherited values would point the service elsewhere.
_DROPPED_ENV_PREFIXES = ("RECSYS_FEATURES_", "RECSYS_SERVE_", "RECSYS_REGISTRY_")
_DROPPED_ENV_KEYS = ("REDIS_URL", "MLFLOW_TRACKING_URI")


# --- Redis ---------------------------------------------------------------------------------------


class RedisServer:
    """A private ``redis-server`` on 127.0.0.1:<free port> whose data survive ``stop()``/``start()``.

    Persistence is off while it runs (no background saves); ``stop()`` sends ``SHUTDOWN SAVE`` so the
    next ``start()`` on the same port loads the same keys, like a restarted production Redis.
    """

    def __init__(self, *, password: str | None = None, port: int | None = None, workdir: Path | None = None) -> None:
        if port == SHARED_REDIS_PORT:
            raise ValueError("port 6379 is the machine's shared Redis; the scenarios use their own server")
        self.port = port or free_port()
        self.password = password
        self._tmp = None if workdir else tempfile.TemporaryDirectory(prefix="reliability-redis-")
        self.dir = workdir or Path(self._tmp.name)  # type: ignore[union-attr]
        self.dir.mkdir(parents=True, exist_ok=True)
        self.process: subprocess.Popen[bytes] | None = None

    def url(self, db: int = 0, *, port: int | None = None) -> str:
        """``redis://[:password@]127.0.0.1:<port>/<db>``; ``port`` points the URL at a proxy instead."""
        auth = f":{quote(self.password, safe='')}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{port or self.port}/{db}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def client(self, db: int = 0, timeout_s: float = 2.0) -> Any:
        import redis

        return redis.Redis(
            host="127.0.0.1",
            port=self.port,
            db=db,
            password=self.password,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
        )

    def start(self, timeout_s: float = 10.0) -> None:
        """Start (or restart on the same port) and wait until it answers PING."""
        if self.running:
            return
        command = [
            shutil.which("redis-server") or "redis-server",
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.dir),
            "--dbfilename",
            "dump.rdb",
            "--save",
            "",
            "--appendonly",
            "no",
            "--logfile",
            str(self.dir / "redis.log"),
        ]
        if self.password:
            command += ["--requirepass", self.password]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise UserInputError(f"redis-server on port {self.port} exited; see {self.dir / 'redis.log'}")
            try:
                client = self.client(timeout_s=0.5)
                try:
                    if client.ping():
                        return
                finally:
                    client.close()
            except Exception:  # not listening yet, or still loading the RDB file
                time.sleep(0.05)
        raise UserInputError(f"redis-server on port {self.port} did not answer within {timeout_s:.0f} s")

    def stop(self, timeout_s: float = 10.0) -> None:
        """Save the data and stop (``SHUTDOWN SAVE``); the port is free until ``start()``."""
        if not self.running:
            return
        assert self.process is not None
        client = self.client()
        try:
            client.shutdown(save=True)
        except Exception:  # the server closes the connection as it exits
            pass
        finally:
            client.close()
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.terminate()
            self.process.wait(5)

    def close(self) -> None:
        """Stop without saving and remove the temp dir."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        if self._tmp is not None:
            self._tmp.cleanup()


# --- delay proxy ---------------------------------------------------------------------------------


class DelayProxy:
    """TCP proxy 127.0.0.1:<port> -> 127.0.0.1:<upstream_port> adding ``delay_ms`` to each direction.

    Each chunk read is forwarded ``delay_ms`` after it arrived (a per-connection queue keeps the order
    and lets pipelined commands overlap), so a request/response round trip takes ``2 * delay_ms`` more.
    When the upstream refuses or closes, the client's connection is closed too (what a dead server does).
    """

    def __init__(self, upstream_port: int, *, delay_ms: float = 0.0, port: int | None = None) -> None:
        self.upstream_port = upstream_port
        self.port = port or free_port()
        self.delay_ms = float(delay_ms)
        self.connections = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def set_delay(self, delay_ms: float) -> None:
        """Takes effect for every chunk read from now on (already queued chunks keep their due time)."""
        self.delay_ms = float(delay_ms)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"delay-proxy-{self.port}", daemon=True)
        self._thread.start()
        self._ready.wait(10)
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            self._server = loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", self.port))
        except OSError as exc:
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        loop.run_forever()
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()

    async def _handle(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            client_writer.close()
            return
        self._writers.update((client_writer, up_writer))
        await asyncio.gather(
            self._pump(client_reader, up_writer, client_writer),
            self._pump(up_reader, client_writer, up_writer),
            return_exceptions=True,
        )
        for writer in (client_writer, up_writer):
            self._writers.discard(writer)
            writer.close()

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, other: asyncio.StreamWriter
    ) -> None:
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def forward() -> None:
            while True:
                due, chunk = await queue.get()
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                if not chunk:
                    return
                writer.write(chunk)
                await writer.drain()

        sender = asyncio.create_task(forward())
        try:
            while True:
                chunk = await reader.read(65536)
                queue.put_nowait((time.monotonic() + self.delay_ms / 1000.0, chunk))
                if not chunk:
                    break
            await sender
        except (OSError, asyncio.CancelledError):
            sender.cancel()
        finally:
            # One side ended: end both (a half-open Redis connection is of no use to the client).
            writer.close()
            other.close()

    def stop(self) -> None:
        loop = self._loop
        if loop is None or not loop.is_running():
            return

        async def shutdown() -> None:
            if self._server is not None:
                self._server.close()
            for writer in list(self._writers):
                writer.close()

        asyncio.run_coroutine_threadsafe(shutdown(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(5)


# --- services ------------------------------------------------------------------------------------


def http_get(url: str, timeout_s: float = 5.0, headers: Mapping[str, str] | None = None) -> tuple[int, bytes]:
    """(status, body) of a GET; HTTP errors are returned, not raised."""
    request = urllib.request.Request(url, headers=dict(headers or {}))
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read()


def http_post_json(
    url: str, payload: object, *, token: str | None = None, timeout_s: float = 30.0
) -> tuple[int, dict[str, Any]]:
    """(status, JSON body) of a POST with a JSON body and an optional bearer token."""
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=orjson.dumps(payload), headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            status, body = int(response.status), response.read()
    except urllib.error.HTTPError as exc:
        status, body = int(exc.code), exc.read()
    try:
        parsed = orjson.loads(body) if body else {}
    except orjson.JSONDecodeError:
        parsed = {"raw": body[:200].decode(errors="replace")}
    return status, parsed if isinstance(parsed, dict) else {"value": parsed}


def wait_for_http(url: str, timeout_s: float, *, alive: Callable[[], bool] = lambda: True) -> float:
    """Poll ``url`` until it answers 200; seconds waited. Raises TimeoutError, or RuntimeError if not alive."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if not alive():
            raise RuntimeError(f"the process behind {url} exited")
        with contextlib.suppress(OSError, urllib.error.URLError):
            if http_get(url, timeout_s=1.0)[0] == 200:
                return time.monotonic() - started
        time.sleep(0.1)
    raise TimeoutError(f"{url} not ready after {timeout_s:.0f} s")


class ServiceTarget(Protocol):
    """What the scenarios talk to: a running service at ``url`` (subprocess or in-process)."""

    @property
    def url(self) -> str: ...


class ServiceProcess:
    """``recsys serve`` (or ``command``) on 127.0.0.1:<port> as a subprocess in its own session.

    ``command`` may contain ``{port}``. The environment is exactly ``env`` (build it with :meth:`Context.service_env`).
    """

    def __init__(
        self,
        env: Mapping[str, str],
        log_path: Path,
        *,
        port: int | None = None,
        command: Sequence[str] | None = None,
        ready_timeout_s: float = 180.0,
        name: str = "recsys serve",
    ) -> None:
        self.env = dict(env)
        self.log_path = log_path
        self.port = port or free_port()
        self.name = name
        self.ready_timeout_s = ready_timeout_s
        self._command = (
            list(command)
            if command
            else [
                executable("recsys"),
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                "{port}",
                "--log-level",
                "warning",
            ]
        )
        self.process: subprocess.Popen[bytes] | None = None
        self.ready_s: float | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None, "not started"
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, *, wait_ready: bool = True) -> ServiceProcess:
        """Start the process and (by default) wait for ``/health/ready``; raises with the log's tail on failure."""
        if self.alive():
            return self
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        command = [part.replace("{port}", str(self.port)) for part in self._command]
        with self.log_path.open("ab") as log:
            log.write(f"\n$ {' '.join(command)}\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                command, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.starts += 1
        if wait_ready:
            self.wait_ready()
        return self

    def wait_ready(self, timeout_s: float | None = None) -> float:
        try:
            self.ready_s = wait_for_http(
                self.url + "/health/ready", timeout_s or self.ready_timeout_s, alive=self.alive
            )
        except (RuntimeError, TimeoutError) as exc:
            tail = self.log_path.read_text(errors="replace")[-3000:] if self.log_path.exists() else ""
            self.stop()
            raise UserInputError(f"{self.name} on {self.url} did not become ready ({exc}); log tail:\n{tail}") from exc
        return self.ready_s

    def kill(self, sig: int = signal.SIGKILL, timeout_s: float = 15.0) -> None:
        """Send ``sig`` to the process group and wait for the exit."""
        if not self.alive():
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, sig)
        assert self.process is not None
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)
            self.process.wait(5)

    def stop(self, timeout_s: float = 15.0) -> None:
        """SIGTERM (graceful), SIGKILL after ``timeout_s``."""
        self.kill(signal.SIGTERM, timeout_s)

    def restart(self, *, wait_ready: bool = True) -> ServiceProcess:
        """Stop if still running, then start again on the same port."""
        self.stop()
        return self.start(wait_ready=wait_ready)

    def rss_mb(self) -> float:
        """Resident memory of the process in MiB (0 when it is gone)."""
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        except (OSError, AssertionError):
            pass
        return 0.0


class InProcessService:
    """An ASGI app served by uvicorn on 127.0.0.1:<free port> in a daemon thread (fast test variants)."""

    def __init__(
        self, app: Any, *, port: int | None = None, ready_path: str = "/health/ready", http: str = "auto"
    ) -> None:
        self.app = app
        self.port = port or free_port()
        self.ready_path = ready_path
        self.http = http  # uvicorn's HTTP parser: "auto", "httptools" or "h11"
        self._server: Any = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 30.0) -> InProcessService:
        import uvicorn

        config = uvicorn.Config(
            self.app, host="127.0.0.1", port=self.port, http=self.http, log_level="warning", access_log=False
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="in-process-service", daemon=True)
        self._thread.start()
        wait_for_http(self.url + self.ready_path, timeout_s, alive=self._thread.is_alive)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)

    def __enter__(self) -> InProcessService:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()


# --- load ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadRequest:
    """One request of a load: method, absolute URL, optional body and headers."""

    url: str
    method: str = "GET"
    body: bytes | None = None
    headers: Mapping[str, str] | None = None


@dataclass(frozen=True)
class Sample:
    """One request: send time (``time.monotonic()``), status (0 = no answer), latency, and what the
    JSON said (``degraded``, ``variant``; None when not a JSON object with those keys)."""

    index: int
    t_sent: float
    status: int
    latency_ms: float
    degraded: bool | None = None
    variant: str | None = None
    body: bytes | None = None

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


def _describe(body: bytes) -> tuple[bool | None, str | None]:
    if not body.startswith(b"{"):
        return None, None
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None, None
    if not isinstance(parsed, dict):
        return None, None
    degraded = parsed.get("degraded")
    variant = parsed.get("variant")
    return (degraded if isinstance(degraded, bool) else None), (variant if isinstance(variant, str) else None)


class ConstantLoad:
    """Open-loop load: request ``i`` is sent at ``start + i / rate_rps`` (whatever the earlier ones do),
    cycling through ``requests``, from a background thread with its own event loop (uvloop) and a lean
    keep-alive client (:mod:`zadanie4.evaluation.reliability.raw_http`).

    Latency is measured from the moment the request is handed to the client (including a wait for a
    free connection) to the end of the body; a request without an answer within ``timeout_s`` is a
    sample with status 0. ``keep_bodies`` keeps each response body (for response comparisons).
    With ``warm_url``, all ``max_connections`` connections are opened and served one GET of it before
    the first send (the pool of a front end is open before a burst reaches it); see :meth:`wait_started`.
    """

    def __init__(
        self,
        requests: Sequence[str | LoadRequest],
        rate_rps: float,
        *,
        timeout_s: float = 2.0,
        max_connections: int = 64,
        keep_bodies: bool = False,
        max_requests: int | None = None,
        warm_url: str | None = None,
    ) -> None:
        if not requests:
            raise ValueError("ConstantLoad needs at least one request")
        if rate_rps <= 0:
            raise ValueError("rate_rps must be positive")
        self.requests = [r if isinstance(r, LoadRequest) else LoadRequest(r) for r in requests]
        self.rate_rps = rate_rps
        self.timeout_s = timeout_s
        self.max_connections = max_connections
        self.keep_bodies = keep_bodies
        self.max_requests = max_requests
        self.warm_url = warm_url
        self._samples: list[Sample] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._done = threading.Event()
        self._started = threading.Event()
        self._thread: threading.Thread | None = None
        self.started_at: float | None = None
        self.max_send_lag_ms = 0.0

    @property
    def samples(self) -> list[Sample]:
        """The finished requests so far, in completion order."""
        with self._lock:
            return list(self._samples)

    def start(self) -> ConstantLoad:
        self._thread = threading.Thread(target=self._run, name="constant-load", daemon=True)
        self._thread.start()
        return self

    def wait_started(self, timeout_s: float) -> float:
        """The monotonic time the first request was due (after the pre-warm); starts the load if needed."""
        if self._thread is None:
            self.start()
        if not self._started.wait(timeout_s) or self.started_at is None:
            raise RuntimeError(f"the load did not start sending within {timeout_s:g} s")
        return self.started_at

    def _run(self) -> None:
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(self._main())

    def stop(self) -> list[Sample]:
        """Stop sending, wait for the requests in flight (at most ``timeout_s``), return every sample by send time."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.timeout_s + 10)
        return sorted(self.samples, key=lambda s: s.t_sent)

    def wait(self, timeout_s: float | None = None) -> list[Sample]:
        """Start if not started, wait until ``max_requests`` were sent and answered (or ``timeout_s``), then stop."""
        if self._thread is None:
            self.start()
        self._done.wait(timeout_s)
        return self.stop()

    def __enter__(self) -> ConstantLoad:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    async def _main(self) -> None:
        client = RawHttpClient(self.max_connections)
        encoded = [encode_request(r.url, r.method, r.body, r.headers) for r in self.requests]
        if self.warm_url is not None:
            await client.prewarm(self.warm_url, self.max_connections)
        tasks: set[asyncio.Task[None]] = set()
        start = time.monotonic()
        self.started_at = start
        self._started.set()
        i = 0
        try:
            while not self._stop.is_set() and (self.max_requests is None or i < self.max_requests):
                due = start + i / self.rate_rps
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                else:
                    self.max_send_lag_ms = max(self.max_send_lag_ms, -wait * 1000)
                task = asyncio.create_task(self._one(client, encoded[i % len(encoded)], i))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                i += 1
            if tasks:
                await asyncio.wait(tasks, timeout=self.timeout_s + 5)
        finally:
            client.close()
            self._done.set()

    async def _one(self, client: RawHttpClient, request: tuple[tuple[str, int], bytes], i: int) -> None:
        sent = time.monotonic()
        status, body = NO_ANSWER, b""
        try:
            status, body = await client.request(request[0], request[1], self.timeout_s)
        except (NoAnswer, OSError, TimeoutError):  # refused, reset, cut, timed out: no HTTP answer
            status = NO_ANSWER
        latency_ms = (time.monotonic() - sent) * 1000
        degraded, variant = _describe(body) if status == 200 else (None, None)
        sample = Sample(i, sent, status, latency_ms, degraded, variant, body if self.keep_bodies else None)
        with self._lock:
            self._samples.append(sample)


# --- figures from samples ------------------------------------------------------------------------


def between(samples: Iterable[Sample], start: float | None = None, end: float | None = None) -> list[Sample]:
    """Samples sent in ``[start, end)`` (monotonic seconds; None = open)."""
    return [s for s in samples if (start is None or s.t_sent >= start) and (end is None or s.t_sent < end)]


def percentile_ms(samples: Sequence[Sample], q: float = 99.0) -> float | None:
    """The ``q``-th percentile latency (ms) of all samples, unanswered ones included; None when empty."""
    if not samples:
        return None
    return float(np.percentile(np.array([s.latency_ms for s in samples]), q))


def non_2xx(samples: Iterable[Sample]) -> dict[str, int]:
    """Status code (text) -> count of the non-2xx samples; ``"error"`` for no answer."""
    counts: Counter[str] = Counter()
    for s in samples:
        if not s.ok:
            counts["error" if s.status == NO_ANSWER else str(s.status)] += 1
    return dict(counts)


def count_5xx(samples: Iterable[Sample]) -> int:
    return sum(1 for s in samples if s.status >= 500)


def window_p99s(samples: Sequence[Sample], fault_start: float, fault_end: float) -> dict[str, float | None]:
    """p99 (ms) of the requests sent before, during and after the fault ``[fault_start, fault_end)``."""
    return {
        "before": percentile_ms(between(samples, None, fault_start)),
        "during": percentile_ms(between(samples, fault_start, fault_end)),
        "after": percentile_ms(between(samples, fault_end, None)),
    }


def recommend_urls(base_url: str, user_ids: Iterable[int], k: int = 10) -> list[str]:
    return [f"{base_url}/recommend?user_id={int(u)}&k={k}" for u in user_ids]


# --- shared set-up -------------------------------------------------------------------------------


def base_env() -> dict[str, str]:
    """This environment without the knobs the reliability runs set themselves."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_DROPPED_ENV_PREFIXES)}
    for key in _DROPPED_ENV_KEYS:
        env.pop(key, None)
    return env_with({}, env)


def redis_env(redis_url: str) -> dict[str, str]:
    """Every Redis client of the stack (features, feedback) on ``redis_url``, Redis online store."""
    return {
        "REDIS_URL": redis_url,
        "RECSYS_FEATURES_REDIS_URL": redis_url,
        "RECSYS_SERVE_REDIS_URL": redis_url,
        "RECSYS_FEATURES_ONLINE_STORE": "redis",
    }


@dataclass
class DemoArtifacts:
    """What ``make demo`` wrote and the scenarios read (never modified by them)."""

    events: Path = Path("data") / "events.parquet"
    train_dir: Path = Path("artifacts") / "train"
    offline_dir: Path = Path("artifacts") / "features" / "offline"

    @property
    def ranker_dir(self) -> Path:
        return self.train_dir / "ranker"

    @property
    def candidates_dir(self) -> Path:
        return self.train_dir / "candidates"

    def check(self) -> None:
        missing = [p for p in (self.events, self.ranker_dir / "model.txt", self.candidates_dir) if not p.exists()]
        if missing:
            raise UserInputError(
                f"{', '.join(map(str, missing))} missing: run `make demo` first (the scenarios serve its artifacts)"
            )


@dataclass
class Context:
    """Everything the scenarios share: output folder, the dedicated Redis, the service environment,
    users to ask for, and the services started (stopped by :meth:`close`).

    ``quick`` asks scenarios for their short variant (fewer requests, shorter faults). ``main`` is the
    service most scenarios share: its Redis traffic goes through ``proxy`` (0 ms unless a scenario
    sets a delay), so stopping ``redis`` or slowing ``proxy`` affects exactly that service.
    """

    out_dir: Path
    admin_token: str
    env: dict[str, str]
    redis: RedisServer | None = None
    proxy: DelayProxy | None = None
    warm_users: list[int] = field(default_factory=list)
    unknown_users: list[int] = field(default_factory=list)
    quick: bool = False
    main_factory: Callable[[Context], ServiceTarget] | None = None
    timings: dict[str, float] = field(default_factory=dict)
    _main: ServiceTarget | None = None
    _closers: list[Callable[[], None]] = field(default_factory=list)

    def log_path(self, name: str) -> Path:
        return self.out_dir / "logs" / f"{name}.log"

    def service_env(
        self, overrides: Mapping[str, str | None] | None = None, *, via_proxy: bool = False
    ) -> dict[str, str]:
        """``env`` (Redis via ``proxy`` when ``via_proxy``) with ``overrides`` applied (None removes a key)."""
        env = dict(self.env)
        if via_proxy and self.proxy is not None and self.redis is not None:
            env.update(redis_env(self.redis.url(port=self.proxy.port)))
        return env_with(dict(overrides or {}), env)

    def start_service(
        self,
        name: str,
        overrides: Mapping[str, str | None] | None = None,
        *,
        command: Sequence[str] | None = None,
        via_proxy: bool = False,
        wait_ready: bool = True,
    ) -> ServiceProcess:
        """A ``recsys serve`` (or ``command``) with this context's environment; stopped by :meth:`close`."""
        service = ServiceProcess(
            self.service_env(overrides, via_proxy=via_proxy), self.log_path(name), command=command, name=name
        )
        self._closers.append(service.stop)
        return service.start(wait_ready=wait_ready)

    def main(self) -> ServiceTarget:
        """The shared service (started on first use)."""
        if self._main is None:
            if self.main_factory is None:
                raise RuntimeError("this context has no main service")
            self._main = self.main_factory(self)
        return self._main

    def add_closer(self, closer: Callable[[], None]) -> None:
        self._closers.append(closer)

    def close(self) -> None:
        """Stop every service, proxy and Redis this context started (last started first)."""
        while self._closers:
            closer = self._closers.pop()
            with contextlib.suppress(Exception):
                closer()


def _main_service(ctx: Context) -> ServiceTarget:
    return ctx.start_service("main", via_proxy=True)


def user_groups(events_path: Path, *, min_events: int = 5, n: int = 2000) -> tuple[list[int], list[int]]:
    """(warm users with at least ``min_events`` events, ids of users that never appeared), ``n`` each at most."""
    import pandas as pd

    users = pd.read_parquet(events_path, columns=["user_id"])["user_id"]
    counts = users.value_counts()
    warm = sorted(int(u) for u in counts.index[counts >= min_events])[:n]
    top = int(users.max())
    unknown = [top + 1_000_000 + i for i in range(n)]
    return warm, unknown


def prepare_online_store(ctx: Context, artifacts: DemoArtifacts) -> dict[str, float]:
    """``recsys features [build] apply materialize`` into the dedicated Redis; seconds per step."""
    log = ctx.log_path("prepare_features")
    recsys = executable("recsys")
    timings: dict[str, float] = {}
    if not any(artifacts.offline_dir.glob("*")):
        timings["build_s"] = run_step("recsys features build", [recsys, "features", "build"], ctx.env, log)
    timings["apply_s"] = run_step("recsys features apply", [recsys, "features", "apply"], ctx.env, log)
    timings["materialize_s"] = run_step(
        "recsys features materialize (dedicated Redis)", [recsys, "features", "materialize"], ctx.env, log
    )
    return timings


def prepare_registry(ctx: Context, artifacts: DemoArtifacts) -> dict[str, float]:
    """A fresh MLflow registry under the output folder: the demo ranker as champion (v1) and again as
    challenger (v2); seconds per step."""
    registry_dir = ctx.out_dir / "mlflow"
    shutil.rmtree(registry_dir, ignore_errors=True)
    shutil.rmtree(ctx.out_dir / "registry_cache", ignore_errors=True)
    log = ctx.log_path("prepare_registry")
    recsys = executable("recsys")
    ranker = str(artifacts.ranker_dir)
    env = ctx.env
    timings = {
        "register_v1_s": run_step(
            "recsys registry register (v1)",
            [recsys, "registry", "register", "--ranker-dir", ranker, "--reason", "reliability baseline"],
            env,
            log,
        )
    }
    # No gate run here (it takes ~25 s, and the corrupt-model scenario exercises it): the demo ranker is
    # the baseline champion by decision, recorded as a forced promotion.
    promote = [recsys, "registry", "promote", "challenger", "--force", "--reason", "reliability baseline"]
    timings["promote_v1_s"] = run_step("recsys registry promote (v1 -> champion)", promote, env, log)
    timings["register_v2_s"] = run_step(
        "recsys registry register (v2 -> challenger)",
        [recsys, "registry", "register", "--ranker-dir", ranker, "--reason", "reliability challenger"],
        env,
        log,
    )
    return timings


def prepare_context(out_dir: Path = OUT_DIR, *, quick: bool = False) -> Context:
    """Start the dedicated Redis (with a password) and a delay proxy, materialize the online store into it,
    create the registry, and return the context (call :meth:`Context.close` at the end)."""
    artifacts = DemoArtifacts()
    artifacts.check()
    out_dir.mkdir(parents=True, exist_ok=True)
    redis = RedisServer(password=secrets.token_urlsafe(16))
    redis.start()
    token = secrets.token_urlsafe(24)
    store_dir = (out_dir / "store").resolve()
    env = env_with(
        {
            **redis_env(redis.url()),
            # Own Feast registry + generated yaml; offline snapshots shared with `make demo` (read only).
            "RECSYS_FEATURES_FEATURES_DIR": str(store_dir),
            "RECSYS_FEATURES_OFFLINE_DIR": str(artifacts.offline_dir.resolve()),
            # The service's real-time pushes (fuzzed feedback included) must not reach the demo's event log.
            "RECSYS_FEATURES_REALTIME_EVENT_LOG_DIR": str((out_dir / "realtime_events").resolve()),
            # Own MLflow registry; its reports and cache under the output folder, the demo's eval set and ranker.
            "RECSYS_REGISTRY_ARTIFACTS_DIR": str(out_dir.resolve()),
            "RECSYS_REGISTRY_EVAL_SET_PATH": str((artifacts.train_dir / "eval_set.parquet").resolve()),
            "RECSYS_REGISTRY_RANKER_DIR": str(artifacts.ranker_dir.resolve()),
            "RECSYS_REGISTRY_TRACKING_URI": f"sqlite:///{(out_dir / 'mlflow' / 'mlflow.db').resolve()}",
            "RECSYS_REGISTRY_ARTIFACT_ROOT": str((out_dir / "mlflow" / "artifacts").resolve()),
            "RECSYS_SERVE_REGISTRY_CACHE_DIR": str((out_dir / "registry_cache").resolve()),
            "RECSYS_SERVE_FEEDBACK_SQLITE_PATH": str((out_dir / "serve" / "feedback.db").resolve()),
            "RECSYS_SERVE_ADMIN_TOKEN": token,
        },
        base_env(),
    )
    ctx = Context(out_dir=out_dir, admin_token=token, env=env, redis=redis, quick=quick, main_factory=_main_service)
    ctx.add_closer(redis.close)
    try:
        proxy = DelayProxy(redis.port)
        proxy.start()
        ctx.proxy = proxy
        ctx.add_closer(proxy.stop)
        ctx.warm_users, ctx.unknown_users = user_groups(artifacts.events)
        # The two preparations are independent processes: run them side by side.
        with ThreadPoolExecutor(max_workers=2) as pool:
            store = pool.submit(prepare_online_store, ctx, artifacts)
            registry = pool.submit(prepare_registry, ctx, artifacts)
            ctx.timings.update({**store.result(), **registry.result()})
    except BaseException:
        ctx.close()
        raise
    return ctx


def python_command(code: str) -> list[str]:
    """``python -c code`` with this interpreter (for services built by a function, e.g. faulty challengers)."""
    return [sys.executable, "-c", code]
