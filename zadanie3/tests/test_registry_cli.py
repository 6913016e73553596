"""`recsys registry ...` end to end through the real root CLI (SQLite registry in a temp dir)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from shared.cli import build_app, main
from zadanie3.mlflow_server import mlflow_server_command, mlflow_server_env
from zadanie3.settings import load_settings

runner = CliRunner()


@pytest.fixture
def cli_env(tmp_path: Path, registry_root: Path, eval_set_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Environment as a user would set it; returns the artifacts dir."""
    artifacts = tmp_path / "artifacts"
    monkeypatch.setenv("RECSYS_ARTIFACTS_DIR", str(artifacts))
    monkeypatch.setenv("RECSYS_REGISTRY_TRACKING_URI", f"sqlite:///{registry_root / 'mlflow.db'}")
    monkeypatch.setenv("RECSYS_REGISTRY_ARTIFACT_ROOT", str(registry_root / "mlflow-artifacts"))
    monkeypatch.setenv("RECSYS_REGISTRY_MODEL_NAME", f"cli-{tmp_path.name[-12:]}")
    monkeypatch.setenv("RECSYS_REGISTRY_EVAL_SET_PATH", str(eval_set_path))
    monkeypatch.setenv("RECSYS_REGISTRY_ACTOR", "cli-tester")
    return artifacts


def recsys(*args: str):
    result = runner.invoke(build_app(), ["registry", *args])
    return result


def test_register_validate_promote_compare_from_the_command_line(
    cli_env: Path, good_ranker_dir: Path, bad_ranker_dir: Path, tmp_path: Path
) -> None:
    train = tmp_path / "train"
    shutil.copytree(good_ranker_dir, train / "ranker")
    (train / "training_window.json").write_text(json.dumps({"cutoff": "2024-03-01T00:00:00Z"}))
    (train / "metrics.json").write_text(json.dumps({"roc_auc": 0.95, "ndcg@10": 0.7}))

    registered = recsys(
        "register", "--ranker-dir", str(train / "ranker"), "--metrics-json", str(train / "metrics.json")
    )
    validated = recsys("validate")  # default: the challenger
    promoted = recsys("promote", "challenger")

    assert registered.exit_code == 0, registered.output
    assert "alias challenger -> v1" in registered.output
    assert validated.exit_code == 0, validated.output
    assert "decision             PASS" in validated.output
    assert promoted.exit_code == 0 and "champion of" in promoted.output and "none -> v1" in promoted.output
    report = json.loads((cli_env / "registry" / "validation_1.json").read_text())
    assert report["passed"] is True

    assert recsys("register", "--ranker-dir", str(bad_ranker_dir)).exit_code == 0
    rejected = recsys("validate", "2")
    refused = recsys("promote", "2")
    listed = recsys("list")
    compared = recsys("compare")

    assert rejected.exit_code == 1 and "gate failed" in rejected.output
    assert refused.exit_code == 1 and "promotion refused" in refused.output
    assert listed.exit_code == 0 and "champion" in listed.output and "failed" in listed.output
    assert compared.exit_code == 0
    table = (cli_env / "registry" / "versions.md").read_text()
    assert table.count("| eval set |") == 2
    settings = load_settings()
    from zadanie3.registry_client import get_version, resolve_alias

    assert resolve_alias("champion", settings) == 1
    assert get_version(1, settings).tags["training.cutoff"] == "2024-03-01T00:00:00Z"


def test_force_without_reason_is_a_one_line_user_error(
    cli_env: Path, good_ranker_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert recsys("register", "--ranker-dir", str(good_ranker_dir)).exit_code == 0

    with pytest.raises(SystemExit) as exited:
        main(["registry", "promote", "1", "--force"])

    assert exited.value.code == 2
    assert "--force needs --reason" in capsys.readouterr().out


def test_bad_ranker_folder_and_unknown_alias_exit_2(cli_env: Path, tmp_path: Path, capsys) -> None:
    for argv, message in [
        (["registry", "register", "--ranker-dir", str(tmp_path / "nothing")], "ranker file not found"),
        (["registry", "validate", "champion"], "alias 'champion'"),
    ]:
        with pytest.raises(SystemExit) as exited:
            main(argv)
        assert exited.value.code == 2
        assert message in capsys.readouterr().out


def test_server_dry_run_prints_a_local_single_worker_postgres_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECSYS_REGISTRY_SERVER_PORT", "5055")

    result = runner.invoke(build_app(), ["registry", "server", "--dry-run"])

    assert result.exit_code == 0, result.output
    assert "MLFLOW_BACKEND_STORE_URI=postgresql://postgres@127.0.0.1:5432/mlflow" in result.output
    assert "-m mlflow server --serve-artifacts" in result.output
    assert "--host 127.0.0.1 --port 5055 --workers 1 --allowed-hosts" in result.output


def test_server_hides_the_database_password_from_argv(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECSYS_REGISTRY_SERVER_BACKEND_STORE_URI", "postgresql://mlflow:s3cret@db:5432/mlflow")
    settings = load_settings()

    command = mlflow_server_command(settings)
    env = mlflow_server_env(settings, {})
    printed = runner.invoke(build_app(), ["registry", "server", "--dry-run"]).output

    assert not any("s3cret" in part for part in command)
    assert env["MLFLOW_BACKEND_STORE_URI"] == "postgresql://mlflow:s3cret@db:5432/mlflow"
    assert env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"
    assert "s3cret" not in printed and "mlflow:***@db" in printed
