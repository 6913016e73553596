"""The real service as a subprocess: ``recsys serve`` on a free 127.0.0.1 port, ready-wait, stop.

Shared by the demo client, the A/B simulator and the benchmarks, which measure the service from outside.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"


def free_port(host: str = HOST) -> int:
    """A TCP port nobody listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def start_service(port: int, log_path: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """``recsys serve`` in a subprocess, its output into ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_file = log_path.open("wb")
    command = [
        sys.executable,
        "-m",
        "shared.cli",
        "serve",
        "--host",
        HOST,
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]
    return subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, env=env or os.environ.copy())


def wait_ready(base_url: str, process: subprocess.Popen[bytes], timeout_s: float) -> dict[str, Any]:
    """Poll /health/ready until 200; raise with the reason when the process dies or time runs out."""
    import httpx

    deadline = time.monotonic() + timeout_s
    last: dict[str, Any] = {}
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the service exited with code {process.returncode}")
        try:
            response = httpx.get(f"{base_url}/health/ready", timeout=2.0)
            last = response.json()
            if response.status_code == 200:
                return last
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise RuntimeError(f"the service was not ready after {timeout_s:.0f} s (last answer: {last})")


def stop_service(process: subprocess.Popen[bytes], timeout_s: float = 15.0) -> None:
    """SIGINT (graceful shutdown), then SIGKILL if it does not stop in time."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)
