"""Fault scenarios: the store fails or slows, features are missing, models break, traffic is split.

Each scenario is ``Callable[[Context], ScenarioResult]`` (listed in :data:`SCENARIOS`): it drives constant
load at the context's service, injects its fault at a known time, and judges the samples before,
during and after it. ``details["checks"]`` holds every criterion as a boolean (``passed`` = all of
them), so the fast test variants can assert the deterministic ones and leave timing to the report.
``ctx.quick`` selects the short profile (seconds instead of tens of seconds, fewer users).

Scenarios that need a particular service (a challenger that misbehaves) or a model registry take the
starter / publisher as an optional argument; the defaults are the real ones (a ``recsys serve``
subprocess, the MLflow registry through ``recsys registry ...``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import orjson

from zadanie4.evaluation.bench.serving_setup import executable
from zadanie4.evaluation.reliability.harness import (
    ConstantLoad,
    Context,
    LoadRequest,
    Sample,
    ServiceTarget,
    between,
    count_5xx,
    http_get,
    http_post_json,
    non_2xx,
    percentile_ms,
    python_command,
    recommend_urls,
    window_p99s,
)
from zadanie4.evaluation.reliability.report import ScenarioResult, failed_result

FEATURE_BUDGET_MS = 25.0  # RECSYS_SERVE_FEATURE_BUDGET_MS default; the Slow Redis criterion adds it to the normal p99


def feature_budget_ms(ctx: Context) -> float:
    """The feature budget the context's services run with (their env, else the service default)."""
    return float(ctx.env.get("RECSYS_SERVE_FEATURE_BUDGET_MS", FEATURE_BUDGET_MS))


@dataclass(frozen=True)
class FaultProfile:
    """Durations (s), rates (requests/s) and sizes of the fault scenarios."""

    rate_rps: float
    before_s: float
    outage_s: float
    recovery_limit_s: float
    after_s: float
    slow_delay_ms: float
    slow_s: float
    reloads: int
    reload_pause_s: float
    canary_users: int
    canary_repeat_users: int
    canary_rate_rps: float
    missing_requests: int
    shadow_users: int
    shadow_phase_s: float
    shadow_rounds: int


FULL = FaultProfile(
    rate_rps=100.0,
    before_s=10.0,
    outage_s=30.0,
    recovery_limit_s=10.0,
    after_s=10.0,
    slow_delay_ms=200.0,
    slow_s=15.0,
    reloads=20,
    reload_pause_s=0.5,
    canary_users=10_000,
    canary_repeat_users=1_000,
    canary_rate_rps=200.0,
    missing_requests=600,
    shadow_users=200,
    # Many short phases: a stall or a drift of the machine lands in both arms alike (3 x 4 s phases
    # moved the p99 of one arm by 10-40 % between runs). 3,200 samples per arm: with 1,600, an A/A run
    # (shadow off in both arms) moved the p99 by -14.9 % in 1 of 6 runs, and the sleeping challenger's
    # row by +15 to +23 % in 3 of 18, with nothing of the shadow on the slow requests' path.
    shadow_phase_s=2.0,
    shadow_rounds=16,
)
QUICK = FaultProfile(
    rate_rps=50.0,
    before_s=1.5,
    outage_s=3.0,
    recovery_limit_s=10.0,
    after_s=2.0,
    slow_delay_ms=200.0,
    slow_s=2.0,
    reloads=5,
    reload_pause_s=0.2,
    canary_users=2_000,
    canary_repeat_users=200,
    canary_rate_rps=200.0,
    missing_requests=120,
    shadow_users=40,
    shadow_phase_s=1.0,
    shadow_rounds=1,
)


def profile(ctx: Context) -> FaultProfile:
    return QUICK if ctx.quick else FULL


# --- small helpers ---------------------------------------------------------------------------------


def _result(
    name: str,
    criterion: str,
    samples: Sequence[Sample],
    checks: Mapping[str, bool],
    *,
    p99: Mapping[str, float | None] | None = None,
    recovery_s: float | None = None,
    extra: Mapping[str, object] | None = None,
    **figures: object,
) -> ScenarioResult:
    return ScenarioResult(
        name=name,
        passed=all(checks.values()),
        criterion=criterion,
        requests=len(samples),
        non_2xx=non_2xx(samples),
        p99_ms=dict(p99 or {"before": None, "during": percentile_ms(samples), "after": None}),
        recovery_s=recovery_s,
        details={**(extra or {}), **figures, "checks": dict(checks)},
    )


def _rounded(value: float | None, digits: int = 2) -> float | None:
    return round(value, digits) if value is not None else None


def _guarded(name: str, criterion: str, run: Callable[[], ScenarioResult]) -> ScenarioResult:
    """Run a scenario; an exception of its own becomes a failed result (the run goes on)."""
    try:
        return run()
    except Exception as exc:
        return failed_result(name, criterion, exc)


def scrape_metric(url: str, name: str, labels: Mapping[str, str] | None = None) -> float:
    """Sum of the samples of ``name`` (e.g. ``recsys_fallbacks_total``) whose labels include ``labels``."""
    from prometheus_client.parser import text_string_to_metric_families

    status, body = http_get(url + "/metrics")
    if status != 200:
        raise RuntimeError(f"GET /metrics -> {status}")
    total = 0.0
    wanted = dict(labels or {})
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in wanted.items()):
                total += float(sample.value)
    return total


def _admin(ctx: Context, target: ServiceTarget, path: str, payload: object) -> tuple[int, dict[str, Any]]:
    return http_post_json(target.url + path, payload, token=ctx.admin_token)


def _normal(sample: Sample) -> bool:
    return sample.ok and sample.degraded is False


def recovery_seconds(samples: Sequence[Sample], back_at: float, steady_s: float = 1.0) -> float | None:
    """Seconds from ``back_at`` to the send time from which the answers are normal (2xx, not degraded)
    for at least ``steady_s`` in a row; None when that never happened.

    A single late degraded answer (a feature read over its 25 ms budget on a noisy machine, long after
    the store came back) does not move the recovery: it is counted by :func:`degraded_after`.
    """
    after = sorted((s for s in samples if s.t_sent >= back_at), key=lambda s: s.t_sent)
    run_start: Sample | None = None
    for sample in after:
        if not _normal(sample):
            run_start = None
            continue
        if run_start is None:
            run_start = sample
        if sample.t_sent - run_start.t_sent >= steady_s:
            return max(run_start.t_sent - back_at, 0.0)
    return None


def degraded_after(samples: Sequence[Sample], since: float) -> int:
    """Answers sent from ``since`` on that were not normal (degraded, or not 2xx)."""
    return sum(1 for s in samples if s.t_sent >= since and not _normal(s))


def _run_load_around(
    load: ConstantLoad, before_s: float, fault: Callable[[], None], during_s: float, heal: Callable[[], None]
) -> tuple[float, float]:
    """Let ``load`` run ``before_s``, call ``fault``, wait ``during_s``, call ``heal``; (fault_at, heal_at):
    ``fault_at`` once ``fault`` has returned (the fault is in place), ``heal_at`` just before ``heal`` is
    called (the fault is still in place), so requests sent in between certainly met the fault."""
    time.sleep(before_s)
    fault()
    fault_at = time.monotonic()
    time.sleep(during_s)
    heal_at = time.monotonic()
    heal()
    return fault_at, heal_at


def _wait_recovered(load: ConstantLoad, back_at: float, limit_s: float, settle_s: float) -> None:
    """Keep the load running until the answers have been normal for ``settle_s`` (or ``limit_s`` passed)."""
    deadline = back_at + limit_s + settle_s
    while time.monotonic() < deadline:
        time.sleep(0.25)
        recovered = recovery_seconds(sorted(load.samples, key=lambda s: s.t_sent), back_at)
        if recovered is not None and time.monotonic() >= back_at + recovered + settle_s:
            return


# --- Redis stopped under load ----------------------------------------------------------------------

REDIS_STOPPED = "Redis stopped under load"
REDIS_STOPPED_CRITERION = (
    "0 5xx; answers during the 30 s outage degraded: true; personalized again (1 s of normal answers in a row) "
    "<= 10 s after Redis returns"
)


def redis_stopped(ctx: Context) -> ScenarioResult:
    """Stop the service's dedicated Redis (``SHUTDOWN SAVE``) during constant load, start it again."""

    def run() -> ScenarioResult:
        p = profile(ctx)
        assert ctx.redis is not None, "needs the dedicated Redis"
        redis = ctx.redis
        target = ctx.main()
        users = ctx.warm_users[:500]
        load = ConstantLoad(recommend_urls(target.url, users), p.rate_rps).start()
        try:
            stop_began = time.monotonic()
            # Outage = from SHUTDOWN done to just before redis-server is spawned again: a request sent
            # while it starts (and loads its data) may be answered from the Redis that is back already.
            down_at, restart_at = _run_load_around(load, p.before_s, redis.stop, p.outage_s, redis.start)
            back_at = time.monotonic()
            _wait_recovered(load, back_at, p.recovery_limit_s, p.after_s)
        finally:
            samples = load.stop()
        recovery = recovery_seconds(samples, back_at)
        late_degraded = degraded_after(samples, back_at + recovery) if recovery is not None else None
        outage = between(samples, down_at, restart_at)
        not_degraded = sum(1 for s in outage if s.degraded is not True)
        checks = {
            "zero_5xx": count_5xx(samples) == 0,
            "zero_unanswered": non_2xx(samples).get("error", 0) == 0,
            "outage_answers_all_degraded": bool(outage) and not_degraded == 0,
            "personalized_again_within_limit": recovery is not None and recovery <= p.recovery_limit_s,
        }
        return _result(
            REDIS_STOPPED,
            REDIS_STOPPED_CRITERION,
            samples,
            checks,
            p99=window_p99s(samples, stop_began + p.before_s, back_at),
            recovery_s=recovery,
            outage_s=round(restart_at - down_at, 2),
            outage_requests=len(outage),
            outage_not_degraded=not_degraded,
            degraded_after_recovery=late_degraded,
            rate_rps=p.rate_rps,
            redis_restart_s=round(back_at - restart_at, 3),
        )

    return _guarded(REDIS_STOPPED, REDIS_STOPPED_CRITERION, run)


# --- Slow Redis ------------------------------------------------------------------------------------

SLOW_REDIS = "Slow Redis"
SLOW_REDIS_CRITERION = "p99 <= feature budget + normal p99; 0 requests > 1 s (proxy adds 200 ms per direction)"


def slow_redis(ctx: Context) -> ScenarioResult:
    """Put ``slow_delay_ms`` per direction on the proxy between the service and Redis, then remove it."""

    def run() -> ScenarioResult:
        p = profile(ctx)
        assert ctx.proxy is not None, "needs the delay proxy"
        proxy = ctx.proxy
        target = ctx.main()
        load = ConstantLoad(recommend_urls(target.url, ctx.warm_users[:500]), p.rate_rps).start()
        try:
            fault_at, healed_at = _run_load_around(
                load, p.before_s, lambda: proxy.set_delay(p.slow_delay_ms), p.slow_s, lambda: proxy.set_delay(0)
            )
            _wait_recovered(load, healed_at, p.recovery_limit_s, p.after_s)
        finally:
            proxy.set_delay(0)
            samples = load.stop()
        p99 = window_p99s(samples, fault_at, healed_at)
        during = between(samples, fault_at, healed_at)
        over_1s = sum(1 for s in samples if s.latency_ms > 1000 or s.status == 0)
        normal = p99["before"]
        limit = (normal or 0.0) + feature_budget_ms(ctx)
        checks = {
            "zero_5xx": count_5xx(samples) == 0,
            "p99_during_within_budget_plus_normal": p99["during"] is not None and p99["during"] <= limit,
            "zero_requests_over_1s": over_1s == 0,
        }
        return _result(
            SLOW_REDIS,
            SLOW_REDIS_CRITERION,
            samples,
            checks,
            p99=p99,
            recovery_s=recovery_seconds(samples, healed_at),
            delay_ms_per_direction=p.slow_delay_ms,
            p99_limit_ms=round(limit, 2),
            requests_over_1s=over_1s,
            degraded_share_during=round(sum(1 for s in during if s.degraded) / max(len(during), 1), 3),
            max_ms=round(max((s.latency_ms for s in samples), default=0.0), 1),
        )

    return _guarded(SLOW_REDIS, SLOW_REDIS_CRITERION, run)


# --- Missing / stale features ----------------------------------------------------------------------

MISSING_FEATURES = "Missing/stale features"
MISSING_CRITERION = "0 5xx for unknown users, products without features, expired keys; fallback counted in /metrics"
FALLBACK_METRIC = "recsys_fallbacks_total"


class StoreKeys(Protocol):
    """Where the online store keeps an entity's row (the scenario deletes / expires those keys)."""

    def user_key(self, user_id: int) -> bytes: ...

    def product_key(self, product_id: int) -> bytes: ...


class FeastRedisKeys:
    """Feast's Redis layout: ``serialize_entity_key(entity) + project`` (what ``materialize`` writes)."""

    def __init__(self, project: str = "recsys") -> None:
        from shared import feature_definitions as fd
        from zadanie2.feature_repo.feature_views import ENTITY_JOIN_KEYS
        from zadanie2.feature_store_config import ENTITY_KEY_SERIALIZATION_VERSION

        self.project = project.encode()
        self.user_join_keys = list(ENTITY_JOIN_KEYS[fd.USER_STATS])
        self.product_join_keys = list(ENTITY_JOIN_KEYS[fd.PRODUCT_STATS])
        self.version = ENTITY_KEY_SERIALIZATION_VERSION

    def _key(self, join_keys: list[str], value: int) -> bytes:
        from feast.infra.key_encoding_utils import serialize_entity_key
        from feast.protos.feast.types.EntityKey_pb2 import EntityKey
        from feast.protos.feast.types.Value_pb2 import Value

        proto = EntityKey(join_keys=join_keys, entity_values=[Value(int64_val=int(value))])
        return bytes(serialize_entity_key(proto, entity_key_serialization_version=self.version)) + self.project

    def user_key(self, user_id: int) -> bytes:
        return self._key(self.user_join_keys, user_id)

    def product_key(self, product_id: int) -> bytes:
        return self._key(self.product_join_keys, product_id)


def _catalogue_sample(ctx: Context, n: int) -> list[int]:
    """``n`` product ids the service can recommend (from its own answers to warm users)."""
    seen: list[int] = []
    target = ctx.main()
    for user in ctx.warm_users[:50]:
        status, body = http_get(f"{target.url}/recommend?user_id={user}&k=20")
        if status == 200:
            for item in orjson.loads(body)["items"]:
                if item["product_id"] not in seen:
                    seen.append(int(item["product_id"]))
        if len(seen) >= n:
            break
    return seen[:n]


def missing_features(ctx: Context, keys: StoreKeys | None = None) -> ScenarioResult:
    """Unknown users, products whose feature rows were deleted, users whose keys expired in Redis."""

    def run() -> ScenarioResult:
        p = profile(ctx)
        assert ctx.redis is not None, "needs the dedicated Redis"
        store_keys = keys or FeastRedisKeys()
        target = ctx.main()
        client = ctx.redis.client()
        try:
            # Expired keys: the rows of some warm users vanish (TTL), as after a missed materialization.
            expired_users = ctx.warm_users[-max(p.missing_requests // 6, 10) :]
            del ctx.warm_users[-len(expired_users) :]  # other scenarios must not count on them any more
            for user in expired_users:
                client.pexpire(store_keys.user_key(user), 1)
            # Products without features: rows deleted from the store (the cache fills defaults at refresh).
            featureless = _catalogue_sample(ctx, 10)
            for product in featureless:
                client.delete(store_keys.product_key(product))
            time.sleep(0.05)
            expired_left = sum(client.exists(store_keys.user_key(u)) for u in expired_users)
        finally:
            client.close()
        unknown = ctx.unknown_users[: p.missing_requests // 3]
        never_sold = [max(featureless, default=0) + 10_000_000 + i for i in range(5)]
        requests: list[str | LoadRequest] = []
        requests += recommend_urls(target.url, unknown)
        requests += recommend_urls(target.url, expired_users)
        for i, user in enumerate(ctx.warm_users[: p.missing_requests // 3]):
            body = {
                "user_id": user,
                "k": 10,
                "session_product_ids": [featureless[i % len(featureless)], never_sold[i % len(never_sold)]],
                "category_id": 10**15 + i,  # a category with no row either
            }
            requests.append(LoadRequest(target.url + "/recommend", "POST", orjson.dumps(body), _JSON_HEADERS))
        before = {
            cause: scrape_metric(target.url, FALLBACK_METRIC, {"cause": cause})
            for cause in ("unknown_user", "missing_features")
        }
        samples = ConstantLoad(requests, p.rate_rps * 2, max_requests=len(requests)).wait(120)
        after = {
            cause: scrape_metric(target.url, FALLBACK_METRIC, {"cause": cause})
            for cause in ("unknown_user", "missing_features")
        }
        counted_unknown = after["unknown_user"] - before["unknown_user"]
        expected_unknown = len(unknown) + len(expired_users)
        checks = {
            "zero_5xx": count_5xx(samples) == 0,
            "all_answered_2xx": all(s.ok for s in samples) and len(samples) == len(requests),
            "expired_keys_gone": expired_left == 0,
            "fallback_counted_in_metrics": counted_unknown >= expected_unknown,
        }
        return _result(
            MISSING_FEATURES,
            MISSING_CRITERION,
            samples,
            checks,
            unknown_user_requests=len(unknown),
            expired_key_requests=len(expired_users),
            featureless_product_requests=len(requests) - len(unknown) - len(expired_users),
            fallbacks_unknown_user_counted=int(counted_unknown),
            fallbacks_missing_features_counted=int(after["missing_features"] - before["missing_features"]),
            products_without_features=len(featureless),
        )

    return _guarded(MISSING_FEATURES, MISSING_CRITERION, run)


_JSON_HEADERS = {"Content-Type": "application/json"}


# --- Corrupt model promoted ------------------------------------------------------------------------

CORRUPT_MODEL = "Corrupt model promoted"
CORRUPT_CRITERION = "gate rejects the corrupt artifact or reload keeps the old model; 0 failed /recommend"


class ModelPublisher(Protocol):
    """Where models come from; publishes a corrupt one as champion (as far as its gates let it)."""

    def publish_corrupt_champion(self, work_dir: Path) -> dict[str, object]:
        """Try to get a corrupt artifact through every gate up to ``champion``; the figures of each step.
        Must leave the champion alias on the corrupt model (forced where gates refused)."""
        ...

    def restore(self) -> None:
        """Put the previous champion back."""
        ...


def write_corrupt_rankers(source: Path, work_dir: Path) -> dict[str, Path]:
    """Two broken copies of a ranker folder: ``truncated`` (model.txt cut in half) and ``garbage`` (random bytes)."""
    out: dict[str, Path] = {}
    model = (source / "model.txt").read_bytes()
    for kind, content in (("truncated", model[: len(model) // 2]), ("garbage", os.urandom(len(model)))):
        folder = work_dir / kind
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        shutil.copy2(source / "ranker_meta.json", folder / "ranker_meta.json")
        (folder / "model.txt").write_bytes(content)
        out[kind] = folder
    return out


def context_registry(ctx: Context) -> tuple[Any, Any]:
    """(RegistrySettings, MlflowClient) of the context's own MLflow registry (from its RECSYS_REGISTRY_* env)."""
    from zadanie3 import registry_client
    from zadanie3.settings import load_settings

    prefix = "RECSYS_REGISTRY_"
    settings = load_settings(**{k.removeprefix(prefix).lower(): v for k, v in ctx.env.items() if k.startswith(prefix)})
    return settings, registry_client.connect(settings, require_existing_db=True)


class MlflowRegistryPublisher:
    """The real path: ``recsys registry register / validate / promote`` on the context's MLflow registry.

    ``restore`` rolls the champion back and points the challenger alias at the version it named before
    (registering the rotten copy made that one the challenger), so later scenarios find the registry
    as they expect it.
    """

    def __init__(self, ctx: Context, ranker_dir: Path = Path("artifacts") / "train" / "ranker") -> None:
        self.ctx = ctx
        self.ranker_dir = ranker_dir
        self._challenger_before: str | None = None

    def _recsys(self, *args: str) -> tuple[int, str]:
        result = subprocess.run(
            [executable("recsys"), *args], env=self.ctx.env, capture_output=True, text=True, check=False
        )
        with self.ctx.log_path("corrupt_model").open("a") as log:
            log.write(f"$ recsys {' '.join(args)} -> {result.returncode}\n{result.stdout}{result.stderr}\n")
        last = (result.stdout + result.stderr).strip().splitlines()
        return result.returncode, (last[-1] if last else "")[:200]

    def _artifact_root(self) -> Path:
        return Path(self.ctx.env["RECSYS_REGISTRY_ARTIFACT_ROOT"])

    def _challenger_version(self) -> str | None:
        from zadanie3.registry_client import resolve_alias

        settings, _ = context_registry(self.ctx)
        version = resolve_alias("challenger", settings)
        return str(version) if version is not None else None

    def publish_corrupt_champion(self, work_dir: Path) -> dict[str, object]:
        self._challenger_before = self._challenger_version()
        broken = write_corrupt_rankers(self.ranker_dir, work_dir)
        figures: dict[str, object] = {}
        # 1. Registration loads the folder first: a corrupt file must not even become a version.
        for kind, folder in broken.items():
            code, message = self._recsys("registry", "register", "--ranker-dir", str(folder), "--reason", kind)
            figures[f"register_{kind}_exit"] = code
            figures[f"register_{kind}_message"] = message
        # 2. Corruption after registration (bad disk, bad upload): a good version whose stored file rots.
        before = set(self._artifact_root().rglob("model.txt"))
        code, message = self._recsys("registry", "register", "--ranker-dir", str(self.ranker_dir), "--reason", "rot")
        if code != 0:
            raise RuntimeError(f"registering the good copy failed: {message}")
        stored = sorted(set(self._artifact_root().rglob("model.txt")) - before)
        for path in stored:
            path.write_bytes(os.urandom(max(path.stat().st_size // 2, 64)))
        figures["stored_files_corrupted"] = len(stored)
        figures["validate_exit"], figures["validate_message"] = self._recsys("registry", "validate", "challenger")
        figures["promote_exit"], figures["promote_message"] = self._recsys("registry", "promote", "challenger")
        # 3. An operator overrides the gate: the service is the last line of defence.
        figures["forced_promote_exit"], _ = self._recsys(
            "registry", "promote", "challenger", "--force", "--reason", "reliability: corrupt model drill"
        )
        gate_steps = ("register_truncated_exit", "register_garbage_exit", "validate_exit", "promote_exit")
        figures["gate_rejected"] = all(figures[k] != 0 for k in gate_steps)
        return figures

    def restore(self) -> None:
        code, message = self._recsys("registry", "rollback", "--reason", "reliability: end of corrupt model drill")
        if code != 0:
            raise RuntimeError(f"rollback failed: {message}")
        if self._challenger_before is not None:
            settings, client = context_registry(self.ctx)
            client.set_registered_model_alias(settings.model_name, "challenger", self._challenger_before)


def corrupt_model_promoted(ctx: Context, publisher: ModelPublisher | None = None) -> ScenarioResult:
    """Push a corrupt ranker towards champion, then reload the service under load: it must keep serving."""

    def run() -> ScenarioResult:
        p = profile(ctx)
        models = publisher or MlflowRegistryPublisher(ctx)
        target = ctx.main()
        status, body = http_get(target.url + "/model")
        champion_before = orjson.loads(body)["champion"]["version"] if status == 200 else None
        figures = models.publish_corrupt_champion(ctx.out_dir / "corrupt_model")
        reloads: list[tuple[int, dict[str, Any]]] = []
        load = ConstantLoad(recommend_urls(target.url, ctx.warm_users[:300]), p.rate_rps).start()
        try:
            time.sleep(p.before_s / 2)
            fault_at = time.monotonic()
            for _ in range(3):
                reloads.append(_admin(ctx, target, "/admin/reload", {}))
            healed_at = time.monotonic()
            time.sleep(p.before_s / 2)
        finally:
            samples = load.stop()
            models.restore()
        status, body = http_get(target.url + "/model")
        champion_after = orjson.loads(body)["champion"]["version"] if status == 200 else None
        kept = champion_after == champion_before and champion_before is not None
        reload_statuses = [code for code, _ in reloads]
        checks = {
            "gate_rejects_or_reload_keeps_old_model": bool(figures.get("gate_rejected")) or kept,
            "reload_keeps_old_model": kept,
            "zero_failed_recommend": all(s.ok for s in samples),
        }
        first_error = next((r.get("errors") for code, r in reloads if r.get("errors")), None)
        return _result(
            CORRUPT_MODEL,
            CORRUPT_CRITERION,
            samples,
            checks,
            p99=window_p99s(samples, fault_at, healed_at),
            extra=figures,
            champion_before=champion_before,
            champion_after=champion_after,
            reload_statuses=",".join(map(str, reload_statuses)),
            reload_error=str(first_error)[:200] if first_error else None,
        )

    return _guarded(CORRUPT_MODEL, CORRUPT_CRITERION, run)


# --- Hot reload under load -------------------------------------------------------------------------

HOT_RELOAD = "Hot reload under load"
HOT_RELOAD_CRITERION = (
    "20 reloads during constant load, each swapping the champion: 0 non-2xx; "
    "p99 <= 1.5x baseline (the quiet windows interleaved with the reload windows)"
)


class ChampionSwitch(Protocol):
    """Points the registry's champion alias at another version (what a promotion does)."""

    versions: Sequence[str]  # the versions to alternate between, as the service reports them

    def point_champion_at(self, version: str) -> None: ...


class RegistryChampionSwitch:
    """The context's MLflow registry: champion alternates between v1 and v2 (``prepare_registry``).

    The MLflow calls run in a child process (:func:`champion_switch_loop`): in this process they would
    hold the GIL against the load generator's thread and inflate the latencies it records.
    """

    versions = ("1", "2")

    def __init__(self, ctx: Context) -> None:
        code = (
            "import os; os.nice(10); "
            "from zadanie4.evaluation.reliability.scenarios_faults import champion_switch_loop as s; s()"
        )
        self.process = subprocess.Popen(
            python_command(code), env=ctx.env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        ctx.add_closer(self.close)

    def point_champion_at(self, version: str) -> None:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(version + "\n")
        self.process.stdin.flush()
        answer = self.process.stdout.readline().strip()
        if answer != "ok":
            raise RuntimeError(f"moving the champion alias to v{version} failed: {answer or 'helper exited'}")

    def close(self) -> None:
        if self.process.poll() is None:
            assert self.process.stdin is not None
            self.process.stdin.close()
            self.process.wait(10)


def champion_switch_loop() -> None:
    """Child of :class:`RegistryChampionSwitch`: one version per stdin line -> champion alias, ``ok`` back."""
    import sys

    from zadanie3 import registry_client
    from zadanie3.settings import load_settings

    settings = load_settings()
    client = registry_client.connect(settings, require_existing_db=True)
    for line in sys.stdin:
        try:
            client.set_registered_model_alias(settings.model_name, "champion", line.strip())
            print("ok", flush=True)
        except Exception as exc:
            print(f"{type(exc).__name__}: {exc}".replace("\n", " "), flush=True)


def hot_reload(
    ctx: Context, switch: ChampionSwitch | None = None, start: Callable[[Context], ServiceTarget] | None = None
) -> ScenarioResult:
    """``POST /admin/reload`` during constant load, the champion alias moved to the other version before
    each one, so every reload loads and swaps a model (a reload that finds nothing new is cheaper).

    Each reload window (reload, pause) is followed by a quiet window as long, and the p99 of the pooled
    reload windows is compared with that of the pooled quiet ones: a baseline taken before the reloads
    put the machine's drift into the ratio (0.3x to 2.2x between runs). The alias moves between the
    windows are left out of both: that MLflow client shares the 2 cores here, and the requests sent
    while it ran had a p99 of 18 ms against 7 ms in the rest of the reload windows.

    By default on a service of its own, straight on Redis: the shared one reads Redis through the delay
    proxy, which runs in this process beside the load generator, so the scenario's own work would be
    measured as the service's latency.
    """

    def run() -> ScenarioResult:
        p = profile(ctx)
        target = (start or (lambda c: c.start_service("hot_reload")))(ctx)
        champions = switch or RegistryChampionSwitch(ctx)
        reload_codes: Counter[int] = Counter()
        reload_ms: list[float] = []
        reload_windows: list[tuple[float, float]] = []
        reload_calls: list[tuple[float, float]] = []  # POST /admin/reload, at the start of each window
        quiet_windows: list[tuple[float, float]] = []
        swapped = 0
        status, body = http_get(target.url + "/model")
        first = str(orjson.loads(body)["champion"]["version"]) if status == 200 else None
        others = [v for v in champions.versions if v != first] or list(champions.versions)
        load = ConstantLoad(recommend_urls(target.url, ctx.warm_users[:500]), p.rate_rps).start()
        try:
            time.sleep(p.before_s)
            for i in range(p.reloads):
                wanted = others[i % len(others)] if i % 2 == 0 else (first or champions.versions[0])
                # The alias move is the registry's work (an MLflow client, here on the service's 2 cores;
                # in production a CI job elsewhere): it belongs to neither window.
                champions.point_champion_at(wanted)
                time.sleep(0.05)
                window_start = started = time.monotonic()
                code, answer = _admin(ctx, target, "/admin/reload", {})
                reload_ms.append((time.monotonic() - started) * 1000)
                reload_calls.append((window_start, time.monotonic()))
                reload_codes[code] += 1
                swapped += int(
                    str(answer.get("champion_version")) == wanted and "champion" in answer.get("changed", [])
                )
                time.sleep(p.reload_pause_s)
                window_end = time.monotonic()
                reload_windows.append((window_start, window_end))
                time.sleep(window_end - window_start)
                quiet_windows.append((window_end, time.monotonic()))
            time.sleep(p.after_s)
        finally:
            samples = load.stop()
            if first is not None:
                champions.point_champion_at(first)
                _admin(ctx, target, "/admin/reload", {})
            if start is None:  # our own service
                target.stop()  # type: ignore[attr-defined]
        last_reload_end = reload_windows[-1][1] if reload_windows else time.monotonic()
        p99 = {
            "before": percentile_ms([x for a, b in quiet_windows for x in between(samples, a, b)]),
            "during": percentile_ms([x for a, b in reload_windows for x in between(samples, a, b)]),
            "after": percentile_ms(between(samples, last_reload_end + p.reload_pause_s * 2, None)),
        }
        baseline = p99["before"]
        ratio = (p99["during"] / baseline) if (baseline and p99["during"] is not None) else None
        # Where in a reload window the slow answers are: while the service reloaded, or in the pause
        # after (a lasting effect of the new model)
        in_calls = [x for a, b in reload_calls for x in between(samples, a, b)]
        after_calls = [
            x for (_, b), (_, end) in zip(reload_calls, reload_windows, strict=True) for x in between(samples, b, end)
        ]
        checks = {
            "all_reloads_200": reload_codes.get(200, 0) == p.reloads,
            "every_reload_swapped_the_champion": swapped == p.reloads,
            "zero_non_2xx": all(s.ok for s in samples),
            "p99_within_1_5x_baseline": ratio is not None and ratio <= 1.5,
        }
        return _result(
            HOT_RELOAD,
            HOT_RELOAD_CRITERION,
            samples,
            checks,
            p99=p99,
            reloads=p.reloads,
            pause_between_reloads_s=p.reload_pause_s,
            champion_swaps=swapped,
            reload_statuses=dict(sorted((str(k), v) for k, v in reload_codes.items())),
            reload_p50_ms=round(sorted(reload_ms)[len(reload_ms) // 2], 1) if reload_ms else None,
            requests_during_reload_calls=len(in_calls),
            p99_during_reload_calls_ms=_rounded(percentile_ms(in_calls)),
            p99_rest_of_reload_windows_ms=_rounded(percentile_ms(after_calls)),
            p99_ratio=round(ratio, 3) if ratio is not None else None,
            rate_rps=p.rate_rps,
        )

    return _guarded(HOT_RELOAD, HOT_RELOAD_CRITERION, run)


# --- Canary split ----------------------------------------------------------------------------------

CANARY = "Canary split"
CANARY_CRITERION = "weight 0.1 over 10,000 distinct users: challenger share 0.1 +- 0.01; same user -> same variant"
CANARY_WEIGHT = 0.1


def _variants(samples: Iterable[Sample], user_of: Sequence[int]) -> dict[int, set[str]]:
    """User -> the routed variants their answers named (fallback answers carry no routing and are left out)."""
    seen: dict[int, set[str]] = {}
    for s in samples:
        if s.variant in ("champion", "challenger"):
            seen.setdefault(user_of[s.index % len(user_of)], set()).add(s.variant)
    return seen


def _retagged(sample: Sample, index: int) -> Sample:
    """``sample`` as if it were request ``index`` of the first pass (maps it to the same user)."""
    from dataclasses import replace

    return replace(sample, index=index)


def canary_split(ctx: Context, start: Callable[[Context], ServiceTarget] | None = None) -> ScenarioResult:
    """Set the canary weight to 0.1, ask for 10,000 distinct users, then ask some of them twice more
    (on the shared service unless ``start`` gives another)."""

    def run() -> ScenarioResult:
        p = profile(ctx)
        target = (start or (lambda c: c.main()))(ctx)
        users = [*ctx.warm_users, *ctx.unknown_users]
        users += [max(users) + 1 + i for i in range(max(p.canary_users - len(users), 0))]
        users = users[: p.canary_users]
        code, state = _admin(ctx, target, "/admin/canary", {"weight": CANARY_WEIGHT, "challenger": "registry"})
        if code != 200 or not state.get("challenger_version"):
            raise RuntimeError(f"POST /admin/canary -> {code} {state}")
        try:
            first = ConstantLoad(recommend_urls(target.url, users), p.canary_rate_rps, max_requests=len(users)).wait(
                600
            )
            # A fallback answer (feature read over its budget) shows no routing: ask those users again.
            retried: list[Sample] = []
            position = {user: i for i, user in enumerate(users)}
            for _ in range(5):
                unrouted = sorted(set(users) - set(_variants([*first, *retried], users)))
                if not unrouted:
                    break
                retried += [
                    _retagged(s, position[unrouted[s.index]])
                    for s in ConstantLoad(
                        recommend_urls(target.url, unrouted), p.canary_rate_rps, max_requests=len(unrouted)
                    ).wait(600)
                ]
            repeat_users = users[: p.canary_repeat_users] * 2
            again = ConstantLoad(
                recommend_urls(target.url, repeat_users), p.canary_rate_rps, max_requests=len(repeat_users)
            ).wait(600)
        finally:
            _admin(ctx, target, "/admin/canary", {"weight": 0.0})
        fallbacks = sum(1 for s in first if s.variant == "fallback")
        first = [*first, *retried]
        variants = _variants(first, users)
        routed = Counter(v for vs in variants.values() for v in vs if v in ("champion", "challenger"))
        n_routed = routed["champion"] + routed["challenger"]
        share = routed["challenger"] / n_routed if n_routed else None
        both = _variants([*first, *again], users)
        flipped = sum(1 for u in users[: p.canary_repeat_users] if len(both.get(u, set())) > 1)
        samples = [*first, *again]
        checks = {
            "all_answered_2xx": all(s.ok for s in samples),
            "every_user_routed": len(variants) == len(users),
            "share_within_0_01": share is not None and abs(share - CANARY_WEIGHT) <= 0.01,
            "sticky_per_user": flipped == 0,
        }
        return _result(
            CANARY,
            CANARY_CRITERION,
            samples,
            checks,
            distinct_users=len(variants),
            challenger_users=routed["challenger"],
            challenger_share=round(share, 4) if share is not None else None,
            repeated_users=p.canary_repeat_users,
            users_that_switched_variant=flipped,
            fallback_answers_first_pass=fallbacks,
            users_asked_again=len(retried),
        )

    return _guarded(CANARY, CANARY_CRITERION, run)


# --- Shadow isolation ------------------------------------------------------------------------------

SHADOW = "Shadow isolation"
SHADOW_CRITERION = "challenger sleeping 2 s / raising: responses identical to shadow off; p99 change <= 10 %"
SHADOW_FAULTS = ("sleep:2", "raise")
FAULT_FILE_ENV = "RECSYS_RELIABILITY_CHALLENGER_FAULT_FILE"


class FaultyRanker:
    """Wraps a ranker; ``score`` misbehaves as the fault file says (``sleep:<seconds>`` or ``raise``),
    read on every call so a running service can be switched between faults."""

    def __init__(self, ranker: Any, fault_file: Path) -> None:
        self.inner = ranker
        self.feature_names = ranker.feature_names
        self.fault_file = fault_file
        self.calls = 0

    def score(self, matrix: Any) -> Any:
        self.calls += 1
        fault = self.fault_file.read_text().strip() if self.fault_file.exists() else ""
        if fault.startswith("sleep:"):
            time.sleep(float(fault.split(":", 1)[1]))
        elif fault == "raise":
            raise RuntimeError("injected challenger failure")
        return self.inner.score(matrix)


class FaultyChallengerProvider:
    """A ModelProvider whose challenger alias is wrapped in :class:`FaultyRanker` (champion untouched)."""

    def __init__(self, inner: Any, challenger_alias: str, fault_file: Path) -> None:
        self.inner = inner
        self.challenger_alias = challenger_alias
        self.fault_file = fault_file

    def load(self, alias: str) -> Any:
        from dataclasses import replace

        model = self.inner.load(alias)
        if model is None or alias != self.challenger_alias or model.ranker is None:
            return model
        return replace(model, ranker=FaultyRanker(model.ranker, self.fault_file), source=f"faulty {model.source}")


def serve_with_faulty_challenger() -> None:
    """``recsys serve`` (same settings, server and start-up) whose challenger misbehaves as the file in
    ``$RECSYS_RELIABILITY_CHALLENGER_FAULT_FILE`` says. Only the dependency factory is wrapped."""
    import typer

    from zadanie4 import dependencies
    from zadanie4.cli import serve_command

    fault_file = Path(os.environ[FAULT_FILE_ENV])
    real_build = dependencies.build_dependencies

    def build(settings: Any) -> Any:
        deps = real_build(settings)
        deps.models = FaultyChallengerProvider(deps.models, settings.challenger_alias, fault_file)
        return deps

    dependencies.build_dependencies = build  # serve_command imports it from the module when it runs
    app = typer.Typer()
    app.command()(serve_command)
    app()


ShadowStarter = Callable[[Context, Path], ServiceTarget]


def _start_faulty_service(ctx: Context, fault_file: Path) -> ServiceTarget:
    code = "from zadanie4.evaluation.reliability.scenarios_faults import serve_with_faulty_challenger as s; s()"
    return ctx.start_service(
        "shadow",
        {FAULT_FILE_ENV: str(fault_file.resolve()), "RECSYS_SERVE_EXPLORATION_SHARE": "0"},
        command=[*python_command(code), "--host", "127.0.0.1", "--port", "{port}", "--log-level", "warning"],
    )


def _ranked_lists(target: ServiceTarget, users: Sequence[int]) -> dict[int, list[tuple[int, float, str]]]:
    """Each user's answer without its random id: (product, score, reason) per item, then the variant."""
    out: dict[int, list[tuple[int, float, str]]] = {}
    for user in users:
        status, body = http_get(f"{target.url}/recommend?user_id={user}&k=10")
        payload: dict[str, Any] = orjson.loads(body) if status == 200 else {"items": [], "variant": f"{status}"}
        items = [(int(i["product_id"]), round(float(i["score"]), 9), str(i["reason"])) for i in payload["items"]]
        out[user] = [*items, (-1, 0.0, str(payload.get("variant")))]  # the variant must match too
    return out


def shadow_isolation(ctx: Context, start: ShadowStarter | None = None) -> ScenarioResult:
    """Per fault (sleep 2 s, raise): answers with shadow off vs on must be equal, and the p99 of
    interleaved shadow-off / shadow-on phases of constant load within 10 %."""

    def run() -> ScenarioResult:
        p = profile(ctx)
        fault_file = ctx.out_dir / "shadow_fault.txt"
        fault_file.parent.mkdir(parents=True, exist_ok=True)
        fault_file.write_text(SHADOW_FAULTS[0])
        target = (start or _start_faulty_service)(ctx, fault_file)
        users = ctx.warm_users[: p.shadow_users]
        samples: list[Sample] = []
        checks: dict[str, bool] = {}
        figures: dict[str, object] = {}
        p99_off: list[float] = []
        p99_on: list[float] = []
        try:
            code, state = _admin(ctx, target, "/admin/shadow", {"enabled": True})
            figures["challenger_version"] = state.get("challenger_version")
            if code != 200 or not state.get("challenger_version"):
                raise RuntimeError(f"the service has no challenger to shadow: POST /admin/shadow -> {code} {state}")
            for fault in SHADOW_FAULTS:
                fault_file.write_text(fault)
                tag = fault.split(":")[0]
                _admin(ctx, target, "/admin/shadow", {"enabled": False})
                reference = _ranked_lists(target, users)
                _admin(ctx, target, "/admin/shadow", {"enabled": True})
                shadowed = _ranked_lists(target, users)
                different = sum(1 for u in users if reference[u] != shadowed[u])
                checks[f"{tag}_responses_identical"] = different == 0
                figures[f"{tag}_users_compared"] = len(users)
                figures[f"{tag}_users_different"] = different
                # Latency: phases off/on/off/on... under one constant load, compared by pooled p99.
                phases: list[tuple[bool, float, float]] = []
                load = ConstantLoad(recommend_urls(target.url, users), p.rate_rps).start()
                try:
                    time.sleep(0.5)  # connections up
                    for _ in range(p.shadow_rounds):
                        for enabled in (False, True):
                            _admin(ctx, target, "/admin/shadow", {"enabled": enabled})
                            began = time.monotonic()
                            time.sleep(p.shadow_phase_s)
                            phases.append((enabled, began, time.monotonic()))
                finally:
                    run_samples = load.stop()
                    _admin(ctx, target, "/admin/shadow", {"enabled": False})
                samples += run_samples
                off = [s for on, a, b in phases if not on for s in between(run_samples, a, b)]
                on = [s for on, a, b in phases if on for s in between(run_samples, a, b)]
                off_p99, on_p99 = percentile_ms(off), percentile_ms(on)
                change = (on_p99 - off_p99) / off_p99 if off_p99 and on_p99 is not None else None
                checks[f"{tag}_p99_change_within_10pct"] = change is not None and change <= 0.10
                checks[f"{tag}_zero_non_2xx"] = all(s.ok for s in run_samples)
                figures[f"{tag}_p99_off_ms"] = round(off_p99, 2) if off_p99 is not None else None
                figures[f"{tag}_p99_on_ms"] = round(on_p99, 2) if on_p99 is not None else None
                figures[f"{tag}_p99_change"] = round(change, 3) if change is not None else None
                if off_p99 is not None and on_p99 is not None:
                    p99_off.append(off_p99)
                    p99_on.append(on_p99)
            figures["shadow_scored"] = scrape_metric(target.url, "recsys_shadow_requests_total", {"result": "scored"})
            figures["shadow_errors"] = scrape_metric(target.url, "recsys_shadow_requests_total", {"result": "error"})
            figures["shadow_dropped"] = scrape_metric(target.url, "recsys_shadow_requests_total", {"result": "dropped"})
            checks["challenger_was_exercised"] = float(figures["shadow_errors"]) + float(figures["shadow_scored"]) > 0  # type: ignore[arg-type]
        finally:
            stop = getattr(target, "stop", None)
            if callable(stop):
                stop()
        return _result(
            SHADOW,
            SHADOW_CRITERION,
            samples,
            checks,
            p99={"before": max(p99_off, default=None), "during": max(p99_on, default=None), "after": None},
            extra=figures,
        )

    return _guarded(SHADOW, SHADOW_CRITERION, run)


SCENARIOS: list[Callable[[Context], ScenarioResult]] = [
    missing_features,
    canary_split,
    hot_reload,
    slow_redis,
    redis_stopped,
    corrupt_model_promoted,
    shadow_isolation,
]
