"""The ranker folder refuses truncated or altered model files before LightGBM parses them.

Some truncations make LightGBM's parser abort the whole process (``std::terminate``); each case here
runs ``load_ranker`` in this process, so a missing check would crash the test run, not just fail.
"""

from __future__ import annotations

import json
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pytest

from shared.errors import UserInputError
from zadanie1.ranker_artifact import META_FILE, MODEL_FILE, load_ranker, model_text_problem, save_ranker


@pytest.fixture(scope="module")
def ranker_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 4))
    booster = lgb.train(
        {"objective": "binary", "num_leaves": 4, "verbose": -1, "num_threads": 1},
        lgb.Dataset(x, (x[:, 0] > 0).astype(int)),
        num_boost_round=6,
    )
    return save_ranker(booster, ["a", "b", "c", "d"], {"note": "test"}, tmp_path_factory.mktemp("r") / "ranker")


def _copy_with_model(source: Path, folder: Path, model: bytes, *, keep_checksum: bool) -> Path:
    folder.mkdir()
    meta = json.loads((source / META_FILE).read_text())
    if not keep_checksum:
        meta.pop("model_sha256")  # a folder written before checksums were recorded
    (folder / META_FILE).write_text(json.dumps(meta))
    (folder / MODEL_FILE).write_bytes(model)
    return folder


def test_an_intact_model_loads_and_its_checksum_is_recorded(ranker_dir: Path) -> None:
    meta = json.loads((ranker_dir / META_FILE).read_text())
    assert len(meta["model_sha256"]) == 64
    assert model_text_problem((ranker_dir / MODEL_FILE).read_bytes()) is None
    artifact = load_ranker(ranker_dir)
    assert artifact.score(np.zeros((2, 4))).shape == (2,)


@pytest.mark.parametrize("fraction", [0.1, 0.3, 0.5, 0.7, 0.9, 0.99])
@pytest.mark.parametrize("keep_checksum", [True, False])
def test_a_truncated_model_is_refused_with_a_clear_message(
    ranker_dir: Path, tmp_path: Path, fraction: float, keep_checksum: bool
) -> None:
    model = (ranker_dir / MODEL_FILE).read_bytes()
    cut = model[: int(len(model) * fraction)]
    folder = _copy_with_model(ranker_dir, tmp_path / "cut", cut, keep_checksum=keep_checksum)
    with pytest.raises(UserInputError, match="corrupt LightGBM model"):
        load_ranker(folder)


def test_a_changed_byte_is_caught_by_the_checksum(ranker_dir: Path, tmp_path: Path) -> None:
    model = bytearray((ranker_dir / MODEL_FILE).read_bytes())
    position = model.index(b"leaf_value=") + len(b"leaf_value=")
    model[position] = ord("7") if model[position] != ord("7") else ord("8")
    folder = _copy_with_model(ranker_dir, tmp_path / "flip", bytes(model), keep_checksum=True)
    with pytest.raises(UserInputError, match="SHA-256"):
        load_ranker(folder)


def test_a_tree_block_of_the_wrong_size_is_named() -> None:
    text = b"tree\ntree_sizes=10 10\n\nTree=0\nshort\n\nend of trees\n"  # 7 bytes of trees
    assert "header says 20" in str(model_text_problem(text))
    assert "no complete tree block" in str(model_text_problem(b"garbage"))
