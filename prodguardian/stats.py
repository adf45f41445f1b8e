"""Exact significance tests for counts, shares and latencies, computed in log space with the standard library.

Every tail is a sum of probability-mass terms, each `exp` of a log-gamma expression, summed from the side of
the distribution that the tail lies on, so a p-value of 1e-12 keeps its digits instead of vanishing into
`1 - 0.999999999999`. No scipy: these few tails are exact, explainable, and a 40 MB dependency would change
nothing a user could check.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

# A term this much smaller than the running sum cannot change it in double precision.
_NEGLIGIBLE = 1e-17


@dataclass(frozen=True)
class _Discrete:
    """A unimodal distribution on the integers [low, high]: its log pmf and pmf(i + 1) / pmf(i)."""

    low: int
    high: int
    mode: int
    log_pmf: Callable[[int], float]
    ratio: Callable[[int], float]

    def upper_tail(self, k: int) -> float:
        """P(X ≥ k), summed outward from the mode's side, so neither the sum nor its first term underflows."""
        if k <= self.low:
            return 1.0
        if k > self.high:
            return 0.0
        if k > self.mode:
            return min(1.0, self._sum_up(k))
        return max(0.0, 1.0 - self._sum_down(k - 1))

    def lower_tail(self, k: int) -> float:
        """P(X ≤ k)."""
        return 1.0 - self.upper_tail(k + 1) if k >= self.mode else min(1.0, self._sum_down(k))

    def _sum_up(self, start: int) -> float:
        term, total = math.exp(self.log_pmf(start)), 0.0
        for i in range(start, self.high + 1):
            total += term
            if term <= total * _NEGLIGIBLE:
                break
            term *= self.ratio(i)
        return total

    def _sum_down(self, start: int) -> float:
        if start < self.low:
            return 0.0
        term, total = math.exp(self.log_pmf(start)), 0.0
        for i in range(start, self.low - 1, -1):
            total += term
            if term <= total * _NEGLIGIBLE or i == self.low:
                break
            term /= self.ratio(i - 1)
        return total


def _poisson(expected: float) -> _Discrete:
    return _Discrete(
        0,
        sys.maxsize,
        math.floor(expected),
        lambda k: k * math.log(expected) - expected - math.lgamma(k + 1),
        lambda k: expected / (k + 1),
    )


def _binomial(n: int, p: float) -> _Discrete:
    odds = p / (1 - p)
    return _Discrete(
        0,
        n,
        min(n, math.floor((n + 1) * p)),
        lambda k: _log_choose(n, k) + k * math.log(p) + (n - k) * math.log1p(-p),
        lambda k: (n - k) / (k + 1) * odds,
    )


def _hypergeometric(population: int, successes: int, draws: int) -> _Discrete:
    """Successes among `draws` taken without replacement from `population` holding `successes`."""
    return _Discrete(
        max(0, draws + successes - population),
        min(draws, successes),
        (draws + 1) * (successes + 1) // (population + 2),
        lambda k: (
            _log_choose(successes, k)
            + _log_choose(population - successes, draws - k)
            - _log_choose(population, draws)
        ),
        lambda k: (successes - k) * (draws - k) / ((k + 1) * (population - successes - draws + k + 1)),
    )


def _log_choose(n: int, k: int) -> float:
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)


def poisson_upper_tail(k: int, expected: float) -> float:
    """P(X ≥ k) for X ~ Poisson(expected)."""
    if expected <= 0:
        return 1.0 if k <= 0 else 0.0
    return _poisson(expected).upper_tail(k)


def binomial_upper_tail(k: int, n: int, p: float) -> float:
    """P(X ≥ k) for X ~ Binomial(n, p)."""
    if p <= 0 or p >= 1:
        return 1.0 if k <= (n if p >= 1 else 0) else 0.0
    return _binomial(n, p).upper_tail(k)


def binomial_lower_tail(k: int, n: int, p: float) -> float:
    """P(X ≤ k) for X ~ Binomial(n, p)."""
    if k >= n:
        return 1.0
    if p <= 0 or p >= 1:
        return 1.0 - binomial_upper_tail(k + 1, n, p)
    return 0.0 if k < 0 else _binomial(n, p).lower_tail(k)


def rate_ratio_test(count: int, hours: float, usual_count: int, usual_hours: float) -> float:
    """One-sided p-value that `count` in `hours` comes from a higher rate than `usual_count` in `usual_hours`.

    The exact conditional test of two Poisson rates: under equal rates, the window's share of all
    `count + usual_count` events is Binomial(total, hours / (hours + usual_hours)). It needs no estimate of
    the usual rate, so a baseline of zero events is no division by zero, and 0 against 0 gives 1.
    """
    if usual_hours <= 0:
        return 1.0
    return binomial_upper_tail(count, count + usual_count, hours / (hours + usual_hours))


def rate_drop_test(count: int, hours: float, usual_count: int, usual_hours: float) -> float:
    """One-sided p-value that `count` in `hours` comes from a lower rate than `usual_count` in `usual_hours`
    (the same conditional test, its lower tail)."""
    if usual_hours <= 0 or hours <= 0:
        return 1.0
    return binomial_lower_tail(count, count + usual_count, hours / (hours + usual_hours))


def share_test(failed: int, total: int, usual_failed: int, usual_total: int) -> float:
    """One-sided p-value that `failed` of `total` is a higher share than `usual_failed` of `usual_total`.

    Fisher's exact test: given all failures of both periods, the window's are hypergeometric, P(X ≥ failed).
    """
    if total <= 0 or usual_total <= 0:
        return 1.0
    return _hypergeometric(total + usual_total, failed + usual_failed, total).upper_tail(failed)


@dataclass(frozen=True)
class RankTest:
    """A one-sided Mann–Whitney test from binned counts: is the window's distribution above the usual one?"""

    p_value: float
    effect: float  # P(window value > usual value), ties counting half: 0.5 when the two are alike


def rank_test(window: np.ndarray, usual: np.ndarray) -> RankTest:
    """Mann–Whitney U on two histograms over the same bins, normal approximation with the tie correction."""
    n1, n2 = float(window.sum()), float(usual.sum())
    if n1 == 0 or n2 == 0:
        return RankTest(1.0, 0.5)
    below = np.cumsum(usual) - usual  # usual values in lower bins
    u = float((window * (below + usual / 2)).sum())
    effect = u / (n1 * n2)
    ties = window + usual
    n = n1 + n2
    variance = n1 * n2 / 12 * ((n + 1) - float((ties**3 - ties).sum()) / (n * (n - 1)))
    if variance <= 0:
        return RankTest(1.0, effect)
    z = (u - n1 * n2 / 2 - 0.5) / math.sqrt(variance)  # continuity correction
    return RankTest(normal_upper_tail(z), effect)


def normal_upper_tail(z: float) -> float:
    """P(Z ≥ z) for a standard normal Z (erfc keeps the far tail's digits)."""
    return 0.5 * math.erfc(z / math.sqrt(2))
