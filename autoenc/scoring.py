"""Scoring: latent vectors, reconstruction errors, thresholds, anomaly flags.

Direction: ``reconstruction_error`` and ``latent_distance`` are higher for more
anomalous rows (scikit-learn's ``score_samples`` points the other way; PyOD
agrees with us).

The two measure different things, like the SPE (Q) and Hotelling T² statistics
of PCA process monitoring: the reconstruction error is how far a row lies off
what the model learned, the latent distance how far out along it (a row of
normal shape but extreme size reconstructs well and lies far out).
``total_distance`` adds them up as a probabilistic PCA would: the squared
latent distance plus the squared error in units of the validation rows' mean
error, counted over the values the latent does not explain (see
``LatentDistribution.total_distance``); one ranking that sees both kinds of
anomaly.

Example:
    >>> import numpy as np
    >>> reconstruction_error(np.zeros((2, 2)), np.array([[0.0, 0.0], [1.0, 3.0]])).tolist()
    [0.0, 5.0]
    >>> threshold_from_contamination(np.arange(101.0), 0.1)
    90.0
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pyarrow as pa

from autoenc.errors import ConfigError
from autoenc.preprocessing import Normalizer

# Rows per model call: at most this many, and at most this many bytes of
# float32 input (wide rows such as images get fewer: a 224x224x3 image is
# 600 KB). Bounds memory for large batches; big enough to keep the per-call
# overhead negligible.
MODEL_BATCH_ROWS = 8192
MODEL_BATCH_BYTES = 64 * 2**20
# Percentiles stored of the validation rows' errors and latent distances.
QUANTILES = 101


@dataclasses.dataclass(frozen=True)
class Scores:
    """Scores of a batch of rows.

    Attributes:
        latent: float32 [n, latent_dim], the encoder's output.
        reconstruction_error: float64 [n], mean squared error over the features in
            normalized units; higher = more anomalous.
        is_anomaly: bool [n], ``reconstruction_error > threshold``.
        anomaly_score: float64 [n] in [0, 1], the share of validation rows with a
            lower error (``None`` when the scorer has no validation quantiles).
        top_features: int32 [n, k], indices (model order) of the features with
            the largest share of each row's squared error, largest first; ``None``
            when the scorer's ``top_k`` is 0.
        top_shares: float32 [n, k], those shares (each row's shares of all
            features add up to 1; 0 for a row reconstructed exactly).
        error_map: float32 [n, n_values], each value's squared error in
            normalized units, or ``None``.
        latent_distance: float64 [n], the Mahalanobis distance of the latent
            vector from the validation rows' latent vectors (``None`` when the
            scorer has no ``LatentDistribution``).
        combined_score: float64 [n] in [0, 1], the larger of ``anomaly_score``
            and the share of validation rows with a smaller latent distance:
            a row is as anomalous as the more unusual of how badly it
            reconstructs and where its latent vector lies (``None`` for a
            model without the validation distances' quantiles).
        total_distance: float64 [n], ``sqrt(latent_distance**2 + max(1,
            values - latent_dim) * reconstruction_error / error_mean)``, the validation
            rows' mean error ``error_mean`` (see
            ``LatentDistribution.total_distance``): the row's distance from the
            normal rows counting both how far out along the learned surface it
            lies and how far off it; higher = more anomalous, +inf for an
            ``extreme`` row (``None`` for a model without ``error_mean``).
        extreme: bool [n], rows whose values are beyond what the model's
            float32 arithmetic can hold (a normalized value beyond about
            3.4e38, a non-finite input, or a computation that overflowed):
            scored as certain anomalies, with ``reconstruction_error`` and
            ``latent_distance`` +inf, ``anomaly_score`` 1, ``is_anomaly`` True,
            a NaN latent (written as null) and their top features the ones
            that overflowed. No score is ever NaN.
    """

    latent: np.ndarray
    reconstruction_error: np.ndarray
    is_anomaly: np.ndarray
    anomaly_score: np.ndarray | None = None
    top_features: np.ndarray | None = None
    top_shares: np.ndarray | None = None
    error_map: np.ndarray | None = None
    latent_distance: np.ndarray | None = None
    extreme: np.ndarray | None = None
    combined_score: np.ndarray | None = None
    total_distance: np.ndarray | None = None


# Latent directions with less than this share of the largest latent variance
# are left out of the latent distance (their inverse variance is all noise).
RCOND = 1e-6


@dataclasses.dataclass(frozen=True)
class LatentDistribution:
    """Where the latent vectors of normal rows lie: their mean and the inverse
    of their covariance, for the Mahalanobis distance of new rows' latents.

    Attributes:
        mean: float64 [latent_dim].
        precision: float64 [latent_dim, latent_dim], the pseudo-inverse of the
            covariance: directions with under ``RCOND`` times the largest
            variance (a dead latent unit) count for nothing.
        rows: how many rows the moments came from.
        distance_quantiles: the 101 percentiles of the validation rows'
            latent distances (``None`` in artifacts written before them).
        error_mean: the mean reconstruction error of the rows the moments
            came from (``None`` in artifacts written before it), the unit of
            the error in ``total_distance``.

    Example:
        >>> z = np.random.default_rng(0).normal(size=(10_000, 2)) * [1.0, 10.0]
        >>> dist = LatentDistribution.from_moments(*latent_moments(z))
        >>> dist.distance(np.array([[3.0, 0.0], [0.0, 30.0]])).round(1).tolist()
        [3.0, 3.0]
    """

    mean: np.ndarray
    precision: np.ndarray
    rows: int
    distance_quantiles: np.ndarray | None = None
    error_mean: float | None = None

    @classmethod
    def from_moments(cls, rows: int, total: np.ndarray, outer: np.ndarray) -> LatentDistribution:
        """From ``latent_moments`` (summed over batches)."""
        if rows < 2:
            raise ConfigError(f"The latent distribution needs at least 2 rows. Received: {rows}")
        mean = total / rows
        covariance = (outer - rows * np.outer(mean, mean)) / (rows - 1)
        covariance = (covariance + covariance.T) / 2
        precision = np.linalg.pinv(covariance, rcond=RCOND, hermitian=True)
        return cls(mean=mean, precision=precision, rows=int(rows))

    def distance(self, latent: np.ndarray) -> np.ndarray:
        """Mahalanobis distances of latent vectors [n, latent_dim], float64."""
        d = np.asarray(latent, dtype=np.float64) - self.mean
        return np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", d, self.precision, d), 0.0))

    def with_quantiles(self, latent: np.ndarray) -> LatentDistribution:
        """The same distribution with ``distance_quantiles``: the 101
        percentiles of the distances of these (validation) latent vectors,
        against which ``latent_score`` places a row's distance."""
        latent = np.asarray(latent, dtype=np.float64)
        latent = latent[np.isfinite(latent).all(axis=1)]
        if not len(latent):
            return self
        quantiles = np.quantile(self.distance(latent), np.linspace(0.0, 1.0, QUANTILES))
        return dataclasses.replace(self, distance_quantiles=quantiles)

    def total_distance(self, distance: np.ndarray, error: np.ndarray, values: int) -> np.ndarray:
        """``sqrt(distance**2 + max(1, values - latent_dim) * error / error_mean)``:
        a row's latent distance and its reconstruction error ``error`` (the
        mean over the row's ``values`` model values) as one distance.

        For a linear model with Gaussian rows (probabilistic PCA) its square is,
        up to a constant, minus twice the row's log-likelihood: the latent
        Mahalanobis distance squared (Hotelling's T²) plus the squared residual
        (SPE) over the residual variance per value, the values the latent does
        not explain counted ``values - latent_dim`` times. A normal row
        scores about ``sqrt(values)``; a row of normal shape but extreme size
        (reconstructed well, far out in the latent) and a row the model cannot
        reconstruct (near the latent centre, a large error) both score high.

        Example:
            >>> dist = LatentDistribution(np.zeros(1), np.ones((1, 1)), rows=10, error_mean=0.5)
            >>> dist.total_distance(np.array([0.0, 3.0, 0.0]), np.array([0.5, 0.5, 8.0]), 5).round(2).tolist()
            [2.0, 3.61, 8.0]
        """
        with np.errstate(over="ignore", invalid="ignore"):
            squared = np.square(np.asarray(distance, dtype=np.float64)) + self.error_weight(
                values
            ) * np.asarray(error, dtype=np.float64)
        return np.sqrt(np.where(np.isnan(squared), np.inf, squared))

    def error_weight(self, values: int) -> float:
        """The reconstruction error's weight in ``total_distance`` for rows of
        ``values`` model values: ``max(1, values - latent_dim) / error_mean``."""
        if self.error_mean is None:
            raise ConfigError("This latent distribution has no error_mean (written before total_distance).")
        return max(1, int(values) - len(self.mean)) / max(self.error_mean, np.finfo(np.float64).tiny)

    def to_dict(self) -> dict:
        return {
            "rows": self.rows,
            "mean": self.mean.tolist(),
            "precision": self.precision.tolist(),
            **(
                {"distance_quantiles": self.distance_quantiles.tolist()}
                if self.distance_quantiles is not None
                else {}
            ),
            **({"error_mean": self.error_mean} if self.error_mean is not None else {}),
        }


def latent_moments(latent: np.ndarray) -> tuple[int, np.ndarray, np.ndarray]:
    """(rows, sum, sum of outer products) of latent vectors, float64, to be
    added up over batches and passed to ``LatentDistribution.from_moments``."""
    z = np.asarray(latent, dtype=np.float64)
    return len(z), z.sum(axis=0), z.T @ z


def reconstruction_error(x: np.ndarray, reconstruction: np.ndarray) -> np.ndarray:
    """Mean squared error per row, float64; higher = more anomalous."""
    diff = np.asarray(reconstruction, dtype=np.float64) - np.asarray(x, dtype=np.float64)
    return np.mean(diff * diff, axis=1)


def threshold_from_contamination(errors: np.ndarray, contamination: float) -> float:
    """The (1 - contamination) quantile of ``errors``: the anomaly cut-off.

    Raises:
        ConfigError: contamination outside [0, 1) or no errors.
    """
    if not 0 <= contamination < 1:
        raise ConfigError(f"contamination must be in [0, 1). Received: contamination={contamination}")
    if len(errors) == 0:
        raise ConfigError("Cannot set a threshold from zero validation errors.")
    return float(np.quantile(errors, 1.0 - contamination))


def threshold_for_fpr(normal_errors: np.ndarray, target_fpr: float) -> float:
    """The lowest threshold that flags at most ``target_fpr`` of the rows labeled
    normal: the (1 - target_fpr) quantile of their errors, rounded up to an error.

    Raises:
        ConfigError: target_fpr outside [0, 1) or no normal rows.

    Example:
        >>> threshold_for_fpr(np.arange(101.0), 0.05)
        95.0
    """
    if not 0 <= target_fpr < 1:
        raise ConfigError(f"--target_fpr must be in [0, 1). Received: --target_fpr={target_fpr}")
    if len(normal_errors) == 0:
        raise ConfigError("--target_fpr needs validation rows labeled normal (0 or false); there are none.")
    # The order statistic at or above the quantile, so the rate is never exceeded.
    return float(np.quantile(normal_errors, 1.0 - target_fpr, method="higher"))


def threshold_best_f1(
    normal_errors: np.ndarray, anomaly_errors: np.ndarray, *, normal_weight: float = 1.0
) -> float:
    """The threshold with the best F1 of flagging rows labeled anomalous.

    Candidates are the midpoints between consecutive distinct errors (rows
    above a threshold are flagged); among equal F1, the highest threshold.

    Args:
        normal_errors: errors of rows labeled normal.
        anomaly_errors: errors of rows labeled anomalous.
        normal_weight: how many rows each normal row stands for (when the normal
            rows are a sample, e.g. the validation share of them, and the
            anomalies are all of them), so precision is that of the whole data.

    Raises:
        ConfigError: no row labeled anomalous, or none labeled normal.

    Example:
        >>> threshold_best_f1(np.array([1.0, 2.0, 3.0, 4.0]), np.array([3.5, 5.0, 6.0]))
        3.25
    """
    if len(anomaly_errors) == 0 or len(normal_errors) == 0:
        raise ConfigError(
            f"A best-F1 threshold needs validation rows labeled both normal and anomalous; there "
            f"are {len(normal_errors)} normal and {len(anomaly_errors)} anomalous. Label some rows, "
            "or use --target_fpr, --contamination or --threshold."
        )
    normal = np.sort(np.asarray(normal_errors, dtype=np.float64))
    anomaly = np.sort(np.asarray(anomaly_errors, dtype=np.float64))
    values = np.unique(np.concatenate([normal, anomaly]))
    # Thresholds below every error, between each pair, and at the largest.
    candidates = np.concatenate([[values[0] - 1.0], (values[:-1] + values[1:]) / 2, [values[-1]]])
    tp = len(anomaly) - np.searchsorted(anomaly, candidates, side="right")
    fp = normal_weight * (len(normal) - np.searchsorted(normal, candidates, side="right"))
    fn = len(anomaly) - tp
    f1 = np.divide(2 * tp, 2 * tp + fp + fn, out=np.zeros(len(candidates)), where=(2 * tp + fp + fn) > 0)
    best = np.flatnonzero(f1 == f1.max())[-1]
    return float(candidates[best])


def flag_rates(normal_errors, anomaly_errors, threshold: float, *, normal_weight: float = 1.0) -> dict:
    """What a threshold does to labeled rows: false-positive rate, recall,
    precision and F1 (``None`` where undefined; normal rows weighted as in
    ``threshold_best_f1``)."""
    normal = np.asarray(normal_errors, dtype=np.float64)
    anomaly = np.asarray(anomaly_errors, dtype=np.float64)
    tp = int((anomaly > threshold).sum())
    fp = int((normal > threshold).sum())
    weighted_fp = normal_weight * fp
    precision = tp / (tp + weighted_fp) if tp + weighted_fp else None
    recall = tp / len(anomaly) if len(anomaly) else None
    return {
        "fpr": fp / len(normal) if len(normal) else None,
        "recall": recall,
        "precision": precision,
        "f1": 2 * precision * recall / (precision + recall) if precision and recall else None,
        "normal_rows": int(len(normal)),
        "anomalous_rows": int(len(anomaly)),
    }


def anomaly_score(errors: np.ndarray, quantiles) -> np.ndarray:
    """The share of validation errors below each error: the validation errors'
    empirical CDF, interpolated between their stored quantiles (0 below the
    smallest, 1 above the largest). Comparable across models.

    Args:
        errors: reconstruction errors.
        quantiles: the validation errors' quantiles at evenly spaced levels from 0
            to 1 (the artifact stores the 101 percentiles).

    Example:
        >>> anomaly_score(np.array([-1.0, 5.0, 25.0, 150.0]), np.linspace(0, 100, 101)).tolist()
        [0.0, 0.05, 0.25, 1.0]
    """
    q = np.asarray(quantiles, dtype=np.float64)
    levels = np.linspace(0.0, 1.0, len(q))
    # Tied quantiles (many equal errors) make a jump; interpolate from its bottom.
    q_unique, first = np.unique(q, return_index=True)
    return np.interp(np.asarray(errors, dtype=np.float64), q_unique, levels[first], left=0.0, right=1.0)


def threshold_from_quantiles(quantiles, contamination: float) -> float:
    """The (1 - contamination) quantile interpolated from stored quantiles (as
    ``anomaly_score``), for a contamination chosen at scoring time.

    Example:
        >>> round(threshold_from_quantiles(np.linspace(0, 100, 101), 0.05), 9)
        95.0
    """
    if not 0 <= contamination < 1:
        raise ConfigError(f"contamination must be in [0, 1). Received: contamination={contamination}")
    q = np.asarray(quantiles, dtype=np.float64)
    return float(np.interp(1.0 - contamination, np.linspace(0.0, 1.0, len(q)), q))


def error_histogram(errors: np.ndarray, quantiles) -> np.ndarray:
    """Counts of errors at or below each stored quantile and between them: int64
    [len(quantiles) + 1]; summed over batches, it compares a whole run's error
    distribution with the validation one (``drift``)."""
    q = np.asarray(quantiles, dtype=np.float64)
    bins = np.searchsorted(q, np.asarray(errors, dtype=np.float64), side="left")
    return np.bincount(bins, minlength=len(q) + 1).astype(np.int64)


def drift(
    histogram: np.ndarray,
    quantiles,
    *,
    max_ks: float = math.inf,
    max_median_ratio: float = math.inf,
) -> dict:
    """How a run's errors compare with the validation errors.

    Args:
        histogram: ``error_histogram`` summed over the run.
        quantiles: the validation quantiles it was counted against.
        max_ks, max_median_ratio: the bounds past which ``warning`` is set.

    Returns:
        ``rows``; ``ks_statistic``: the largest gap between the two empirical
        CDFs, taken at the stored quantiles (0: same distribution, 1: disjoint);
        ``median_ratio``: the run's median error (interpolated between the
        quantiles) over the validation median; the bounds; ``warning``: why the
        run is past them, or ``None``.

    Example:
        >>> q = np.linspace(0, 100, 101)
        >>> d = drift(error_histogram(np.linspace(0, 100, 1001), q), q)
        >>> round(d["ks_statistic"], 3), round(d["median_ratio"], 2)
        (0.001, 1.0)
    """
    q = np.asarray(quantiles, dtype=np.float64)
    levels = np.linspace(0.0, 1.0, len(q))
    n = int(histogram.sum())
    bounds = {"max_ks": max_ks, "max_median_ratio": max_median_ratio}
    if n == 0:
        return {"rows": 0, "ks_statistic": None, "median_ratio": None, **bounds, "warning": None}
    # Share of the run's errors at or below each validation quantile, against
    # the validation share there (the quantile's level).
    cdf = np.cumsum(histogram)[: len(q)] / n
    ks = float(np.max(np.abs(cdf - levels)))
    below, above = cdf[0], cdf[-1]
    if below >= 0.5:
        median = float(q[0])
    elif above < 0.5:
        median = float("inf")
    else:
        rising = np.concatenate([[True], np.diff(cdf) > 0])
        median = float(np.interp(0.5, cdf[rising], q[rising]))
    val_median = float(np.interp(0.5, levels, q))
    ratio = median / val_median if val_median > 0 else None
    reasons = []
    if ks > max_ks:
        reasons.append(f"KS statistic {ks:.3f} > {max_ks}")
    if ratio is not None and not (1 / max_median_ratio <= ratio <= max_median_ratio):
        reasons.append(
            f"median error {ratio:.3g}x the validation median, outside [1/{max_median_ratio:g}, {max_median_ratio:g}]"
        )
    return {
        "rows": n,
        "ks_statistic": ks,
        "median_ratio": ratio,
        **bounds,
        "warning": "; ".join(reasons) or None,
    }


TOP_FEATURE = pa.struct([("feature", pa.string()), ("share", pa.float32())])


def list_column(rows: np.ndarray, null: np.ndarray | None = None) -> pa.ListArray:
    """Rows [n, k] as a list<...> column of n lists of k values, without copying
    per row; rows where ``null`` is True are null.

    Example:
        >>> list_column(np.zeros((2, 3), np.float32), null=np.array([False, True])).to_pylist()
        [[0.0, 0.0, 0.0], None]
    """
    n, k = rows.shape
    if null is None or not null.any():
        offsets = pa.array(np.arange(0, (n + 1) * k, k, dtype=np.int32))
        return pa.ListArray.from_arrays(offsets, pa.array(rows.ravel()))
    # Null rows get empty slots: pyarrow before 25 cannot write to Parquet a list
    # whose null entries hold values ("Lists with non-zero length null components").
    lengths = np.where(null, 0, k).astype(np.int32)
    offsets = pa.array(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32))
    return pa.ListArray.from_arrays(offsets, pa.array(rows[~null].ravel()), mask=pa.array(null))


def top_features_column(index: np.ndarray, shares: np.ndarray, names) -> pa.ListArray:
    """Per row, a list of ``{feature, share}``, largest share first.

    Example:
        >>> top_features_column(np.array([[1, 0]]), np.array([[0.75, 0.25]], np.float32), ["a", "b"]).to_pylist()
        [[{'feature': 'b', 'share': 0.75}, {'feature': 'a', 'share': 0.25}]]
    """
    n, k = index.shape
    feature = pa.array(list(names), pa.string()).take(pa.array(index.ravel().astype(np.int32)))
    items = pa.StructArray.from_arrays([feature, pa.array(shares.ravel())], fields=list(TOP_FEATURE))
    return pa.ListArray.from_arrays(pa.array(np.arange(0, (n + 1) * k, k, dtype=np.int32)), items)


def score_fields(
    *,
    top_k: int = 0,
    error_map: bool = False,
    latent_distance: bool = True,
    imputed: bool = False,
    combined: bool = False,
    total: bool = False,
) -> list[pa.Field]:
    """The score columns' fields, in output order (``top_features`` only when
    ``top_k``, ``error_map`` only when asked for, ``latent_distance`` unless the
    model has no latent distribution, ``combined_score`` for a model with the
    latent distances' quantiles, ``total_distance`` for a model with their
    ``error_mean``, ``imputed_values`` for a model that imputes missing
    values)."""
    return (
        [pa.field("latent", pa.list_(pa.float32()))]
        + ([pa.field("latent_distance", pa.float64())] if latent_distance else [])
        + [
            pa.field("reconstruction_error", pa.float64()),
            pa.field("anomaly_score", pa.float64()),
        ]
        + ([pa.field("combined_score", pa.float64())] if combined else [])
        + ([pa.field("total_distance", pa.float64())] if total else [])
        + [pa.field("is_anomaly", pa.bool_())]
        + ([pa.field("imputed_values", pa.int32())] if imputed else [])
        + ([pa.field("top_features", pa.list_(TOP_FEATURE))] if top_k else [])
        + ([pa.field("error_map", pa.list_(pa.float32()))] if error_map else [])
    )


def score_columns(scores: Scores, feature_names, imputed: np.ndarray | None = None) -> list[pa.Array]:
    """``scores`` as the columns of ``score_fields`` (from a scorer with
    validation quantiles; ``latent_distance``, ``top_features`` and ``error_map``
    when it made them; ``imputed_values`` when ``imputed`` is given). The
    latent of an ``extreme`` row is null."""
    columns = [list_column(scores.latent, null=scores.extreme)]
    if scores.latent_distance is not None:
        columns.append(pa.array(scores.latent_distance))
    columns += [pa.array(scores.reconstruction_error), pa.array(scores.anomaly_score)]
    if scores.combined_score is not None:
        columns.append(pa.array(scores.combined_score))
    if scores.total_distance is not None:
        columns.append(pa.array(scores.total_distance))
    columns.append(pa.array(scores.is_anomaly))
    if imputed is not None:
        columns.append(pa.array(np.asarray(imputed, dtype=np.int32)))
    if scores.top_features is not None:
        columns.append(top_features_column(scores.top_features, scores.top_shares, feature_names))
    if scores.error_map is not None:
        columns.append(list_column(scores.error_map))
    return columns


def row_errors(width: int, blocks, sizes):
    """The reconstruction error of rows as a TensorFlow function of the
    normalized input ``x`` and the reconstruction (float32 [n, width]):
    returns (error float64 [n], per-feature error float64 [n, n_features]
    or ``None``).

    Without categorical blocks the error is the mean squared error over the
    values (and ``None`` for the per-feature part: ``Scorer`` computes the
    shares overflow-safely itself). With them (``blocks``: (first value,
    size) of each softmax block), as ``autoenc.models.ReconstructionLoss``:
    the mean over the columns of a numeric value's squared error and a
    categorical column's cross-entropy divided by ``log(size)``.
    """
    import tensorflow as tf

    from autoenc.models import MIN_PROBABILITY

    if not blocks:

        def plain(x, reconstruction, with_features=False):
            diff64 = tf.cast(reconstruction - x, tf.float64)
            return tf.reduce_mean(diff64 * diff64, axis=1), None

        return plain
    mask = np.ones(width)
    for start, size in blocks:
        mask[start : start + size] = 0.0
    columns = float(mask.sum() + len(blocks))
    numeric = tf.constant(mask, tf.float64)
    # values -> features, for the numeric values; blocks -> features.
    feature_of = np.repeat(np.arange(len(sizes)), sizes)
    to_features = np.zeros((width, len(sizes)))
    to_features[np.arange(width), feature_of] = mask
    block_to_feature = np.zeros((len(blocks), len(sizes)))
    block_to_feature[np.arange(len(blocks)), [feature_of[start] for start, _ in blocks]] = 1.0
    to_features, block_to_feature = tf.constant(to_features), tf.constant(block_to_feature)

    def categorical(x, reconstruction, with_features=False):
        x64, r64 = tf.cast(x, tf.float64), tf.cast(reconstruction, tf.float64)
        squared = tf.square(r64 - x64) * numeric
        entropies = tf.stack(
            [
                -tf.math.log(
                    tf.maximum(tf.reduce_sum(x64[:, a : a + k] * r64[:, a : a + k], axis=1), MIN_PROBABILITY)
                )
                / math.log(k)
                for a, k in blocks
            ],
            axis=1,
        )
        error = (tf.reduce_sum(squared, axis=1) + tf.reduce_sum(entropies, axis=1)) / columns
        if not with_features:
            return error, None
        return error, tf.matmul(squared, to_features) + tf.matmul(entropies, block_to_feature)

    return categorical


class Scorer:
    """Scores raw feature rows with a trained autoencoder.

    Args:
        autoencoder: the trained Keras autoencoder.
        normalizer: the training normalization.
        threshold: reconstruction errors above it are anomalies.
        quantiles: the validation errors' quantiles, for ``anomaly_score``.
        feature_sizes: values per feature in model order (1 for a scalar; an
            image's pixel count), to attribute the error to features. Default:
            every feature a scalar.
        top_k: how many features with the largest share of each row's error to
            return (0: none).
        error_map: also return each value's squared error (for image and
            sequence features: a per-pixel or per-step map).
        latent_distribution: a ``LatentDistribution``, to return each row's
            ``latent_distance``; ``None`` for none.

    Example:
        >>> from autoenc.models import build_dense
        >>> scorer = Scorer(build_dense(3, latent_dim=1), Normalizer(np.zeros(3), np.ones(3)), 1.0, top_k=2)
        >>> scores = scorer.score(np.ones((5, 3)))
        >>> scores.latent.shape, scores.reconstruction_error.shape, scores.top_features.shape
        ((5, 1), (5,), (5, 2))
    """

    def __init__(
        self,
        autoencoder,
        normalizer: Normalizer,
        threshold: float,
        quantiles=None,
        *,
        feature_sizes=None,
        top_k: int = 0,
        error_map: bool = False,
        latent_distribution: LatentDistribution | None = None,
    ):
        import tensorflow as tf

        from autoenc.models import categorical_blocks, scoring_model

        self.normalizer = normalizer
        self.threshold = float(threshold)
        self.quantiles = None if quantiles is None else np.asarray(quantiles, dtype=np.float64)
        model = scoring_model(autoencoder)
        width = autoencoder.inputs[0].shape[-1]
        sizes = list(feature_sizes) if feature_sizes is not None else [1] * width
        if sum(sizes) != width:
            raise ConfigError(f"feature_sizes add up to {sum(sizes)}, the model takes {width} values a row.")
        self.top_k = max(0, min(int(top_k), len(sizes)))
        self.feature_sizes = sizes
        self.batch_rows = max(1, min(MODEL_BATCH_ROWS, MODEL_BATCH_BYTES // (4 * width)))
        # values -> features: a 0/1 matrix summing each feature's values (None: all scalars).
        to_features = None
        if len(sizes) != width:
            matrix = np.zeros((width, len(sizes)), np.float32)
            matrix[np.arange(width), np.repeat(np.arange(len(sizes)), sizes)] = 1.0
            to_features = tf.constant(matrix)
        top_k = self.top_k
        self.latent_distribution = latent_distribution
        if latent_distribution is not None:
            latent_mean = tf.constant(latent_distribution.mean, tf.float64)
            precision = tf.constant(latent_distribution.precision, tf.float64)

        blocks = categorical_blocks(autoencoder)
        self.categorical_blocks = blocks
        errors = row_errors(width, blocks, sizes)

        def predict(x):
            latent, reconstruction = model(x, training=False)
            # The error in the graph, not in numpy: no reconstruction copied out.
            # The difference of float32 values, squared and averaged in float64.
            diff = tf.reshape(reconstruction, tf.shape(x)) - x
            error, per_feature = errors(x, tf.reshape(reconstruction, tf.shape(x)), with_features=bool(top_k))
            out = {"latent": latent, "error": error}
            if top_k and per_feature is not None:
                share = tf.math.divide_no_nan(per_feature, tf.reduce_sum(per_feature, axis=1, keepdims=True))
                out["top_share"], out["top_index"] = tf.math.top_k(tf.cast(share, tf.float32), k=top_k)
            elif top_k:
                # Shares are scale-free: divide each row by its largest
                # difference first, so squaring cannot overflow float32.
                unit = tf.math.divide_no_nan(diff, tf.reduce_max(tf.abs(diff), axis=1, keepdims=True))
                squared = unit * unit
                per_feature = squared if to_features is None else tf.matmul(squared, to_features)
                share = tf.math.divide_no_nan(per_feature, tf.reduce_sum(per_feature, axis=1, keepdims=True))
                out["top_share"], out["top_index"] = tf.math.top_k(share, k=top_k)
            if error_map:
                out["error_map"] = diff * diff
            if latent_distribution is not None:
                d = tf.cast(latent, tf.float64) - latent_mean
                squared = tf.reduce_sum(tf.matmul(d, precision) * d, axis=1)
                out["latent_distance"] = tf.sqrt(tf.maximum(squared, 0.0))
            return out

        # One trace for every batch size: the row dimension is left unknown.
        self._predict = tf.function(
            predict,
            input_signature=[tf.TensorSpec([None, width], tf.float32)],
            reduce_retracing=True,
        )

    def score(self, features: np.ndarray) -> Scores:
        """Scores rows of raw (not normalized) features, float64 [n, n_features]."""
        return self.score_normalized(self.normalizer.transform(features))

    def score_normalized(self, x: np.ndarray) -> Scores:
        """Scores rows that are already normalized, float32 [n, n_features].

        A row with a non-finite value here (a raw value whose normalized size
        overflowed float32), or whose scores overflow, is an ``extreme`` row:
        a certain anomaly, never NaN (see ``Scores``).
        """
        x = np.asarray(x, dtype=np.float32)
        finite_input = np.isfinite(x).all(axis=1)
        model_input = x if finite_input.all() else np.where(finite_input[:, None], x, np.float32(0))
        parts = {}
        for start in range(0, max(len(x), 1), self.batch_rows):
            for name, value in self._predict(model_input[start : start + self.batch_rows]).items():
                parts.setdefault(name, []).append(value.numpy())
        out = {name: np.concatenate(values) for name, values in parts.items()}
        error = out["error"]
        latent = out["latent"].astype(np.float32, copy=False)
        extreme = ~finite_input | ~np.isfinite(error) | ~np.isfinite(latent).all(axis=1)
        distance = out.get("latent_distance")
        if distance is not None:
            extreme |= ~np.isfinite(distance)
        top_index, top_share, error_map = out.get("top_index"), out.get("top_share"), out.get("error_map")
        if extreme.any():
            rows = np.flatnonzero(extreme)
            error = error.copy()
            error[rows] = np.inf
            latent = latent.copy()
            latent[rows] = np.nan
            if distance is not None:
                distance = distance.copy()
                distance[rows] = np.inf
            if top_index is not None:
                top_index, top_share = top_index.copy(), top_share.copy()
                top_index[rows], top_share[rows] = self._extreme_top(x[rows])
            if error_map is not None:
                error_map = error_map.copy()
                with np.errstate(over="ignore", invalid="ignore"):
                    squared = np.square(x[rows].astype(np.float64))
                    error_map[rows] = np.where(np.isfinite(squared), squared, np.inf).astype(np.float32)
        score = None if self.quantiles is None else anomaly_score(error, self.quantiles)
        combined = None
        if (
            score is not None
            and distance is not None
            and self.latent_distribution.distance_quantiles is not None
        ):
            combined = np.maximum(score, anomaly_score(distance, self.latent_distribution.distance_quantiles))
        total = None
        if distance is not None and self.latent_distribution.error_mean is not None:
            total = self.latent_distribution.total_distance(distance, error, x.shape[1])
        return Scores(
            latent=latent,
            reconstruction_error=error,
            is_anomaly=(error > self.threshold) | extreme,
            anomaly_score=score,
            combined_score=combined,
            total_distance=total,
            top_features=top_index,
            top_shares=top_share,
            error_map=error_map,
            latent_distance=distance,
            extreme=extreme,
        )

    def _extreme_top(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Top features of extreme rows (normalized input [m, width]): the
        features holding a non-finite value share the error equally; where
        none does (the model overflowed), shares follow each feature's largest
        normalized value."""
        with np.errstate(over="ignore", invalid="ignore"):
            size = np.abs(x.astype(np.float64))
        size = np.where(np.isnan(size), np.inf, size)
        per_feature = np.stack(
            [part.max(axis=1) for part in np.split(size, np.cumsum(self.feature_sizes)[:-1], axis=1)], axis=1
        )
        infinite = np.isinf(per_feature)
        weight = np.where(infinite.any(axis=1, keepdims=True), infinite.astype(np.float64), per_feature)
        total = weight.sum(axis=1, keepdims=True)
        share = np.divide(weight, total, out=np.zeros_like(weight), where=total > 0)
        order = np.argsort(-share, axis=1, kind="stable")[:, : self.top_k]
        return order.astype(np.int32), np.take_along_axis(share, order, axis=1).astype(np.float32)
