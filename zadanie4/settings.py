"""Settings of the recommendation service (env prefix ``RECSYS_SERVE_``), built by :func:`load_settings`.

Every knob of the request path lives here with its unit in the name or the description. The admin
token has no default: while it is unset every admin endpoint answers 401 to everyone. ``REDIS_URL``
(no prefix) is honoured for the feedback log, like the other parts do for their Redis clients.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServeSettings(BaseSettings):
    """Everything the service needs to start and to answer; see zadanie4/README.md for each setting."""

    model_config = SettingsConfigDict(env_prefix="RECSYS_SERVE_", extra="ignore", populate_by_name=True)

    # --- network ---------------------------------------------------------------------------------
    host: str = Field("127.0.0.1", description="Interface uvicorn binds to (loopback by default).")
    port: int = Field(8000, ge=0, le=65535, description="TCP port; 0 picks a free one.")
    max_concurrency: int = Field(
        64, ge=1, description="Requests in flight above which /recommend and /feedback answer 503 at once."
    )
    max_event_loop_busy: float | None = Field(
        0.9,
        gt=0,
        le=1,
        description=(
            "Overload guard: share of wall time (over 100 ms) the event loop's thread may be runnable (on a "
            "CPU or waiting for one; overload also needs >= 0.6 on a CPU) before the in-flight cap of "
            "/recommend and /feedback (max_concurrency) shrinks, down to 8; "
            "null = off (max_concurrency alone)."
        ),
    )
    max_body_bytes: int = Field(1_048_576, ge=1024, description="Largest accepted request body; larger -> 413.")
    max_feedback_batch: int = Field(1000, ge=1, description="Most events in one POST /feedback.")

    # --- security --------------------------------------------------------------------------------
    admin_token: SecretStr | None = Field(
        None, description="Bearer token of the /admin endpoints. No default: unset means admin is closed (401)."
    )

    # --- artifacts -------------------------------------------------------------------------------
    artifacts_dir: Path = Field(
        Path("artifacts"),
        validation_alias=AliasChoices("RECSYS_SERVE_ARTIFACTS_DIR", "RECSYS_ARTIFACTS_DIR"),
        description="Root of the artifacts; candidates and the local ranker are read from <root>/train/.",
    )
    candidates_dir: Path | None = Field(
        None, description="CandidateIndex folder; default <artifacts>/train/candidates."
    )
    local_ranker_dir: Path | None = Field(
        None, description="Ranker folder used when the registry has no champion; default <artifacts>/train/ranker."
    )
    registry_cache_dir: Path | None = Field(
        None, description="Last-good model cache of the registry client; default <artifacts>/registry/cache."
    )
    compile_ranker: bool = Field(
        True,
        description="Serve rankers as compiled machine code (lleaves; same scores, several times less CPU); "
        "compiled in the background once per model and machine, LightGBM serves meanwhile.",
    )
    compiled_ranker_dir: Path | None = Field(
        None, description="Cache of compiled rankers; default <artifacts>/serve/compiled_rankers."
    )
    champion_alias: str = "champion"
    challenger_alias: str = "challenger"
    load_challenger: bool = Field(True, description="Load the challenger alias at startup when the registry has it.")

    # --- request path ----------------------------------------------------------------------------
    n_candidates: int = Field(
        150,
        ge=10,
        le=5000,
        description="Candidates scored per request (as the ranker was trained: zadanie1 N_CANDIDATES).",
    )
    feature_budget_ms: float = Field(
        25.0, gt=0, description="Time budget of the online-store reads of one request (user row + pair rows)."
    )
    feature_read_threads: int = Field(32, ge=1, le=256, description="Threads doing blocking online-store reads.")
    event_loop_reads: bool = Field(
        True,
        description="With a Redis online store, read the user and pair rows on the event loop (no thread hand-off "
        "per request); false: always through the read threads.",
    )
    breaker_failures: int = Field(5, ge=1, description="Consecutive store failures that open the circuit breaker.")
    breaker_cooldown_s: float = Field(1.0, gt=0, description="Seconds the store is skipped once the breaker opened.")
    candidates_refresh_s: float = Field(
        60.0, ge=0, description="Seconds between checks for new candidate artifacts on disk (0 = never)."
    )
    product_refresh_s: float = Field(300.0, ge=1, description="Seconds between product-feature cache refreshes.")
    max_per_category: int = Field(
        5, ge=1, description="Diversity cap: most items of one category in a response (as zadanie1 evaluates)."
    )
    warm_threshold_events: int = Field(5, ge=1, description="Events from which a user gets the full ranking.")
    exploration_share: float = Field(0.1, ge=0.0, le=0.5, description="Share of slots given to new products.")
    exploration_max_views: int = Field(20, ge=0, description="Products with at most this many views count as new.")
    exploration_prior_ctr: float = Field(0.05, gt=0, lt=1, description="Global prior click-through rate.")
    exploration_prior_strength: float = Field(20.0, gt=0, description="Pseudo-impressions of the Beta prior.")
    exploration_seed: int | None = Field(None, description="Seed of the Thompson sampler (None: random).")

    # --- canary and shadow -----------------------------------------------------------------------
    canary_weight: float = Field(0.0, ge=0.0, le=1.0, description="Share of users sent to the challenger.")
    canary_salt: str = Field("recsys-canary-v1", min_length=1, description="Salt of the sticky user hash.")
    shadow_enabled: bool = Field(False, description="Score a copy of champion requests with the challenger.")
    shadow_queue_size: int = Field(256, ge=1, description="Shadow jobs waiting at most; more are dropped.")
    shadow_sample_rate: float = Field(
        0.05,
        gt=0.0,
        le=1.0,
        description=(
            "Share of champion requests copied to the shadow challenger. Its scoring shares this process's "
            "CPU with live requests; a sample is enough to compare the models."
        ),
    )

    # --- feedback --------------------------------------------------------------------------------
    redis_url: str | None = Field(
        None,
        validation_alias=AliasChoices("RECSYS_SERVE_REDIS_URL", "REDIS_URL"),
        description="Redis for the feedback stream; unset -> the local SQLite log.",
    )
    feedback_stream: str = Field("recsys:feedback", description="Redis Stream key of feedback events.")
    feedback_dedupe_ttl_s: int = Field(
        30 * 86400, ge=60, description="Seconds an event id is remembered for idempotency (Redis mode)."
    )
    feedback_sqlite_path: Path | None = Field(None, description="SQLite log; default <artifacts>/serve/feedback.db.")
    feedback_queue_size: int = Field(10_000, ge=1, description="Stored batches waiting for the real-time update.")
    realtime_updates: bool = Field(
        True, description="Push stored click/cart/purchase events to the online user features (zadanie2)."
    )
    realtime_update_interval_s: float = Field(
        2.0, ge=0, description="Least seconds between two real-time feature updates (events are batched)."
    )
    redis_timeout_s: float = Field(2.0, gt=0, description="Socket timeout of the feedback Redis client.")

    @field_validator("admin_token", mode="before")
    @classmethod
    def _empty_token_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @property
    def resolved_candidates_dir(self) -> Path:
        return self.candidates_dir or self.artifacts_dir / "train" / "candidates"

    @property
    def resolved_local_ranker_dir(self) -> Path:
        return self.local_ranker_dir or self.artifacts_dir / "train" / "ranker"

    @property
    def resolved_registry_cache_dir(self) -> Path:
        return self.registry_cache_dir or self.artifacts_dir / "registry" / "cache"

    @property
    def resolved_compiled_ranker_dir(self) -> Path:
        return self.compiled_ranker_dir or self.artifacts_dir / "serve" / "compiled_rankers"

    @property
    def resolved_feedback_sqlite_path(self) -> Path:
        return self.feedback_sqlite_path or self.artifacts_dir / "serve" / "feedback.db"


def load_settings(**overrides: object) -> ServeSettings:
    """Settings from the environment (``RECSYS_SERVE_*``, ``REDIS_URL``), with explicit overrides on top."""
    return ServeSettings(**overrides)  # type: ignore[arg-type]
