"""``recsys train``: windows -> datasets -> candidate recall -> rankers + comparison -> artifacts + MLflow.

Writes into ``out`` (default ``artifacts/train``):

* ``ranker/``                 the final model (LightGBM text + ``ranker_meta.json``), the better
                               of the binary and LambdaRank variants by validation NDCG@k;
* ``candidates/``             the CandidateIndex (with popularity lists) built on *all* events,
                               i.e. as of the midnight after the last event — what serving uses;
* ``training_window.json``    the day-aligned cutoffs (Feast needs snapshots at these times);
* ``model_comparison.csv/.md`` the seven classifiers + LambdaRank + the popularity baseline
                               (also ``.json``, stamped with the commit, for ``make report``);
* ``candidate_recall.csv``    recall@N per source and merged on the test window;
* ``report.md``               the final model choice and why, datasets, labels, sampling, timings;
* ``timings.json``            seconds per stage.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from shared import column_names as col
from shared import feature_definitions as fd
from shared.console import console, step
from shared.run_stamp import run_stamp
from zadanie1.candidate_generation import CandidateIndex, RecallRow, candidate_recall
from zadanie1.model_comparison import (
    ComparisonRow,
    compare_models,
    comparison_records,
    comparison_table,
    markdown_table,
    model_specs,
    ranking_columns,
    train_spec,
    write_table,
)
from zadanie1.ranker_artifact import save_ranker
from zadanie1.ranker_training import (
    BINARY,
    LAMBDARANK,
    FittedRanker,
    TrainedModel,
    TrainingWindows,
    WindowData,
    fit_ranker,
    plan_windows,
    prepare_window,
)
from zadanie1.ranking_dataset import FeatureLookup, RankingDataset
from zadanie1.settings import TrainingSettings

TABLE_NAMES = {BINARY: "LightGBM", LAMBDARANK: "LightGBM LambdaRank (LGBMRanker)"}
POPULARITY_ROW = "Popularity baseline"


@dataclass
class TrainingOutcome:
    out: Path
    windows: TrainingWindows
    table: pd.DataFrame
    final_variant: str
    choice_reason: str
    recall: list[RecallRow]
    timings: dict[str, float]
    dataset_sizes: dict[str, dict[str, int]]
    mlflow_ids: dict[str, str] = field(default_factory=dict)


@contextmanager
def timed(timings: dict[str, float], name: str, title: str) -> Iterator[None]:
    started = time.perf_counter()
    with step(title):
        yield
    timings[name] = round(time.perf_counter() - started, 3)


def run_training(
    events: pd.DataFrame,
    out: Path,
    settings: TrainingSettings,
    *,
    artifacts_dir: Path,
    feature_lookup: FeatureLookup | None = None,
    feature_source: str = "direct",
    log_to_mlflow: bool = True,
    skip_slow_models: bool = False,
) -> TrainingOutcome:
    """The whole ``recsys train`` (see the module docstring). ``skip_slow_models`` trains only LightGBM."""
    timings: dict[str, float] = {}
    started = time.perf_counter()
    k = settings.k
    windows = plan_windows(
        events, label_days=settings.label_days, min_history_days=settings.min_history_days, with_test=True
    )
    assert windows.test_cutoff is not None
    console.print(
        f"windows: train cutoff {windows.train_cutoff:%Y-%m-%d}, valid {windows.valid_cutoff:%Y-%m-%d}, "
        f"test {windows.test_cutoff:%Y-%m-%d}, end {windows.end:%Y-%m-%d} ({settings.label_days}-day labels)"
    )
    # Of the training and validation windows only the datasets are used later: their users' stats (lists per
    # user, ~1.5 KB each: GiBs for a million users) and candidate index are dropped as soon as they are built.
    with timed(timings, "train_window_seconds", "features, candidates and labels: training window"):
        train = prepare_window(
            events,
            windows.train_cutoff,
            windows.valid_cutoff,
            settings,
            sample=True,
            max_users=settings.max_train_users,
            feature_lookup=feature_lookup,
        ).dataset
    with timed(timings, "valid_window_seconds", "features, candidates and labels: validation window"):
        valid = prepare_window(
            events,
            windows.valid_cutoff,
            windows.test_cutoff,
            settings,
            sample=False,
            max_users=settings.max_eval_users,
            feature_lookup=feature_lookup,
        ).dataset
    with timed(timings, "test_window_seconds", "features, candidates and labels: test window"):
        test = prepare_window(
            events,
            windows.test_cutoff,
            windows.end,
            settings,
            sample=False,
            max_users=settings.max_eval_users,
            feature_lookup=feature_lookup,
        )
    sizes = {name: _dataset_size(ds) for name, ds in (("train", train), ("valid", valid), ("test", test.dataset))}
    for name, size in sizes.items():
        console.print(f"  {name}: {size['users']:,} users, {size['rows']:,} rows, {size['positives']:,} positives")

    with timed(timings, "candidate_recall_seconds", "candidate recall@N on the test window"):
        recall = _recall(test, settings)
    for row in recall:
        if row.source in ("merged", "covisitation", "category_popular", "recent") and row.n == settings.n_candidates:
            console.print(f"  recall@{row.n} {row.source}: {row.recall:.3f}")

    with timed(timings, "lightgbm_seconds", "LightGBM binary and LambdaRank (early stopping on validation)"):
        fitted = fit_ranker(train, valid, settings)
    console.print(f"  final model: {fitted.reason(k)}")

    models: list[TrainedModel] = []
    for variant, model in fitted.models.items():
        model.name = TABLE_NAMES[variant]
        models.append(model)
    if not skip_slow_models:
        for spec in model_specs(settings):
            with timed(timings, f"train_{spec.name}_seconds", f"train {spec.name}"):
                models.append(train_spec(spec, train, settings))
    models.append(_popularity_scores(test))
    with timed(timings, "comparison_seconds", "score every model on the test window"):
        rows = compare_models(models, test.dataset, k, thresholds={TABLE_NAMES[LAMBDARANK]: None, POPULARITY_ROW: None})
    table = comparison_table(rows, k)

    with timed(timings, "save_seconds", "save ranker, candidate index (all events) and reports"):
        out.mkdir(parents=True, exist_ok=True)
        ranker_folder = _save_final(fitted, windows, settings, sizes, rows, out, feature_source)
        index = CandidateIndex.build(events, windows.end)
        index.save(out / "candidates")
        window_info = {
            **windows.as_dict(),
            "cutoffs": [
                windows.train_cutoff.isoformat(),
                windows.valid_cutoff.isoformat(),
                windows.test_cutoff.isoformat(),
            ],
            "serving_cutoff": windows.end.isoformat(),
            "feature_source": feature_source,
        }
        (out / "training_window.json").write_text(json.dumps(window_info, indent=2))
        write_evaluation_set(test.dataset, out / "eval_set.parquet")
        recall_frame = pd.DataFrame([asdict(r) for r in recall])
        recall_frame.to_csv(out / "candidate_recall.csv", index=False, float_format="%.6g")
        notes = _table_notes(rows, settings)
        write_table(table, out, notes=notes)
        comparison = {
            "k": k,
            "final_model": TABLE_NAMES[fitted.chosen],
            "models": comparison_records(table),
            "run": run_stamp(),
        }
        (out / "model_comparison.json").write_text(json.dumps(comparison, indent=2, allow_nan=False))

    timings["total_seconds"] = round(time.perf_counter() - started, 3)
    outcome = TrainingOutcome(
        out, windows, table, fitted.chosen, fitted.reason(k), recall, timings, sizes, mlflow_ids={}
    )
    (out / "timings.json").write_text(json.dumps(timings, indent=2))
    (out / "report.md").write_text(render_report(outcome, settings, recall_frame, notes, feature_source))

    if log_to_mlflow:
        mark = time.perf_counter()
        with step("log runs to MLflow"):
            from zadanie1.experiment_tracking import log_training_runs

            tracking_uri = settings.tracking_uri(artifacts_dir)
            outcome.mlflow_ids = log_training_runs(
                tracking_uri=tracking_uri,
                experiment_name=settings.experiment_name,
                artifacts_dir=artifacts_dir,
                rows=rows,
                final_name=TABLE_NAMES[fitted.chosen],
                ranker_folder=ranker_folder,
                run_params={
                    **{f"window_{k_}": v for k_, v in windows.as_dict().items()},
                    "feature_source": feature_source,
                    "n_candidates": settings.n_candidates,
                    "negatives_per_positive": settings.negatives_per_positive,
                    "final_variant": fitted.chosen,
                    "n_events": len(events),
                },
                run_metrics={
                    **timings,
                    **{f"recall_at_{r.n}_{r.source.replace(':', '_')}": r.recall for r in recall},
                },
                artifact_files=[
                    out / "model_comparison.csv",
                    out / "model_comparison.md",
                    out / "report.md",
                    out / "candidate_recall.csv",
                    out / "training_window.json",
                    out / "timings.json",
                ],
            )
        timings["mlflow_seconds"] = round(time.perf_counter() - mark, 3)
        console.print(f"  MLflow: experiment '{settings.experiment_name}' at {tracking_uri}")
        (out / "timings.json").write_text(json.dumps(timings, indent=2))
    return outcome


def write_evaluation_set(dataset: RankingDataset, path: Path) -> None:
    """The held-out test window as the labelled set zadanie3's gate scores every model version on:
    the ranker's features, binary label, and the (user, cutoff) pair that makes one ranked list."""
    frame = pd.DataFrame(dataset.matrix.astype(np.float32, copy=False), columns=list(fd.RANKER_FEATURES))
    frame["label"] = dataset.labels.astype(np.int8)
    frame[col.USER_ID] = dataset.rows[col.USER_ID].to_numpy(dtype=np.int64)
    frame[col.PRODUCT_ID] = dataset.rows[col.PRODUCT_ID].to_numpy(dtype=np.int64)
    cutoff = pd.Timestamp(dataset.cutoff)
    frame["event_time"] = cutoff.tz_localize("UTC") if cutoff.tzinfo is None else cutoff.tz_convert("UTC")
    frame.to_parquet(path, index=False)


def _dataset_size(ds: RankingDataset) -> dict[str, int]:
    return {
        "users": len(ds.users),
        "rows": len(ds),
        "positives": int(ds.labels.sum()),
        "relevant_pairs": sum(len(v) for v in ds.relevant.values()),
    }


def _recall(test: WindowData, settings: TrainingSettings) -> list[RecallRow]:
    relevant = test.dataset.relevant
    users = sorted(relevant)[: settings.recall_max_users] if settings.recall_max_users else sorted(relevant)
    subset = {u: relevant[u] for u in users}
    rows: list[RecallRow] = []
    for n in sorted({*settings.recall_n, settings.n_candidates}):
        rows += candidate_recall(test.index, test.user_stats, subset, n)
    return rows


def _popularity_scores(test: WindowData) -> TrainedModel:
    """The popularity baseline as a 'model' scoring the test rows (its score = decayed popularity)."""
    scores = test.index.popularity.score_of(test.dataset.rows[col.PRODUCT_ID].tolist())

    def score(matrix: np.ndarray) -> np.ndarray:
        if len(matrix) != len(scores):
            raise ValueError("the popularity baseline only scores the test window it was built for")
        return scores

    return TrainedModel(POPULARITY_ROW, None, score, 0.0, 0, {"half_life_days": test.index.popularity.half_life_days})


def _save_final(
    fitted: FittedRanker,
    windows: TrainingWindows,
    settings: TrainingSettings,
    sizes: dict[str, dict[str, int]],
    rows: list[ComparisonRow],
    out: Path,
    feature_source: str,
) -> Path:
    import lightgbm

    final = fitted.final
    test_metrics = next((r.metrics for r in rows if r.model is final), {})
    meta = {
        "variant": fitted.chosen,
        "objective": final.params.get("objective"),
        "best_iteration": final.params.get("best_iteration"),
        "params": final.params,
        "choice_reason": fitted.reason(settings.k),
        "valid_metrics": {name: _json_safe(asdict(s)) for name, s in fitted.valid_scores.items()},
        "test_metrics": _json_safe({c: test_metrics.get(c) for c in ranking_columns(settings.k)}),
        "windows": windows.as_dict(),
        "datasets": sizes,
        "n_candidates": settings.n_candidates,
        "label": "relevance = strongest event in the label window: purchase 3, cart 2, view/remove 1; binary = any",
        "feature_source": feature_source,
        "lightgbm_version": lightgbm.__version__,
        "created_at": pd.Timestamp.now(tz="UTC").isoformat(),
    }
    return save_ranker(final.booster, fd.RANKER_FEATURES, meta, out / "ranker")


def _json_safe(values: dict[str, Any]) -> dict[str, Any]:
    """NaN is not JSON: not-applicable metrics become null."""
    return {k: (None if isinstance(v, float) and v != v else v) for k, v in values.items()}


def _table_notes(rows: list[ComparisonRow], settings: TrainingSettings) -> list[str]:
    k = settings.k
    notes = [
        "All models: same training window (negative-sampled) and the same test window (all candidates of "
        f"up to {settings.max_eval_users:,} sampled users); ranking metrics @{k} count every product the user "
        "touched in the test window as relevant, including ones the candidate stage missed.",
        "Threshold metrics use 0.5 on predicted probabilities (SVM: decision value 0). LambdaRank scores and "
        "popularity are not probabilities, so their threshold metrics are n/a; ROC AUC uses the raw scores.",
        "inference_time_ms = wall time to score the whole test matrix / rows.",
    ]
    notes += [f"{row.model.name} trained on a {row.model.note}." for row in rows if row.model.note]
    return notes


def render_report(
    outcome: TrainingOutcome,
    settings: TrainingSettings,
    recall: pd.DataFrame,
    notes: list[str],
    feature_source: str,
) -> str:
    """report.md: what was chosen and why, the data, labels, sampling, recall, comparison, timings."""
    w = outcome.windows
    sizes = "\n".join(
        f"| {name} | {s['users']:,} | {s['rows']:,} | {s['positives']:,} | {s['relevant_pairs']:,} |"
        for name, s in outcome.dataset_sizes.items()
    )
    pivot = recall.pivot_table(index="source", columns="n", values="recall").round(4)
    pivot.index.name = "source \\ N"
    timing_lines = "\n".join(f"| {name} | {seconds:.1f} |" for name, seconds in outcome.timings.items())
    return f"""# Ranker training report

## Final model
**{TABLE_NAMES[outcome.final_variant]}** — {outcome.choice_reason}.
Saved as LightGBM text + ordered feature list in `ranker/` (no pickle); candidate index (as of
{w.end.isoformat()}) in `candidates/`. Features came from the `{feature_source}` source.

## Windows (UTC midnights)
- history from {w.data_start.isoformat()}
- training: features as of {w.train_cutoff.isoformat()}, labels until {w.valid_cutoff.isoformat()}
- validation: features as of {w.valid_cutoff.isoformat()}, labels until {w.test_cutoff}
- test: features as of {w.test_cutoff}, labels until {w.end.isoformat()}

## Datasets
| set | users | rows | positive rows | relevant pairs (incl. missed) |
|---|---|---|---|---|
{sizes}

Labels: relevance = the user's strongest interaction with the candidate in the label window
(purchase 3, cart 2, view / remove_from_cart 1, none 0); the binary label is "any interaction".
Negative sampling (training set only): every positive kept; negatives drawn uniformly from the
user's own candidates, {settings.negatives_per_positive:g} per positive and at least
{settings.min_negatives} per user. Validation and test keep all {settings.n_candidates} candidates.

## Candidate recall@N on the test window
Share of the test-window (user, product) interactions of users with history that are among the
candidates; `merged:<source>` = merged hits credited to the source that produced the candidate.

{markdown_table(pivot)}
## Model comparison (test window)
{markdown_table(outcome.table)}
{chr(10).join(f"- {n}" for n in notes)}

## Timings (seconds)
| stage | seconds |
|---|---|
{timing_lines}
"""
