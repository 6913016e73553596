"""Fixtures of the registry tests: synthetic rankers and evaluation set, and an SQLite registry in a temp dir."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from zadanie3.evaluation_set import save_evaluation_set
from zadanie3.settings import RegistrySettings, load_settings
from zadanie3.tests.synthetic_rankers import synthetic_eval_set, write_ranker


@pytest.fixture(scope="session")
def good_ranker_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_ranker(tmp_path_factory.mktemp("rankers") / "good", seed=1)


@pytest.fixture(scope="session")
def second_good_ranker_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_ranker(tmp_path_factory.mktemp("rankers") / "good2", seed=2)


@pytest.fixture(scope="session")
def bad_ranker_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Trained on shuffled labels: about as good as a coin."""
    return write_ranker(tmp_path_factory.mktemp("rankers") / "bad", seed=3, shuffle_labels=True)


@pytest.fixture(scope="session")
def eval_set_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_evaluation_set(synthetic_eval_set(seed=7), tmp_path_factory.mktemp("eval") / "eval_set.parquet")


@pytest.fixture(scope="session")
def registry_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One SQLite registry for the session (creating its tables costs ~3 s); tests use their own model names."""
    return tmp_path_factory.mktemp("registry")


@pytest.fixture
def settings(registry_root: Path, eval_set_path: Path) -> RegistrySettings:
    """Settings of a fresh registered model (unique name) in the module's SQLite registry."""
    return make_settings(registry_root, eval_set_path, model_name=f"ranker-{uuid.uuid4().hex[:8]}")


def make_settings(root: Path, eval_set_path: Path, **overrides: object) -> RegistrySettings:
    values: dict[str, object] = {
        "artifacts_dir": root / "artifacts",
        "tracking_uri": f"sqlite:///{root / 'mlflow.db'}",
        "artifact_root": root / "mlflow-artifacts",
        "eval_set_path": eval_set_path,
        "actor": "test-runner",
        **overrides,
    }
    return load_settings(**values)
