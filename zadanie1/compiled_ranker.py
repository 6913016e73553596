"""The ranker compiled to machine code (lleaves): the same trees, several times cheaper per request.

LightGBM's ``predict`` walks every tree for every candidate through its generic tree interpreter: a
400-tree model scores 150 candidates in ~2.2 ms on this machine, the largest share of a request's CPU
at scale. lleaves compiles the model text through LLVM into one function for the host CPU (~0.3 ms
for the same matrix). Compiling takes tens of seconds for hundreds of trees, so it runs once per
model and machine, in its own process (``python -m zadanie1.compiled_ranker MODEL_FILE OBJECT``),
and the object file is cached:

* the object's name holds the model's SHA-256, the CPU it was built for and the compiler versions
  (an object is machine code for one CPU: loading it elsewhere could crash);
* the compiling process checks the compiled scores against LightGBM's on a probe matrix built from the
  model's own split thresholds (each side of every threshold, and NaN) and only then commits the
  object together with a sidecar JSON holding the object's SHA-256; a loader that finds no sidecar, or
  a different checksum, ignores the object (a truncated object must never reach LLVM's loader);
* the loading process checks the scores again before the object is used.

Scores equal LightGBM's up to the order of the floating-point sum (lleaves adds trees in cache blocks:
differences of ~1e-16 were seen, the check allows ``MAX_SCORE_ERROR``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

MAX_SCORE_ERROR = 1e-9
PROBE_ROWS = 512
SIDECAR_SUFFIX = ".json"
COMPILER_NICENESS = 10
ZERO_BAND = 1e-30  # |threshold| below this is LightGBM's kZeroThreshold (1e-35): a test for zero


class CompilationUnavailable(Exception):
    """lleaves (or LLVM) cannot be used here: the ranker stays on LightGBM."""


@dataclass(frozen=True)
class CompiledForest:
    """A compiled model: ``predict(matrix)`` gives LightGBM's ``predict`` (same objective transform)."""

    model: Any  # lleaves.Model, compiled
    object_path: Path

    def predict(self, matrix: np.ndarray) -> np.ndarray:
        # n_jobs=1: a direct call into the compiled function (it releases the GIL), no thread pool.
        return np.asarray(self.model.predict(np.ascontiguousarray(matrix, dtype=np.float64), n_jobs=1))


def _llvm() -> Any:
    try:
        import llvmlite.binding as llvm
    except ImportError as exc:
        raise CompilationUnavailable(f"llvmlite is not installed ({exc})") from exc
    return llvm


def machine_tag() -> str:
    """What an object file is specific to: the CPU name and features, lleaves and llvmlite versions."""
    llvm = _llvm()
    try:
        features = llvm.get_host_cpu_features().flatten()
    except RuntimeError:  # LLVM cannot read the features on some hosts
        features = ""
    try:
        versions = f"lleaves{metadata.version('lleaves')}-llvmlite{metadata.version('llvmlite')}"
    except metadata.PackageNotFoundError as exc:
        raise CompilationUnavailable(f"lleaves is not installed ({exc})") from exc
    digest = hashlib.sha256(f"{features}|{versions}".encode()).hexdigest()[:12]
    return f"{llvm.get_host_cpu_name()}-{digest}"


def object_path_for(cache_dir: Path, model_sha256: str) -> Path:
    """Where the compiled object of a model (by its text's SHA-256) for this machine is cached."""
    return cache_dir / f"ranker-{model_sha256[:24]}-{machine_tag()}.o"


def _sidecar(object_path: Path) -> Path:
    return object_path.with_suffix(object_path.suffix + SIDECAR_SUFFIX)


def _file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


_SPLIT_FEATURE = re.compile(r"^split_feature=(.*)$", re.MULTILINE)
_THRESHOLD = re.compile(r"^threshold=(.*)$", re.MULTILINE)


def probe_matrix(model_text: str, n_features: int, rows: int = PROBE_ROWS, seed: int = 0) -> np.ndarray:
    """Rows that send the trees down many paths: each cell is, at random, just below, at or just above
    one of its feature's split thresholds, exactly 0, or NaN (the missing-value branches).

    Thresholds of +-1e-35 (LightGBM's encoding of "is zero") and infinite ones stand for 0: values
    inside LightGBM's zero band are not features a shop has, and lleaves rounds them differently.
    """
    thresholds: list[list[float]] = [[0.0] for _ in range(n_features)]
    for features, values in zip(_SPLIT_FEATURE.findall(model_text), _THRESHOLD.findall(model_text), strict=True):
        for feature, value in zip(features.split(), values.split(), strict=True):
            threshold = float(value)
            if math.isfinite(threshold) and abs(threshold) > ZERO_BAND:
                thresholds[int(feature)].append(threshold)
    rng = np.random.default_rng(seed)
    matrix = np.empty((rows, n_features))
    for j, column in enumerate(thresholds):
        base = np.asarray(column)[rng.integers(0, len(column), rows)]
        step = np.maximum(np.abs(base), 1.0) * 1e-6
        matrix[:, j] = base + step * rng.integers(-1, 2, rows)
    matrix[rng.random(matrix.shape) < 0.1] = 0.0
    matrix[rng.random(matrix.shape) < 0.1] = np.nan
    return matrix


def score_error(forest: CompiledForest, booster: Any, probe: np.ndarray) -> float:
    """Largest absolute difference between the compiled and LightGBM's scores on ``probe``."""
    expected = np.asarray(booster.predict(probe, num_threads=1), dtype=np.float64)
    return float(np.max(np.abs(forest.predict(probe) - expected), initial=0.0))


def _lleaves_model(model_file: Path, object_path: Path) -> CompiledForest:
    """Compile ``model_file`` into ``object_path``, or load that object when the file exists."""
    try:
        import lleaves
    except ImportError as exc:
        raise CompilationUnavailable(f"lleaves is not installed ({exc})") from exc
    model = lleaves.Model(model_file=str(model_file))
    model.compile(cache=str(object_path))
    return CompiledForest(model, object_path)


def compile_model(model_file: Path, object_path: Path) -> dict[str, Any]:
    """Compile, check against LightGBM, then commit the object and its sidecar (the CLI's work)."""
    import lightgbm as lgb

    raw = model_file.read_bytes()  # hashed as bytes, like load_ranker's model_sha256
    text = raw.decode()
    booster = lgb.Booster(model_str=text)
    object_path.parent.mkdir(parents=True, exist_ok=True)
    staged = object_path.with_name(f".{object_path.name}.{os.getpid()}.tmp")
    staged.unlink(missing_ok=True)
    try:
        forest = _lleaves_model(model_file, staged)
        error = score_error(forest, booster, probe_matrix(text, booster.num_feature()))
        if not error <= MAX_SCORE_ERROR:
            raise RuntimeError(f"compiled scores differ from LightGBM's by {error:.3g} (allowed {MAX_SCORE_ERROR})")
        facts = {
            "model_sha256": hashlib.sha256(raw).hexdigest(),
            "object_sha256": _file_sha256(staged),
            "trees": int(booster.num_trees()),
            "max_score_error": error,
        }
        os.replace(staged, object_path)
        sidecar_staged = staged.with_suffix(".json.tmp")
        sidecar_staged.write_text(json.dumps(facts, indent=2))
        os.replace(sidecar_staged, _sidecar(object_path))  # the sidecar commits the object
        return facts
    finally:
        staged.unlink(missing_ok=True)


def load_compiled(object_path: Path, model_file: Path, booster: Any, model_sha256: str) -> CompiledForest | None:
    """The cached compiled model of the model text ``model_sha256``, checked against ``booster``; None
    when no committed object of that text is there."""
    sidecar = _sidecar(object_path)
    if not (object_path.is_file() and sidecar.is_file()):
        return None
    try:
        facts = json.loads(sidecar.read_text())
    except (OSError, ValueError):
        return None
    if facts.get("model_sha256") != model_sha256:
        return None  # compiled from another text (the file changed while it compiled)
    if facts.get("object_sha256") != _file_sha256(object_path):
        return None  # truncated or replaced since it was checked: never hand it to LLVM
    forest = _lleaves_model(model_file, object_path)
    error = score_error(forest, booster, probe_matrix(model_file.read_text(), booster.num_feature()))
    if not error <= MAX_SCORE_ERROR:
        raise RuntimeError(f"{object_path}: compiled scores differ from LightGBM's by {error:.3g}")
    return forest


def main(argv: list[str] | None = None) -> int:
    """``python -m zadanie1.compiled_ranker MODEL_FILE OBJECT``: compile and commit; prints the facts."""
    args = sys.argv[1:] if argv is None else argv
    with contextlib.suppress(OSError):  # a background job: requests on the same cores come first
        os.nice(COMPILER_NICENESS)
    if len(args) != 2:
        print("usage: python -m zadanie1.compiled_ranker MODEL_FILE OBJECT", file=sys.stderr)
        return 2
    try:
        facts = compile_model(Path(args[0]), Path(args[1]))
    except Exception as exc:  # the parent logs this line and keeps LightGBM
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(facts))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
