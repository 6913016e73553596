"""The ranker on disk: LightGBM's native text model plus its ordered feature list (never pickle).

A folder holds ``model.txt`` (``Booster.save_model``) and ``ranker_meta.json`` with the feature
names in model-input order, the SHA-256 of ``model.txt`` and facts about training. Training writes
it, the registry logs it, serving loads it; the feature order is checked against
``shared.feature_definitions`` on load.

The model text is checked before LightGBM parses it: some truncated files make LightGBM's parser call
``std::terminate`` (the whole process aborts, no exception), which a serving process reloading a
corrupt model must never do. The checksum (when the metadata has one) and the tree block's size
(``tree_sizes`` in the header must add up to the bytes between ``Tree=0`` and ``end of trees``)
catch truncation and corruption first.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from shared.errors import UserInputError

MODEL_FILE = "model.txt"
META_FILE = "ranker_meta.json"


@dataclass
class RankerArtifact:
    """A loaded ranker: ``score(matrix)`` returns one float64 score per row (higher = better)."""

    booster: Any  # lightgbm.Booster; typed loosely so importing this module stays cheap
    feature_names: tuple[str, ...]
    meta: dict[str, Any] = field(default_factory=dict)
    model_file: Path | None = None  # the model.txt it was parsed from (what a compiler reads)
    model_sha256: str | None = None  # of model.txt's bytes
    # The same trees as machine code (zadanie1.compiled_ranker.CompiledForest), set by the service once
    # a checked compilation exists; one reference assignment, so a request sees either scorer whole.
    compiled: Any = None

    @property
    def scorer(self) -> str:
        return "compiled" if self.compiled is not None else "lightgbm"

    def score(self, matrix: np.ndarray) -> np.ndarray:
        if matrix.ndim != 2 or matrix.shape[1] != len(self.feature_names):
            raise ValueError(f"expected a (n, {len(self.feature_names)}) matrix, got {matrix.shape}")
        if len(matrix) == 0:
            return np.empty(0, dtype=np.float64)
        compiled = self.compiled
        if compiled is not None:
            return np.asarray(compiled.predict(matrix), dtype=np.float64)
        # num_threads=1: serving workers must not oversubscribe the cores (see CONVENTIONS.md).
        return np.asarray(self.booster.predict(matrix, num_threads=1), dtype=np.float64)


def save_ranker(booster: Any, feature_names: tuple[str, ...] | list[str], meta: dict[str, Any], folder: Path) -> Path:
    """Write ``model.txt`` and ``ranker_meta.json`` into ``folder``; returns the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    booster.save_model(str(folder / MODEL_FILE))
    digest = hashlib.sha256((folder / MODEL_FILE).read_bytes()).hexdigest()
    payload = {**meta, "feature_names": list(feature_names), "model_sha256": digest}
    (folder / META_FILE).write_text(json.dumps(payload, indent=2, sort_keys=True, default=str))
    return folder


def load_ranker(folder: Path, *, expected_features: tuple[str, ...] | None = None) -> RankerArtifact:
    """Load a ranker folder; raises ``UserInputError`` with the reason when it is missing or corrupt."""
    import lightgbm as lgb

    model_path, meta_path = folder / MODEL_FILE, folder / META_FILE
    for path in (model_path, meta_path):
        if not path.is_file():
            raise UserInputError(f"{path}: ranker file not found")
    try:
        meta = json.loads(meta_path.read_text())
        feature_names = tuple(meta["feature_names"])
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise UserInputError(f"{meta_path}: unreadable ranker metadata ({exc})") from exc
    text = model_path.read_bytes()
    digest = hashlib.sha256(text).hexdigest()
    expected_digest = meta.get("model_sha256")
    if expected_digest and digest != expected_digest:
        raise UserInputError(f"{model_path}: corrupt LightGBM model (SHA-256 differs from {meta_path.name})")
    problem = model_text_problem(text)
    if problem:
        raise UserInputError(f"{model_path}: corrupt LightGBM model ({problem})")
    try:
        booster = lgb.Booster(model_str=text.decode())
    except (lgb.basic.LightGBMError, ValueError) as exc:  # ValueError: bad UTF-8 or pandas_categorical JSON
        raise UserInputError(f"{model_path}: corrupt LightGBM model ({str(exc).splitlines()[0]})") from exc
    if booster.num_feature() != len(feature_names):
        raise UserInputError(
            f"{model_path}: model has {booster.num_feature()} features but metadata lists {len(feature_names)}"
        )
    if expected_features is not None and feature_names != tuple(expected_features):
        raise UserInputError(f"{meta_path}: feature list differs from the feature registry (retrain the model)")
    return RankerArtifact(
        booster=booster, feature_names=feature_names, meta=meta, model_file=model_path, model_sha256=digest
    )


_TREE_SIZES = re.compile(rb"^tree_sizes=([0-9 ]*)$", re.MULTILINE)


def model_text_problem(text: bytes) -> str | None:
    """Why ``text`` is not a complete LightGBM text model (None when its tree block is intact)."""
    sizes_line = _TREE_SIZES.search(text)
    start, end = text.find(b"Tree=0\n"), text.find(b"end of trees")
    if sizes_line is None or start < 0 or end < 0:
        return "no complete tree block (truncated or not a LightGBM text model)"
    try:
        sizes = [int(size) for size in sizes_line.group(1).split()]
    except ValueError:
        return "unreadable tree_sizes header"
    if sum(sizes) != end - start:
        return f"tree block is {end - start} bytes, the header says {sum(sizes)}"
    # Cut after the trees (in the parameters) is no better: LightGBM may crash on it too. The Python
    # package always ends the file with the pandas_categorical line.
    last_line = text.rstrip(b"\n").rsplit(b"\n", 1)[-1]
    if b"\nend of parameters\n" not in text or not last_line.startswith(b"pandas_categorical:"):
        return "file ends early (no end of parameters / pandas_categorical line)"
    return None
