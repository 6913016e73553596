"""Durable, idempotent log of feedback events: a Redis Stream when Redis is configured, else SQLite (WAL).

``append`` returns only after the events are written durably, and tells for each event whether it
was new (``True``, stored) or a repeat of an ``event_id`` seen before (``False``, not written again),
so ``POST /feedback`` may acknowledge after it returns and clients may retry safely.

* SQLite: one table keyed by ``event_id`` (``INSERT OR IGNORE``), WAL journal with
  ``synchronous=FULL`` — a committed batch survives a crash of the process or of the machine.
* Redis: one Lua script per batch, atomic per event: ``SET <prefix><event_id> NX EX ttl`` and, only
  when that key was new, ``XADD`` to the stream. Ids are remembered for ``dedupe_ttl_s`` seconds.
  Durability across a Redis restart is Redis' persistence setting (AOF recommended).

Variant attribution: a recommendation id is ``<variant>-<random hex>`` (see :func:`new_recommendation_id`),
so the variant of an event is read from the id it quotes — no lookup table, survives restarts.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

VARIANTS = ("champion", "challenger", "fallback")

# Atomic per event: remember the id (NX) and append to the stream only when it was new.
# ARGV: ttl, key prefix, then FIELDS_PER_EVENT values per event.
_APPEND_SCRIPT = """
local ttl = tonumber(ARGV[1])
local prefix = ARGV[2]
local out = {}
local n = 7
for i = 3, #ARGV, n do
  local id = ARGV[i]
  if redis.call('SET', prefix .. id, '1', 'NX', 'EX', ttl) then
    redis.call('XADD', KEYS[1], '*',
      'event_id', id, 'user_id', ARGV[i + 1], 'product_id', ARGV[i + 2], 'event_type', ARGV[i + 3],
      'recommendation_id', ARGV[i + 4], 'variant', ARGV[i + 5], 'timestamp', ARGV[i + 6])
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
return out
"""


@dataclass(frozen=True)
class FeedbackRecord:
    """One feedback event as stored (timestamp: ISO 8601 UTC; empty strings never stored as None)."""

    event_id: str
    user_id: int
    product_id: int
    event_type: str
    recommendation_id: str | None
    variant: str | None
    timestamp: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def new_recommendation_id(variant: str) -> str:
    """``<variant>-<20 hex chars>``: unique, and carries the variant for CTR attribution."""
    return f"{variant}-{os.urandom(10).hex()}"


def variant_of(recommendation_id: str | None) -> str | None:
    """The variant encoded in a recommendation id, or None when the id is absent or not ours."""
    if not recommendation_id:
        return None
    variant, _, rest = recommendation_id.partition("-")
    return variant if variant in VARIANTS and rest else None


class FeedbackLog(Protocol):
    def append(self, records: Sequence[FeedbackRecord]) -> list[bool]:
        """Write durably; per record True = stored now, False = duplicate event_id. Raises when not written."""
        ...

    def count(self) -> int: ...

    def read_all(self, limit: int = 1_000_000) -> list[FeedbackRecord]: ...

    def close(self) -> None: ...

    @property
    def kind(self) -> str: ...


class SqliteFeedbackLog:
    """The embedded default: a SQLite file in WAL mode, one transaction per batch."""

    kind = "sqlite"

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=10.0)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS feedback ("
            " seq INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL UNIQUE, user_id INTEGER NOT NULL,"
            " product_id INTEGER NOT NULL, event_type TEXT NOT NULL, recommendation_id TEXT, variant TEXT,"
            " timestamp TEXT NOT NULL, received_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')))"
        )

    def append(self, records: Sequence[FeedbackRecord]) -> list[bool]:
        if not records:
            return []
        out: list[bool] = []
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for r in records:
                    cursor = self._db.execute(
                        "INSERT OR IGNORE INTO feedback (event_id, user_id, product_id, event_type,"
                        " recommendation_id, variant, timestamp) VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (
                            r.event_id,
                            r.user_id,
                            r.product_id,
                            r.event_type,
                            r.recommendation_id,
                            r.variant,
                            r.timestamp,
                        ),
                    )
                    out.append(cursor.rowcount == 1)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return out

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM feedback").fetchone()[0])

    def read_all(self, limit: int = 1_000_000) -> list[FeedbackRecord]:
        with self._lock:
            rows = self._db.execute(
                "SELECT event_id, user_id, product_id, event_type, recommendation_id, variant, timestamp"
                " FROM feedback ORDER BY seq LIMIT ?",
                (limit,),
            ).fetchall()
        return [FeedbackRecord(*row) for row in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()


class RedisFeedbackLog:
    """Redis Stream + per-event dedupe keys, written atomically by one Lua script per batch."""

    kind = "redis"

    def __init__(
        self,
        client: Any,
        stream: str = "recsys:feedback",
        dedupe_ttl_s: int = 30 * 86400,
    ) -> None:
        self._client = client
        self.stream = stream
        self.dedupe_prefix = f"{stream}:seen:"
        self.dedupe_ttl_s = dedupe_ttl_s
        self._script = client.register_script(_APPEND_SCRIPT)

    @classmethod
    def from_url(cls, url: str, *, timeout_s: float = 2.0, **kwargs: Any) -> RedisFeedbackLog:
        import redis

        client = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
        return cls(client, **kwargs)

    def append(self, records: Sequence[FeedbackRecord]) -> list[bool]:
        if not records:
            return []
        argv: list[Any] = [self.dedupe_ttl_s, self.dedupe_prefix]
        for r in records:
            argv += [
                r.event_id,
                r.user_id,
                r.product_id,
                r.event_type,
                r.recommendation_id or "",
                r.variant or "",
                r.timestamp,
            ]
        result = self._script(keys=[self.stream], args=argv)
        return [bool(int(flag)) for flag in result]

    def count(self) -> int:
        return int(self._client.xlen(self.stream))

    def read_all(self, limit: int = 1_000_000) -> list[FeedbackRecord]:
        out = []
        for _, fields in self._client.xrange(self.stream, count=limit):
            f = {key.decode(): value.decode() for key, value in fields.items()}
            out.append(
                FeedbackRecord(
                    event_id=f["event_id"],
                    user_id=int(f["user_id"]),
                    product_id=int(f["product_id"]),
                    event_type=f["event_type"],
                    recommendation_id=f["recommendation_id"] or None,
                    variant=f["variant"] or None,
                    timestamp=f["timestamp"],
                )
            )
        return out

    def ping(self) -> bool:
        try:
            return bool(self._client.ping())
        except Exception:
            return False

    def close(self) -> None:
        self._client.close()


def open_feedback_log(
    *,
    redis_url: str | None,
    sqlite_path: Path,
    stream: str = "recsys:feedback",
    dedupe_ttl_s: int = 30 * 86400,
    timeout_s: float = 2.0,
) -> SqliteFeedbackLog | RedisFeedbackLog:
    """The Redis log when ``redis_url`` is set, else the SQLite log at ``sqlite_path``."""
    if redis_url:
        return RedisFeedbackLog.from_url(redis_url, timeout_s=timeout_s, stream=stream, dedupe_ttl_s=dedupe_ttl_s)
    return SqliteFeedbackLog(sqlite_path)
