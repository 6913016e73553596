"""``recsys run``: the whole pipeline on a shop's own event log, every output under one folder.

validate -> EDA -> features (Feast refresh, SQLite online store) -> train -> evaluate -> register -> gate ->
promote, then the command that serves the result. The input is only read: the validated events are written
to ``<out>/data/events.parquet`` and every later stage reads that copy. ``<out>/run.json`` records each
stage's wall time, peak resident memory and rows (``make scale`` reads it). Each later stage is the part's own
``recsys`` command in a subprocess, with ``RECSYS_DATA_DIR`` and ``RECSYS_ARTIFACTS_DIR`` pointing under
``<out>``: what runs here is exactly what a user can run by hand, the parts stay independent of each other
(shared imports none of them), and each stage's memory goes back to the system when it ends.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from shared.console import console
from shared.errors import UserInputError
from shared.proc_status import status_kib

EVENTS_PLACEHOLDER = "{events}"
ONLINE_STORE_ENV = {"RECSYS_FEATURES_ONLINE_STORE": "sqlite"}  # the embedded default, unless the user chose a store
USER_STORE_CHOICE = ("RECSYS_FEATURES_ONLINE_STORE", "RECSYS_FEATURES_REDIS_URL")
# Snapshots only where training looks them up: every label window back from the data end (zadanie1's
# RECSYS_TRAIN_LABEL_DAYS, default 5) instead of every midnight; 6 files per view for 28 days instead of 28.
SNAPSHOT_FREQ_ENV = "RECSYS_FEATURES_SNAPSHOT_FREQ"
LABEL_DAYS_ENV, DEFAULT_LABEL_DAYS = "RECSYS_TRAIN_LABEL_DAYS", 5


@dataclass(frozen=True)
class Stage:
    """One step of the run: a ``recsys`` command line (``{events}`` stands for the validated copy)."""

    name: str
    args: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    on_failure: str = ""
    snapshots_for_training: bool = False  # build only the snapshots training reads (unless the user set a spacing)


STAGES: tuple[Stage, ...] = (
    Stage("EDA", ("eda", "--events", EVENTS_PLACEHOLDER)),
    Stage(
        "features",
        ("features", "refresh", "--events", EVENTS_PLACEHOLDER),
        env=ONLINE_STORE_ENV,
        snapshots_for_training=True,
    ),
    Stage("train", ("train", "--events", EVENTS_PLACEHOLDER, "--feature-source", "feast"), env=ONLINE_STORE_ENV),
    Stage("evaluate", ("evaluate", "--events", EVENTS_PLACEHOLDER)),
    Stage("register", ("registry", "register")),
    Stage(
        "validate",
        ("registry", "validate", "challenger"),
        on_failure=(
            "the validation gate refused the new model (report above); it stays registered as `challenger`. "
            "Change the data or the bar (RECSYS_REGISTRY_GATE_*, see zadanie3/README.md), then rerun"
        ),
    ),
    Stage("promote", ("registry", "promote", "challenger")),
)


@dataclass(frozen=True)
class StageReport:
    """What one stage cost: wall seconds, peak resident memory (MiB) and the event rows it read."""

    name: str
    wall_s: float
    peak_rss_mib: float
    rows: int


@dataclass(frozen=True)
class RunLayout:
    """Where one run puts things: ``<out>/data`` (the validated events) and ``<out>/artifacts``."""

    out: Path

    @property
    def data_dir(self) -> Path:
        return self.out / "data"

    @property
    def artifacts_dir(self) -> Path:
        return self.out / "artifacts"

    @property
    def events_path(self) -> Path:
        return self.data_dir / "events.parquet"

    @property
    def report_path(self) -> Path:
        return self.out / "run.json"

    def env(self) -> dict[str, str]:
        return {"RECSYS_DATA_DIR": str(self.data_dir), "RECSYS_ARTIFACTS_DIR": str(self.artifacts_dir)}


def stage_command(stage: Stage, events: Path) -> list[str]:
    """The stage's argv: this Python running the ``recsys`` CLI, so the run uses the same installation."""
    args = [str(events) if a == EVENTS_PLACEHOLDER else a for a in stage.args]
    return [sys.executable, "-m", "shared.cli", *args]


def check_inputs_untouched(inputs: Sequence[Path], layout: RunLayout) -> None:
    """Refuse a layout that would write where an input lies (the user's files are only ever read)."""
    out = layout.out.resolve()
    for path in inputs:
        resolved = path.resolve()
        if resolved == out or out in resolved.parents:
            raise UserInputError(
                f"{path} lies inside the output folder {layout.out}: choose an --out outside your data"
            )


def run_stage_process(command: Sequence[str], env: Mapping[str, str], poll_s: float = 0.05) -> tuple[int, float]:
    """Run one stage; its exit code and peak resident memory in MiB.

    The peak is the stage process's own high-water mark (``VmHWM`` in ``/proc/<pid>/status``), sampled
    every ``poll_s`` until it exits. Not ``wait4``'s ``ru_maxrss``: Linux carries a process's high-water
    mark across ``exec``, so a stage started by a parent holding 4 GiB of events would report 4 GiB.
    """
    process = subprocess.Popen(list(command), env=dict(env))
    peak_kib = 0
    try:
        while process.poll() is None:
            peak_kib = max(peak_kib, status_kib(process.pid, "VmHWM"))
            time.sleep(poll_s)
    except BaseException:  # Ctrl-C: stop the stage too, then let the interrupt through
        process.kill()
        process.wait()
        raise
    return process.returncode, peak_kib / 1024


def write_run_report(
    layout: RunLayout, inputs: Sequence[Path], validation: Mapping[str, object], stages: Sequence[StageReport]
) -> Path:
    """``<out>/run.json``: the inputs, the validation summary and every stage that ran, in order."""
    payload = {
        "inputs": [str(p) for p in inputs],
        "validation": dict(validation),
        "stages": [vars(stage) for stage in stages],
        "total_wall_s": round(sum(stage.wall_s for stage in stages), 2),
        "peak_rss_mib": max((stage.peak_rss_mib for stage in stages), default=0.0),
    }
    layout.report_path.write_text(json.dumps(payload, indent=2) + "\n")
    return layout.report_path


def user_chose_store(base: Mapping[str, str]) -> bool:
    return any(base.get(name) for name in USER_STORE_CHOICE)


def stage_env(base: Mapping[str, str], stage: Stage) -> dict[str, str]:
    """The stage's environment: ``base`` plus the stage's defaults, except a store the user chose (e.g. Redis
    through ``RECSYS_FEATURES_REDIS_URL``), which wins over the embedded SQLite default."""
    chosen = user_chose_store(base)
    env = {**base, **{k: v for k, v in stage.env.items() if not (chosen and k in ONLINE_STORE_ENV)}}
    if stage.snapshots_for_training and not base.get(SNAPSHOT_FREQ_ENV):
        env[SNAPSHOT_FREQ_ENV] = f"{int(base.get(LABEL_DAYS_ENV) or DEFAULT_LABEL_DAYS)}D"
    return env


def serve_hint(layout: RunLayout, base: Mapping[str, str] | None = None) -> str:
    """How to serve what the run produced (with the store the stages used)."""
    base = base or {}
    store = {k: base[k] for k in USER_STORE_CHOICE if base.get(k)} if user_chose_store(base) else ONLINE_STORE_ENV
    env = " ".join(f"{k}={v}" for k, v in {**layout.env(), **store}.items())
    return f"{env} recsys serve"


def run_pipeline(events: str, out: Path, *, drop_unknown_event_types: bool = False) -> RunLayout:
    """Validate ``events`` (a file, a directory or a glob) into ``out`` and run every stage on the copy."""
    from shared.event_loader import read_validated_summary, resolve_event_files

    layout = RunLayout(out)
    inputs = resolve_event_files(events)
    check_inputs_untouched(inputs, layout)
    listed = ", ".join(str(p) for p in inputs[:5]) + (f" and {len(inputs) - 5} more" if len(inputs) > 5 else "")
    console.print(f"[bold]1/{len(STAGES) + 1} validate[/] {len(inputs)} file(s): {listed}", soft_wrap=True)
    # In its own process like every stage: the parent keeps no copy of the log while the stages run.
    layout.data_dir.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "shared.cli", "data", "validate", events, "--copy-to", str(layout.events_path)]
    if drop_unknown_event_types:
        command.append("--drop-unknown-event-types")
    started = time.perf_counter()
    layout.events_path.unlink(missing_ok=True)
    returncode, peak_rss_mib = run_stage_process(command, os.environ)
    wall = time.perf_counter() - started
    if returncode != 0 or not layout.events_path.exists():
        raise UserInputError(f"{events}: validation failed (its message is above); nothing was run")
    summary = read_validated_summary(layout.events_path)
    rows, validation = int(summary.rows_kept), summary.as_dict()
    reports = [StageReport("validate events", round(wall, 2), round(peak_rss_mib, 1), summary.rows_read)]
    console.print(f"  validate events done in {wall:.1f} s (peak memory {peak_rss_mib:,.0f} MiB)")

    env = {**os.environ, **layout.env(), "MLFLOW_DISABLE_TELEMETRY": "true"}
    for number, stage in enumerate(STAGES, 2):
        console.print(f"\n[bold]{number}/{len(STAGES) + 1} {stage.name}[/]")
        started = time.perf_counter()
        command = stage_command(stage, layout.events_path)
        returncode, peak_rss_mib = run_stage_process(command, stage_env(env, stage))
        wall = time.perf_counter() - started
        if returncode != 0:
            write_run_report(layout, inputs, validation, reports)
            reason = stage.on_failure or f"`recsys {' '.join(command[3:])}` failed (its message is above)"
            raise UserInputError(f"stage {stage.name}: {reason}")
        reports.append(StageReport(stage.name, round(wall, 2), round(peak_rss_mib, 1), rows))
        console.print(f"  {stage.name} done in {wall:.1f} s (peak memory {peak_rss_mib:,.0f} MiB)")
    write_run_report(layout, inputs, validation, reports)
    # soft_wrap: one line whatever the terminal width, so it can be copied and pasted
    console.print(f"\nDone. Outputs in {layout.out}. Serve the new champion with:", soft_wrap=True)
    console.print(f"  {serve_hint(layout, os.environ)}", soft_wrap=True, highlight=False)
    return layout
