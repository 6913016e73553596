"""The served rankers switched to their compiled trees (zadanie1.compiled_ranker), without a pause.

A loaded model serves at once on LightGBM. :meth:`RankerCompiler.attach` then looks for the model's
compiled object in the cache: found and checked, it is attached before the model is swapped in (a
restart costs ~50 ms); missing, the model goes to a background thread that compiles it in a child
process (``python -m zadanie1.compiled_ranker``, which lowers its own CPU priority: compiling hundreds of trees
takes tens of seconds of CPU that requests need more) and attaches the result when it has been checked.
A failure (no lleaves for this platform, a compiler error, scores that differ) leaves the model on
LightGBM, is logged once and is not retried for that model; it never affects a request.
"""

from __future__ import annotations

import logging
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
COMPILE_TIMEOUT_S = 1800.0


class RankerCompiler:
    """Attaches compiled trees to loaded rankers (``RankerArtifact``); one background worker."""

    def __init__(self, cache_dir: Path, *, enabled: bool = True, timeout_s: float = COMPILE_TIMEOUT_S) -> None:
        self.cache_dir = cache_dir
        self.enabled = enabled
        self.timeout_s = timeout_s
        self.status: dict[str, str] = {}  # model SHA-256 -> compiled | compiling | failed: reason | lightgbm
        self._queue: queue.Queue[tuple[Any, str, Path] | None] = queue.Queue()
        self._worker: threading.Thread | None = None
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._process: subprocess.Popen[bytes] | None = None

    def attach(self, artifact: Any) -> str:
        """Use the cached compiled trees now, or queue their compilation; returns the model's status.

        A model whose compilation failed is not tried again (its status says why). Every artifact of a
        model still compiling is queued too: the worker finds the object its twin committed.
        """
        model_file: Path | None = getattr(artifact, "model_file", None)
        sha: str | None = getattr(artifact, "model_sha256", None)
        if not self.enabled or model_file is None or sha is None:
            return "lightgbm"
        if artifact.compiled is not None:
            return "compiled"
        previous = self.status.get(sha, "")
        if previous.startswith("failed"):
            return previous
        from zadanie1.compiled_ranker import CompilationUnavailable, object_path_for

        try:
            object_path = object_path_for(self.cache_dir, sha)
        except CompilationUnavailable as exc:
            return self._set(sha, f"failed: {exc}")
        if self._attach_cached(artifact, object_path):
            return self._set(sha, "compiled")
        with self._lock:
            self.status[sha] = "compiling"
            self._ensure_worker()
        self._queue.put((artifact, sha, object_path))
        return "compiling"

    def _attach_cached(self, artifact: Any, object_path: Path) -> bool:
        """Attach the committed, checked object of ``artifact``'s model when there is one."""
        from zadanie1.compiled_ranker import load_compiled

        try:
            forest = load_compiled(object_path, artifact.model_file, artifact.booster, artifact.model_sha256)
        except Exception as exc:  # a stale or broken object: it is compiled again
            log.warning("cached compiled ranker unusable (%s); compiling again", exc)
            return False
        if forest is None:
            return False
        artifact.compiled = forest
        return True

    def status_of(self, artifact: Any) -> str:
        """``compiled`` | ``compiling`` | ``lightgbm`` | ``failed: ...`` for a loaded ranker."""
        if getattr(artifact, "compiled", None) is not None:
            return "compiled"
        sha = getattr(artifact, "model_sha256", None)
        if not self.enabled or sha is None:
            return "lightgbm"
        return self.status.get(sha, "lightgbm")

    def wait_idle(self, timeout_s: float) -> bool:
        """Block until nothing is queued or compiling (tests, benchmarks); False on timeout."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._queue.unfinished_tasks == 0:
                return True
            time.sleep(0.05)
        return False

    def close(self) -> None:
        self._stopped.set()
        process = self._process
        if process is not None and process.poll() is None:
            process.kill()
        self._queue.put(None)

    def _set(self, sha: str, status: str) -> str:
        with self._lock:
            self.status[sha] = status
        return status

    def _ensure_worker(self) -> None:
        if self._worker is None or not self._worker.is_alive():
            self._worker = threading.Thread(target=self._run, name="ranker-compiler", daemon=True)
            self._worker.start()

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            try:
                if job is None or self._stopped.is_set():
                    return
                artifact, sha, object_path = job
                self._set(sha, self._compile_and_attach(artifact, object_path))
            finally:
                self._queue.task_done()

    def _compile_and_attach(self, artifact: Any, object_path: Path) -> str:
        from zadanie1.compiled_ranker import load_compiled

        if self._attach_cached(artifact, object_path):  # an earlier job of the same model committed it
            return "compiled"
        started = time.monotonic()
        self._process = subprocess.Popen(
            [sys.executable, "-m", "zadanie1.compiled_ranker", str(artifact.model_file), str(object_path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            _, stderr = self._process.communicate(timeout=self.timeout_s)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.communicate()
            return self._failed(artifact, f"compiling took longer than {self.timeout_s:.0f} s")
        if self._stopped.is_set():
            return "lightgbm"
        if self._process.returncode != 0:
            reason = stderr.decode(errors="replace").strip().splitlines()
            return self._failed(artifact, reason[-1] if reason else f"exit code {self._process.returncode}")
        try:
            forest = load_compiled(object_path, artifact.model_file, artifact.booster, artifact.model_sha256)
        except Exception as exc:
            return self._failed(artifact, f"{type(exc).__name__}: {exc}")
        if forest is None:
            return self._failed(artifact, "the compiler committed no object")
        artifact.compiled = forest
        log.info("ranker %s compiled in %.1f s; serving it compiled", artifact.model_file, time.monotonic() - started)
        return "compiled"

    def _failed(self, artifact: Any, reason: str) -> str:
        log.warning("ranker %s stays on LightGBM: compiling failed (%s)", artifact.model_file, reason)
        return f"failed: {reason}"
