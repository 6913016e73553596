"""Statistics of an A/B test on click-through rate: two-proportion z-test and a CI for the lift.

Pure functions of counts. The unit of analysis is the impression; impressions of one user are
correlated, so the simulation also reports per-user figures and the p-value is read as a
screening test, not an exact error rate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy.stats import norm


@dataclass(frozen=True)
class ProportionTest:
    ctr_control: float
    ctr_treatment: float
    lift: float  # (treatment - control) / control
    ci95: tuple[float, float]  # CI of the relative lift
    z: float
    p_value: float  # two-sided
    test: str = "two-proportion z-test"


def two_proportion_z_test(
    clicks_control: int, impressions_control: int, clicks_treatment: int, impressions_treatment: int
) -> ProportionTest:
    """Pooled two-sided z-test of equal CTR, and a 95 % CI for the relative lift.

    The CI is the delta-method interval on log(ctr_t / ctr_c), exponentiated: it stays
    asymmetric and positive like a ratio should. Counts must satisfy 0 <= clicks <= impressions
    and impressions > 0.
    """
    for clicks, impressions in ((clicks_control, impressions_control), (clicks_treatment, impressions_treatment)):
        if impressions <= 0 or not 0 <= clicks <= impressions:
            raise ValueError(f"invalid counts: {clicks} clicks of {impressions} impressions")
    p_c = clicks_control / impressions_control
    p_t = clicks_treatment / impressions_treatment
    pooled = (clicks_control + clicks_treatment) / (impressions_control + impressions_treatment)
    se_pooled = math.sqrt(pooled * (1 - pooled) * (1 / impressions_control + 1 / impressions_treatment))
    z = (p_t - p_c) / se_pooled if se_pooled > 0 else 0.0
    p_value = float(2 * norm.sf(abs(z)))
    if p_c == 0:
        return ProportionTest(p_c, p_t, math.inf if p_t > 0 else 0.0, (math.nan, math.nan), z, p_value)
    lift = p_t / p_c - 1
    if p_t == 0:
        return ProportionTest(p_c, p_t, lift, (-1.0, -1.0), z, p_value)
    se_log = math.sqrt((1 - p_t) / clicks_treatment + (1 - p_c) / clicks_control)
    ratio = p_t / p_c
    ci = (ratio * math.exp(-1.959963984540054 * se_log) - 1, ratio * math.exp(1.959963984540054 * se_log) - 1)
    return ProportionTest(p_c, p_t, lift, ci, z, p_value)
