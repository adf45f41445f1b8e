"""The significance tests against values computed independently with scipy 1.17.1 (a throwaway venv, not a
dependency): `scipy.stats.poisson.sf(k - 1, mu)`, `binom.sf`/`binom.cdf`, `fisher_exact(...,
alternative="greater")`, `mannwhitneyu(..., alternative="greater", method="asymptotic")`, `norm.sf`."""

from __future__ import annotations

import numpy as np
import pytest

from prodguardian.stats import (
    binomial_lower_tail,
    binomial_upper_tail,
    normal_upper_tail,
    poisson_upper_tail,
    rank_test,
    rate_drop_test,
    rate_ratio_test,
    share_test,
)


@pytest.mark.parametrize(
    ("k", "expected", "scipy"),
    [
        (9, 0.375, 2.8853470485937263e-10),  # 9 database errors when 9 a day are usual
        (1, 2.0, 0.8646647167633873),
        (30, 10.0, 2.509951201527959e-07),
        (3, 5.0, 0.8753479805169189),
        (1200, 1000.0, 4.684203855872292e-10),  # far from the mode: summed from the tail, not 1 - 0.99…
    ],
)
def test_poisson_upper_tail(k: int, expected: float, scipy: float) -> None:
    assert poisson_upper_tail(k, expected) == pytest.approx(scipy, rel=1e-9)


@pytest.mark.parametrize(
    ("k", "n", "p", "scipy"),
    [
        (9, 25, 0.04, 2.9839315639048343e-07),
        (1, 1, 0.04, 0.04),
        (10, 10000, 0.0002, 4.6364543523286225e-05),
        (400, 1000, 0.3, 1.104129819055663e-11),
        (100, 1000, 0.3, 1.0),
    ],
)
def test_binomial_upper_tail(k: int, n: int, p: float, scipy: float) -> None:
    assert binomial_upper_tail(k, n, p) == pytest.approx(scipy, rel=1e-9)


def test_binomial_lower_tail() -> None:
    assert binomial_lower_tail(2, 300, 0.04) == pytest.approx(0.00043867995458752473, rel=1e-9)
    assert binomial_lower_tail(900, 1000, 0.3) == 1.0
    assert binomial_lower_tail(-1, 10, 0.5) == 0.0


@pytest.mark.parametrize(
    ("failed", "total", "usual_failed", "usual_total", "scipy"),
    [
        (9, 80, 0, 1920, 1.6734886677448405e-13),  # the 2025-10-11 outage: 9 of 80 sessions, none in 24 h
        (1, 3, 0, 72, 0.04),  # a quiet service: one failure of 3 requests
        (30, 1000, 100, 24000, 4.284502106298506e-15),
        (5, 300, 120, 7200, 0.5645417159894577),  # the usual share
    ],
)
def test_share_test_is_fishers_exact(
    failed: int, total: int, usual_failed: int, usual_total: int, scipy: float
) -> None:
    assert share_test(failed, total, usual_failed, usual_total) == pytest.approx(scipy, rel=1e-9)


def test_zero_against_zero_is_never_significant() -> None:
    assert rate_ratio_test(0, 1.0, 0, 24.0) == 1.0
    assert share_test(0, 300, 0, 7200) == 1.0
    assert rate_drop_test(0, 1.0, 0, 24.0) == 1.0


def test_rate_ratio_test_is_the_conditional_binomial() -> None:
    # 9 in 1 h against none in 24 h: the 9 all fell in the window, each with chance 1/25.
    assert rate_ratio_test(9, 1.0, 0, 24.0) == pytest.approx(0.04**9, rel=1e-9)
    assert rate_ratio_test(1, 1.0, 0, 24.0) == pytest.approx(0.04)  # one error is never strong evidence
    assert rate_ratio_test(3, 1.0, 48, 24.0) > 0.3  # the usual 2/h


def test_rate_drop_test() -> None:
    # 2 requests in 1 h against 7,200 in 24 h (300/h): a drop beyond doubt; 280 against 300/h is not one.
    assert rate_drop_test(2, 1.0, 7200, 24.0) < 1e-100
    assert rate_drop_test(280, 1.0, 7200, 24.0) > 0.1
    assert rate_drop_test(2, 1.0, 72, 24.0) > 0.3  # a quiet service's 2 against its usual 3/h


def test_rank_test_matches_mann_whitney_on_the_raw_values() -> None:
    rng = np.random.default_rng(1)
    window = np.round(rng.lognormal(5.5, 0.4, 200)).astype(int)
    usual = np.round(rng.lognormal(5.4, 0.4, 1000)).astype(int)
    result = rank_test(np.bincount(window, minlength=3000), np.bincount(usual, minlength=3000))
    assert result.p_value == pytest.approx(0.0010465359199750529, rel=1e-9)
    assert 0.55 < result.effect < 0.6
    same = rank_test(np.bincount(usual), np.bincount(usual))
    assert same.effect == pytest.approx(0.5) and same.p_value > 0.4


def test_normal_upper_tail() -> None:
    assert normal_upper_tail(8.0) == pytest.approx(6.22096057427174e-16, rel=1e-9)
    assert normal_upper_tail(-1.0) == pytest.approx(0.8413447460685429, rel=1e-12)
