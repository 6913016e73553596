"""The evaluation-set file: round trip, query grouping, and one-line errors for bad files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from shared.errors import UserInputError
from shared.feature_definitions import RANKER_FEATURES
from zadanie3.evaluation_set import evaluation_set_from_frame, load_evaluation_set, save_evaluation_set
from zadanie3.tests.synthetic_rankers import synthetic_frame


def test_parquet_round_trip_keeps_every_value(tmp_path: Path) -> None:
    original = evaluation_set_from_frame(synthetic_frame(1, n_users=20))

    loaded = load_evaluation_set(save_evaluation_set(original, tmp_path / "eval.parquet"))

    np.testing.assert_array_equal(loaded.features, original.features)
    np.testing.assert_array_equal(loaded.labels, original.labels)
    np.testing.assert_array_equal(loaded.event_time, original.event_time)
    assert loaded.feature_names == RANKER_FEATURES
    assert pd.read_parquet(tmp_path / "eval.parquet")["event_time"].dt.tz is not None


def test_a_query_is_one_user_at_one_time() -> None:
    frame = synthetic_frame(1, n_users=3, items_per_user=4)
    frame.loc[frame.index[:2], "event_time"] += pd.Timedelta(days=1)  # user 1's first two rows: another request

    eval_set = evaluation_set_from_frame(frame)

    assert len(np.unique(eval_set.query_ids)) == 4
    assert eval_set.summary()["queries"] == 4


def test_feature_columns_are_reordered_for_the_model() -> None:
    eval_set = evaluation_set_from_frame(synthetic_frame(1, n_users=5))
    wanted = tuple(reversed(RANKER_FEATURES))

    matrix = eval_set.matrix_for(wanted)

    np.testing.assert_array_equal(matrix[:, 0], eval_set.features[:, -1])


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        (lambda f: f.drop(columns=["uc_affinity"]), "lacks columns: uc_affinity"),
        (lambda f: f.assign(label=2), "only 0 and 1"),
        (lambda f: f.assign(event_time="not a time"), "event_time"),
        (lambda f: f.iloc[:0], "empty"),
    ],
    ids=["missing feature", "graded label", "bad time", "empty"],
)
def test_malformed_sets_are_user_errors(tmp_path: Path, breakage, message: str) -> None:
    path = tmp_path / "eval.parquet"
    breakage(synthetic_frame(1, n_users=5)).to_parquet(path)

    with pytest.raises(UserInputError, match=message):
        load_evaluation_set(path)


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match="evaluation set not found"):
        load_evaluation_set(tmp_path / "nope.parquet")
