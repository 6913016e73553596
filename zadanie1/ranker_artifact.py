"""The ranker on disk: LightGBM's native text model plus its ordered feature list (never pickle).

A folder holds ``model.txt`` (``Booster.save_model``) and ``ranker_meta.json`` with the feature
names in model-input order and facts about training. Training writes it, the registry logs it,
serving loads it; the feature order is checked against ``shared.feature_definitions`` on load.
"""

from __future__ import annotations

import json
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

    def score(self, matrix: np.ndarray) -> np.ndarray:
        if matrix.ndim != 2 or matrix.shape[1] != len(self.feature_names):
            raise ValueError(f"expected a (n, {len(self.feature_names)}) matrix, got {matrix.shape}")
        if len(matrix) == 0:
            return np.empty(0, dtype=np.float64)
        # num_threads=1: serving workers must not oversubscribe the cores (see CONVENTIONS.md).
        return np.asarray(self.booster.predict(matrix, num_threads=1), dtype=np.float64)


def save_ranker(booster: Any, feature_names: tuple[str, ...] | list[str], meta: dict[str, Any], folder: Path) -> Path:
    """Write ``model.txt`` and ``ranker_meta.json`` into ``folder``; returns the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    booster.save_model(str(folder / MODEL_FILE))
    payload = {**meta, "feature_names": list(feature_names)}
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
    try:
        booster = lgb.Booster(model_file=str(model_path))
    except lgb.basic.LightGBMError as exc:
        raise UserInputError(f"{model_path}: corrupt LightGBM model ({str(exc).splitlines()[0]})") from exc
    if booster.num_feature() != len(feature_names):
        raise UserInputError(
            f"{model_path}: model has {booster.num_feature()} features but metadata lists {len(feature_names)}"
        )
    if expected_features is not None and feature_names != tuple(expected_features):
        raise UserInputError(f"{meta_path}: feature list differs from the feature registry (retrain the model)")
    return RankerArtifact(booster=booster, feature_names=feature_names, meta=meta)
