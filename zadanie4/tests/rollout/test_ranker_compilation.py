"""A served ranker switches to its compiled trees without a pause, and any failure keeps LightGBM.

Real compilation (a child process running lleaves) of a small LightGBM model; the service starts on
LightGBM, ``/model`` reports the scorer, and a restart finds the compiled object in the cache.
"""

from __future__ import annotations

from pathlib import Path

import lightgbm as lgb
import numpy as np
import pytest

from shared import feature_definitions as fd
from zadanie1.ranker_artifact import load_ranker, save_ranker
from zadanie4.dependencies import LoadedModel
from zadanie4.rollout.ranker_compilation import RankerCompiler
from zadanie4.tests.conftest import make_settings, running_service
from zadanie4.tests.service_fakes import DictModelProvider, make_dependencies

pytest.importorskip("lleaves")
N_FEATURES = len(fd.RANKER_FEATURES)


@pytest.fixture(scope="module")
def ranker_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = np.random.default_rng(5)
    x = rng.normal(size=(3000, N_FEATURES))
    x[rng.random(x.shape) < 0.1] = np.nan
    y = (np.nan_to_num(x[:, 0]) - np.nan_to_num(x[:, 3]) > 0).astype(int)
    booster = lgb.train(
        {"objective": "binary", "num_leaves": 7, "verbose": -1, "num_threads": 1},
        lgb.Dataset(x, y),
        num_boost_round=20,
    )
    return save_ranker(booster, fd.RANKER_FEATURES, {}, tmp_path_factory.mktemp("ranker") / "ranker")


def _matrix() -> np.ndarray:
    rng = np.random.default_rng(1)
    matrix = rng.normal(size=(64, N_FEATURES)).astype(np.float32)
    matrix[rng.random(matrix.shape) < 0.2] = np.nan
    return matrix


def test_a_ranker_is_compiled_in_the_background_then_loaded_from_the_cache(ranker_dir: Path, tmp_path: Path) -> None:
    artifact = load_ranker(ranker_dir)
    expected = artifact.score(_matrix())
    compiler = RankerCompiler(tmp_path / "cache")
    try:
        assert compiler.attach(artifact) == "compiling"
        assert artifact.scorer == "lightgbm"  # serves at once, on LightGBM
        assert compiler.wait_idle(120)
        assert compiler.status_of(artifact) == "compiled" and artifact.scorer == "compiled"
        np.testing.assert_allclose(artifact.score(_matrix()), expected, rtol=0, atol=1e-12)
    finally:
        compiler.close()

    restarted, again = RankerCompiler(tmp_path / "cache"), load_ranker(ranker_dir)
    try:
        assert restarted.attach(again) == "compiled"  # found in the cache: attached before serving
        assert again.compiled is not None
    finally:
        restarted.close()


def test_two_loads_of_one_model_while_it_compiles_both_end_compiled(ranker_dir: Path, tmp_path: Path) -> None:
    first, second = load_ranker(ranker_dir), load_ranker(ranker_dir)  # e.g. champion and challenger on one version
    compiler = RankerCompiler(tmp_path / "cache")
    try:
        assert compiler.attach(first) == "compiling" and compiler.attach(second) == "compiling"
        assert compiler.wait_idle(120)
        assert first.scorer == "compiled" and second.scorer == "compiled"
    finally:
        compiler.close()


def test_a_failed_compilation_keeps_lightgbm_and_says_why(ranker_dir: Path, tmp_path: Path) -> None:
    artifact = load_ranker(ranker_dir)
    broken = tmp_path / "model.txt"
    broken.write_text("not a LightGBM model\n")
    artifact.model_file = broken  # what the compiler reads is unreadable; the loaded booster is fine
    compiler = RankerCompiler(tmp_path / "cache")
    try:
        compiler.attach(artifact)
        assert compiler.wait_idle(120)
        assert compiler.status_of(artifact).startswith("failed: ")
        assert artifact.scorer == "lightgbm" and artifact.score(_matrix()).shape == (64,)
        assert compiler.attach(artifact).startswith("failed: ")  # a reload does not compile it again
        assert compiler._queue.unfinished_tasks == 0
    finally:
        compiler.close()
    assert RankerCompiler(tmp_path / "off", enabled=False).attach(load_ranker(ranker_dir)) == "lightgbm"


@pytest.mark.anyio
async def test_the_service_reports_its_champion_compiled(shop, ranker_dir: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    settings = make_settings(tmp_path, compile_ranker=True, compiled_ranker_dir=tmp_path / "compiled")
    champion = LoadedModel(version="7", ranker=load_ranker(ranker_dir), source="test:7")
    deps = make_dependencies(shop, models=DictModelProvider({"champion": champion}))
    async with running_service(settings, deps) as svc:
        first = (await svc.client.get("/model")).json()["champion"]["scorer"]
        assert first in ("compiling", "compiled")
        assert svc.runtime.rollout.compiler.wait_idle(120)
        assert (await svc.client.get("/model")).json()["champion"]["scorer"] == "compiled"
        response = await svc.client.get("/recommend", params={"user_id": shop.users_with_events(10)[0], "k": 5})
        assert response.status_code == 200 and not response.json()["degraded"]
