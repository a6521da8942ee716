"""Scoring: latent vectors, reconstruction errors, thresholds, anomaly flags.

Direction: ``reconstruction_error`` is higher for more anomalous rows
(scikit-learn's ``score_samples`` points the other way; PyOD agrees with us).

Example:
    >>> import numpy as np
    >>> reconstruction_error(np.zeros((2, 2)), np.array([[0.0, 0.0], [1.0, 3.0]])).tolist()
    [0.0, 5.0]
    >>> threshold_from_contamination(np.arange(101.0), 0.1)
    90.0
"""

from __future__ import annotations

import dataclasses

import numpy as np

from autoenc.errors import ConfigError
from autoenc.preprocessing import Normalizer

# Rows per model call; bounds memory for large batches, big enough to keep the
# per-call overhead negligible.
MODEL_BATCH_ROWS = 8192


@dataclasses.dataclass(frozen=True)
class Scores:
    """Scores of a batch of rows.

    Attributes:
        latent: float32 [n, latent_dim], the encoder's output.
        reconstruction_error: float64 [n], mean squared error over the features in
            normalized units; higher = more anomalous.
        is_anomaly: bool [n], ``reconstruction_error > threshold``.
    """

    latent: np.ndarray
    reconstruction_error: np.ndarray
    is_anomaly: np.ndarray


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


class Scorer:
    """Scores raw feature rows with a trained autoencoder.

    Args:
        autoencoder: the trained Keras autoencoder.
        normalizer: the training normalization.
        threshold: reconstruction errors above it are anomalies.

    Example:
        >>> from autoenc.models import build_dense
        >>> scorer = Scorer(build_dense(3, latent_dim=1), Normalizer(np.zeros(3), np.ones(3)), 1.0)
        >>> scores = scorer.score(np.ones((5, 3)))
        >>> scores.latent.shape, scores.reconstruction_error.shape
        ((5, 1), (5,))
    """

    def __init__(self, autoencoder, normalizer: Normalizer, threshold: float):
        import tensorflow as tf

        from autoenc.models import scoring_model

        self.normalizer = normalizer
        self.threshold = float(threshold)
        model = scoring_model(autoencoder)
        n_features = autoencoder.inputs[0].shape[-1]

        def predict(x):
            latent, reconstruction = model(x, training=False)
            # The error in the graph, not in numpy: no reconstruction copied out.
            # The difference of float32 values, squared and averaged in float64.
            diff = tf.cast(tf.reshape(reconstruction, tf.shape(x)) - x, tf.float64)
            return latent, tf.reduce_mean(diff * diff, axis=1)

        # One trace for every batch size: the row dimension is left unknown.
        self._predict = tf.function(
            predict,
            input_signature=[tf.TensorSpec([None, n_features], tf.float32)],
            reduce_retracing=True,
        )

    def score(self, features: np.ndarray) -> Scores:
        """Scores rows of raw (not normalized) features, float64 [n, n_features]."""
        return self.score_normalized(self.normalizer.transform(features))

    def score_normalized(self, x: np.ndarray) -> Scores:
        """Scores rows that are already normalized, float32 [n, n_features]."""
        latents, errors = [], []
        for start in range(0, max(len(x), 1), MODEL_BATCH_ROWS):
            part = x[start : start + MODEL_BATCH_ROWS]
            latent, error = self._predict(part)
            latents.append(latent.numpy())
            errors.append(error.numpy())
        error = np.concatenate(errors)
        return Scores(
            latent=np.concatenate(latents).astype(np.float32, copy=False),
            reconstruction_error=error,
            is_anomaly=error > self.threshold,
        )
