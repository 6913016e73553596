"""Security settings the service ships (issue 10), each checked by behaviour where it can be:

* the admin token has no default, and without one every admin request is refused;
* every Redis client (zadanie2's online reader, zadanie4's feedback log, Feast through the generated
  ``feature_store.yaml``) authenticates with the password of the URL against a real password-protected
  redis-server;
* the MLflow server binds loopback and accepts only local Host headers; its store URI is not on argv;
* serving never unpickles: no pickle/joblib use in the modules the service imports, and loading a
  ranker (local folder, registry cache) raises no ``pickle.find_class`` audit event;
* the request body limit is on by default (1 MiB).
"""

from __future__ import annotations

import ast
import json
import pickle
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from zadanie4.app import create_app
from zadanie4.evaluation.reliability.harness import RedisServer
from zadanie4.settings import ServeSettings, load_settings
from zadanie4.tests.import_graph import service_modules

PASSWORD = "s3cr@t/pa:ss%word"  # characters that need URL quoting


# --- admin token -------------------------------------------------------------------------------------


def test_admin_token_has_no_default(monkeypatch):
    monkeypatch.delenv("RECSYS_SERVE_ADMIN_TOKEN", raising=False)
    assert ServeSettings.model_fields["admin_token"].default is None
    assert load_settings().admin_token is None
    monkeypatch.setenv("RECSYS_SERVE_ADMIN_TOKEN", "   ")  # a blank token is no token
    assert load_settings().admin_token is None


@pytest.mark.anyio
@pytest.mark.parametrize("authorization", [None, "Bearer ", "Bearer None", "Bearer null", "Bearer undefined"])
async def test_without_a_configured_token_every_admin_request_is_refused(tmp_path, authorization):
    # Given a service started without RECSYS_SERVE_ADMIN_TOKEN
    app = create_app(load_settings(artifacts_dir=tmp_path, admin_token=None, redis_url=None))
    headers = {"Authorization": authorization} if authorization else {}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        for path, body in [
            ("/admin/canary", {"weight": 1.0}),
            ("/admin/shadow", {"enabled": True}),
            ("/admin/reload", None),
        ]:
            response = await client.post(path, json=body, headers=headers)
            # then the admin API is closed for everyone
            assert response.status_code == 401, (path, response.text)
            assert response.headers["www-authenticate"] == "Bearer"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# --- Redis passwords ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def secured_redis() -> Iterator[RedisServer]:
    server = RedisServer(password=PASSWORD)
    server.start()
    yield server
    server.close()


def test_online_feature_reader_authenticates_with_the_url_password(secured_redis):
    from zadanie2.online_feature_reader import create_feature_reader
    from zadanie2.settings import FeatureStoreSettings

    def reader(url: str) -> Any:
        return create_feature_reader(FeatureStoreSettings(redis_url=url, online_store="redis"))

    good, anonymous = reader(secured_redis.url()), reader(f"redis://127.0.0.1:{secured_redis.port}/0")
    try:
        assert good.ping() is True
        assert anonymous.ping() is False  # the server requires the password
    finally:
        good.close()
        anonymous.close()


def test_feedback_log_authenticates_with_the_url_password(secured_redis):
    import redis

    from zadanie4.feedback.feedback_log import FeedbackRecord, RedisFeedbackLog

    record = FeedbackRecord("pw-1", 1, 2, "click", None, None, "2026-11-28T00:00:00+00:00")
    log = RedisFeedbackLog.from_url(secured_redis.url(), stream="security-test:feedback")
    try:
        assert log.append([record]) == [True] and log.count() == 1
    finally:
        log.close()
    anonymous = RedisFeedbackLog.from_url(f"redis://127.0.0.1:{secured_redis.port}/0", stream="security-test:feedback")
    with pytest.raises(redis.RedisError, match=r"(?i)auth"):  # NOAUTH, or refused before AUTH
        anonymous.append([record])
    anonymous.close()


def test_feast_connects_with_the_password_written_into_feature_store_yaml(secured_redis):
    # Given the online_store block zadanie2 writes into feature_store.yaml for a password URL
    from zadanie2.feature_store_config import online_store_config
    from zadanie2.settings import FeatureStoreSettings

    block = online_store_config(FeatureStoreSettings(redis_url=secured_redis.url(3), online_store="redis"))
    # when Feast itself builds its Redis client from it
    from feast.infra.online_stores.redis import RedisOnlineStore, RedisOnlineStoreConfig

    client = RedisOnlineStore()._get_client(RedisOnlineStoreConfig(**block))
    # then it is authenticated on the right db
    try:
        assert client.ping() is True
        assert client.connection_pool.connection_kwargs["db"] == 3
    finally:
        client.close()


# --- MLflow server -----------------------------------------------------------------------------------


def test_mlflow_server_binds_loopback_with_local_allowed_hosts(monkeypatch):
    from zadanie3.mlflow_server import mlflow_server_command, mlflow_server_env
    from zadanie3.settings import load_settings as load_registry_settings

    for name in (
        "RECSYS_REGISTRY_SERVER_HOST",
        "RECSYS_REGISTRY_SERVER_ALLOWED_HOSTS",
        "RECSYS_REGISTRY_SERVER_BACKEND_STORE_URI",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RECSYS_REGISTRY_SERVER_BACKEND_STORE_URI", "postgresql://mlflow:db-pass@127.0.0.1:5432/mlflow")
    settings = load_registry_settings()
    argv = mlflow_server_command(settings)
    assert argv[argv.index("--host") + 1] == "127.0.0.1"
    allowed = argv[argv.index("--allowed-hosts") + 1].split(",")
    assert set(allowed) == {"localhost", "127.0.0.1", "localhost:*", "127.0.0.1:*"}
    assert not any("db-pass" in part for part in argv)  # argv shows in `ps`; the URI goes by environment
    assert mlflow_server_env(settings, {})["MLFLOW_BACKEND_STORE_URI"].endswith("@127.0.0.1:5432/mlflow")


# --- no pickle in serving ----------------------------------------------------------------------------

FORBIDDEN_MODULES = {"pickle", "_pickle", "cPickle", "joblib", "cloudpickle", "dill", "shelve", "marshal"}
FORBIDDEN_CALLS = {"read_pickle", "load_model", "load_pickle", "unpickle"}


def test_no_module_the_service_imports_uses_pickle_or_joblib():
    modules = service_modules()
    # the closure reaches the model loaders of zadanie1 and zadanie3 and the feature reader of zadanie2
    assert {"zadanie1.ranker_artifact", "zadanie3.registry_client", "zadanie2.online_feature_reader"} <= set(modules)
    offences = []
    for name, path in modules.items():
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
                offences += [f"{name}: imports {n}" for n in names if n.split(".")[0] in FORBIDDEN_MODULES]
            elif isinstance(node, ast.Attribute) and node.attr in FORBIDDEN_CALLS:
                offences.append(f"{name}:{node.lineno}: .{node.attr}")
            elif (
                isinstance(node, ast.keyword)
                and node.arg == "allow_pickle"
                and not (isinstance(node.value, ast.Constant) and node.value.value is False)
            ):
                offences.append(f"{name}:{node.value.lineno}: allow_pickle not False")
    assert offences == []


_unpickled: list[str] = []
_watching = [False]


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if _watching[0] and event == "pickle.find_class":
        _unpickled.append(f"{args[0]}.{args[1]}")


@pytest.fixture
def pickle_watch() -> Iterator[list[str]]:
    """Records ``pickle.find_class`` audit events (every unpickled class) while the test runs."""
    if _audit not in getattr(sys, "_recsys_audit_hooks", []):
        sys.addaudithook(_audit)  # hooks cannot be removed: this one is inert outside the fixture
        sys._recsys_audit_hooks = [_audit]  # type: ignore[attr-defined]
    _unpickled.clear()
    _watching[0] = True
    yield _unpickled
    _watching[0] = False


class _Probe:
    pass


def _tiny_ranker(folder: Path) -> Path:
    import lightgbm as lgb

    from shared.feature_definitions import RANKER_FEATURES
    from zadanie1.ranker_artifact import save_ranker

    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, len(RANKER_FEATURES)))
    y = (x[:, 0] > 0).astype(int)
    booster = lgb.train(
        {"objective": "binary", "verbose": -1, "num_leaves": 4},
        lgb.Dataset(x, y, feature_name=list(RANKER_FEATURES)),
        3,
    )
    return save_ranker(booster, RANKER_FEATURES, {"trained_by": "security test"}, folder)


def test_loading_rankers_for_serving_unpickles_nothing(tmp_path, pickle_watch):
    from shared.feature_definitions import RANKER_FEATURES
    from zadanie3 import registry_client
    from zadanie3.settings import RegistrySettings
    from zadanie4.rollout.registry_models import load_local_ranker

    # the watch works: unpickling an object resolves its class
    pickle.loads(pickle.dumps(_Probe()))
    assert pickle_watch == [f"{__name__}._Probe"]
    pickle_watch.clear()
    # Given a ranker folder as training writes it, and the same ranker in the registry client's cache
    folder = _tiny_ranker(tmp_path / "ranker")
    settings = RegistrySettings(tracking_uri=f"sqlite:///{tmp_path / 'no-registry.db'}")
    root = tmp_path / "cache" / "recsys-ranker"
    cached = root / registry_client.CACHE_VERSIONS_DIR / "7"
    cached.mkdir(parents=True)
    for name in (registry_client.MODEL_FILE, registry_client.META_FILE):
        (cached / name).write_bytes((folder / name).read_bytes())
    (cached / registry_client.CACHE_INFO_FILE).write_text(json.dumps({"version": 7}))
    (root / registry_client.CACHE_POINTER_DIR).mkdir()
    (root / registry_client.CACHE_POINTER_DIR / "champion.json").write_text(json.dumps({"version": 7}))
    # when the service's loaders read them (local folder; registry down -> last-good cache) and score
    local = load_local_ranker(folder)
    version, from_cache = registry_client.load_ranker_by_alias("champion", settings, cache_dir=tmp_path / "cache")
    matrix = np.zeros((3, len(RANKER_FEATURES)))
    assert local is not None and local.ranker.score(matrix).shape == (3,)
    assert version == 7 and from_cache.meta["loaded_from"] == "cache" and from_cache.score(matrix).shape == (3,)
    # then no class was unpickled on the way
    assert pickle_watch == []


# --- request size limit ------------------------------------------------------------------------------


def test_request_body_limit_is_on_by_default(monkeypatch):
    monkeypatch.delenv("RECSYS_SERVE_MAX_BODY_BYTES", raising=False)
    assert load_settings().max_body_bytes == 1024 * 1024
    assert ServeSettings.model_fields["max_body_bytes"].metadata  # bounded below (ge=1024)
