"""Settings of the feature store part (env prefix ``RECSYS_FEATURES_``; ``REDIS_URL`` honoured).

Every path defaults to a place under the shared ``artifacts/`` and ``data/`` folders, so one
``RECSYS_ARTIFACTS_DIR`` moves the whole store. The online store is SQLite unless a Redis URL is
given (``REDIS_URL`` or ``RECSYS_FEATURES_REDIS_URL``), or ``RECSYS_FEATURES_ONLINE_STORE`` says
otherwise explicitly.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal
from urllib.parse import unquote, urlparse

from pydantic import AliasChoices, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.errors import UserInputError
from shared.settings import load_shared_settings

OnlineStoreKind = Literal["sqlite", "redis"]
PACKAGE_DIR = Path(__file__).resolve().parent


class FeatureStoreSettings(BaseSettings):
    """Where the Feast repository, its registry, offline snapshots and online store live."""

    model_config = SettingsConfigDict(env_prefix="RECSYS_FEATURES_", extra="ignore", populate_by_name=True)

    project: str = Field("recsys", pattern=r"^[A-Za-z0-9][A-Za-z0-9_]*$", description="Feast project name.")
    repo_path: Path = Field(PACKAGE_DIR / "feature_repo", description="Feast repo (definitions + generated yaml).")
    online_store: OnlineStoreKind | None = Field(None, description="sqlite|redis; default: redis iff a URL is set.")
    redis_url: str | None = Field(
        None,
        validation_alias=AliasChoices("RECSYS_FEATURES_REDIS_URL", "REDIS_URL", "redis_url"),
        description="redis://[:password@]host:port/db (rediss:// for TLS).",
    )
    events_path: Path | None = Field(None, description="Event log the snapshots are built from.")
    features_dir: Path | None = Field(None, description="Root of the store's files (artifacts/features).")
    registry_path: Path | None = None
    offline_dir: Path | None = None
    sqlite_path: Path | None = None
    realtime_event_log_dir: Path | None = Field(None, description="Parquet parts of events pushed after a build.")
    snapshot_freq: str = Field("1D", description="Offline snapshot spacing (pandas offset, e.g. 1D, 12h).")
    registry_cache_ttl_seconds: int = Field(60, ge=0, description="How long readers cache the registry (0 = never).")
    online_write_batch_rows: int = Field(
        50_000, gt=0, description="Rows Feast converts and writes per batch when materializing (bounds its memory)."
    )
    redis_bulk_load: bool = Field(
        True,
        description="Materialize a final snapshot into Redis column at a time (the bytes Feast writes, ~10x faster); "
        "false = Feast's own row-by-row materialization.",
    )
    read_timeout_ms: float = Field(100.0, gt=0, description="Socket timeout of one online read call (Redis).")

    @model_validator(mode="after")
    def _fill_default_paths(self) -> FeatureStoreSettings:
        shared = load_shared_settings()
        if self.online_store is None:
            self.online_store = "redis" if self.redis_url else "sqlite"
        self.features_dir = self.features_dir or shared.artifacts_dir / "features"
        self.events_path = self.events_path or shared.default_events_path
        # One registry per online store: the registry records what was materialized, so sharing it
        # would make `materialize --incremental` skip data the other store never received.
        self.registry_path = self.registry_path or self.features_dir / f"registry_{self.online_store}.db"
        self.offline_dir = self.offline_dir or self.features_dir / "offline"
        self.sqlite_path = self.sqlite_path or self.features_dir / "online_store.db"
        self.realtime_event_log_dir = self.realtime_event_log_dir or shared.data_dir / "realtime_events"
        return self

    @property
    def online_store_kind(self) -> OnlineStoreKind:
        return self.online_store or "sqlite"

    def paths(self) -> dict[str, Path]:
        """Resolved absolute paths (Feast resolves relative paths against the repo, not the cwd)."""
        assert self.features_dir and self.registry_path and self.offline_dir and self.sqlite_path
        assert self.events_path and self.realtime_event_log_dir
        return {
            "repo": self.repo_path.resolve(),
            # The generated yaml for the `feast` CLI (`feast -c <dir> serve`) lives with the store's files,
            # not in the package folder: that may be read-only (installed images) and is shared by stores.
            "cli_repo": (self.features_dir / f"feast_cli_{self.online_store_kind}").resolve(),
            "features": self.features_dir.resolve(),
            "registry": self.registry_path.resolve(),
            "offline": self.offline_dir.resolve(),
            "sqlite": self.sqlite_path.resolve(),
            "events": self.events_path.resolve(),
            "realtime_event_log": self.realtime_event_log_dir.resolve(),
        }


def load_settings(**overrides: object) -> FeatureStoreSettings:
    """Settings from the environment, with keyword overrides (tests, CLI options)."""
    return FeatureStoreSettings(**overrides)  # type: ignore[arg-type]


def redis_connection_parts(url: str) -> dict[str, object]:
    """``redis://[user][:password]@host:port/db`` -> host, port, db, username, password, ssl.

    Raises UserInputError on a URL that is not redis:// or rediss://.
    """
    parsed = urlparse(url)
    if parsed.scheme not in ("redis", "rediss"):
        raise UserInputError(f"REDIS_URL must start with redis:// or rediss:// (got {url.split('://')[0]}://)")
    db_text = parsed.path.lstrip("/") or "0"
    if not db_text.isdigit():
        raise UserInputError(f"REDIS_URL database index must be a number (got {db_text!r})")
    return {
        "host": parsed.hostname or "127.0.0.1",
        "port": parsed.port or 6379,
        "db": int(db_text),
        "username": unquote(parsed.username) if parsed.username else None,
        "password": unquote(parsed.password) if parsed.password else None,
        "ssl": parsed.scheme == "rediss",
    }


def feast_redis_connection_string(url: str, connect_timeout_s: float = 5.0) -> str:
    """Feast's ``host:port,db=N,password=...`` form of a redis:// URL.

    Feast splits that string on commas (then at the first '=') and json-decodes each value, so a
    password containing a comma cannot be expressed; that is reported instead of silently
    connecting with a wrong one.
    """
    parts = redis_connection_parts(url)
    items = [f"{parts['host']}:{parts['port']}", f"db={parts['db']}"]
    for name in ("username", "password"):
        value = parts[name]
        if value is None:
            continue
        if "," in str(value):
            raise UserInputError(f"REDIS_URL {name} contains ',', which Feast's connection string cannot carry")
        # Feast json-decodes each value: quote it so "123" or "true" stay strings.
        items.append(f"{name}={json.dumps(str(value))}")
    if parts["ssl"]:
        items.append("ssl=true")
    items.append(f"socket_connect_timeout={connect_timeout_s:g}")
    return ",".join(items)
