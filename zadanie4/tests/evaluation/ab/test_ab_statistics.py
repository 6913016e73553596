"""The A/B statistics against known values."""

from __future__ import annotations

import math

import pytest

from zadanie4.evaluation.ab.statistics import two_proportion_z_test


def test_known_z_test_values() -> None:
    # control 200/10000 = 2 %, treatment 260/10000 = 2.6 %: pooled 2.3 %,
    # se = sqrt(.023 * .977 * 2 / 10000) = 0.0021199, z = 0.006 / 0.0021199 = 2.8303, p = 0.00465
    result = two_proportion_z_test(200, 10_000, 260, 10_000)
    assert result.lift == pytest.approx(0.30)
    assert result.z == pytest.approx(2.8303, abs=1e-3)
    assert result.p_value == pytest.approx(0.00465, abs=5e-5)
    # log-ratio CI: se = sqrt(.974/260 + .98/200) = 0.09300 -> 1.3 * exp(+-1.96 * 0.093) - 1
    low, high = result.ci95
    assert low == pytest.approx(1.3 * math.exp(-1.95996 * 0.093003) - 1, abs=1e-4)
    assert high == pytest.approx(1.3 * math.exp(1.95996 * 0.093003) - 1, abs=1e-4)
    assert low < result.lift < high


def test_equal_rates_are_not_significant() -> None:
    result = two_proportion_z_test(300, 10_000, 300, 10_000)
    assert result.z == 0 and result.p_value == pytest.approx(1.0)
    assert result.ci95[0] < 0 < result.ci95[1]


@pytest.mark.parametrize("counts", [(1, 0, 1, 1), (5, 4, 1, 10), (-1, 10, 1, 10)])
def test_invalid_counts_are_rejected(counts: tuple[int, int, int, int]) -> None:
    with pytest.raises(ValueError):
        two_proportion_z_test(*counts)
