"""Short A/B simulations against the real service app, in process (ASGI), on a tiny generated shop.

The service is ``zadanie4.app.create_app`` with its real canary routing, feedback log and /metrics;
only the dependencies are small in-memory ones (feature tables instead of the online store). Every
draw is seeded, exploration and real-time updates are off, so each run is deterministic.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from shared.data_generator import GeneratorConfig, GroundTruth, generate
from shared.feature_computation import FeatureTables, compute_feature_tables
from zadanie1.candidate_generation import CandidateIndex
from zadanie4.app import create_app
from zadanie4.dependencies import LoadedModel, RequestContext, ScoredItem, ServiceDependencies
from zadanie4.evaluation.ab.report import write_outputs
from zadanie4.evaluation.ab.runner import ExperimentResult, analyse, build_plan, read_feedback_log, run_simulation
from zadanie4.evaluation.ab.service_client import ServiceClient
from zadanie4.evaluation.ab.simulation import ArmPlan, SimulationConfig
from zadanie4.feedback.feedback_log import SqliteFeedbackLog
from zadanie4.pipeline.candidate_ranking import CandidateIndexCore, product_block_from_frames
from zadanie4.settings import load_settings
from zadanie4.tests.service_fakes import DictModelProvider, InMemoryFeatureReader, LinearRanker

ADMIN_TOKEN = "ab-test-token"
SALT = "ab-test-salt"
CONFIG = SimulationConfig(days=2.0, users=160, seed=5, new_user_share=0.15, pages_per_session_mean=3.0)


@dataclass(frozen=True)
class TinyShop:
    ground_truth: GroundTruth
    events: pd.DataFrame
    tables: FeatureTables
    index: CandidateIndex

    def prior_events(self) -> dict[int, int]:
        return {int(u): int(n) for u, n in self.events["user_id"].value_counts().items()}


@pytest.fixture(scope="module")
def shop() -> TinyShop:
    data = generate(GeneratorConfig(n_users=400, n_products=200, days=14, seed=11))
    cutoff = data.events["event_time"].max() + pd.Timedelta(seconds=1)
    return TinyShop(
        data.ground_truth,
        data.events,
        compute_feature_tables(data.events, cutoff),
        CandidateIndex.build(data.events, cutoff),
    )


class OracleRanker:
    """Marks the ground-truth-optimal policy; :class:`OracleCore` ranks for it, the matrix is not used."""

    feature_names: tuple[str, ...] = ()

    def score(self, matrix: np.ndarray) -> np.ndarray:
        return np.zeros(len(matrix))


class UserIdReader:
    """The in-memory feature reader, with the user id in every user row (also for unknown users),
    so the oracle core knows whom it ranks for."""

    def __init__(self, inner: InMemoryFeatureReader) -> None:
        self.inner = inner

    def read_user(self, user_id: int) -> dict[str, Any] | None:
        return {**(self.inner.read_user(user_id) or {}), "user_id": user_id}

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class OracleCore(CandidateIndexCore):
    """zadanie1's core, except that an :class:`OracleRanker` gets the user's truly best released products."""

    def __init__(self, index: CandidateIndex, ground_truth: GroundTruth) -> None:
        super().__init__(index, n_candidates=100)
        self.ground_truth = ground_truth
        self.released_at = pd.Timestamp(ground_truth.period_end_ns, tz="UTC")

    def recommend(
        self, *, user_row: Mapping[str, Any] | None, ranker: Any, k: int, context: RequestContext, **kw: Any
    ) -> Sequence[Any]:
        if not isinstance(ranker, OracleRanker) or not user_row or "user_id" not in user_row:
            return super().recommend(user_row=user_row, ranker=ranker, k=k, context=context, **kw)
        excluded = set(context.exclude_product_ids)
        best = self.ground_truth.best_products(
            int(user_row["user_id"]), k + len(excluded), available_at=self.released_at
        )
        return [ScoredItem(int(p), 1.0, "personalized") for p in best.tolist() if int(p) not in excluded][:k]


def run_in_process(
    shop: TinyShop,
    tmp_path: Path,
    arms: ArmPlan,
    models: Mapping[str, LoadedModel],
    *,
    oracle: bool = False,
    config: SimulationConfig = CONFIG,
) -> ExperimentResult:
    """Start the app in process, play the plan through its HTTP API and analyse its own feedback log."""
    settings = load_settings(
        artifacts_dir=tmp_path,
        admin_token=ADMIN_TOKEN,
        redis_url=None,
        feedback_sqlite_path=tmp_path / "feedback.db",
        exploration_share=0.0,
        canary_salt=SALT,
        load_challenger=arms.challenger_source == "registry",
        feature_budget_ms=5000.0,
        realtime_updates=False,
    )
    reader = InMemoryFeatureReader(shop.tables)
    dependencies = ServiceDependencies(
        core=OracleCore(shop.index, shop.ground_truth) if oracle else CandidateIndexCore(shop.index, n_candidates=100),
        reader=UserIdReader(reader) if oracle else reader,
        models=DictModelProvider(dict(models)),
        product_block_factory=product_block_from_frames,
    )
    plan = build_plan(shop.ground_truth, shop.prior_events(), config, arms, SALT, run_id="abtest")

    async def main() -> Any:
        app = create_app(settings, dependencies=dependencies)
        async with app.router.lifespan_context(app):
            assert await app.state.runtime.wait_ready(10.0), app.state.runtime.startup_error
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
                return await run_simulation(ServiceClient(http, ADMIN_TOKEN), shop.ground_truth, plan, concurrency=4)

    log = asyncio.run(main())
    feedback = SqliteFeedbackLog(tmp_path / "feedback.db")
    try:
        service_events = read_feedback_log(feedback, plan.run_id, plan.start)
    finally:
        feedback.close()
    setup = {"control": arms.control, "treatment": arms.treatment, "command": "test", "service": "in-process app"}
    setup |= {"days": config.days, "users": config.users, "seed": config.seed, "k": config.k, "exploration": False}
    setup |= {"cold_max_events": config.cold_max_events}
    return analyse(plan, log, service_events, setup=setup)


def _ranker_model(version: str) -> LoadedModel:
    return LoadedModel(version=version, ranker=LinearRanker(seed=3), source=f"test:{version}")


def test_same_policy_in_both_arms_shows_no_significant_lift(shop: TinyShop, tmp_path: Path) -> None:
    # given: the registry's challenger is the very same model as the champion
    same = _ranker_model("1")
    arms = ArmPlan(control="champion", treatment="challenger")
    # when
    result = run_in_process(shop, tmp_path, arms, {"champion": same, "challenger": same})
    # then: both arms were served (by the canary), the service's log agrees with the simulator, no lift
    report = result.report
    assert result.details["source"] == "feedback log"
    assert result.details["cross_check"]["all_match"], result.details["cross_check"]
    assert result.details["simulator"]["routing_mismatches"] == 0
    # A page answered by the fallback is excluded from both arms' counts; on a loaded 2-core machine one page in
    # ~2,000 has been (twice in CI-like runs, cause not yet found: the message shows the service's causes).
    simulator = result.details["simulator"]
    assert simulator["degraded_pages"] <= 2, simulator.get("fallback_causes")
    for arm in ("control", "treatment"):
        assert report["arms"][arm]["impressions"] > 1500 and report["arms"][arm]["clicks"] > 30
    assert report["p_value"] > 0.05
    assert report["ci95"][0] < 0 < report["ci95"][1]


def test_ground_truth_optimal_treatment_shows_a_large_lift(shop: TinyShop, tmp_path: Path) -> None:
    # given: control = the popularity list, treatment = the oracle (each user's truly best products)
    arms = ArmPlan(control="popularity", treatment="champion")
    oracle = LoadedModel(version="oracle", ranker=OracleRanker(), source="ground truth")
    # when
    result = run_in_process(shop, tmp_path, arms, {"champion": oracle}, oracle=True)
    # then
    report = result.report
    assert result.details["cross_check"]["all_match"], result.details["cross_check"]
    assert report["lift"] > 1.0  # more than double the control's CTR
    assert report["p_value"] < 1e-6
    assert report["ci95"][0] > 0.5
    assert report["segments"]["cold_users"]["lift"] > 0.5
    assert report["segments"]["warm_users"]["lift"] > 0.5
    assert result.details["targets"]["lift >= +10 % with p < 0.01"]["met"]


def test_report_files_have_the_issue_schema(shop: TinyShop, tmp_path: Path) -> None:
    # given: a short run
    same = _ranker_model("1")
    config = SimulationConfig(days=1.0, users=40, seed=9)
    result = run_in_process(
        shop, tmp_path, ArmPlan("champion", "challenger"), {"champion": same, "challenger": same}, config=config
    )
    # when
    paths = write_outputs(tmp_path / "ab", result.report, result.details, result.series, result.bucket_hours)
    # then: report.json holds exactly the keys of issue 8, the markdown links the plot
    report = json.loads(paths["report"].read_text())
    assert set(report) == {"arms", "lift", "ci95", "p_value", "test", "segments", "new_products"}
    assert set(report["arms"]) == {"control", "treatment"}
    assert set(report["arms"]["control"]) == {"users", "impressions", "clicks", "ctr"}
    assert set(report["segments"]) == {"cold_users", "warm_users"}
    assert set(report["segments"]["cold_users"]) == {"arms", "lift"}
    assert set(report["new_products"]) == {"impression_share_first_day", "ctr"}
    assert report["test"] == "two-proportion z-test" and len(report["ci95"]) == 2
    arms = report["arms"]
    assert arms["control"]["users"] + arms["treatment"]["users"] == sum(
        s["arms"][a]["users"] for s in report["segments"].values() for a in ("control", "treatment")
    )
    assert paths["plot"].stat().st_size > 10_000
    assert "ctr_over_time.png" in paths["markdown"].read_text()
