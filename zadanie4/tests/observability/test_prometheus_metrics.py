"""Behaviour of the service's Prometheus metrics: contract names, fixed labels, zero series, exposition."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from zadanie4.observability.prometheus_metrics import (
    FALLBACK_CAUSES,
    FEEDBACK_EVENT_TYPES,
    FEEDBACK_RESULTS,
    LATENCY_BUCKETS_SECONDS,
    REASONS,
    VARIANTS,
    ServiceMetrics,
    create_metrics,
)

# The contract (/tmp/team/CONTRACTS.md, "Prometheus metrics"): exposed family name -> (type, label names).
CONTRACT = {
    "recsys_request_latency_seconds": ("histogram", {"endpoint", "variant"}),
    "recsys_requests": ("counter", {"endpoint", "status"}),
    "recsys_recommendations": ("counter", {"variant", "degraded"}),
    "recsys_recommended_items": ("counter", {"reason"}),
    "recsys_fallbacks": ("counter", {"cause"}),
    "recsys_impressions": ("counter", {"variant"}),
    "recsys_clicks": ("counter", {"variant"}),
    "recsys_carts": ("counter", {"variant"}),
    "recsys_purchases": ("counter", {"variant"}),
    "recsys_feedback_events": ("counter", {"event_type", "result"}),
    "recsys_shadow_overlap_ratio": ("histogram", set()),
    "recsys_shadow_latency_seconds": ("histogram", set()),
    "recsys_shadow_requests": ("counter", {"result"}),
    "recsys_feature_store_errors": ("counter", {"kind"}),
    "recsys_feature_freshness_seconds": ("gauge", set()),
    "recsys_model_info": ("gauge", {"variant", "version"}),
    "recsys_canary_weight": ("gauge", set()),
    "recsys_shadow_enabled": ("gauge", set()),
    "recsys_queue_size": ("gauge", {"queue"}),
    "recsys_admission_share": ("gauge", set()),
    "recsys_event_loop_busy": ("gauge", set()),
}


def _families(metrics: ServiceMetrics) -> dict[str, object]:
    body, _ = metrics.render()
    return {family.name: family for family in text_string_to_metric_families(body.decode())}


def _value(metrics: ServiceMetrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def _series_count(metrics: ServiceMetrics) -> int:
    return sum(len(family.samples) for family in metrics.registry.collect())


@pytest.fixture
def metrics() -> ServiceMetrics:
    return create_metrics()


def test_metric_names_types_and_labels_are_exactly_the_contract(metrics: ServiceMetrics) -> None:
    # given fresh metrics with a model published (model_info has no series before that)
    metrics.set_model_info("champion", "7")

    # when the registry is collected
    families = {family.name: family for family in metrics.registry.collect()}

    # then every contract metric exists with its type and label names, and nothing else does
    assert set(families) == set(CONTRACT)
    for name, (kind, labels) in CONTRACT.items():
        family = families[name]
        assert family.type == kind, name
        sample_labels = {key for sample in family.samples for key in sample.labels if key != "le"}
        assert sample_labels == labels, name


def test_each_app_gets_its_own_registry_and_nothing_registers_globally() -> None:
    # given two metric sets, as two apps in one test process would build
    first, second = create_metrics(), create_metrics()

    # when both record traffic
    first.count_fallback("unknown_user")

    # then they are independent and the process-global registry holds no recsys_ metric
    assert _value(first, "recsys_fallbacks_total", cause="unknown_user") == 1
    assert _value(second, "recsys_fallbacks_total", cause="unknown_user") == 0
    assert not [name for name in REGISTRY._names_to_collectors if name.startswith("recsys_")]


def test_fixed_label_combinations_exist_at_zero_before_any_traffic(metrics: ServiceMetrics) -> None:
    # given metrics that recorded nothing; when exposed
    families = _families(metrics)

    # then rate() has series to work on: every combination of the fixed sets is there at 0
    def zero_series(name: str) -> set[tuple[tuple[str, str], ...]]:
        return {
            tuple(sorted(sample.labels.items()))
            for sample in families[name].samples
            if sample.name == f"{name}_total" and sample.value == 0
        }

    assert len(zero_series("recsys_recommendations")) == len(VARIANTS) * 2
    assert len(zero_series("recsys_recommended_items")) == len(REASONS)
    assert len(zero_series("recsys_fallbacks")) == len(FALLBACK_CAUSES)
    assert len(zero_series("recsys_feedback_events")) == len(FEEDBACK_EVENT_TYPES) * len(FEEDBACK_RESULTS)
    for counter in ("recsys_impressions", "recsys_clicks", "recsys_carts", "recsys_purchases"):
        assert {dict(s)["variant"] for s in zero_series(counter)} == set(VARIANTS)
    assert ("status", "500") in {pair for s in zero_series("recsys_requests") for pair in s}
    assert _value(metrics, "recsys_request_latency_seconds_count", endpoint="recommend", variant="fallback") == 0
    assert _value(metrics, "recsys_shadow_overlap_ratio_count") == 0
    assert _value(metrics, "recsys_queue_size", queue="feedback") == 0


def test_observe_request_records_latency_by_variant_and_count_by_status(metrics: ServiceMetrics) -> None:
    # given a champion answer in 4 ms and a health check that failed with 503
    metrics.observe_request("recommend", "champion", 200, 0.004)
    metrics.observe_request("health", None, "503", 0.0002)

    # then latency lands in the right bucket and both statuses are counted
    bucket = metrics.registry.get_sample_value(
        "recsys_request_latency_seconds_bucket", {"endpoint": "recommend", "variant": "champion", "le": "0.005"}
    )
    below = metrics.registry.get_sample_value(
        "recsys_request_latency_seconds_bucket", {"endpoint": "recommend", "variant": "champion", "le": "0.003"}
    )
    assert (bucket, below) == (1, 0)
    assert _value(metrics, "recsys_request_latency_seconds_count", endpoint="health", variant="none") == 1
    assert _value(metrics, "recsys_requests_total", endpoint="recommend", status="200") == 1
    assert _value(metrics, "recsys_requests_total", endpoint="health", status="503") == 1


def test_an_uncommon_status_code_creates_its_series_on_first_use(metrics: ServiceMetrics) -> None:
    metrics.observe_request("feedback", None, 429, 0.001)
    assert _value(metrics, "recsys_requests_total", endpoint="feedback", status="429") == 1


def test_recommendation_counts_response_once_and_items_by_reason(metrics: ServiceMetrics) -> None:
    # given a degraded fallback response of 3 popular items and a champion response with exploration
    metrics.count_recommendation("fallback", True, ["cold_start_popular"] * 3)
    metrics.count_recommendation("champion", False, ["personalized"] * 9 + ["exploration"])

    # then
    assert _value(metrics, "recsys_recommendations_total", variant="fallback", degraded="true") == 1
    assert _value(metrics, "recsys_recommendations_total", variant="champion", degraded="false") == 1
    assert _value(metrics, "recsys_recommended_items_total", reason="cold_start_popular") == 3
    assert _value(metrics, "recsys_recommended_items_total", reason="personalized") == 9
    assert _value(metrics, "recsys_recommended_items_total", reason="exploration") == 1


def test_only_stored_feedback_attributed_to_a_variant_feeds_ctr_counters(metrics: ServiceMetrics) -> None:
    # given stored impressions and a click for the challenger, a duplicate click and an unattributed cart
    metrics.count_feedback("impression", "stored", "challenger", count=10)
    metrics.count_feedback("click", "stored", "challenger")
    metrics.count_feedback("click", "duplicate", "challenger")
    metrics.count_feedback("cart", "stored", None)
    metrics.count_feedback("purchase", "failed", "champion")

    # then CTR counters see 10 impressions and 1 click; all events are counted by result
    assert _value(metrics, "recsys_impressions_total", variant="challenger") == 10
    assert _value(metrics, "recsys_clicks_total", variant="challenger") == 1
    assert _value(metrics, "recsys_carts_total", variant="champion") == 0
    assert _value(metrics, "recsys_purchases_total", variant="champion") == 0
    assert _value(metrics, "recsys_feedback_events_total", event_type="click", result="duplicate") == 1
    assert _value(metrics, "recsys_feedback_events_total", event_type="cart", result="stored") == 1
    assert _value(metrics, "recsys_feedback_events_total", event_type="purchase", result="failed") == 1


def test_shadow_scoring_records_overlap_latency_and_outcomes(metrics: ServiceMetrics) -> None:
    # given two scored shadow requests and one dropped
    metrics.observe_shadow(0.8, 0.012)
    metrics.observe_shadow(0.0, 0.3)
    metrics.count_shadow_skipped("dropped")

    # then
    assert _value(metrics, "recsys_shadow_requests_total", result="scored") == 2
    assert _value(metrics, "recsys_shadow_requests_total", result="dropped") == 1
    assert _value(metrics, "recsys_shadow_overlap_ratio_sum") == pytest.approx(0.8)
    assert metrics.registry.get_sample_value("recsys_shadow_overlap_ratio_bucket", {"le": "0.0"}) == 1
    assert _value(metrics, "recsys_shadow_latency_seconds_count") == 2
    with pytest.raises(ValueError, match="observe_shadow"):
        metrics.count_shadow_skipped("scored")


def test_publishing_a_new_model_version_replaces_the_old_series(metrics: ServiceMetrics) -> None:
    # given champion v3 then v4, and a challenger that is later unloaded
    metrics.set_model_info("champion", 3)
    metrics.set_model_info("champion", "4")
    metrics.set_model_info("challenger", "5")
    metrics.clear_model_info("challenger")

    # then only champion v4 is exposed
    family = _families(metrics)["recsys_model_info"]
    assert [(s.labels, s.value) for s in family.samples] == [({"variant": "champion", "version": "4"}, 1.0)]


def test_state_gauges_publish_their_values(metrics: ServiceMetrics) -> None:
    metrics.set_canary_weight(0.25)
    metrics.set_shadow_enabled(True)
    metrics.set_feature_freshness(42.5)
    metrics.set_queue_size("shadow", 7)
    metrics.count_feature_store_error("timeout")

    assert _value(metrics, "recsys_canary_weight") == 0.25
    assert _value(metrics, "recsys_shadow_enabled") == 1
    assert _value(metrics, "recsys_feature_freshness_seconds") == 42.5
    assert _value(metrics, "recsys_queue_size", queue="shadow") == 7
    assert _value(metrics, "recsys_feature_store_errors_total", kind="timeout") == 1


@pytest.mark.parametrize(
    ("record", "message"),
    [
        (lambda m: m.observe_request("search", None, 200, 0.001), "endpoint"),
        (lambda m: m.observe_request("recommend", "user_42", 200, 0.001), "variant"),
        (lambda m: m.observe_request("recommend", "champion", 700, 0.001), "HTTP status"),
        (lambda m: m.observe_request("recommend", "champion", "OK", 0.001), "HTTP status"),
        (lambda m: m.observe_request("recommend", "champion", 200, -1.0), "seconds"),
        (lambda m: m.count_recommendation("champion", False, ["because"]), "reason"),
        (lambda m: m.count_recommendation("blue", False, []), "variant"),
        (lambda m: m.count_fallback("user_123"), "cause"),
        (lambda m: m.count_feedback("view", "stored", None), "event_type"),
        (lambda m: m.count_feedback("click", "lost", None), "result"),
        (lambda m: m.count_feedback("click", "stored", "user_9"), "variant"),
        (lambda m: m.count_feature_store_error("slow"), "kind"),
        (lambda m: m.observe_shadow(1.5, 0.01), "overlap"),
        (lambda m: m.set_model_info("canary", "1"), "variant"),
        (lambda m: m.set_canary_weight(1.2), "canary weight"),
        (lambda m: m.set_queue_size("requests", 1), "queue"),
        (lambda m: m.set_queue_size("shadow", -1), "queue size"),
    ],
)
def test_unknown_label_values_are_rejected_without_creating_series(
    metrics: ServiceMetrics, record, message: str
) -> None:
    # given the number of series before
    before = _series_count(metrics)

    # when a value outside the fixed sets (e.g. a user id) is recorded, then it is refused
    with pytest.raises(ValueError, match=message):
        record(metrics)

    # and no series was created or changed
    assert _series_count(metrics) == before
    assert _value(metrics, "recsys_requests_total", endpoint="recommend", status="200") == 0


def test_render_returns_prometheus_text_with_its_content_type(metrics: ServiceMetrics) -> None:
    metrics.observe_request("recommend", "champion", 200, 0.002)

    body, content_type = metrics.render()

    assert content_type.startswith("text/plain")
    assert b'recsys_requests_total{endpoint="recommend",status="200"} 1.0' in body
    assert "recsys_requests_total" in metrics.series_names()
    assert "recsys_request_latency_seconds_bucket" in metrics.series_names()


def test_latency_buckets_span_half_a_millisecond_to_a_second_with_the_slo_boundary() -> None:
    assert LATENCY_BUCKETS_SECONDS[0] == 0.0005
    assert LATENCY_BUCKETS_SECONDS[-1] == 1.0
    assert 0.1 in LATENCY_BUCKETS_SECONDS  # the p99 < 100 ms alert needs an exact boundary
    assert 0.01 in LATENCY_BUCKETS_SECONDS  # the p99 <= 10 ms goal too
    assert list(LATENCY_BUCKETS_SECONDS) == sorted(set(LATENCY_BUCKETS_SECONDS))
