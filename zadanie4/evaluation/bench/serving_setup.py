"""Processes and prerequisites of the benchmarks: data, trained model, materialized store, servers.

Side effects live here (subprocesses, files, sockets); the measuring code calls these functions.
Every server is started in its own session (process group) so stopping it stops its children too
(``feast serve`` runs gunicorn with a worker), and optionally pinned to CPU cores with ``taskset``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from shared.errors import UserInputError
from shared.proc_status import status_kib
from zadanie4.evaluation.bench.latency_summary import interference
from zadanie4.evaluation.bench.open_loop_load import RequestSpec

BIN_DIR = Path(sys.executable).parent
# A /recommend answered from the popularity fallback (store slow/down, no model) scored nothing: counted apart.
DEGRADED_BODY_MARKER = b'"degraded":true'
CLK_TCK = os.sysconf("SC_CLK_TCK")


def executable(name: str) -> str:
    """A console script of this environment (``recsys``, ``feast``, ``locust``), else from PATH."""
    local = BIN_DIR / name
    if local.exists():
        return str(local)
    found = shutil.which(name)
    if not found:
        raise UserInputError(f"{name}: not found in {BIN_DIR} or on PATH (run `make venv`)")
    return found


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def can_pin() -> bool:
    """True when ``taskset`` exists and the machine has at least 2 cores to split."""
    return shutil.which("taskset") is not None and (os.cpu_count() or 1) >= 2


def pinned(command: Sequence[str], cores: str | None) -> list[str]:
    """``taskset -c <cores> command`` when pinning is possible and asked for, else the command."""
    if cores is None or not can_pin():
        return list(command)
    return ["taskset", "-c", cores, *command]


def pin_self(cores: set[int] | None) -> set[int]:
    """Pin this process (the load generator) to ``cores``; returns the previous affinity."""
    previous = os.sched_getaffinity(0)
    if cores and can_pin():
        os.sched_setaffinity(0, cores)
    return previous


def run_step(description: str, command: Sequence[str], env: Mapping[str, str], log_path: Path) -> float:
    """Run a preparation command to completion (output appended to ``log_path``); seconds taken.

    Raises UserInputError with the log's last lines when it fails.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    print(f"  {description} ...", flush=True)
    with log_path.open("a") as log:
        log.write(f"\n$ {' '.join(command)}\n")
        log.flush()
        result = subprocess.run(list(command), env=dict(env), stdout=log, stderr=subprocess.STDOUT, check=False)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        tail = "".join(log_path.read_text().splitlines(keepends=True)[-15:])
        raise UserInputError(f"{description} failed (exit {result.returncode}); end of {log_path}:\n{tail}")
    print(f"  {description}: {seconds:.1f} s", flush=True)
    return seconds


def env_with(overrides: Mapping[str, str | None], base: Mapping[str, str] | None = None) -> dict[str, str]:
    """A copy of ``base`` (default: this environment) with ``overrides`` applied (None removes a key)."""
    env = dict(os.environ if base is None else base)
    for key, value in overrides.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    env.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    env.setdefault("DO_NOT_TRACK", "true")
    return env


def cpu_totals() -> tuple[float, float]:
    """(busy, steal) CPU seconds of all cores since boot, from /proc/stat; (0, 0) where unavailable."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return 0.0, 0.0
    values = [int(v) for v in fields] + [0] * 8
    user, nice, system, _idle, _iowait, irq, softirq, steal = values[:8]
    return (user + nice + system + irq + softirq) / CLK_TCK, steal / CLK_TCK


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of one process (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def redis_server_pid(port: int) -> int | None:
    """The pid of the redis-server serving ``port`` (read from /proc, for CPU accounting only)."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if (proc / "comm").read_text().strip() != "redis-server":
                continue
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if f":{port}" in cmdline or (port == 6379 and ":" not in cmdline):
            return int(proc.name)
    return None


# --- prerequisites -----------------------------------------------------------------------------------


def ensure_events(events_path: Path, env: Mapping[str, str], log_path: Path, generate_args: Sequence[str] = ()) -> None:
    """Generate the synthetic shop into ``events_path`` unless the file exists."""
    if events_path.exists():
        return
    run_step(
        f"generate events -> {events_path}",
        [executable("recsys"), "data", "generate", "--out", str(events_path), *generate_args],
        env,
        log_path,
    )


def trained_model_exists(train_dir: Path) -> bool:
    return (train_dir / "ranker" / "model.txt").exists() and (train_dir / "candidates").is_dir()


def ensure_trained(events_path: Path, train_dir: Path, env: Mapping[str, str], log_path: Path) -> None:
    """Train the candidate index and the LightGBM ranker (no MLflow, no model comparison) if missing."""
    if trained_model_exists(train_dir):
        return
    run_step(
        f"train ranker + candidates -> {train_dir}",
        [
            executable("recsys"),
            "train",
            "--events",
            str(events_path),
            "--out",
            str(train_dir),
            "--lightgbm-only",
            "--no-mlflow",
        ],
        env,
        log_path,
    )


# build + apply + materialize in one interpreter: `import feast` costs ~6 s per process.
_MATERIALIZE_SCRIPT = (
    "from zadanie2.cli import apply_command, build_command, materialize_command\n"
    "build_command(events=None, freq=None, force=False)\n"
    "apply_command()\n"
    "materialize_command(incremental=False)\n"
)


def materialize_store(env: Mapping[str, str], log_path: Path, description: str) -> float:
    """``recsys features build`` + ``apply`` + ``materialize`` with the store given by ``env``; seconds."""
    return run_step(description, [sys.executable, "-c", _MATERIALIZE_SCRIPT], env, log_path)


def flush_redis_db(redis_url: str) -> None:
    """FLUSHDB on the database of ``redis_url`` only (the bench's own index).

    ASYNC: the keys are gone at once and freed in the background (a synchronous flush of the millions of
    hashes a scale run leaves takes longer than any sensible socket timeout)."""
    import redis

    client = redis.Redis.from_url(redis_url, socket_timeout=5)
    try:
        client.flushdb(asynchronous=True)
    except redis.exceptions.ConnectionError as exc:
        raise UserInputError(f"Redis at {redis_url} is not reachable ({exc}); start it (e.g. redis-server)") from exc
    finally:
        client.close()


# --- servers -----------------------------------------------------------------------------------------


@dataclass
class ServerProcess:
    """A started server: its process group, URL, log and how long it took to become ready."""

    name: str
    process: subprocess.Popen[bytes]
    base_url: str
    log_path: Path
    started_at: float
    ready_s: float | None = None
    info: dict[str, object] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.process.pid

    def tree_pids(self) -> list[int]:
        """This process and its descendants (from /proc; gunicorn workers included)."""
        pids, todo = [], [self.pid]
        while todo:
            pid = todo.pop()
            pids.append(pid)
            for task in Path(f"/proc/{pid}/task").glob("*/children"):
                try:
                    todo += [int(c) for c in task.read_text().split()]
                except OSError:
                    continue
        return pids

    def rss_mib(self) -> float:
        """Resident memory of the process tree in MiB (0 when /proc is unavailable)."""
        return round(sum(status_kib(pid, "VmRSS") for pid in self.tree_pids()) / 1024, 1)

    def cpu_s(self) -> float:
        """User + system CPU seconds of the process tree so far."""
        return sum(process_cpu_s(pid) for pid in self.tree_pids())

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout_s: float = 15.0) -> None:
        """SIGTERM the process group, SIGKILL after ``timeout_s``."""
        if self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(5)


def _get(url: str, timeout_s: float = 2.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read()


def get_json(url: str, timeout_s: float = 5.0) -> object:
    status, body = _get(url, timeout_s)
    if status != 200:
        raise RuntimeError(f"GET {url} -> {status}")
    return json.loads(body)


def wait_until_ready(server: ServerProcess, path: str, timeout_s: float) -> float:
    """Poll ``path`` until it answers 200; seconds since the process was started. Raises when it died."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not server.alive():
            tail = server.log_path.read_text()[-2000:] if server.log_path.exists() else ""
            raise UserInputError(f"{server.name} exited with {server.process.returncode} while starting:\n{tail}")
        try:
            status, _ = _get(server.base_url + path, timeout_s=1.0)
            if status == 200:
                server.ready_s = round(time.perf_counter() - server.started_at, 2)
                return server.ready_s
        except (OSError, urllib.error.URLError):
            pass
        time.sleep(0.1)
    server.stop()
    raise UserInputError(
        f"{server.name} not ready at {server.base_url}{path} after {timeout_s:.0f} s; see {server.log_path}"
    )


def start_server(
    name: str,
    command: Sequence[str],
    *,
    port: int,
    env: Mapping[str, str],
    log_path: Path,
    cores: str | None,
) -> ServerProcess:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = log_path.open("ab")
    log.write(f"\n$ {' '.join(command)}\n".encode())
    log.flush()
    process = subprocess.Popen(
        pinned(command, cores), env=dict(env), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    log.close()  # the child holds its own descriptor
    return ServerProcess(name, process, f"http://127.0.0.1:{port}", log_path, time.perf_counter())


def start_service(
    env: Mapping[str, str],
    log_path: Path,
    *,
    cores: str | None,
    port: int | None = None,
    ready_timeout_s: float = 120.0,
    compile_timeout_s: float = 900.0,
) -> ServerProcess:
    """``recsys serve`` on 127.0.0.1:<free port>, waited for until /health/ready answers 200, then
    until its champion's ranker is no longer being compiled (a compilation is tens of CPU-seconds
    that must not run during a measurement); ``info`` gets ``scorer`` and ``scorer_wait_s``."""
    port = port or free_port()
    server = start_server(
        "recsys serve",
        [executable("recsys"), "serve", "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
        port=port,
        env=env,
        log_path=log_path,
        cores=cores,
    )
    wait_until_ready(server, "/health/ready", ready_timeout_s)
    wait_for_scorer(server, compile_timeout_s)
    return server


def recommend_specs(base_url: str, user_ids: Sequence[int], k: int) -> list[RequestSpec]:
    """One ``GET /recommend?user_id=<u>&k=<k>`` per user; degraded (fallback) answers are counted apart."""
    return [
        RequestSpec(
            "GET", f"{base_url}/recommend?user_id={u}&k={k}", marker=DEGRADED_BODY_MARKER, marker_label="degraded"
        )
        for u in user_ids
    ]


def wait_for_scorer(server: ServerProcess, timeout_s: float) -> str:
    """Poll /model until the champion's scorer is settled (compiled, lightgbm or failed); records it."""
    started = time.monotonic()
    scorer = "unknown"
    while time.monotonic() - started < timeout_s:
        model = get_json(server.base_url + "/model")
        champion = model.get("champion") if isinstance(model, dict) else None
        scorer = str((champion or {}).get("scorer") or "none")
        if scorer != "compiling":
            break
        time.sleep(0.25)
    server.info.update({"scorer": scorer, "scorer_wait_s": round(time.monotonic() - started, 2)})
    return scorer


def start_feast_server(
    cli_repo: Path, env: Mapping[str, str], log_path: Path, *, cores: str | None, ready_timeout_s: float = 90.0
) -> ServerProcess:
    """Feast's own Python feature server (``feast -c <repo> serve``, 1 worker, HTTP), waited for /health.

    ``--max-requests 0`` turns off gunicorn's worker recycling (Feast's default restarts the worker
    every ~1000 requests, which would put restarts into the peer's numbers); no access log, like the
    service.
    """
    port = free_port()
    server = start_server(
        "feast serve",
        [
            executable("feast"),
            "-c",
            str(cli_repo),
            "serve",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "--workers",
            "1",
            "--no-access-log",
            "--max-requests",
            "0",
        ],
        port=port,
        env=env,
        log_path=log_path,
        cores=cores,
    )
    wait_until_ready(server, "/health", ready_timeout_s)
    return server


class StepMeter:
    """CPU of the server, the generator (this process) and Redis, and of the whole machine, around a step."""

    def __init__(self, server: ServerProcess, redis_pid: int | None) -> None:
        self.server = server
        self.redis_pid = redis_pid

    def __enter__(self) -> StepMeter:
        self.busy0, self.steal0 = cpu_totals()
        self.server0 = self.server.cpu_s()
        self.redis0 = process_cpu_s(self.redis_pid) if self.redis_pid else 0.0
        self.own0 = time.process_time()
        self.wall0 = time.perf_counter()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.wall_s = time.perf_counter() - self.wall0
        self.server_cpu_s = self.server.cpu_s() - self.server0
        redis_cpu = (process_cpu_s(self.redis_pid) - self.redis0) if self.redis_pid else 0.0
        own_cpu = time.process_time() - self.own0
        busy, steal = cpu_totals()
        self.interference = interference(
            busy - self.busy0, steal - self.steal0, self.wall_s, self.server_cpu_s + redis_cpu + own_cpu
        )
