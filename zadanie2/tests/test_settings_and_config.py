"""Settings and the generated feature_store.yaml: SQLite by default, Redis from REDIS_URL (db + password)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from shared.errors import UserInputError
from zadanie2.feature_store_config import render_feature_store_yaml, repo_config_dict, write_feature_store_yaml
from zadanie2.settings import feast_redis_connection_string, load_settings, redis_connection_parts


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("REDIS_URL", "RECSYS_FEATURES_REDIS_URL", "RECSYS_FEATURES_ONLINE_STORE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RECSYS_ARTIFACTS_DIR", str(tmp_path / "artifacts"))
    monkeypatch.setenv("RECSYS_DATA_DIR", str(tmp_path / "data"))


def test_default_store_is_sqlite_under_artifacts_features(tmp_path: Path) -> None:
    # given no Redis URL; when settings load
    settings = load_settings()
    # then SQLite, every path under the shared folders
    assert settings.online_store_kind == "sqlite"
    paths = settings.paths()
    assert paths["sqlite"] == (tmp_path / "artifacts" / "features" / "online_store.db").resolve()
    assert paths["offline"] == (tmp_path / "artifacts" / "features" / "offline").resolve()
    assert paths["registry"] == (tmp_path / "artifacts" / "features" / "registry_sqlite.db").resolve()
    assert paths["events"] == (tmp_path / "data" / "events.parquet").resolve()


def test_redis_url_in_environment_switches_to_redis(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://:s3cret@redis.internal:6380/4")
    settings = load_settings()
    assert settings.online_store_kind == "redis"
    online = repo_config_dict(settings)["online_store"]
    assert online["type"] == "redis"
    assert online["connection_string"].startswith('redis.internal:6380,db=4,password="s3cret"')
    # a registry of its own: what was materialized into SQLite says nothing about Redis
    assert settings.paths()["registry"].name == "registry_redis.db"


def test_explicit_online_store_wins_over_redis_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:6379/0")
    monkeypatch.setenv("RECSYS_FEATURES_ONLINE_STORE", "sqlite")
    assert load_settings().online_store_kind == "sqlite"


def test_connection_string_keeps_numeric_password_a_string_and_tls() -> None:
    text = feast_redis_connection_string("rediss://user:123@h:1/2")
    assert text.split(",")[:5] == ["h:1", "db=2", 'username="user"', 'password="123"', "ssl=true"]
    # Feast json-decodes each value: the password must come back as the string "123"
    assert json.loads(text.split(",")[3].split("=", 1)[1]) == "123"


@pytest.mark.parametrize(
    ("url", "message"),
    [("http://x:1/0", "redis://"), ("redis://h:1/abc", "database index"), ("redis://:a,b@h:1/0", "contains ','")],
)
def test_bad_redis_urls_are_user_errors(url: str, message: str) -> None:
    with pytest.raises(UserInputError, match=message):
        feast_redis_connection_string(url)


def test_redis_url_parts_default_db_and_decoded_password() -> None:
    parts = redis_connection_parts("redis://:p%40ss@localhost")
    assert (parts["host"], parts["port"], parts["db"], parts["password"]) == ("localhost", 6379, 0, "p@ss")


def test_yaml_is_generated_from_settings_with_duckdb_offline_store(tmp_path: Path) -> None:
    settings = load_settings(repo_path=tmp_path / "repo", project="demo")
    path = write_feature_store_yaml(settings)
    content = yaml.safe_load(path.read_text())
    assert path.read_text() == render_feature_store_yaml(settings)
    assert content["project"] == "demo"
    assert content["offline_store"] == {"type": "duckdb"}
    assert content["online_store"] == {"type": "sqlite", "path": str(settings.paths()["sqlite"])}
    assert content["entity_key_serialization_version"] == 3
    assert content["registry"]["path"] == str(settings.paths()["registry"])


def test_cli_module_imports_without_feast() -> None:
    # `recsys --help` must stay fast: the features CLI may not import feast at module level
    code = "import sys, zadanie2.cli; print('feast' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
