"""The A/B bookkeeping on hand-made event tables: arms, segments, new products, the exploration comparison."""

from __future__ import annotations

import pytest

from zadanie4.evaluation.ab.report import build_report, exploration_comparison
from zadanie4.evaluation.ab.runner import targets
from zadanie4.evaluation.ab.simulation import (
    FIRST_DAY_S,
    ArmPlan,
    ProductRelease,
    SimUser,
    events_frame,
    routed_arm,
    summarize,
)

SALT = "report-test"
PLAN = ArmPlan("popularity", "champion")  # control = the canary's challenger slot, treatment = champion


def _users() -> tuple[SimUser, SimUser, SimUser]:
    """One warm user per arm and a cold one (whichever arm the canary hash gives)."""
    by_arm: dict[str, int] = {}
    user = 1
    while len(by_arm) < 2:
        by_arm.setdefault(routed_arm(PLAN, user, SALT), user)
        user += 1
    return (
        SimUser(by_arm["control"], "warm", 40, False, 0.0),
        SimUser(by_arm["treatment"], "warm", 40, False, 0.0),
        SimUser(1000, "cold", 0, True, 3600.0),
    )


def _events(
    user: int, variant: str, product: int, t_s: float, impressions: int, clicks: int
) -> list[dict[str, object]]:
    row = {"user_id": user, "product_id": product, "variant": variant, "t_s": t_s}
    return [{**row, "event_type": "impression"}] * impressions + [{**row, "event_type": "click"}] * clicks


def test_summary_counts_arms_segments_and_new_products() -> None:
    # given: control user 10 impressions / 1 click, treatment user 10 / 3 (one impression of a new product
    # on its first day), a cold user served by the degraded fallback, and a stranger's events
    control, treatment, cold = _users()
    release = ProductRelease(product_id=900, category_id=5, price=10.0, release_s=100.0)
    rows = _events(control.user_id, "challenger", 1, 200.0, 10, 1)
    rows += _events(treatment.user_id, "champion", 2, 200.0, 9, 2) + _events(
        treatment.user_id, "champion", 900, 300.0, 1, 1
    )
    rows += _events(cold.user_id, "fallback", 3, 4000.0, 5, 0)
    rows += _events(424242, "champion", 4, 10.0, 50, 50)  # not a simulated user: ignored
    # when
    summary = summarize(events_frame(rows), PLAN, SALT, [control, treatment, cold], [release], bucket_s=3600.0)
    report = build_report(summary)
    # then
    cold_arm = routed_arm(PLAN, cold.user_id, SALT)  # fallback pages count for the user's routed arm
    expected_impressions = {"control": 10, "treatment": 10}
    expected_impressions[cold_arm] += 5
    assert {arm: report["arms"][arm]["impressions"] for arm in ("control", "treatment")} == expected_impressions
    assert report["arms"]["treatment"]["clicks"] == 3 and report["arms"]["control"]["clicks"] == 1
    assert report["segments"]["warm_users"]["lift"] == pytest.approx(2.0)  # 30 % vs 10 %
    assert report["segments"]["cold_users"]["arms"][cold_arm] == {"users": 1, "impressions": 5, "clicks": 0, "ctr": 0.0}
    # all 25 impressions of simulated users fall within the new product's first day; 1 of them is its own
    assert report["new_products"]["impression_share_first_day"] == pytest.approx(1 / 25)
    assert report["new_products"]["ctr"] == pytest.approx(1.0)
    assert summary.new_products.products_shown_first_day == 1
    assert set(summary.series["arm"]) == {"control", "treatment"}


def test_new_product_counts_only_on_its_first_day() -> None:
    control, treatment, cold = _users()
    release = ProductRelease(product_id=900, category_id=5, price=10.0, release_s=0.0)
    late = FIRST_DAY_S + 10.0
    rows = _events(treatment.user_id, "champion", 900, late, 4, 1) + _events(
        control.user_id, "challenger", 1, late, 4, 0
    )
    summary = summarize(events_frame(rows), PLAN, SALT, [control, treatment, cold], [release])
    assert summary.new_products.first_day_impressions == 0
    assert summary.new_products.impressions_while_fresh == 0
    assert build_report(summary)["new_products"] == {"impression_share_first_day": 0.0, "ctr": 0.0}


def _report(clicks: tuple[int, int], impressions: tuple[int, int], share: float) -> dict[str, object]:
    arms = {
        arm: {"users": 10, "impressions": n, "clicks": c, "ctr": c / n}
        for arm, c, n in zip(("control", "treatment"), clicks, impressions, strict=True)
    }
    return {"arms": arms, "new_products": {"impression_share_first_day": share, "ctr": 0.01}}


def test_exploration_comparison_and_targets() -> None:
    # given: the same simulation without exploration (CTR 7 %) and with it (CTR 6.895 %: -1.5 %)
    without = _report((700, 700), (10_000, 10_000), 0.0)
    with_exploration = _report((660, 719), (10_000, 10_000), 0.08)
    # when
    comparison = exploration_comparison(with_exploration, without)
    # then
    assert comparison["total_ctr_change"] == pytest.approx(1379 / 1400 - 1)
    assert comparison["control_ctr_change"] == pytest.approx(660 / 700 - 1)
    low, high = comparison["total_ctr_change_ci95"]
    assert low < comparison["total_ctr_change"] < high
    assert "served_by_policies" not in comparison  # only with both runs' per-variant counts


def test_exploration_comparison_without_the_degraded_pages() -> None:
    # given: the run with exploration lost 2000 impressions (and their clicks) to the fallback during a stall
    without = _report((700, 700), (10_000, 10_000), 0.0)
    with_exploration = _report((690, 690), (10_000, 10_000), 0.08)

    def variants(
        champion: tuple[int, int], challenger: tuple[int, int], fallback: tuple[int, int]
    ) -> dict[str, object]:
        return {
            name: {"service_log": {"impression": n, "click": c}}
            for name, (c, n) in (("champion", champion), ("challenger", challenger), ("fallback", fallback))
        }

    # when
    comparison = exploration_comparison(
        with_exploration,
        without,
        with_variants=variants((600, 9_000), (640, 9_000), (140, 2_000)),
        without_variants=variants((700, 10_000), (700, 10_000), (0, 0)),
    )
    # then: on the pages the policies served, CTR went from 7 % to 6.89 %
    served = comparison["served_by_policies"]
    assert served["without_exploration_ctr"] == pytest.approx(0.07)
    assert served["with_exploration_ctr"] == pytest.approx(1240 / 18_000)
    assert served["total_ctr_change"] == pytest.approx((1240 / 18_000) / 0.07 - 1)
    assert served["fallback_impressions"] == {"without_exploration": 0, "with_exploration": 2000}
    report = {
        **with_exploration,
        "lift": 719 / 660 - 1,
        "p_value": 0.1,
        "segments": {"cold_users": {"lift": 0.01}, "warm_users": {"lift": 0.2}},
    }
    met = {name: entry["met"] for name, entry in targets(report, {"exploration_comparison": comparison}).items()}
    assert met == {
        "lift >= +10 % with p < 0.01": False,  # +8.9 % and not significant
        "goal: lift >= +20 %": False,
        "cold users: treatment not worse": True,
        "new products >= 5 % of impressions on their first day": True,
        "total CTR drop <= 2 % vs no exploration": True,
    }
