"""`recsys run` on a user's own events, and `make demo` never overwriting a file it did not generate."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from shared.errors import EventDataError, UserInputError
from shared.event_loader import load_event_files, resolve_event_files
from shared.pipeline_run import (
    STAGES,
    RunLayout,
    check_inputs_untouched,
    run_stage_process,
    serve_hint,
    stage_command,
    stage_env,
)

REPO = Path(__file__).resolve().parents[2]


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _recsys(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shared.cli", *args],
        cwd=cwd,
        env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _events_csv(path: Path, rows: int = 3, first_product: int = 1) -> Path:
    frame = pd.DataFrame(
        {
            "event_time": [f"2019-10-0{i + 1} 00:00:00 UTC" for i in range(rows)],
            "event_type": ["view"] * rows,
            "product_id": list(range(first_product, first_product + rows)),
            "user_id": [7] * rows,
        }
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)
    return path


def test_a_directory_or_a_glob_of_monthly_files_is_read_as_one_log(tmp_path):
    # given two monthly files and a stray non-event file
    first = _events_csv(tmp_path / "exports" / "2019-Oct.csv", rows=3)
    second = _events_csv(tmp_path / "exports" / "2019-Nov.csv", rows=2, first_product=10)
    (tmp_path / "exports" / "notes.txt").write_text("not events")
    # when the directory, a glob and one file are resolved
    by_dir = resolve_event_files(tmp_path / "exports")
    by_glob = resolve_event_files(str(tmp_path / "exports" / "2019-*.csv"))
    # then both find the two event files, sorted by name, and the loader joins them
    assert by_dir == by_glob == [second, first]
    assert resolve_event_files(first) == [first]
    loaded = load_event_files(str(tmp_path / "exports" / "*.csv"))
    assert loaded.summary.rows_read == 5 and len(loaded.events) == 5
    assert "(2 files)" in loaded.summary.source


def test_nothing_matching_is_a_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(EventDataError, match="no event files in this directory"):
        resolve_event_files(tmp_path / "empty")
    with pytest.raises(EventDataError, match="no event files match"):
        resolve_event_files(str(tmp_path / "*.parquet"))
    with pytest.raises(EventDataError, match="file not found"):
        resolve_event_files(tmp_path / "missing.csv")


def test_an_output_folder_around_the_input_is_refused(tmp_path):
    # given the user's file inside the folder a run would write to
    events = _events_csv(tmp_path / "shop" / "events.csv")
    # then the run refuses before writing anything; a folder beside it is fine
    with pytest.raises(UserInputError, match="inside the output folder"):
        check_inputs_untouched([events], RunLayout(tmp_path / "shop"))
    check_inputs_untouched([events], RunLayout(tmp_path / "runs" / "shop"))


def test_stage_names_are_unique_in_the_run_report():
    names = ["validate events", *(stage.name for stage in STAGES)]
    assert len(set(names)) == len(names)


def test_every_stage_runs_the_recsys_cli_on_the_validated_copy(tmp_path):
    copy = RunLayout(tmp_path).events_path
    commands = [stage_command(stage, copy) for stage in STAGES]
    assert [c[:3] for c in commands] == [[sys.executable, "-m", "shared.cli"]] * len(STAGES)
    assert [s.name for s in STAGES] == ["EDA", "features", "train", "evaluate", "register", "validate", "promote"]
    assert all(str(copy) in c for c, s in zip(commands, STAGES, strict=True) if "--events" in s.args)


def test_a_stage_reports_its_exit_code_and_its_own_peak_memory():
    # given a stage that holds ~200 MiB for a moment and one that fails
    hold = "import time; b = bytearray(200 * 1024 * 1024); b[::4096] = b'x' * len(b[::4096]); time.sleep(0.5)"
    # when each runs as a stage process
    ok_code, ok_peak = run_stage_process([sys.executable, "-c", hold], os.environ)
    failed_code, _ = run_stage_process([sys.executable, "-c", "raise SystemExit(3)"], os.environ)
    # then the high-water mark is the child's own (not this test process's: Linux carries that across exec)
    assert ok_code == 0 and 200 <= ok_peak < 400
    assert failed_code == 3


def test_the_embedded_sqlite_store_is_a_default_that_a_chosen_store_overrides(tmp_path):
    features = next(stage for stage in STAGES if stage.name == "features")
    layout = RunLayout(tmp_path / "run")
    # nothing chosen: the stages and the serve hint use SQLite
    assert stage_env({}, features)["RECSYS_FEATURES_ONLINE_STORE"] == "sqlite"
    assert "RECSYS_FEATURES_ONLINE_STORE=sqlite" in serve_hint(layout, {})
    # a Redis URL in the environment: Redis (the settings' rule), for the stages and for serving
    chosen = {"RECSYS_FEATURES_REDIS_URL": "redis://127.0.0.1:6379/5"}
    assert "RECSYS_FEATURES_ONLINE_STORE" not in stage_env(chosen, features)
    assert "RECSYS_FEATURES_REDIS_URL=redis://127.0.0.1:6379/5" in serve_hint(layout, chosen)
    assert "RECSYS_FEATURES_ONLINE_STORE" not in serve_hint(layout, chosen)


def test_recsys_run_builds_the_snapshots_training_reads_unless_a_spacing_is_set():
    features = next(stage for stage in STAGES if stage.name == "features")
    train = next(stage for stage in STAGES if stage.name == "train")
    assert stage_env({}, features)["RECSYS_FEATURES_SNAPSHOT_FREQ"] == "5D"  # zadanie1's default label window
    assert stage_env({"RECSYS_TRAIN_LABEL_DAYS": "7"}, features)["RECSYS_FEATURES_SNAPSHOT_FREQ"] == "7D"
    assert stage_env({"RECSYS_FEATURES_SNAPSHOT_FREQ": "1D"}, features)["RECSYS_FEATURES_SNAPSHOT_FREQ"] == "1D"
    assert "RECSYS_FEATURES_SNAPSHOT_FREQ" not in stage_env({}, train)


def test_the_default_spacing_is_zadanie1s_default_label_window():
    # a contract between the parts: recsys run reads the label window from zadanie1's environment variable
    from shared.pipeline_run import DEFAULT_LABEL_DAYS, LABEL_DAYS_ENV
    from zadanie1.settings import TrainingSettings

    assert TrainingSettings().label_days == DEFAULT_LABEL_DAYS
    assert TrainingSettings.model_config["env_prefix"] + "LABEL_DAYS" == LABEL_DAYS_ENV


def test_generate_refuses_to_overwrite_a_file_it_did_not_write(tmp_path):
    # given the user's own event log where the generator would write
    own = _events_csv(tmp_path / "events.csv")
    before = _digest(own)
    # when the generator is pointed at it
    result = _recsys(
        "data", "generate", "--users", "50", "--products", "200", "--days", "3", "--out", str(own), cwd=tmp_path
    )
    # then it refuses with one clear line and exit code 2, and the file is unchanged
    assert result.returncode == 2
    assert "was not written by `recsys data generate`" in result.stdout
    assert _digest(own) == before


def test_generate_may_overwrite_its_own_file_but_not_one_copied_over_it(tmp_path):
    out = tmp_path / "events.parquet"
    args = ("data", "generate", "--users", "50", "--products", "200", "--days", "3", "--out", str(out))
    # given a file the generator wrote: writing it again is allowed
    assert _recsys(*args, cwd=tmp_path).returncode == 0
    assert _recsys(*args, "--seed", "7", cwd=tmp_path).returncode == 0
    # when the user copies their own log over it
    pd.read_parquet(out).head(10).to_parquet(out, index=False)
    before = _digest(out)
    # then it is theirs now: refused, untouched
    assert _recsys(*args, cwd=tmp_path).returncode == 2
    assert _digest(out) == before


def test_make_demo_generates_into_its_own_data_file_whatever_events_says():
    # given a user who passes their own file to the demo
    dry = subprocess.run(
        ["make", "-n", "demo", "EVENTS=/somewhere/my_shop.csv"], cwd=REPO, capture_output=True, text=True, check=True
    )
    # then the demo still generates into data/events.parquet and never names their file
    assert "data generate --out data/events.parquet" in dry.stdout
    assert "my_shop.csv" not in dry.stdout


@pytest.mark.slow
def test_recsys_run_on_an_own_log_leaves_it_byte_identical_and_promotes_a_model(tmp_path):
    # given a shop's own export: monthly CSV files with an extra column, in a folder of their own
    generated = tmp_path / "generated.parquet"
    assert (
        _recsys(
            "data",
            "generate",
            "--users",
            "400",
            "--products",
            "200",
            "--days",
            "21",
            "--seed",
            "11",
            "--out",
            str(generated),
            cwd=tmp_path,
        ).returncode
        == 0
    )
    events = pd.read_parquet(generated)
    events["event_time"] = events["event_time"].dt.strftime("%Y-%m-%d %H:%M:%S UTC")
    events["warehouse"] = "north"  # a column the schema does not know
    exports = tmp_path / "exports"
    exports.mkdir()
    half = len(events) // 2
    events.iloc[:half].to_csv(exports / "part-1.csv", index=False)
    events.iloc[half:].to_csv(exports / "part-2.csv", index=False)
    before = {p.name: _digest(p) for p in exports.iterdir()}
    # when the whole pipeline runs on the glob (the tiny shop needs a lower gate bar than production's)
    out = tmp_path / "runs" / "shop"
    result = _recsys(
        "run", "--events", str(exports / "part-*.csv"), "--out", str(out),
        cwd=tmp_path, env={"RECSYS_REGISTRY_GATE_MIN_ROC_AUC": "0.5"}, timeout=900,
    )  # fmt: skip
    # then it promoted a model, said how to serve it, and the export folder is exactly as it was
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "recsys serve" in result.stdout and f"RECSYS_ARTIFACTS_DIR={out / 'artifacts'}" in result.stdout
    assert {p.name: _digest(p) for p in exports.iterdir()} == before
    assert (out / "data" / "events.parquet").is_file()
    assert (out / "artifacts" / "train" / "ranker").is_dir()
    assert (out / "artifacts" / "eda" / "report.md").is_file()
    listing = _recsys("registry", "list", cwd=tmp_path, env={"RECSYS_ARTIFACTS_DIR": str(out / "artifacts")})
    assert "champion" in listing.stdout
    # and run.json says what each stage cost, in the order they ran
    report = json.loads((out / "run.json").read_text())
    assert [s["name"] for s in report["stages"]] == ["validate events", *(stage.name for stage in STAGES)]
    assert report["validation"]["ignored_columns"] == ["warehouse"]
    assert all(s["wall_s"] > 0 and s["peak_rss_mib"] > 50 and s["rows"] == len(events) for s in report["stages"])
