"""Normalization statistics: fit on parts of the data, merge, transform.

``MomentStats`` holds count, mean, standard deviation, minimum and maximum
per feature. Partial results from any split of the data merge into the
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


def _power_of_two_at_least(x: np.ndarray) -> np.ndarray:
    """Per column, a power of two >= ``x`` (1 where ``x`` is 0 or not finite),
    at most 2**1023 (the largest float64 power of two): dividing by it is
    exact, and brings values into [-2, 2]."""
    x = np.asarray(x, dtype=np.float64)
    good = np.isfinite(x) & (x > 0)
    exponent = np.zeros(x.shape, dtype=np.int64)
    exponent[good] = np.minimum(np.frexp(x[good])[1], 1023)
    return np.ldexp(1.0, exponent)


@dataclasses.dataclass(frozen=True)
class MomentStats:
    """Mergeable per-feature statistics of a set of rows.

    No intermediate result overflows: every finite float64 input gives finite
    statistics (a sum of squares of values near 1e200 would be infinite, so
    columns whose plain sums overflow are computed in units of a power of two
    at least their largest magnitude, and merges always are).

    Attributes:
        count: number of rows.
        mean: float64 [n_features].
        std: float64 [n_features], population standard deviation (ddof=0).
        minimum: float64 [n_features] (+inf when empty).
        maximum: float64 [n_features] (-inf when empty).
    """

    count: int
    mean: np.ndarray
    std: np.ndarray
    minimum: np.ndarray
    maximum: np.ndarray

    @classmethod
    def empty(cls, n_features: int) -> MomentStats:
        zeros = np.zeros(n_features)
        return cls(0, zeros, zeros.copy(), np.full(n_features, np.inf), np.full(n_features, -np.inf))

    @classmethod
    def from_array(cls, x: np.ndarray) -> MomentStats:
        """Statistics of the rows of ``x`` (shape [rows, n_features], finite values)."""
        x = np.asarray(x, dtype=np.float64)
        if len(x) == 0:
            return cls.empty(x.shape[1])
        with np.errstate(over="ignore", invalid="ignore"):
            mean = x.mean(axis=0)
            # Two-pass sum of squares: stable where the naive E[x^2] - E[x]^2 is not.
            deviation = x - mean
            std = np.sqrt((deviation * deviation).mean(axis=0))
        overflowed = ~(np.isfinite(mean) & np.isfinite(std))
        if overflowed.any():
            # The same in units of a power of two at least the column's largest
            # magnitude: every intermediate value is at most 1 in size.
            part = x[:, overflowed]
            unit = _power_of_two_at_least(np.abs(part).max(axis=0))
            scaled = part / unit
            scaled_mean = scaled.mean(axis=0)
            scaled_deviation = scaled - scaled_mean
            mean[overflowed] = scaled_mean * unit
            std[overflowed] = np.sqrt((scaled_deviation * scaled_deviation).mean(axis=0)) * unit
        return cls(len(x), mean, std, x.min(axis=0), x.max(axis=0))

    @classmethod
    def merge(cls, parts: Iterable[MomentStats]) -> MomentStats:
        """Combines statistics of disjoint row sets, in the order given (Chan et
        al.'s pairwise update). Floating-point results depend on the order:
        merge in a fixed order for reproducible statistics."""
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
        # In units of a power of two at least every magnitude involved, so that
        # the squared difference of means cannot overflow.
        unit = _power_of_two_at_least(
            np.maximum.reduce([np.abs(self.mean), np.abs(other.mean), self.std, other.std])
        )
        mean_a, mean_b = self.mean / unit, other.mean / unit
        std_a, std_b = self.std / unit, other.std / unit
        delta = mean_b - mean_a
        mean = mean_a + delta * (other.count / n)
        variance = (
            self.count * std_a**2 + other.count * std_b**2 + delta**2 * (self.count * other.count / n)
        ) / n
        return MomentStats(
            n,
            mean * unit,
            np.sqrt(variance) * unit,
            np.minimum(self.minimum, other.minimum),
            np.maximum(self.maximum, other.maximum),
        )

    def to_array(self) -> np.ndarray:
        """float64 [1 + 4 * n_features]: count, mean, std, minimum, maximum."""
        return np.concatenate([[float(self.count)], self.mean, self.std, self.minimum, self.maximum])

    @classmethod
    def from_array_form(cls, values: np.ndarray) -> MomentStats:
        """The inverse of ``to_array``."""
        values = np.asarray(values, dtype=np.float64)
        width = (len(values) - 1) // 4
        if len(values) != 1 + 4 * width:
            raise ValueError(f"not a MomentStats array: {len(values)} values")
        parts = values[1:].reshape(4, width)
        return cls(int(values[0]), parts[0].copy(), parts[1].copy(), parts[2].copy(), parts[3].copy())


# A feature whose spread (standard deviation, or range for minmax) is below
# this share of its magnitude counts as constant and is scaled by that share
# of its magnitude instead: storing the value as float32 alone moves it by up
# to 6e-8 of its magnitude, which divided by a spread of float rounding (1e-17)
# would flag every row. A changed constant still stands out (a change of 1 %
# is 10,000 units).
CONSTANT_RTOL = 1e-6


def _spread_floor(spread: np.ndarray, minimum: np.ndarray, maximum: np.ndarray) -> np.ndarray:
    """``spread``, at least ``CONSTANT_RTOL`` times the magnitude; 1 for an all-zero feature."""
    with np.errstate(invalid="ignore"):
        magnitude = np.maximum(np.abs(minimum), np.abs(maximum))
    magnitude = np.where(np.isfinite(magnitude), magnitude, 0.0)
    floor = CONSTANT_RTOL * magnitude
    scale = np.where(spread > floor, spread, floor)
    return np.where(scale > 0, scale, 1.0)


NORMALIZATIONS = ("zscore", "minmax")


@dataclasses.dataclass(frozen=True)
class Normalizer:
    """Normalization ``(x - mean) / scale``, per model input value.

    ``zscore``: ``mean`` is the mean and ``scale`` the standard deviation.
    ``minmax``: ``mean`` is the minimum and ``scale`` the range, so training
    values land in [0, 1] (what a binary cross-entropy loss needs); the values
    of one tensor feature (an image) share one minimum and one range, so the
    image is scaled as a whole. A constant value (a spread under
    ``CONSTANT_RTOL`` of its magnitude) is scaled by ``CONSTANT_RTOL`` times
    its magnitude (1 when it is 0), so it normalizes to 0 and float32 rounding
    of it stays far below 1.

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
            scale = _spread_floor(stats.std, stats.minimum, stats.maximum)
            return cls(mean=stats.mean.copy(), scale=scale, method=method)
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
        with np.errstate(over="ignore"):
            span = high - low
        if not np.isfinite(span).all():
            raise ValueError(
                "the range of a feature's training values is larger than float64 can hold; "
                "use --normalization zscore"
            )
        return cls(mean=low, scale=_spread_floor(span, low, high), method=method)

    def with_identity(self, slots: Sequence[tuple[int, int]]) -> Normalizer:
        """The same normalization, but values in the (first value, size)
        ``slots`` pass unchanged (mean 0, scale 1): a categorical feature's
        one-hot block, which a softmax reconstructs as it is."""
        mean, scale = self.mean.copy(), self.scale.copy()
        for start, size in slots:
            mean[start : start + size] = 0.0
            scale[start : start + size] = 1.0
        return Normalizer(mean=mean, scale=scale, method=self.method)

    def transform(self, x: np.ndarray) -> np.ndarray:
        """Raw float64 rows -> float32 normalized rows, the model's input.

        A value whose normalized size is beyond float32's range (about 3.4e38)
        becomes +-inf: callers decide what such a row means (``Scorer`` flags it).
        """
        with np.errstate(over="ignore", invalid="ignore"):
            out = np.subtract(x, self.mean, dtype=np.float64)
            out /= self.scale
            return out.astype(np.float32)

    def inverse_transform(self, z: np.ndarray) -> np.ndarray:
        """Normalized rows -> float64 rows in raw units."""
        return np.asarray(z, dtype=np.float64) * self.scale + self.mean


# A training value farther than this many robust spreads from its feature's
# median is too extreme to train on (``ExtremeBounds``).
EXTREME_SPREADS = 1e6


@dataclasses.dataclass(frozen=True)
class ExtremeBounds:
    """Per feature, the range outside which a training value is too extreme to
    train on: the median plus or minus ``spreads`` robust spreads.

    One value far out (1e200 among values near 1) would otherwise dominate the
    mean and the standard deviation, so every other row normalizes to about 0
    and the model learns nothing. The medians and spreads come from a sample of
    the rows taken before the statistics. The spread is the interquartile range
    (the range, then the median's size, then 1, where that is 0), and the
    default of a million spreads lets any heavy tail of real data through.

    Attributes:
        names: the feature names, in model order.
        median: float64 [n_features], one per feature (a tensor feature's
            values pooled).
        spread: float64 [n_features], positive.
        spreads: the multiple of the spread that bounds a value.
        sample_rows: rows the medians and spreads were estimated from.

    Example:
        >>> x = np.column_stack([np.arange(100.0), np.ones(100)])
        >>> bounds = ExtremeBounds.from_sample(x, ["a", "b"], sizes=[1, 1], spreads=10)
        >>> bounds.low.tolist(), bounds.high.tolist()
        ([-445.5, -9.0], [544.5, 11.0])
        >>> [(mask.tolist(), text) for mask, text in bounds.check(np.array([[1.0, 1.0], [1e200, 1.0]]))]
        [([False, True], "column 'a' is 1e+200, beyond [-445.5, 544.5] (its median 49.5 +- 10 spreads of 49.5): too extreme to train on")]
    """

    names: tuple[str, ...]
    median: np.ndarray
    spread: np.ndarray
    spreads: float
    sample_rows: int
    sizes: tuple[int, ...] = ()

    @classmethod
    def from_sample(
        cls,
        sample: np.ndarray,
        names: Sequence[str],
        *,
        sizes: Sequence[int],
        spreads: float = EXTREME_SPREADS,
    ) -> ExtremeBounds:
        """Bounds from sampled raw rows [n, width] (non-finite values ignored)."""
        sample = np.asarray(sample, dtype=np.float64)
        medians, spread_values = [], []
        start = 0
        for size in sizes:
            values = sample[:, start : start + size].ravel()
            start += size
            values = values[np.isfinite(values)]
            if not len(values):
                medians.append(0.0)
                spread_values.append(np.inf)
                continue
            q25, median, q75 = np.percentile(values, [25, 50, 75])
            spread = q75 - q25
            for fallback in (values.max() - values.min(), abs(median), 1.0):
                if spread > 0 and np.isfinite(spread):
                    break
                spread = fallback
            medians.append(float(median))
            spread_values.append(float(spread))
        return cls(
            names=tuple(names),
            median=np.asarray(medians),
            spread=np.asarray(spread_values),
            spreads=float(spreads),
            sample_rows=int(len(sample)),
            sizes=tuple(int(s) for s in sizes),
        )

    @property
    def low(self) -> np.ndarray:
        with np.errstate(over="ignore", invalid="ignore"):
            return np.where(np.isfinite(self.spread), self.median - self.spreads * self.spread, -np.inf)

    @property
    def high(self) -> np.ndarray:
        with np.errstate(over="ignore", invalid="ignore"):
            return np.where(np.isfinite(self.spread), self.median + self.spreads * self.spread, np.inf)

    def check(self, features: np.ndarray) -> list[tuple[np.ndarray, str]]:
        """(row mask, reason) for rows of raw features [n, width] with a value
        outside the bounds; one reason per row (its first such value)."""
        features = np.asarray(features, dtype=np.float64)
        n = len(features)
        low, high = self.low, self.high
        problems: list[tuple[np.ndarray, str]] = []
        flagged = np.zeros(n, dtype=bool)
        start = 0
        for j, (name, size) in enumerate(zip(self.names, self.sizes, strict=True)):
            values = features[:, start : start + size]
            start += size
            with np.errstate(invalid="ignore"):
                outside = (values < low[j]) | (values > high[j])
            rows = np.flatnonzero(outside.any(axis=1) & ~flagged)
            for i in rows:
                position = int(np.flatnonzero(outside[i])[0])
                where = f" (value {position} of it)" if size > 1 else ""
                mask = np.zeros(n, dtype=bool)
                mask[i] = True
                flagged[i] = True
                problems.append(
                    (
                        mask,
                        f"column '{name}' is {values[i, position]:.6g}{where}, beyond "
                        f"[{low[j]:.6g}, {high[j]:.6g}] (its median {self.median[j]:.6g} +- "
                        f"{self.spreads:g} spreads of {self.spread[j]:.6g}): too extreme to train on",
                    )
                )
        return problems

    def to_dict(self) -> dict:
        """For metadata.json (an infinite bound, where nothing was sampled, is ``None``)."""

        def number(x):
            return float(x) if np.isfinite(x) else None

        return {
            "spreads": number(self.spreads),
            "sample_rows": self.sample_rows,
            "features": {
                name: {"median": number(m), "spread": number(s), "low": number(lo), "high": number(hi)}
                for name, m, s, lo, hi in zip(
                    self.names, self.median, self.spread, self.low, self.high, strict=True
                )
            },
        }


MISSING = ("reject", "impute")


@dataclasses.dataclass(frozen=True)
class Imputation:
    """``--missing impute``: what a missing feature value becomes.

    A missing value (null, or NaN) of a scalar feature takes the feature's
    median over the training sample, and each feature that had missing values
    there gets a missing-indicator input (1 where the value was missing, 0
    where it was present) appended after the features, so that the model sees
    *that* a value was missing, not only the median standing in for it: a
    value missing where it rarely is raises the reconstruction error. An
    infinite value is not missing: its row is rejected as in ``reject`` mode.

    Attributes:
        names: the feature names, in model order.
        median: float64 [n_features], the value a missing one takes.
        indicators: indices (model order) of the features with an indicator input.
        sample_rows: rows the medians and the indicator features were chosen from.

    Example:
        >>> x = np.array([[1.0, 5.0], [np.nan, 6.0], [3.0, 7.0]])
        >>> imputation = Imputation.from_sample(x, ["a", "b"])
        >>> imputation.median.tolist(), imputation.indicators
        ([2.0, 6.0], (0,))
        >>> filled, counts = imputation.apply(np.array([[np.nan, np.nan], [1.0, 2.0]]))
        >>> filled.tolist(), counts.tolist()
        ([[2.0, 6.0, 1.0], [1.0, 2.0, 0.0]], [2, 0])
    """

    names: tuple[str, ...]
    median: np.ndarray
    indicators: tuple[int, ...]
    sample_rows: int
    positions: tuple[int, ...] = ()
    width: int = 0

    def __post_init__(self):
        # Default: the features are the whole row, in order.
        if not self.positions:
            object.__setattr__(self, "positions", tuple(range(len(self.names))))
        if not self.width:
            object.__setattr__(self, "width", len(self.names))

    @classmethod
    def from_sample(
        cls,
        sample: np.ndarray,
        names: Sequence[str],
        sizes: Sequence[int] | None = None,
        *,
        categorical: Sequence[str] = (),
    ) -> Imputation:
        """From raw sampled rows [n, width], NaN where a value is missing.

        Args:
            sample: the rows.
            names: the feature names.
            sizes: values per feature (default: 1 each); only scalar
                features can be imputed.
            categorical: categorical features (a missing value there is
                their own category, not imputed): left out.

        Raises:
            ValueError: a feature is not scalar, or has no value in the
                sample (naming it).
        """
        sizes = list(sizes or [1] * len(names))
        tensors = [
            name for name, size in zip(names, sizes, strict=True) if size != 1 and name not in categorical
        ]
        if tensors:
            raise ValueError(
                f"missing values are imputed in scalar features only; {', '.join(map(repr, tensors))} "
                "holds an image or sequence"
            )
        offsets = np.cumsum([0, *sizes[:-1]]).astype(int).tolist()
        kept = [(name, o) for name, o in zip(names, offsets, strict=True) if name not in categorical]
        names = [name for name, _ in kept]
        positions = [o for _, o in kept]
        sample = np.asarray(sample, dtype=np.float64)
        width = sample.shape[1] if sample.ndim == 2 else sum(sizes)
        sample = sample[:, positions] if sample.ndim == 2 else sample.reshape(0, len(names))
        missing = np.isnan(sample)
        empty = [name for name, none in zip(names, missing.all(axis=0), strict=True) if none]
        if empty or not len(sample):
            raise ValueError(
                f"feature(s) {', '.join(map(repr, empty or names))} have no value in the "
                f"{len(sample)} sampled rows, so there is no median to impute"
            )
        median = np.array([np.median(column[~gap]) for column, gap in zip(sample.T, missing.T, strict=True)])
        return cls(
            names=tuple(names),
            median=median,
            indicators=tuple(int(j) for j in np.flatnonzero(missing.any(axis=0))),
            sample_rows=int(len(sample)),
            positions=tuple(positions),
            width=int(width),
        )

    def _key(self) -> tuple:
        return (self.names, self.indicators, self.sample_rows, self.positions, self.width)

    def __eq__(self, other) -> bool:
        return (
            isinstance(other, Imputation)
            and self._key() == other._key()
            and np.array_equal(self.median, other.median)
        )

    def __hash__(self) -> int:
        return hash((*self._key(), self.median.tobytes()))

    @property
    def indicator_columns(self) -> tuple[str, ...]:
        """The features that have a missing indicator."""
        return tuple(self.names[j] for j in self.indicators)

    @property
    def indicator_names(self) -> tuple[str, ...]:
        """The indicator inputs' names, as ``top_features`` names them."""
        return tuple(f"{self.names[j]} (missing)" for j in self.indicators)

    def apply(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Raw rows [n, width] with NaN where missing -> the model's raw
        input [n, width + len(indicators)] and the count of imputed values
        per row (int32 [n])."""
        x = np.asarray(x, dtype=np.float64)
        positions = list(self.positions)
        values = x[:, positions]
        missing = np.isnan(values)
        counts = missing.sum(axis=1).astype(np.int32)
        out = np.empty((len(x), x.shape[1] + len(self.indicators)), dtype=np.float64)
        out[:, : x.shape[1]] = x
        if counts.any():
            out[:, positions] = np.where(missing, self.median, values)
        out[:, x.shape[1] :] = missing[:, list(self.indicators)]
        return out, counts

    def to_dict(self) -> dict:
        return {
            "policy": "impute",
            "sample_rows": self.sample_rows,
            "median": {name: float(m) for name, m in zip(self.names, self.median, strict=True)},
            "indicators": [self.names[j] for j in self.indicators],
        }

    @classmethod
    def from_dict(
        cls, data: dict, names: Sequence[str], *, positions: Sequence[int] = (), width: int = 0
    ) -> Imputation:
        """The inverse of ``to_dict`` for the features ``names`` (at columns
        ``positions`` of rows ``width`` wide; default: the whole row).

        Raises:
            ValueError: the dict does not match the features.
        """
        medians, indicators = data.get("median"), data.get("indicators")
        if not isinstance(medians, dict) or set(medians) != set(names):
            raise ValueError(f"missing.median must give one number for each feature ({', '.join(names)})")
        if not isinstance(indicators, list) or not set(indicators) <= set(names):
            raise ValueError("missing.indicators must be a list of feature names")
        median = np.array([medians[n] for n in names], dtype=np.float64)
        if not np.isfinite(median).all():
            raise ValueError("missing.median must be finite numbers")
        return cls(
            names=tuple(names),
            median=median,
            indicators=tuple(sorted(names.index(n) for n in indicators)),
            sample_rows=int(data.get("sample_rows", 0)),
            positions=tuple(positions),
            width=int(width),
        )
