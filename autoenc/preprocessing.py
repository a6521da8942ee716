"""Normalization statistics: fit on parts of the data, merge, transform.

``MomentStats`` holds count, mean, sum of squared deviations, minimum and
maximum per feature. Partial results from any split of the data merge into the
same statistics numpy computes on the whole (up to float rounding), which is what
lets a Beam ``CombineFn`` compute them in parallel.

Example:
    >>> import numpy as np
    >>> x = np.arange(12.0).reshape(6, 2)
    >>> stats = MomentStats.merge([MomentStats.from_array(x[:2]), MomentStats.from_array(x[2:])])
    >>> np.allclose(stats.mean, x.mean(axis=0)), np.allclose(stats.std, x.std(axis=0))
    (True, True)
    >>> Normalizer.from_stats(stats).transform(x).mean(axis=0).round(6).tolist()
    [0.0, 0.0]
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence

import numpy as np


@dataclasses.dataclass(frozen=True)
class MomentStats:
    """Mergeable per-feature statistics of a set of rows.

    Attributes:
        count: number of rows.
        mean: float64 [n_features].
        m2: float64 [n_features], sum of squared deviations from the mean.
        minimum: float64 [n_features] (+inf when empty).
        maximum: float64 [n_features] (-inf when empty).
    """

    count: int
    mean: np.ndarray
    m2: np.ndarray
    minimum: np.ndarray
    maximum: np.ndarray

    @classmethod
    def empty(cls, n_features: int) -> MomentStats:
        zeros = np.zeros(n_features)
        return cls(0, zeros, zeros.copy(), np.full(n_features, np.inf), np.full(n_features, -np.inf))

    @classmethod
    def from_array(cls, x: np.ndarray) -> MomentStats:
        """Statistics of the rows of ``x`` (shape [rows, n_features])."""
        x = np.asarray(x, dtype=np.float64)
        if len(x) == 0:
            return cls.empty(x.shape[1])
        mean = x.mean(axis=0)
        # Two-pass sum of squares: stable where the naive E[x^2] - E[x]^2 is not.
        m2 = ((x - mean) ** 2).sum(axis=0)
        return cls(len(x), mean, m2, x.min(axis=0), x.max(axis=0))

    @classmethod
    def merge(cls, parts: Iterable[MomentStats]) -> MomentStats:
        """Combines statistics of disjoint row sets (Chan et al.'s pairwise update)."""
        parts = list(parts)
        if not parts:
            raise ValueError("MomentStats.merge needs at least one part.")
        total = parts[0]
        for part in parts[1:]:
            total = total._merge_pair(part)
        return total

    def _merge_pair(self, other: MomentStats) -> MomentStats:
        if other.count == 0:
            return self
        if self.count == 0:
            return other
        n = self.count + other.count
        delta = other.mean - self.mean
        mean = self.mean + delta * (other.count / n)
        m2 = self.m2 + other.m2 + delta**2 * (self.count * other.count / n)
        return MomentStats(
            n,
            mean,
            m2,
            np.minimum(self.minimum, other.minimum),
            np.maximum(self.maximum, other.maximum),
        )

    @property
    def std(self) -> np.ndarray:
        """Population standard deviation per feature (numpy's default, ddof=0)."""
        return np.sqrt(self.m2 / max(self.count, 1))


NORMALIZATIONS = ("zscore", "minmax")


@dataclasses.dataclass(frozen=True)
class Normalizer:
    """Normalization ``(x - mean) / scale``, per model input value.

    ``zscore``: ``mean`` is the mean and ``scale`` the standard deviation (1 for
    a constant value, which then normalizes to 0). ``minmax``: ``mean`` is the
    minimum and ``scale`` the range, so training values land in [0, 1] (what a
    binary cross-entropy loss needs); the values of one tensor feature (an image)
    share one minimum and one range, so the image is scaled as a whole.

    Attributes:
        mean: float64 [width].
        scale: float64 [width], positive.
        method: ``"zscore"`` or ``"minmax"``.
    """

    mean: np.ndarray
    scale: np.ndarray
    method: str = "zscore"

    @classmethod
    def from_stats(
        cls, stats: MomentStats, method: str = "zscore", sizes: Sequence[int] | None = None
    ) -> Normalizer:
        """The normalization of ``method`` from training statistics.

        Args:
            stats: statistics of the training rows.
            method: ``"zscore"`` or ``"minmax"``.
            sizes: values per feature, in order (for ``minmax``: the values of one
                feature share a minimum and a range); ``None``: one value each.
        """
        if method == "zscore":
            std = stats.std
            return cls(mean=stats.mean.copy(), scale=np.where(std > 0, std, 1.0), method=method)
        if method != "minmax":
            raise ValueError(f"method must be one of {NORMALIZATIONS}. Received: {method!r}")
        sizes = list(sizes) if sizes is not None else [1] * len(stats.mean)
        if sum(sizes) != len(stats.mean):
            raise ValueError(f"sizes must add up to {len(stats.mean)} values. Received: {sizes}")
        low, high = np.empty(len(stats.mean)), np.empty(len(stats.mean))
        start = 0
        for size in sizes:
            part = slice(start, start + size)
            low[part], high[part] = stats.minimum[part].min(), stats.maximum[part].max()
            start += size
        span = high - low
        return cls(mean=low, scale=np.where(span > 0, span, 1.0), method=method)

    def transform(self, x: np.ndarray) -> np.ndarray:
        """Raw float64 rows -> float32 normalized rows, the model's input."""
        out = np.subtract(x, self.mean, dtype=np.float64)
        out /= self.scale
        return out.astype(np.float32)

    def inverse_transform(self, z: np.ndarray) -> np.ndarray:
        """Normalized rows -> float64 rows in raw units."""
        return np.asarray(z, dtype=np.float64) * self.scale + self.mean
