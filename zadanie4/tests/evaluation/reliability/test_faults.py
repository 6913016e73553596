"""Fast variants of the fault scenarios of ``make reliability`` (issue 10), run by ``make test``.

Each test runs the real scenario function (quick profile) against the service app on a dedicated
redis-server behind the delay proxy (``conftest.fault_world``) and asserts the scenario's
deterministic checks. Latency ratios (p99 within 1.5x, within 10 %, within the feature budget) are
figures of ``make reliability`` on a quiet machine, not assertions here: this process also runs the
load generator and shares the GIL with the server.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from zadanie1.ranker_artifact import load_ranker
from zadanie4.evaluation.reliability import scenarios_faults as sf
from zadanie4.evaluation.reliability.harness import Context, ServiceTarget
from zadanie4.tests.service_fakes import DictModelProvider, model, two_models

FaultWorld = Any  # conftest.FaultWorld (conftest modules are not importable under --import-mode=importlib)


def _checks(result: Any) -> dict[str, bool]:
    return dict(result.details["checks"])


def test_redis_stopped_answers_degraded_without_errors_and_recovers(fault_world: FaultWorld) -> None:
    # Given constant load on the service, when its Redis is shut down for 3 s and started again
    result = sf.redis_stopped(fault_world.ctx)
    # then nothing failed, every answer during the outage was the degraded fallback, and it recovered
    checks = _checks(result)
    assert result.details["outage_requests"] > 50, result.details
    assert checks["zero_5xx"] and checks["zero_unanswered"], result.non_2xx
    assert checks["outage_answers_all_degraded"], result.details
    assert checks["personalized_again_within_limit"], result.recovery_s


def test_slow_redis_costs_no_error_and_no_request_over_a_second(fault_world: FaultWorld) -> None:
    # Given constant load, when the proxy delays every Redis reply by 200 ms each way for 2 s
    result = sf.slow_redis(fault_world.ctx)
    # then no request failed or took a second (the reads give up at their budget); the answers were degraded
    checks = _checks(result)
    assert checks["zero_5xx"], result.non_2xx
    assert checks["zero_requests_over_1s"], result.details
    assert result.details["degraded_share_during"] > 0.5, result.details


def test_missing_and_expired_features_fall_back_and_are_counted(fault_world: FaultWorld) -> None:
    # When unknown users, users whose keys expired and products without rows are asked for
    result = sf.missing_features(fault_world.ctx, keys=fault_world.keys)
    # then every request was answered and the fallbacks are in /metrics
    assert all(_checks(result).values()), result.details


class _CorruptFilesPublisher:
    """The champion alias is pointed at corrupt ranker files (as a forced promotion would do);
    "the gate" here is the loader, which must refuse both broken copies."""

    def __init__(self, provider: DictModelProvider, ranker_dir: Path) -> None:
        self.provider = provider
        self.ranker_dir = ranker_dir
        self.previous = provider.models["champion"]

    def publish_corrupt_champion(self, work_dir: Path) -> dict[str, object]:
        figures: dict[str, object] = {}
        for kind, folder in sf.write_corrupt_rankers(self.ranker_dir, work_dir).items():
            try:
                load_ranker(folder)
            except Exception as exc:  # the loader's refusal is what the service sees on reload
                figures[f"{kind}_refused"] = True
                self.provider.models["champion"] = exc
            else:
                figures[f"{kind}_refused"] = False
        figures["gate_rejected"] = False  # forced through: the service must protect itself
        return figures

    def restore(self) -> None:
        self.provider.models["champion"] = self.previous


def test_corrupt_champion_is_refused_on_reload_and_serving_goes_on(
    fault_world: FaultWorld, fault_ranker_dir: Path
) -> None:
    # Given a service serving champion v1
    provider = two_models()
    fault_world.ctx.main_factory = lambda _ctx: fault_world.start_app(provider)
    publisher = _CorruptFilesPublisher(provider, fault_ranker_dir)
    # when a truncated and a garbage model file are made champion and the service reloads under load
    result = sf.corrupt_model_promoted(fault_world.ctx, publisher=publisher)
    # then both files were refused, the old model kept serving and no request failed
    checks = _checks(result)
    assert result.details["truncated_refused"] and result.details["garbage_refused"]
    assert checks["reload_keeps_old_model"] and checks["zero_failed_recommend"], result.details
    assert result.details["champion_after"] == "1"


class _DictChampionSwitch:
    versions = ("1", "3")

    def __init__(self, provider: DictModelProvider) -> None:
        self.provider = provider

    def point_champion_at(self, version: str) -> None:
        self.provider.models["champion"] = model(version, seed=int(version))


def test_every_hot_reload_swaps_the_champion_without_a_failed_request(fault_world: FaultWorld) -> None:
    # Given a service whose champion alias alternates between two versions
    provider = two_models()
    fault_world.ctx.main_factory = lambda _ctx: fault_world.start_app(provider)
    # when it is reloaded after every move, under constant load
    result = sf.hot_reload(fault_world.ctx, switch=_DictChampionSwitch(provider), start=lambda ctx: ctx.main())
    # then every reload answered 200 and swapped the model, and every request got 2xx
    checks = _checks(result)
    assert checks["all_reloads_200"] and checks["every_reload_swapped_the_champion"], result.details
    assert checks["zero_non_2xx"], result.non_2xx


def test_canary_share_is_the_weight_and_each_user_keeps_their_variant(fault_world: FaultWorld) -> None:
    # When the canary weight is 0.1 and 2,000 distinct users ask, 200 of them three times
    result = sf.canary_split(fault_world.ctx, start=lambda ctx: ctx.main())
    # then 10 % +- 1 point went to the challenger and no user switched variant; every answer was 2xx
    # (a user whose answers all came from the degraded fallback shows no routing: in this process the
    # load generator competes with the server, so "every user routed" is a figure of make reliability)
    checks = _checks(result)
    assert result.details["distinct_users"] >= 1800, result.details
    assert checks["share_within_0_01"] and checks["sticky_per_user"], result.details
    assert checks["all_answered_2xx"], result.details


def test_shadow_challenger_that_sleeps_or_raises_changes_no_response(fault_world: FaultWorld) -> None:
    # Given a service whose challenger sleeps 2 s, then raises, on every call
    def start(ctx: Context, fault_file: Path) -> ServiceTarget:
        return fault_world.start_app(sf.FaultyChallengerProvider(two_models(), "challenger", fault_file))

    # when shadow scoring is switched on and off under load, for each fault
    result = sf.shadow_isolation(fault_world.ctx, start=start)
    # then the answers with shadow on equal those with it off, none failed, and the challenger was called
    checks = _checks(result)
    for fault in sf.SHADOW_FAULTS:
        tag = fault.split(":")[0]
        assert checks[f"{tag}_responses_identical"], result.details
        assert checks[f"{tag}_zero_non_2xx"], result.non_2xx
    assert checks["challenger_was_exercised"], result.details
