"""The compiled ranker gives LightGBM's scores, and a cached object is used only when it is intact.

Each model here is compiled for real (lleaves + LLVM, a few seconds for these small models); the
checks compare with ``Booster.predict`` on data with missing values and on the probe matrix.
"""

from __future__ import annotations

import json
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pytest

from zadanie1 import compiled_ranker as cr
from zadanie1.ranker_artifact import load_ranker, save_ranker

pytest.importorskip("lleaves")


def _train(objective: str, seed: int) -> lgb.Booster:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(4000, 6))
    x[rng.random(x.shape) < 0.15] = np.nan  # the serving matrix has missing values: their branches count
    y = (np.nan_to_num(x[:, 0]) + np.nan_to_num(x[:, 1]) * np.nan_to_num(x[:, 2]) > 0).astype(int)
    params = {"objective": objective, "num_leaves": 15, "verbose": -1, "num_threads": 1}
    data = lgb.Dataset(x, y, group=[40] * 100) if objective == "lambdarank" else lgb.Dataset(x, y)
    return lgb.train(params, data, num_boost_round=40)


@pytest.fixture(scope="module", params=["binary", "lambdarank"])
def ranker(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    folder = tmp_path_factory.mktemp(request.param) / "ranker"
    save_ranker(_train(request.param, 3), [f"f{i}" for i in range(6)], {}, folder)
    artifact = load_ranker(folder)
    object_path = cr.object_path_for(folder.parent / "compiled", artifact.model_sha256)
    facts = cr.compile_model(artifact.model_file, object_path)
    return artifact, object_path, facts


def test_compiled_scores_equal_lightgbm_on_data_with_missing_values(ranker) -> None:  # type: ignore[no-untyped-def]
    artifact, object_path, facts = ranker
    forest = cr.load_compiled(object_path, artifact.model_file, artifact.booster, artifact.model_sha256)
    assert forest is not None
    rng = np.random.default_rng(7)
    matrix = rng.normal(size=(150, 6)).astype(np.float32)  # float32, as the service assembles it
    matrix[rng.random(matrix.shape) < 0.2] = np.nan
    expected = artifact.score(matrix)
    artifact.compiled = forest
    assert artifact.scorer == "compiled"
    np.testing.assert_allclose(artifact.score(matrix), expected, rtol=0, atol=1e-12)
    assert not np.array_equal(expected, np.full_like(expected, expected[0]))  # the model is not constant
    assert facts["trees"] == artifact.booster.num_trees() and facts["max_score_error"] <= cr.MAX_SCORE_ERROR
    artifact.compiled = None


def test_the_probe_matrix_reaches_both_sides_of_the_thresholds(ranker) -> None:  # type: ignore[no-untyped-def]
    artifact, _, _ = ranker
    probe = cr.probe_matrix(artifact.model_file.read_text(), 6)
    leaves = artifact.booster.predict(probe, pred_leaf=True)  # (rows, trees): the leaf each row ends in
    reached = sum(len(np.unique(leaves[:, t])) for t in range(leaves.shape[1]))
    total = sum(tree["num_leaves"] for tree in artifact.booster.dump_model()["tree_info"])
    assert np.isnan(probe).any()
    assert reached / total > 0.8


def test_an_object_is_used_only_with_its_sidecar_and_checksum(ranker, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    artifact, object_path, _ = ranker
    copy = tmp_path / object_path.name
    copy.write_bytes(object_path.read_bytes())
    args = (artifact.model_file, artifact.booster, artifact.model_sha256)
    assert cr.load_compiled(copy, *args) is None  # no sidecar: not committed
    sidecar = Path(f"{object_path}.json")
    Path(f"{copy}.json").write_text(sidecar.read_text())
    assert cr.load_compiled(copy, *args) is not None
    copy.write_bytes(object_path.read_bytes()[:-100])  # truncated after it was committed
    assert cr.load_compiled(copy, *args) is None
    copy.write_bytes(object_path.read_bytes())
    facts = json.loads(sidecar.read_text()) | {"model_sha256": "0" * 64}  # compiled from another text
    Path(f"{copy}.json").write_text(json.dumps(facts))
    assert cr.load_compiled(copy, *args) is None


def test_the_cache_name_holds_the_model_and_the_machine(tmp_path: Path) -> None:
    a, b = cr.object_path_for(tmp_path, "a" * 64), cr.object_path_for(tmp_path, "b" * 64)
    assert a != b and a.parent == tmp_path
    assert cr.machine_tag() in a.name


def test_the_command_line_reports_a_broken_model_and_commits_nothing(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    model = tmp_path / "model.txt"
    model.write_text("tree\nnot a model\n")
    target = tmp_path / "out" / "ranker.o"
    assert cr.main([str(model), str(target)]) == 1
    assert "Error" in capsys.readouterr().err
    assert not target.exists() and not Path(f"{target}.json").exists()
    assert cr.main([]) == 2
