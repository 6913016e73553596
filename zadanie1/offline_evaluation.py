"""Honest offline evaluation: train on the events before a holdout, recommend with the serving core, score the holdout.

* The cutoff is a UTC midnight: ``--holdout-days N`` holds out the last N whole days (the midnight
  after the last event minus N days); ``--holdout-fraction F`` floors the time that leaves the
  last F of events to its midnight.
* The ranker is trained only on events before the cutoff (train + validation windows inside
  that period, see ``ranker_training``); the better LightGBM variant on validation is used.
* Recommendations come from :func:`zadanie1.recommender.recommend` — the same function the
  service calls — with feature tables, popularity, candidate index and the user's stored row all
  computed at the cutoff. Cold users (no event before the cutoff) go through the same cold-start
  path as in serving; purchased-before-cutoff products are excluded for every method.
* Baselines: ``popularity`` = the time-decayed popularity list minus purchased products (the
  service's cold-start list); ``random`` = uniform over the catalogue (products with an event before
  the cutoff), seeded; and the peer baselines of :mod:`zadanie1.peer_baselines` (``evaluate_baselines``:
  tuned popularity, category popularity, item-kNN, EASE, ALS, BPR), each tuned on a validation window
  at the end of the training period. ``lift_precision_at_k_vs_best_baseline`` compares the ranker
  with the best of all of them, per segment.
* Relevant items = products the user touched (any event type) in the holdout; users evaluated =
  users with at least one holdout event (a seeded sample of ``evaluate_max_users`` when there are
  more: 20 k users put a precision@10 of 0.1 within ~±0.004 at 95 %); coverage = share of the
  catalogue in anyone's top-k.
* The recommender config (candidates per user, diversity cap) is zadanie1's by default (150 / 5);
  ``serve_n_candidates`` and ``max_per_category`` evaluate the service's (500 / 3) with the same ranker.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from shared import column_names as col
from shared import feature_definitions as fd
from shared.cold_start_policy import user_stage
from shared.errors import UserInputError
from shared.feature_computation import DAY, FeatureTables, compute_feature_tables, events_before, events_from
from shared.popularity import PopularityModel
from shared.time_split import holdout_cutoff
from zadanie1.candidate_generation import CandidateIndex
from zadanie1.peer_baselines import BaselineSettings, tune_and_fit
from zadanie1.ranker_artifact import RankerArtifact
from zadanie1.ranker_training import cold_start_config, fit_ranker, floor_day, plan_windows, prepare_window
from zadanie1.ranking_dataset import relevant_sets, window_relevance
from zadanie1.ranking_metrics import mean_ranking_metrics
from zadanie1.recommender import (
    PAIR_INPUTS,
    PairLookup,
    ProductFeatureBlock,
    RecommenderConfig,
    Scorer,
    recommend,
)
from zadanie1.settings import TrainingSettings

METHODS = ("model", "popularity", "random")
# cold = no event before the cutoff, warm = the rest; light / returning split warm by the cold-start stage
SEGMENTS = ("all", "cold_users", "warm_users", "light_users", "returning_users")


class TablePairLookup:
    """Per-user ``pair_lookup`` over a user_product_interactions table (offline stand-in for the store)."""

    def __init__(self, interactions: pd.DataFrame) -> None:
        table = interactions.sort_index()
        users = table.index.get_level_values(col.USER_ID).to_numpy(dtype=np.int64)
        self._products = table.index.get_level_values(col.PRODUCT_ID).to_numpy(dtype=np.int64)
        self._values = table[list(PAIR_INPUTS)].to_numpy(dtype=np.float64)
        self._users, starts = np.unique(users, return_index=True)
        self._bounds = np.r_[starts, len(users)]

    def for_user(self, user_id: int) -> PairLookup:
        pos = int(np.searchsorted(self._users, user_id))
        if pos >= len(self._users) or self._users[pos] != user_id:
            return lambda product_ids: {}
        start, end = self._bounds[pos], self._bounds[pos + 1]
        products, values = self._products[start:end], self._values[start:end]

        def lookup(product_ids: Sequence[int]) -> Mapping[int, Mapping[str, float]]:
            hit = np.flatnonzero(np.isin(products, np.asarray(product_ids, dtype=np.int64)))
            return {int(products[i]): dict(zip(PAIR_INPUTS, values[i].tolist(), strict=True)) for i in hit}

        return lookup


@dataclass
class ServingState:
    """What the service would hold at ``cutoff``: feature values, popularity, candidates, model."""

    tables: FeatureTables
    popularity: PopularityModel
    index: CandidateIndex
    products: ProductFeatureBlock
    pairs: TablePairLookup
    user_rows: dict[int, dict[str, Any]]

    @classmethod
    def at(cls, events: pd.DataFrame, cutoff: pd.Timestamp, users: Sequence[int] | None = None) -> ServingState:
        """The state at ``cutoff``; ``users``: the only users it will be asked about (all when None)."""
        tables = compute_feature_tables(events, cutoff, users=users)
        popularity = PopularityModel.fit(events, cutoff)
        index = CandidateIndex.build(events, cutoff, popularity=popularity)
        return cls(
            tables=tables,
            popularity=popularity,
            index=index,
            products=ProductFeatureBlock.from_frames(tables.product_stats, tables.category_stats),
            pairs=TablePairLookup(tables.user_product_interactions),
            user_rows=tables.user_stats.to_dict("index"),
        )

    def recommend(self, user_id: int, ranker: Scorer | None, k: int, config: RecommenderConfig) -> list[int]:
        items = recommend(
            self.user_rows.get(user_id),
            self.products,
            self.pairs.for_user(user_id),
            self.index,
            self.popularity,
            ranker,
            k,
            config=config,
        )
        return [item.product_id for item in items]


def evaluation_cutoff(
    events: pd.DataFrame, *, holdout_fraction: float | None, holdout_days: float | None
) -> pd.Timestamp:
    """The day-aligned cutoff (see the module docstring)."""
    if holdout_days is not None and holdout_fraction is None:
        if holdout_days <= 0:
            raise UserInputError(f"--holdout-days must be > 0, got {holdout_days}")
        end = floor_day(events[col.EVENT_TIME].max()) + DAY
        cutoff = floor_day(end - holdout_days * DAY)
    else:
        cutoff = floor_day(holdout_cutoff(events, holdout_fraction=holdout_fraction, holdout_days=holdout_days))
    if cutoff <= events[col.EVENT_TIME].min():
        raise UserInputError("the day-aligned holdout covers all events; nothing left to train on")
    return cutoff


@dataclass
class EvaluationResult:
    payload: dict[str, Any]  # exactly the offline_eval.json shape
    details: dict[str, Any] = field(default_factory=dict)  # timings, windows, model choice, stage counts


def evaluate_offline(
    events: pd.DataFrame,
    *,
    settings: TrainingSettings,
    holdout_fraction: float | None = None,
    holdout_days: float | None = None,
    k: int = 10,
    track: Callable[[Sequence[int], str], Any] | None = None,
    ranker: Scorer | None = None,
) -> EvaluationResult:
    """Train before the holdout (unless ``ranker`` is given), recommend with the serving core, score.

    Without ``holdout_fraction`` / ``holdout_days`` the last 7 whole days are held out.
    """
    if holdout_fraction is None and holdout_days is None:
        holdout_days = 7.0
    timings: dict[str, float] = {}
    started = time.perf_counter()
    cutoff = evaluation_cutoff(events, holdout_fraction=holdout_fraction, holdout_days=holdout_days)
    before, after = events_before(events, cutoff), events_from(events, cutoff)  # slices of a sorted log
    if after.empty:
        raise UserInputError("the holdout has no events")

    details: dict[str, Any] = {"cutoff": cutoff.isoformat()}
    if ranker is None:
        ranker, fit_details = _train_before(before, cutoff, settings)
        details.update(fit_details)
    timings["train_ranker_seconds"] = time.perf_counter() - started

    relevant = relevant_sets(window_relevance(events, cutoff, after[col.EVENT_TIME].max() + pd.Timedelta(seconds=1)))
    users = sorted(relevant)
    details["holdout_users"] = len(users)
    if len(users) > settings.evaluate_max_users:  # a seeded sample: the metrics' error shrinks as 1/sqrt(users)
        picked = np.random.default_rng(settings.seed).choice(len(users), settings.evaluate_max_users, replace=False)
        users = [users[i] for i in np.sort(picked)]
    details["evaluated_users"] = len(users)

    mark = time.perf_counter()
    state = ServingState.at(events, cutoff, users)
    timings["serving_state_seconds"] = time.perf_counter() - mark

    config = recommender_config(settings)
    catalogue = state.tables.product_stats.index.to_numpy(dtype=np.int64)
    rng = np.random.default_rng(settings.seed)
    lists: dict[str, list[list[int]]] = {m: [] for m in METHODS}
    user_stages: list[str] = []
    mark = time.perf_counter()
    iterate = track(users, "recommend for holdout users") if track else users
    for user in iterate:
        row = state.user_rows.get(user)
        user_stages.append(user_stage(row["user_n_events"] if row else 0, config.cold_start))
        purchased = set(row["user_purchased_product_ids"]) if row else set()
        lists["model"].append(state.recommend(user, ranker, k, config))
        lists["popularity"].append(state.popularity.top(k, exclude=purchased))
        lists["random"].append(_random_list(rng, catalogue, k, purchased))
    timings["recommend_seconds"] = time.perf_counter() - mark
    timings["recommend_ms_per_user"] = 1000 * timings["recommend_seconds"] / max(len(users), 1)
    stages = {stage: user_stages.count(stage) for stage in ("cold", "light", "warm")}

    mark = time.perf_counter()
    baselines = _peer_baselines(events, cutoff, users, settings, k)
    timings["baselines_seconds"] = time.perf_counter() - mark
    for name, (baseline_lists, _) in baselines.items():
        lists[name] = baseline_lists
    details["baselines"] = {name: facts for name, (_, facts) in baselines.items()}

    stage_of = np.array(user_stages)
    is_cold = stage_of == "cold"
    masks = {
        "all": np.ones(len(users), dtype=bool),
        "cold_users": is_cold,
        "warm_users": ~is_cold,
        "light_users": stage_of == "light",
        "returning_users": stage_of == "warm",
    }
    relevant_lists = [relevant[u] for u in users]
    known_products = set(catalogue.tolist())
    segments: dict[str, Any] = {}
    for segment, mask in masks.items():
        chosen = np.flatnonzero(mask)
        entry: dict[str, Any] = {"n_users": int(mask.sum())}
        for method, method_lists in lists.items():
            segment_lists = [method_lists[i] for i in chosen]
            truth = [relevant_lists[i] for i in chosen]
            scores = mean_ranking_metrics(segment_lists, truth, k, catalogue_size=len(catalogue))
            entry[method] = {name: _finite(value) for name, value in scores.as_dict().items()}
            entry[method]["new_product_hit_share"] = _new_product_hit_share(segment_lists, truth, known_products, k)
        segments[segment] = entry
    model_p = segments["all"]["model"][f"precision_at_{k}"]
    popular_p = segments["all"]["popularity"][f"precision_at_{k}"]
    lift = (model_p - popular_p) / popular_p if popular_p else 0.0
    payload = {
        "k": k,
        "cutoff": cutoff.isoformat(),
        "n_train_events": len(before),
        "n_test_events": len(after),
        "segments": segments,
        f"lift_precision_at_{k}_vs_popularity": float(lift),
        f"lift_precision_at_{k}_vs_best_baseline": _lift_vs_best(segments, f"precision_at_{k}"),
    }
    timings["total_seconds"] = time.perf_counter() - started
    details.update(
        {
            "timings": timings,
            "user_stages": stages,
            "catalogue_size": len(catalogue),
            "recommender_config": {
                "n_candidates": config.n_candidates,
                "max_per_category": config.max_per_category,
                "exploration_slots": config.exploration_slots,
                "warm_threshold_events": config.cold_start.warm_threshold_events,
                "cold_trending_share": config.cold_start.trending_share,
                "trained_with_n_candidates": settings.n_candidates,
            },
        }
    )
    return EvaluationResult(payload, details)


def _peer_baselines(
    events: pd.DataFrame, cutoff: pd.Timestamp, users: Sequence[int], settings: TrainingSettings, k: int
) -> dict[str, tuple[list[list[int]], dict[str, Any]]]:
    """Each peer baseline's lists for ``users`` and its facts (chosen setting, grid, fit seconds)."""
    names = tuple(settings.evaluate_baselines)
    if not names:
        return {}

    def relevant_between(start: pd.Timestamp, end: pd.Timestamp) -> dict[int, set[int]]:
        return relevant_sets(window_relevance(events, start, end))

    config = BaselineSettings(threads=settings.baseline_threads, seed=settings.seed)
    tuned = tune_and_fit(names, events, cutoff, relevant_between, config, k)
    out: dict[str, tuple[list[list[int]], dict[str, Any]]] = {}
    for name, result in tuned.items():
        started = time.perf_counter()
        baseline_lists = result.baseline.recommend(users, k)
        facts = {
            "params": _json_safe(result.baseline.params),
            "fit_seconds": round(result.baseline.fit_seconds, 3),
            "recommend_seconds": round(time.perf_counter() - started, 3),
            "validation": [
                {"params": _json_safe(t["params"]), f"precision_at_{k}": t[f"precision_at_{k}"]}
                for t in result.validation
            ],
        }
        out[name] = (baseline_lists, facts)
    return out


def _json_safe(params: Mapping[str, Any]) -> dict[str, Any]:
    """``inf`` (all-time popularity) as the string "inf": JSON has no infinity."""
    return {k: ("inf" if isinstance(v, float) and np.isinf(v) else v) for k, v in params.items()}


def _new_product_hit_share(
    lists: Sequence[Sequence[int]], relevant: Sequence[set[int]], known: set[int], k: int
) -> float:
    """Share of the hits (recommended and relevant) that are products with no event before the cutoff."""
    hits = [p for items, truth in zip(lists, relevant, strict=True) for p in items[:k] if p in truth]
    return float(sum(p not in known for p in hits) / len(hits)) if hits else 0.0


def _lift_vs_best(segments: Mapping[str, Any], metric: str) -> dict[str, Any]:
    """Per segment: the best method other than the ranker (random excluded) and the ranker's lift over it."""
    out: dict[str, Any] = {}
    for segment, entry in segments.items():
        rivals = {m: v[metric] for m, v in entry.items() if isinstance(v, dict) and m not in ("model", "random")}
        if not rivals:
            continue
        best = max(rivals, key=lambda m: rivals[m])
        value = rivals[best]
        model = entry["model"][metric]
        out[segment] = {"best_baseline": best, "lift": float((model - value) / value) if value else 0.0}
    return out


def recommender_config(settings: TrainingSettings) -> RecommenderConfig:
    """The per-request config evaluated: ``serve_n_candidates`` (default: as trained) and the diversity cap."""
    return RecommenderConfig(
        n_candidates=settings.serve_n_candidates or settings.n_candidates,
        max_per_category=settings.max_per_category,
        cold_start=cold_start_config(settings),
    )


def render_evaluation_report(result: EvaluationResult) -> str:
    """report.md of ``recsys evaluate``: the segment x method table, the lift, and how it was measured."""
    payload, details = result.payload, result.details
    k = payload["k"]
    metric_names = [f"precision_at_{k}", f"hitrate_at_{k}", f"ndcg_at_{k}", f"map_at_{k}", "coverage"]
    header = "| segment | users | method | " + " | ".join(m.replace("_at_", "@") for m in metric_names) + " |"
    lines = [header, "|" + "---|" * (len(metric_names) + 3)]
    for segment, entry in payload["segments"].items():
        for method in [m for m in entry if m != "n_users"]:
            cells = " | ".join(f"{entry[method][m]:.4f}" for m in metric_names)
            lines.append(f"| {segment} | {entry['n_users']:,} | {method} | {cells} |")
    config = details.get("recommender_config", {})
    stages = details.get("user_stages", {})
    timings = details.get("timings", {})
    lift = payload[f"lift_precision_at_{k}_vs_popularity"]
    choice = details.get("choice_reason", "a ranker passed in by the caller")
    notes = [
        "Relevant = products the user interacted with (any event type) in the holdout; users = everyone with a "
        f"holdout event ({details.get('evaluated_users', 0):,} of {details.get('holdout_users', 0):,}: a seeded "
        "sample beyond evaluate_max_users); products purchased before the cutoff are never recommended (every method).",
        "cold_users = no event before the cutoff: served by the same cold-start path as the service "
        "(popularity, by category when known). Evaluated users by stage: "
        f"{stages.get('cold', 0):,} cold, {stages.get('light', 0):,} light, {stages.get('warm', 0):,} warm.",
        f"coverage = share of the catalogue ({details.get('catalogue_size', 0):,} products with an event before "
        f"the cutoff) in anyone's top {k}.",
    ]
    how = [
        f"ranker: {choice}",
        f"recommender: {config.get('n_candidates')} candidates scored per user (the ranker was trained on "
        f"{config.get('trained_with_n_candidates')}), at most {config.get('max_per_category')} items per category "
        f"(0 = no cap), warm above {config.get('warm_threshold_events')} events, cold trending share "
        f"{config.get('cold_trending_share')}; no exploration slots (the service adds its own Thompson-sampling "
        "exploration, not simulated here).",
        f"timings: {timings.get('total_seconds', float('nan')):.1f} s in all, ranker training "
        f"{timings.get('train_ranker_seconds', float('nan')):.1f} s, "
        f"{timings.get('recommend_ms_per_user', float('nan')):.2f} ms per user recommendation.",
    ]
    return (
        "\n".join(
            [
                "# Offline evaluation",
                "",
                f"Cutoff {payload['cutoff']}: the ranker, candidates, popularity and features use only the "
                f"{payload['n_train_events']:,} events before it; the {payload['n_test_events']:,} events from it on "
                "are the holdout.",
                "",
                f"**Lift of precision@{k} vs popularity: {lift:+.1%}** (all evaluated users).",
                "",
                f"## Metrics @{k}",
                *lines,
                "",
                *[f"- {n}" for n in notes],
                "",
                "## How the model's lists were made",
                *[f"- {h}" for h in how],
            ]
        )
        + "\n"
    )


def _train_before(before: pd.DataFrame, cutoff: pd.Timestamp, settings: TrainingSettings) -> tuple[Scorer, dict]:
    """Fit the final ranker on the period before ``cutoff``; shrinks the label window if the period is short."""
    label_days = settings.label_days
    while True:
        try:
            windows = plan_windows(
                before, label_days=label_days, min_history_days=settings.min_history_days, with_test=False, end=cutoff
            )
            break
        except UserInputError:
            if label_days == 1:
                raise
            label_days = max(1, label_days // 2)
    train = prepare_window(  # only the datasets are kept (see training_pipeline.run_training)
        before, windows.train_cutoff, windows.valid_cutoff, settings, sample=True, max_users=settings.max_train_users
    ).dataset
    valid = prepare_window(
        before, windows.valid_cutoff, cutoff, settings, sample=False, max_users=settings.max_eval_users
    ).dataset
    fitted = fit_ranker(train, valid, settings)
    artifact = RankerArtifact(booster=fitted.final.booster, feature_names=fd.RANKER_FEATURES)
    details = {
        "windows": windows.as_dict(),
        "chosen_variant": fitted.chosen,
        "choice_reason": fitted.reason(settings.k),
        "valid_ndcg": {name: s.ndcg for name, s in fitted.valid_scores.items()},
        "train_rows": len(train),
        "valid_rows": len(valid),
    }
    return artifact, details


def _random_list(rng: np.random.Generator, catalogue: np.ndarray, k: int, exclude: set[int]) -> list[int]:
    if len(catalogue) == 0:
        return []
    draw = rng.choice(catalogue, size=min(len(catalogue), k + len(exclude)), replace=False)
    return [int(p) for p in draw if int(p) not in exclude][:k]


def _finite(value: float) -> float:
    return float(value) if np.isfinite(value) else 0.0
