"""How high can ROC-AUC get on the evaluation set? Reference scores from the synthetic shop's ground truth.

The gate's production bar (ROC-AUC >= 0.85, the seed's) assumes a real shop's labels. On the generated shop
a candidate row's label is "any interaction with the product in the 5-day label window", drawn from a noisy
choice model, so even scores built from the generator's hidden truth rank imperfectly. This scores the
evaluation set with signals no trained model has:

- ``true_utility``: the generator's user-product utility ``u`` (taste, quality, brand, price);
- ``utility_plus_log_activity``: ``u + log(sessions per day)``, the log of the expected number of views up
  to a per-user normaliser (views are drawn with weight ``exp(u)`` in sessions that arrive at that rate).

Their ROC-AUC is an estimate of the attainable bar on this data; a demo threshold above it could only be met
by chance. ``recsys registry reference-auc`` prints them and writes ``artifacts/registry/reference_auc.json``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from shared.data_generator import GroundTruth
from shared.errors import UserInputError
from zadanie3.evaluation_set import LABEL, PRODUCT_ID, USER_ID
from zadanie3.gate_metrics import roc_auc


@dataclass(frozen=True)
class ReferenceAuc:
    """ROC-AUC (0..1) of ground-truth scores on the evaluation set's rows."""

    rows: int
    positives: int
    true_utility: float
    utility_plus_log_activity: float

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def reference_aucs(frame: pd.DataFrame, truth: GroundTruth) -> ReferenceAuc:
    """Score the rows of an evaluation-set frame (``user_id``, ``product_id``, ``label``) with the ground truth.

    Raises UserInputError when a column is missing or an id is unknown to the ground truth (e.g. an
    evaluation set from other data than the generated shop).
    """
    missing = [c for c in (USER_ID, PRODUCT_ID, LABEL) if c not in frame.columns]
    if missing:
        raise UserInputError(f"evaluation set lacks columns: {', '.join(missing)}")
    users = frame[USER_ID].to_numpy(dtype=np.int64)
    products = frame[PRODUCT_ID].to_numpy(dtype=np.int64)
    labels = frame[LABEL].to_numpy(dtype=np.float64)
    try:
        user_index = truth.user_index(users)
        utility = truth.pair_affinity_by_index(user_index, truth.product_index(products))
    except ValueError as exc:
        raise UserInputError(f"evaluation set does not match the ground truth ({exc})") from exc
    # activity > 0 for every generated user; the floor only guards log(0)
    log_activity = np.log(np.maximum(truth.user_activity[user_index].astype(np.float64), 1e-12))
    return ReferenceAuc(
        rows=len(frame),
        positives=int(labels.sum()),
        true_utility=roc_auc(labels, utility),
        utility_plus_log_activity=roc_auc(labels, utility + log_activity),
    )


def load_reference_aucs(eval_set_path: Path, ground_truth_dir: Path) -> ReferenceAuc:
    """``reference_aucs`` of the files; a missing file is a UserInputError naming it."""
    if not eval_set_path.is_file():
        raise UserInputError(f"{eval_set_path}: evaluation set not found (run `recsys train`)")
    try:
        truth = GroundTruth.load(ground_truth_dir)
    except FileNotFoundError as exc:
        raise UserInputError(str(exc)) from exc
    return reference_aucs(pd.read_parquet(eval_set_path, columns=[USER_ID, PRODUCT_ID, LABEL]), truth)


def write_reference_aucs(result: ReferenceAuc, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result.as_dict(), indent=2))
    return path
