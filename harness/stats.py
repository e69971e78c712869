"""Statistics of timing samples: plain functions of lists of floats, no clock, no I/O."""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy.stats import binom, bootstrap, mannwhitneyu
from scipy.stats import t as t_dist

NOISY_IQR_FRACTION = 0.10


@functools.lru_cache(maxsize=4096)
def _lower_rank(n: int, confidence: float) -> int:
    """The 0-based rank of the median CI's lower end (cached: the timer asks after each block)."""
    return int(binom.ppf((1 - confidence) / 2, n, 0.5)) - 1


def median_ci(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float]:
    """Distribution-free confidence interval of the median from order statistics.

    The ranks are the exact binomial(n, 1/2) quantiles of how many samples fall below the true
    median (``scipy.stats.binom``, as ``scipy.stats.quantile_test`` does); with too few samples
    for any interval at this confidence, the range.
    """
    s = np.sort(np.asarray(values, dtype=float))
    n = len(s)
    lo = _lower_rank(n, confidence)
    hi = n - 1 - lo
    if lo < 0 or hi >= n:
        return float(s[0]), float(s[-1])
    return float(s[lo]), float(s[hi])


@dataclass(frozen=True)
class Summary:
    n: int
    median: float
    q1: float
    q3: float
    iqr: float
    min: float
    max: float
    mean: float
    std: float
    ci_low: float
    ci_high: float
    noisy: bool

    @property
    def ci_half_width_fraction(self) -> float:
        """Half the CI of the median as a fraction of the median."""
        return (self.ci_high - self.ci_low) / 2 / self.median if self.median > 0 else math.inf

    def to_dict(self) -> dict[str, float | int | bool]:
        return asdict(self)


def summarize(values: Sequence[float]) -> Summary:
    if not values:
        raise ValueError("no samples to summarize")
    s = np.sort(np.asarray(values, dtype=float))
    n = len(s)
    med, q1, q3 = (float(v) for v in np.quantile(s, (0.5, 0.25, 0.75)))
    lo, hi = median_ci(s)
    return Summary(
        n=n,
        median=med,
        q1=q1,
        q3=q3,
        iqr=q3 - q1,
        min=float(s[0]),
        max=float(s[-1]),
        mean=float(s.mean()),
        std=float(s.std(ddof=1)) if n > 1 else 0.0,
        ci_low=lo,
        ci_high=hi,
        noisy=med > 0 and (q3 - q1) / med > NOISY_IQR_FRACTION,
    )


def precise_enough(values: Sequence[float], precision: float, min_samples: int = 5) -> bool:
    """The stopping rule: enough samples and the median's 95% CI within ±precision of it."""
    if len(values) < min_samples:
        return False
    return summarize(values).ci_half_width_fraction <= precision


def block_size_for(
    call_seconds: float, overhead_seconds: float, max_overhead: float = 0.01, limit: int = 1 << 20
) -> int:
    """Calls per timed block so that timer and sync overhead stay under ``max_overhead`` of it."""
    if call_seconds <= 0:
        return limit
    needed = overhead_seconds / (max_overhead * call_seconds)
    return max(1, min(limit, math.ceil(needed)))


def mann_whitney_u(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """Two-sided Mann-Whitney U test (``scipy.stats.mannwhitneyu``: the exact distribution for
    small samples without ties, the normal approximation with tie correction otherwise).

    Returns ``(U of a, p-value)``; an empty side gives ``(nan, 1.0)``: no evidence.
    """
    if not len(a) or not len(b):
        return float("nan"), 1.0
    result = mannwhitneyu(a, b, alternative="two-sided", method="auto")
    return float(result.statistic), float(result.pvalue)


def _paired_logs(a: Sequence[float], b: Sequence[float]) -> np.ndarray:
    return np.log(np.asarray(a, dtype=float)) - np.log(np.asarray(b, dtype=float))


def paired_estimate(a: Sequence[float], b: Sequence[float]) -> float:
    """:func:`paired_ratio`'s estimate alone (no bootstrap): to rank many candidates cheaply."""
    return _estimate(_paired_logs(a, b))


def _estimate(logs: np.ndarray) -> float:
    return float(np.exp(np.median(logs)))


def paired_ratio(
    a: Sequence[float], b: Sequence[float], confidence: float = 0.95, seed: int = 0
) -> tuple[float, float, float]:
    """The ratio a/b of two candidates timed in the same cycles, with its confidence interval.

    ``a[i]`` and ``b[i]`` were measured in the same cycle, so drift that lasts a cycle cancels
    in ``a[i] / b[i]``. The estimate is the median of the per-cycle ratios (a cycle that a slow
    spell began or ended inside is an outlier, not a vote); the interval a percentile bootstrap
    of that median over cycles (``scipy.stats.bootstrap``). Returns (ratio, low, high).
    """
    logs = _paired_logs(a, b)
    estimate = _estimate(logs)
    if len(logs) < 3 or np.ptp(logs) == 0:
        return estimate, estimate, estimate
    ci = bootstrap(
        (logs,),
        np.median,
        confidence_level=confidence,
        n_resamples=2000,
        method="percentile",
        rng=np.random.default_rng(seed),
    ).confidence_interval
    return estimate, float(np.exp(ci.low)), float(np.exp(ci.high))


def geometric_mean_ci(
    ratios: Sequence[float], confidence: float = 0.95
) -> tuple[float, float, float] | None:
    """The geometric mean of independent ratios (one per unit: a round's worker processes) with
    a t-interval over their logs: wide with few units, and honestly so. Returns (mean, low,
    high), or None with fewer than two."""
    if len(ratios) < 2:
        return None
    logs = np.log(np.asarray(ratios, dtype=float))
    mean = float(logs.mean())
    half = float(t_dist.ppf(0.5 + confidence / 2, len(logs) - 1) * logs.std(ddof=1))
    half /= math.sqrt(len(logs))
    return math.exp(mean), math.exp(mean - half), math.exp(mean + half)
