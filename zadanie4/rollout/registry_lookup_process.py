"""Registry look-ups in a helper process, so a model reload costs the serving process almost nothing.

Resolving an alias and checking the local copy are MLflow calls: tens of milliseconds of pure Python
that would hold the GIL against the event loop (a reload under load raised the p99 ~2.5x). The
service therefore keeps one long-lived child, ``python -m zadanie4.rollout.registry_lookup_process``, at a lower CPU
priority, and asks it over JSON lines on its stdin/stdout (no pickle): ``{"alias", "cache_dir"}`` in,
``{"version", "run_id", "folder", "loaded_from"}`` or ``{"error", "message"}`` out. The child runs
zadanie3's ``fetch_ranker_by_alias`` (registry, download into the cache, last-good fallback); the
service then only parses the files (LightGBM's parser runs without the GIL).
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO, Any

HELPER_NICENESS = 10  # the helper yields the CPU to the serving process on a busy machine
ERROR_NOT_FOUND = "not_found"
ERROR_UNAVAILABLE = "unavailable"
ERROR_FAILED = "failed"


class RegistryHelper:
    """The parent side: starts the child on first use (or :meth:`start`), one request at a time."""

    def __init__(self, cache_dir: Path | None, *, timeout_s: float = 60.0) -> None:
        self.cache_dir = cache_dir
        self.timeout_s = timeout_s
        self._process: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        with self._lock:
            self._ensure()

    def fetch(self, alias: str) -> Any:
        """zadanie3's ``FetchedRanker`` for ``alias``; raises its ``ModelNotFound`` / ``RegistryUnavailable``."""
        from zadanie3.registry_client import FetchedRanker, ModelNotFound, RegistryUnavailable

        request = {"alias": alias, "cache_dir": str(self.cache_dir) if self.cache_dir else None}
        with self._lock:
            process = self._ensure()
            assert process.stdin is not None and process.stdout is not None
            try:
                process.stdin.write(json.dumps(request).encode() + b"\n")
                process.stdin.flush()
                line = _read_line(process.stdout, self.timeout_s)
            except (OSError, TimeoutError) as exc:
                self._stop_locked()
                raise RegistryUnavailable(f"registry helper process: {type(exc).__name__}: {exc}") from exc
            if not line:
                self._stop_locked()
                raise RegistryUnavailable(f"registry helper process exited (code {process.poll()})")
        answer = json.loads(line)
        error = answer.get("error")
        if error == ERROR_NOT_FOUND:
            raise ModelNotFound(answer["message"])
        if error is not None:
            raise RegistryUnavailable(answer["message"])
        return FetchedRanker(
            alias=alias,
            version=int(answer["version"]),
            run_id=answer.get("run_id"),
            folder=Path(answer["folder"]),
            loaded_from=str(answer["loaded_from"]),
        )

    def close(self) -> None:
        with self._lock:
            self._stop_locked()

    def _ensure(self) -> subprocess.Popen[bytes]:
        if self._process is None or self._process.poll() is not None:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "zadanie4.rollout.registry_lookup_process"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                env=os.environ.copy(),
            )
        return self._process

    def _stop_locked(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.stdin is not None:
            with contextlib.suppress(OSError):
                process.stdin.close()  # the child's loop ends at EOF
        try:
            process.wait(timeout=2)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=2)


def _read_line(stream: IO[bytes], timeout_s: float) -> bytes:
    ready, _, _ = select.select([stream], [], [], timeout_s)
    if not ready:
        raise TimeoutError(f"no answer within {timeout_s:g} s")
    return stream.readline()


def serve(requests: IO[str], answers: IO[str]) -> None:
    """The child's loop: one JSON request per line in, one JSON answer per line out, until EOF."""
    from zadanie3 import registry_client
    from zadanie3.settings import load_settings

    for line in requests:
        if not line.strip():
            continue
        try:
            request = json.loads(line)
            cache_dir = Path(request["cache_dir"]) if request.get("cache_dir") else None
            fetched = registry_client.fetch_ranker_by_alias(str(request["alias"]), load_settings(), cache_dir=cache_dir)
            answer: dict[str, Any] = {
                "version": fetched.version,
                "run_id": fetched.run_id,
                "folder": str(fetched.folder),
                "loaded_from": fetched.loaded_from,
            }
        except registry_client.ModelNotFound as exc:
            answer = {"error": ERROR_NOT_FOUND, "message": str(exc)}
        except registry_client.RegistryUnavailable as exc:
            answer = {"error": ERROR_UNAVAILABLE, "message": str(exc)}
        except Exception as exc:  # anything else: the service keeps its model and reports the reason
            answer = {"error": ERROR_FAILED, "message": f"{type(exc).__name__}: {exc}"}
        answers.write(json.dumps(answer) + "\n")
        answers.flush()


def main() -> None:
    import logging

    with contextlib.suppress(OSError):
        os.nice(HELPER_NICENESS)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    answers = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    sys.stdout = sys.stderr  # anything a library prints must not corrupt the answers
    serve(sys.stdin, answers)


if __name__ == "__main__":
    main()
