"""Statistics of timing samples: plain functions of lists of floats, no clock, no I/O."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

NOISY_IQR_FRACTION = 0.10


def _quantile(sorted_values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (NumPy's default)."""
    n = len(sorted_values)
    if n == 1:
        return float(sorted_values[0])
    pos = q * (n - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, n - 1)
    frac = pos - lo
    return float(sorted_values[lo] * (1 - frac) + sorted_values[hi] * frac)


def median_ci(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float]:
    """Distribution-free confidence interval of the median from order statistics.

    The ranks come from the binomial(n, 1/2) distribution of how many samples fall below the
    true median (normal approximation); with fewer than 6 samples the interval is the range.
    """
    s = sorted(values)
    n = len(s)
    if n < 6:
        return float(s[0]), float(s[-1])
    z = {0.90: 1.645, 0.95: 1.96, 0.99: 2.576}.get(round(confidence, 2), 1.96)
    half = z * math.sqrt(n) / 2
    lo = max(0, math.floor(n / 2 - half) - 1)
    hi = min(n - 1, math.ceil(n / 2 + half))
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
    s = sorted(float(v) for v in values)
    n = len(s)
    mean = sum(s) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in s) / (n - 1)) if n > 1 else 0.0
    med = _quantile(s, 0.5)
    q1, q3 = _quantile(s, 0.25), _quantile(s, 0.75)
    lo, hi = median_ci(s)
    return Summary(
        n=n,
        median=med,
        q1=q1,
        q3=q3,
        iqr=q3 - q1,
        min=s[0],
        max=s[-1],
        mean=mean,
        std=std,
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
    """Two-sided Mann-Whitney U test with the normal approximation and tie correction.

    Returns ``(U of a, p-value)``. Small samples (under 4 each) give p = 1: no evidence.
    """
    n1, n2 = len(a), len(b)
    if n1 < 4 or n2 < 4:
        return float("nan"), 1.0
    combined = sorted([(v, 0) for v in a] + [(v, 1) for v in b])
    ranks = [0.0] * len(combined)
    ties = 0.0
    i = 0
    while i < len(combined):
        j = i
        while j + 1 < len(combined) and combined[j + 1][0] == combined[i][0]:
            j += 1
        rank = (i + j) / 2 + 1
        for k in range(i, j + 1):
            ranks[k] = rank
        t = j - i + 1
        ties += t**3 - t
        i = j + 1
    r1 = sum(r for r, (_, g) in zip(ranks, combined, strict=True) if g == 0)
    u1 = r1 - n1 * (n1 + 1) / 2
    mu = n1 * n2 / 2
    n = n1 + n2
    sigma = math.sqrt(n1 * n2 / 12 * ((n + 1) - ties / (n * (n - 1))))
    if sigma == 0:
        return u1, 1.0
    z = (abs(u1 - mu) - 0.5) / sigma
    p = math.erfc(max(z, 0.0) / math.sqrt(2))
    return u1, min(1.0, p)
