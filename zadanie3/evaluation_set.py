"""The labelled held-out set every gate and comparison is measured on (one parquet file).

Training (zadanie1) writes it next to the ranker, ``artifacts/train/eval_set.parquet``, one row per
(request, candidate product) pair of the held-out window:

============================  ===========================  ===============================================
column                        type                         meaning
============================  ===========================  ===============================================
every name in RANKER_FEATURES float32 (NaN allowed)        model input, exactly as the ranker saw it
``label``                     int8/int64 in {0, 1}         1 = the user interacted with the product
``user_id``                   int64                        the user the list was made for
``event_time``                timestamp (UTC)              when the list would have been requested
``product_id`` (optional)     int64                        the candidate product (for debugging)
============================  ===========================  ===============================================

One ranked list (a *query*) is every row sharing ``(user_id, event_time)``; ndcg is computed per
query, ROC-AUC over all rows, and the stability gate slices rows by ``event_time``. Extra columns
are ignored. The module depends only on ``shared`` so a lead may move it there unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from shared.errors import UserInputError
from shared.feature_definitions import RANKER_FEATURES

LABEL = "label"
USER_ID = "user_id"
EVENT_TIME = "event_time"
PRODUCT_ID = "product_id"


@dataclass(frozen=True)
class EvaluationSet:
    """Feature matrix (float32, columns = ``feature_names``), binary labels, user ids and request times."""

    features: np.ndarray
    feature_names: tuple[str, ...]
    labels: np.ndarray  # int8 in {0, 1}
    user_ids: np.ndarray  # int64
    event_time: np.ndarray  # datetime64[ns], UTC
    product_ids: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.labels)
        if self.features.shape != (n, len(self.feature_names)):
            raise ValueError(f"features {self.features.shape} do not match {n} rows x {len(self.feature_names)}")
        if len(self.user_ids) != n or len(self.event_time) != n:
            raise ValueError("labels, user_ids and event_time must have equal lengths")

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def query_ids(self) -> np.ndarray:
        """Dense int64 id of each row's ranked list: rows sharing (user_id, event_time) form one query."""
        keys = pd.MultiIndex.from_arrays([self.user_ids, self.event_time.astype("int64")])
        codes, _ = pd.factorize(keys, sort=True)
        return codes.astype(np.int64)

    def matrix_for(self, feature_names: Sequence[str]) -> np.ndarray:
        """Columns reordered to a model's input order; raises ``UserInputError`` when one is missing."""
        wanted = tuple(feature_names)
        if wanted == self.feature_names:
            return self.features
        position = {name: i for i, name in enumerate(self.feature_names)}
        missing = [name for name in wanted if name not in position]
        if missing:
            raise UserInputError(f"evaluation set lacks model features: {', '.join(missing[:5])}")
        return np.ascontiguousarray(self.features[:, [position[name] for name in wanted]])

    def subset(self, mask: np.ndarray) -> EvaluationSet:
        return EvaluationSet(
            features=self.features[mask],
            feature_names=self.feature_names,
            labels=self.labels[mask],
            user_ids=self.user_ids[mask],
            event_time=self.event_time[mask],
            product_ids=None if self.product_ids is None else self.product_ids[mask],
        )

    def summary(self) -> dict[str, object]:
        """Size facts recorded in every gate report."""
        times = pd.to_datetime(self.event_time, utc=True)
        return {
            "rows": len(self),
            "queries": int(self.query_ids.max() + 1) if len(self) else 0,
            "users": len(np.unique(self.user_ids)),
            "positives": int(self.labels.sum()),
            "positive_rate": float(self.labels.mean()) if len(self) else 0.0,
            "time_start": str(times.min()) if len(self) else None,
            "time_end": str(times.max()) if len(self) else None,
        }


def evaluation_set_from_frame(frame: pd.DataFrame, *, feature_names: Sequence[str] = RANKER_FEATURES) -> EvaluationSet:
    """Validate a frame in the file format above and build the set; ``UserInputError`` names what is wrong."""
    required = [*feature_names, LABEL, USER_ID, EVENT_TIME]
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise UserInputError(f"evaluation set lacks columns: {', '.join(missing[:8])}")
    if frame.empty:
        raise UserInputError("evaluation set is empty")
    labels = pd.to_numeric(frame[LABEL], errors="coerce")
    if labels.isna().any() or not labels.isin([0, 1]).all():
        raise UserInputError("evaluation set column 'label' must hold only 0 and 1")
    try:
        features = frame[list(feature_names)].to_numpy(dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise UserInputError(f"evaluation set features are not numeric ({exc})") from exc
    times = pd.to_datetime(frame[EVENT_TIME], utc=True, errors="coerce", format="ISO8601")
    if times.isna().any():
        raise UserInputError("evaluation set column 'event_time' has missing or unreadable times")
    user_ids = pd.to_numeric(frame[USER_ID], errors="coerce")
    if user_ids.isna().any():
        raise UserInputError("evaluation set column 'user_id' has missing values")
    product_ids = frame[PRODUCT_ID].to_numpy(dtype=np.int64) if PRODUCT_ID in frame.columns else None
    return EvaluationSet(
        features=np.ascontiguousarray(features),
        feature_names=tuple(feature_names),
        labels=labels.to_numpy(dtype=np.int8),
        user_ids=user_ids.to_numpy(dtype=np.int64),
        event_time=times.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy(dtype="datetime64[ns]"),
        product_ids=product_ids,
    )


def evaluation_set_to_frame(eval_set: EvaluationSet) -> pd.DataFrame:
    """The file layout: feature columns, then label, user_id, event_time (UTC) and product_id when known."""
    frame = pd.DataFrame(eval_set.features, columns=list(eval_set.feature_names))
    frame[LABEL] = eval_set.labels.astype(np.int8)
    frame[USER_ID] = eval_set.user_ids.astype(np.int64)
    frame[EVENT_TIME] = pd.to_datetime(eval_set.event_time).tz_localize("UTC")
    if eval_set.product_ids is not None:
        frame[PRODUCT_ID] = eval_set.product_ids.astype(np.int64)
    return frame


def save_evaluation_set(eval_set: EvaluationSet, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    evaluation_set_to_frame(eval_set).to_parquet(path, index=False)
    return path


def load_evaluation_set(path: Path, *, feature_names: Sequence[str] = RANKER_FEATURES) -> EvaluationSet:
    """Read the parquet file; a missing or malformed file is a ``UserInputError`` (one-line message)."""
    if not path.is_file():
        raise UserInputError(f"{path}: evaluation set not found (training writes it; or pass --eval-set)")
    try:
        frame = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several unrelated types for a corrupt file
        raise UserInputError(f"{path}: unreadable parquet ({str(exc).splitlines()[0]})") from exc
    try:
        return evaluation_set_from_frame(frame, feature_names=feature_names)
    except UserInputError as exc:
        raise UserInputError(f"{path}: {exc}") from exc
