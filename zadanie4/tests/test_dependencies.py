"""The real wiring's pieces that need no running stores, and the product feature cache's refresh rules."""

from __future__ import annotations

import numpy as np
import pytest

from shared.feature_definitions import RANKER_FEATURES
from zadanie4.feedback.realtime_features import feedback_as_events
from zadanie4.pipeline.candidate_ranking import product_block_from_frames
from zadanie4.pipeline.product_feature_cache import ProductFeatureCache
from zadanie4.rollout.registry_models import RegistryModelProvider
from zadanie4.settings import load_settings
from zadanie4.tests.service_fakes import InMemoryFeatureReader


def _save_tiny_ranker(folder):
    import lightgbm as lgb

    from zadanie1.ranker_artifact import save_ranker

    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, len(RANKER_FEATURES)))
    y = (x[:, 0] > 0).astype(int)
    booster = lgb.train({"objective": "binary", "verbose": -1, "num_leaves": 4}, lgb.Dataset(x, y), 5)
    save_ranker(booster, RANKER_FEATURES, {"trained_by": "test"}, folder)


def test_champion_falls_back_to_the_local_ranker_when_the_registry_is_unreachable(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/missing/mlflow.db")
    monkeypatch.setenv("RECSYS_ARTIFACTS_DIR", str(tmp_path))
    _save_tiny_ranker(tmp_path / "train" / "ranker")
    provider = RegistryModelProvider(load_settings(artifacts_dir=tmp_path))
    champion = provider.load("champion")
    assert champion is not None and champion.version == "local:ranker"
    scores = champion.ranker.score(np.zeros((3, len(RANKER_FEATURES)), dtype=np.float32))
    assert scores.shape == (3,)
    from zadanie3.registry_client import RegistryUnavailable

    with pytest.raises(RegistryUnavailable):  # no local fallback for the challenger: reload reports it
        provider.load("challenger")


def test_feedback_becomes_view_cart_purchase_events_for_the_realtime_update():
    records = [
        {"event_id": "1", "user_id": 5, "product_id": 9, "event_type": "impression", "timestamp": "t"},
        {
            "event_id": "2",
            "user_id": 5,
            "product_id": 9,
            "event_type": "click",
            "timestamp": "t",
            "recommendation_id": "champion-x",
            "category_id": 7,
            "price": 12.5,
        },
        {
            "event_id": "3",
            "user_id": 5,
            "product_id": 9,
            "event_type": "purchase",
            "timestamp": "t",
            "category_id": None,
            "price": None,
        },
    ]
    events = feedback_as_events(records)
    assert [e["event_type"] for e in events] == ["view", "purchase"]
    assert events[0] == {
        "event_time": "t",
        "event_type": "view",
        "product_id": 9,
        "user_id": 5,
        "user_session": "champion-x",
        "category_id": 7,
        "price": 12.5,
    }
    assert "category_id" not in events[1]


def test_product_cache_keeps_the_last_good_block_when_a_refresh_fails(shop):
    reader = InMemoryFeatureReader(shop.tables)
    catalogue = np.asarray([*shop.tables.product_stats.index[:50].tolist(), 99_999_999], dtype=np.int64)
    seen = []
    cache = ProductFeatureCache(reader, lambda: catalogue, product_block_from_frames, on_refresh=seen.append)
    first = cache.refresh()
    assert first.n_products == 51 and len(seen) == 1 and cache.block is not None
    assert cache.age_seconds() < 5
    # the unknown catalogue product is kept with unknown facts (defaults apply when scored)
    assert first.describe(99_999_999) == (None, None)
    known = int(catalogue[0])
    category = int(shop.tables.product_stats.loc[known, "product_category_id"])
    assert first.describe(known)[0] == category
    reader.fail = True
    with pytest.raises(ConnectionError):
        cache.refresh()
    assert cache.snapshot is first and len(seen) == 1


def test_settings_read_the_environment_and_keep_the_admin_token_secret(monkeypatch, tmp_path):
    monkeypatch.setenv("RECSYS_SERVE_ADMIN_TOKEN", "s3cret")
    monkeypatch.setenv("RECSYS_SERVE_CANARY_WEIGHT", "0.25")
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:6379/3")
    settings = load_settings(artifacts_dir=tmp_path)
    assert settings.admin_token is not None and settings.admin_token.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(settings)
    assert settings.canary_weight == 0.25 and settings.redis_url == "redis://127.0.0.1:6379/3"
    assert settings.resolved_candidates_dir == tmp_path / "train" / "candidates"
    monkeypatch.setenv("RECSYS_SERVE_ADMIN_TOKEN", "  ")
    assert load_settings().admin_token is None  # blank means unset: admin stays closed
    monkeypatch.delenv("RECSYS_SERVE_ADMIN_TOKEN")
    assert load_settings().admin_token is None


def test_candidate_loader_reloads_only_when_the_files_change(shop, tmp_path):
    import os

    from zadanie4.pipeline.candidate_ranking import CandidateIndexLoader

    folder = tmp_path / "train" / "candidates"
    shop.index.save(folder)
    loader = CandidateIndexLoader(load_settings(artifacts_dir=tmp_path))
    core = loader.load()
    assert len(core.catalogue()) > 100
    assert loader.load_if_changed() is None
    meta = folder / "candidate_index.json"
    os.utime(meta, ns=(meta.stat().st_atime_ns, meta.stat().st_mtime_ns + 1_000_000_000))
    assert loader.load_if_changed() is not None
    assert loader.load_if_changed() is None


@pytest.mark.anyio
async def test_reload_installs_new_candidates_without_failing_requests(shop, settings):
    from zadanie4.pipeline.candidate_ranking import CandidateIndexCore
    from zadanie4.tests.conftest import admin_headers, running_service
    from zadanie4.tests.service_fakes import make_dependencies

    deps = make_dependencies(shop)
    new_core = CandidateIndexCore(shop.index, n_candidates=20)
    pending = [new_core]
    deps.core_loader = lambda: pending.pop() if pending else None
    async with running_service(settings, deps) as svc:
        response = await svc.client.post("/admin/reload", headers=admin_headers())
        served = await svc.client.get("/recommend", params={"user_id": shop.users_with_events(10)[0]})
        assert svc.runtime.service.core is new_core
    assert response.status_code == 200 and served.status_code == 200


def test_registry_aliases_are_resolved_by_the_helper_process_and_unchanged_ones_not_reparsed(tmp_path, monkeypatch):
    from zadanie3 import registry_client
    from zadanie3.settings import load_settings as load_registry_settings

    # Given a sqlite registry with two versions of a tiny ranker: v1 champion, v2 challenger
    for key, value in {
        "RECSYS_REGISTRY_ARTIFACTS_DIR": tmp_path / "artifacts",
        "RECSYS_REGISTRY_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
        "RECSYS_REGISTRY_ARTIFACT_ROOT": tmp_path / "mlflow-artifacts",
    }.items():
        monkeypatch.setenv(key, str(value))
    registry = load_registry_settings()
    _save_tiny_ranker(tmp_path / "ranker")
    v1 = registry_client.register_ranker(tmp_path / "ranker", registry).version
    registry_client.promote(v1, registry, force=True, reason="test")
    v2 = registry_client.register_ranker(tmp_path / "ranker", registry).version
    provider = RegistryModelProvider(load_settings(artifacts_dir=tmp_path, registry_cache_dir=tmp_path / "cache"))
    try:
        # when the service loads the aliases (the helper child resolves them and fills the cache)
        champion, challenger = provider.load("champion"), provider.load("challenger")
        again = provider.load("champion")
        registry_client.set_alias("champion", v2, registry, reason="test")
        moved = provider.load("champion")
    finally:
        provider.close()
    # then each alias got its version's files, an unchanged alias its loaded model, a moved one the new one
    assert (champion.version, challenger.version) == (str(v1), str(v2))
    assert champion.ranker.meta["loaded_from"] == "registry"
    assert str(champion.ranker.meta["registry_run_id"]) != str(challenger.ranker.meta["registry_run_id"])
    assert again is champion
    assert moved.version == str(v2) and moved is not champion
    assert (tmp_path / "cache").is_dir()
