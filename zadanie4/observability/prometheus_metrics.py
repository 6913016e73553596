"""Prometheus metrics of the recommendation service: every name, label and bucket in one place.

Names are prefixed ``recsys_`` and carry unit suffixes; every label comes from a small fixed set defined
here (never a user id, product id or free text), so the number of series is bounded and known up front.
The service builds one :class:`ServiceMetrics` per app with :func:`create_metrics` (own
``CollectorRegistry``, nothing registered at import time), calls its small typed methods on the request
path and serves :meth:`ServiceMetrics.render` at ``GET /metrics``.

Every label combination of the fixed sets is created at zero when the metrics are built, so
``rate()``/``increase()`` in dashboards and alerts return 0 instead of "no data" before the first event.
The Grafana dashboard and the alert rules in ``deploy/`` use these names; ``tests/deploy`` fails when
one of them is renamed here and not there.
"""

from __future__ import annotations

import math
from collections import Counter as TallyCounter
from collections.abc import Iterable, Mapping
from typing import Final, TypeVar

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest

# --- fixed label values ------------------------------------------------------------------------------
ENDPOINTS: Final = ("recommend", "feedback", "health", "model", "admin")
"""Values of the ``endpoint`` label: one per API area (``/metrics`` itself is not measured)."""

VARIANTS: Final = ("champion", "challenger", "fallback")
"""Which model answered: registry champion, canary challenger, or the popularity fallback."""

NO_VARIANT: Final = "none"
"""``variant`` label of latency samples from endpoints that involve no model (health, admin, ...)."""

LATENCY_VARIANTS: Final = (*VARIANTS, NO_VARIANT)

DEGRADED_VALUES: Final = ("true", "false")

REASONS: Final = (
    "personalized",
    "cold_start_popular",
    "category_popular",
    "session_similar",
    "exploration",
)
"""Why an item was recommended (the ``reason`` field of each response item)."""

FALLBACK_CAUSES: Final = (
    "unknown_user",
    "missing_features",
    "store_unavailable",
    "store_timeout",
    "no_model",
)
"""Why a request (or part of it) was served from the popularity fallback."""

FEEDBACK_EVENT_TYPES: Final = ("impression", "click", "cart", "purchase")
"""``event_type`` values accepted by ``POST /feedback``."""

FEEDBACK_RESULTS: Final = ("stored", "duplicate", "failed")

SHADOW_RESULTS: Final = ("scored", "dropped", "error")
"""Outcome of a shadow request: scored by the challenger, dropped (queue full, or queued when the shadow
was turned off), or failed."""

FEATURE_STORE_ERROR_KINDS: Final = ("error", "timeout")

QUEUES: Final = ("shadow", "feedback")

PREINITIALISED_STATUSES: Final = ("200", "400", "401", "404", "413", "422", "500", "503")
"""HTTP statuses created at zero for every endpoint; other valid codes (100-599) appear on first use."""

# --- buckets -----------------------------------------------------------------------------------------
LATENCY_BUCKETS_SECONDS: Final = (
    0.0005,
    0.001,
    0.002,
    0.003,
    0.005,
    0.0075,
    0.01,
    0.015,
    0.02,
    0.03,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    1.0,
)
"""Request latency buckets, 0.5 ms .. 1 s: fine below 10 ms (the goal) and a boundary at 100 ms (the SLO)."""

SHADOW_LATENCY_BUCKETS_SECONDS: Final = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
"""Shadow scoring runs off the request path and may be slow; buckets reach 5 s."""

OVERLAP_BUCKETS: Final = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
"""overlap@k between served and shadow lists, a ratio in [0, 1]; ``le=0`` counts disjoint lists."""

_FEEDBACK_COUNTER_OF_EVENT: Final = {
    "impression": "impressions",
    "click": "clicks",
    "cart": "carts",
    "purchase": "purchases",
}


def _check(value: str, allowed: tuple[str, ...], label: str) -> str:
    """Return ``value`` if it is one of ``allowed``; raise ValueError naming the label otherwise."""
    if value not in allowed:
        raise ValueError(f"unknown {label} {value!r}; expected one of {', '.join(allowed)}")
    return value


_Key = TypeVar("_Key")
_Child = TypeVar("_Child")


def _pick(children: Mapping[_Key, _Child], key: _Key, *checks: tuple[str, tuple[str, ...], str]) -> _Child:
    """Pre-built child for ``key``; on a miss, raise the ValueError of the first failing label check."""
    child = children.get(key)
    if child is None:
        for value, allowed, label in checks:
            _check(value, allowed, label)
        raise KeyError(key)  # unreachable: every combination of valid values is pre-built
    return child


def _status_label(status: int | str) -> str:
    """HTTP status as the ``status`` label ("200"); ValueError unless it is a code in 100..599."""
    text = str(status).strip()
    if not (text.isdigit() and len(text) == 3 and 100 <= int(text) <= 599):
        raise ValueError(f"unknown HTTP status {status!r}; expected a code in 100..599")
    return text


def _check_non_negative(value: float, what: str) -> float:
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{what} must be a finite number >= 0, got {value!r}")
    return float(value)


class ServiceMetrics:
    """All Prometheus metrics of one service instance, registered in its own registry.

    Methods validate their label values against the fixed sets above and raise ``ValueError`` on an
    unknown value, so a typo or a user-supplied string can never create a new series. Hot-path methods
    look up pre-built children in dicts (about a microsecond) instead of calling ``labels()``.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

        self.request_latency = Histogram(
            "recsys_request_latency_seconds",
            "Request handling time by endpoint and serving variant, in seconds.",
            ("endpoint", "variant"),
            buckets=LATENCY_BUCKETS_SECONDS,
            registry=registry,
        )
        self.requests = Counter(
            "recsys_requests",
            "Requests by endpoint and HTTP status code.",
            ("endpoint", "status"),
            registry=registry,
        )
        self.recommendations = Counter(
            "recsys_recommendations",
            "Recommendation responses by serving variant and whether they were degraded.",
            ("variant", "degraded"),
            registry=registry,
        )
        self.recommended_items = Counter(
            "recsys_recommended_items",
            "Items returned in recommendation responses, by the reason that chose them.",
            ("reason",),
            registry=registry,
        )
        self.fallbacks = Counter(
            "recsys_fallbacks",
            "Requests served (fully or partly) from the popularity fallback, by cause.",
            ("cause",),
            registry=registry,
        )
        self.impressions = Counter(
            "recsys_impressions", "Stored impression events by variant.", ("variant",), registry=registry
        )
        self.clicks = Counter("recsys_clicks", "Stored click events by variant.", ("variant",), registry=registry)
        self.carts = Counter("recsys_carts", "Stored add-to-cart events by variant.", ("variant",), registry=registry)
        self.purchases = Counter(
            "recsys_purchases", "Stored purchase events by variant.", ("variant",), registry=registry
        )
        self.feedback_events = Counter(
            "recsys_feedback_events",
            "Feedback events received, by type and write result.",
            ("event_type", "result"),
            registry=registry,
        )
        self.shadow_overlap = Histogram(
            "recsys_shadow_overlap_ratio",
            "overlap@k between the served list and the challenger's shadow list (0..1).",
            buckets=OVERLAP_BUCKETS,
            registry=registry,
        )
        self.shadow_latency = Histogram(
            "recsys_shadow_latency_seconds",
            "Challenger scoring time of shadow requests, in seconds (off the request path).",
            buckets=SHADOW_LATENCY_BUCKETS_SECONDS,
            registry=registry,
        )
        self.shadow_requests = Counter(
            "recsys_shadow_requests",
            "Shadow requests by outcome: scored, dropped (queue full or shadow turned off) or error.",
            ("result",),
            registry=registry,
        )
        self.feature_store_errors = Counter(
            "recsys_feature_store_errors",
            "Online feature store reads that failed or exceeded their time budget.",
            ("kind",),
            registry=registry,
        )
        self.feature_freshness = Gauge(
            "recsys_feature_freshness_seconds",
            "Age of the in-process product feature matrix, in seconds since it was loaded.",
            registry=registry,
        )
        self.model_info = Gauge(
            "recsys_model_info",
            "Model version served by each variant (value 1; the version is a label).",
            ("variant", "version"),
            registry=registry,
        )
        self.canary_weight = Gauge(
            "recsys_canary_weight",
            "Share of users (0..1) routed to the challenger.",
            registry=registry,
        )
        self.shadow_enabled = Gauge(
            "recsys_shadow_enabled",
            "1 when shadow scoring by the challenger is on, 0 otherwise.",
            registry=registry,
        )
        self.admission_share = Gauge(
            "recsys_admission_share",
            "Open share (0..1) of the in-flight cap of /recommend and /feedback, set by the overload guard.",
            registry=registry,
        )
        self.admission_share.set(1.0)
        self.event_loop_busy = Gauge(
            "recsys_event_loop_busy",
            "Share (0..1) of wall time the event loop's thread was on the CPU over the overload guard's window.",
            registry=registry,
        )
        self.queue_size = Gauge(
            "recsys_queue_size",
            "Items waiting in an in-process queue.",
            ("queue",),
            registry=registry,
        )

        # Pre-built children: every combination of the fixed sets exists (at 0) from the start.
        # Latency: /recommend per variant plus every endpoint without a variant; other valid pairs
        # (e.g. feedback attributed to a variant) are created on first use.
        self._latency = {
            (endpoint, variant): self.request_latency.labels(endpoint=endpoint, variant=variant)
            for endpoint, variant in [*(("recommend", v) for v in VARIANTS), *((e, NO_VARIANT) for e in ENDPOINTS)]
        }
        self._requests = {
            (endpoint, status): self.requests.labels(endpoint=endpoint, status=status)
            for endpoint in ENDPOINTS
            for status in PREINITIALISED_STATUSES
        }
        self._recommendations = {
            (variant, degraded): self.recommendations.labels(variant=variant, degraded=degraded)
            for variant in VARIANTS
            for degraded in DEGRADED_VALUES
        }
        self._items = {reason: self.recommended_items.labels(reason=reason) for reason in REASONS}
        self._fallbacks = {cause: self.fallbacks.labels(cause=cause) for cause in FALLBACK_CAUSES}
        self._feedback = {
            (event_type, result): self.feedback_events.labels(event_type=event_type, result=result)
            for event_type in FEEDBACK_EVENT_TYPES
            for result in FEEDBACK_RESULTS
        }
        per_variant = {
            "impressions": self.impressions,
            "clicks": self.clicks,
            "carts": self.carts,
            "purchases": self.purchases,
        }
        self._engagement = {
            (event_type, variant): per_variant[_FEEDBACK_COUNTER_OF_EVENT[event_type]].labels(variant=variant)
            for event_type in FEEDBACK_EVENT_TYPES
            for variant in VARIANTS
        }
        self._shadow_requests = {result: self.shadow_requests.labels(result=result) for result in SHADOW_RESULTS}
        self._store_errors = {kind: self.feature_store_errors.labels(kind=kind) for kind in FEATURE_STORE_ERROR_KINDS}
        self._queues = {queue: self.queue_size.labels(queue=queue) for queue in QUEUES}
        self._model_versions: dict[str, str] = {}

    # --- request path -----------------------------------------------------------------------------
    def observe_request(self, endpoint: str, variant: str | None, status: int | str, seconds: float) -> None:
        """Record one handled request: its latency (seconds) and its HTTP status.

        ``variant`` is the model variant that answered a /recommend request, or None for endpoints
        that involve no model (recorded as ``variant="none"``).
        """
        variant_label = NO_VARIANT if variant is None else variant
        latency = self._latency.get((endpoint, variant_label))
        if latency is None:
            _check(endpoint, ENDPOINTS, "endpoint")
            _check(variant_label, LATENCY_VARIANTS, "variant")
            latency = self.request_latency.labels(endpoint=endpoint, variant=variant_label)
            self._latency[(endpoint, variant_label)] = latency
        status_label = _status_label(status)
        requests = self._requests.get((endpoint, status_label))
        if requests is None:  # endpoint is valid here: the latency lookup checked it
            requests = self.requests.labels(endpoint=endpoint, status=status_label)
            self._requests[(endpoint, status_label)] = requests
        latency.observe(_check_non_negative(seconds, "seconds"))
        requests.inc()

    def count_recommendation(self, variant: str, degraded: bool, reasons: Iterable[str]) -> None:
        """Count one recommendation response and its items by reason (one entry per returned item)."""
        child = _pick(self._recommendations, (variant, "true" if degraded else "false"), (variant, VARIANTS, "variant"))
        tally = TallyCounter(reasons)
        for reason in tally:
            _check(reason, REASONS, "reason")
        child.inc()
        for reason, count in tally.items():
            self._items[reason].inc(count)

    def count_fallback(self, cause: str) -> None:
        """Count a request served from the popularity fallback for ``cause``."""
        child = _pick(self._fallbacks, cause, (cause, FALLBACK_CAUSES, "cause"))
        child.inc()

    def count_feedback(self, event_type: str, result: str, variant: str | None = None, count: int = 1) -> None:
        """Count ``count`` feedback events of one type by write result.

        Events that were ``stored`` and can be attributed to a variant (via their recommendation id)
        also increment ``recsys_<impressions|clicks|carts|purchases>_total{variant}``, from which the
        dashboard computes CTR; duplicates and failed writes never count towards CTR.
        """
        child = _pick(
            self._feedback,
            (event_type, result),
            (event_type, FEEDBACK_EVENT_TYPES, "event_type"),
            (result, FEEDBACK_RESULTS, "result"),
        )
        if variant is not None:
            _check(variant, VARIANTS, "variant")
        if count < 0:
            raise ValueError(f"count must be >= 0, got {count}")
        child.inc(count)
        if variant is not None and result == "stored":
            self._engagement[(event_type, variant)].inc(count)

    def count_feature_store_error(self, kind: str) -> None:
        """Count an online-store read that failed (``error``) or ran over its budget (``timeout``)."""
        child = _pick(self._store_errors, kind, (kind, FEATURE_STORE_ERROR_KINDS, "kind"))
        child.inc()

    # --- shadow -------------------------------------------------------------------------------------
    def observe_shadow(self, overlap: float, seconds: float) -> None:
        """Record a scored shadow request: overlap@k with the served list (0..1) and its latency (s)."""
        if not (math.isfinite(overlap) and 0.0 <= overlap <= 1.0):
            raise ValueError(f"overlap must be in [0, 1], got {overlap!r}")
        self.shadow_latency.observe(_check_non_negative(seconds, "seconds"))
        self.shadow_overlap.observe(overlap)
        self._shadow_requests["scored"].inc()

    def count_shadow_skipped(self, result: str) -> None:
        """Count a shadow request that was not scored: ``dropped`` (queue full or discarded) or ``error``."""
        if result == "scored":
            raise ValueError("scored shadow requests are counted by observe_shadow()")
        child = _pick(self._shadow_requests, result, (result, SHADOW_RESULTS, "result"))
        child.inc()

    # --- state gauges -------------------------------------------------------------------------------
    def set_model_info(self, variant: str, version: str | int) -> None:
        """Publish the model version a variant serves; the previous version's series is removed."""
        _check(variant, VARIANTS, "variant")
        version_label = str(version).strip()
        if not version_label or len(version_label) > 64:
            raise ValueError(f"model version must be 1..64 characters, got {version!r}")
        previous = self._model_versions.get(variant)
        if previous is not None and previous != version_label:
            self.model_info.remove(variant, previous)
        self.model_info.labels(variant=variant, version=version_label).set(1)
        self._model_versions[variant] = version_label

    def clear_model_info(self, variant: str) -> None:
        """Remove a variant's version series (e.g. when the challenger is unloaded)."""
        _check(variant, VARIANTS, "variant")
        previous = self._model_versions.pop(variant, None)
        if previous is not None:
            self.model_info.remove(variant, previous)

    def set_canary_weight(self, weight: float) -> None:
        """Publish the share of users (0..1) routed to the challenger."""
        if not (math.isfinite(weight) and 0.0 <= weight <= 1.0):
            raise ValueError(f"canary weight must be in [0, 1], got {weight!r}")
        self.canary_weight.set(weight)

    def set_shadow_enabled(self, enabled: bool) -> None:
        self.shadow_enabled.set(1 if enabled else 0)

    def set_feature_freshness(self, age_seconds: float) -> None:
        """Publish the age (seconds) of the in-process product features."""
        self.feature_freshness.set(_check_non_negative(age_seconds, "feature age"))

    def set_queue_size(self, queue: str, size: int) -> None:
        """Publish how many items wait in ``queue`` (``shadow`` or ``feedback``)."""
        child = _pick(self._queues, queue, (queue, QUEUES, "queue"))
        if size < 0:
            raise ValueError(f"queue size must be >= 0, got {size}")
        child.set(size)

    # --- exposition ---------------------------------------------------------------------------------
    def render(self) -> tuple[bytes, str]:
        """Body and Content-Type of the Prometheus text exposition for ``GET /metrics``."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def series_names(self) -> frozenset[str]:
        """Every sample name these metrics can expose (``x_total``, ``x_bucket``, ``x_sum``, ...).

        Used by tests to check that dashboards and alert rules only query metrics that exist.
        """
        suffixes = {
            "counter": ("_total", "_created"),
            "histogram": ("_bucket", "_sum", "_count", "_created"),
            "gauge": ("",),
        }
        return frozenset(family.name + suffix for family in self.registry.collect() for suffix in suffixes[family.type])


def create_metrics() -> ServiceMetrics:
    """Build the metrics of one service instance in a fresh registry (one per app, never global)."""
    return ServiceMetrics(CollectorRegistry(auto_describe=True))
