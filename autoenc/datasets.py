"""Built-in example data: the article's four-feature curve.

``Z ~ U(-5, 5)`` and ``X = [Z^2, Z^3, sin Z, exp Z]``: four features that lie on a
one-dimensional curve, so an autoencoder with a 1-wide latent can reconstruct
them almost exactly while PCA with one component cannot.

Example:
    >>> table = article_table(5, seed=0)
    >>> table.column_names
    ['id', 'z', 'x1', 'x2', 'x3', 'x4']
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

FEATURES = ("x1", "x2", "x3", "x4")


def article_features(z: np.ndarray) -> np.ndarray:
    """``[Z^2, Z^3, sin Z, exp Z]`` as float64 [n, 4]."""
    return np.stack([z**2, z**3, np.sin(z), np.exp(z)], axis=1)


def article_table(n_rows: int = 10_000, *, seed: int = 0, id_prefix: str = "row") -> pa.Table:
    """The article's dataset as a table: ``id`` (string), ``z`` (the hidden
    coordinate, not a feature) and the features ``x1..x4`` (float64)."""
    rng = np.random.default_rng(seed)
    z = rng.uniform(-5.0, 5.0, n_rows)
    x = article_features(z)
    columns = {"id": [f"{id_prefix}-{i:06d}" for i in range(n_rows)], "z": z}
    columns.update({name: x[:, j] for j, name in enumerate(FEATURES)})
    return pa.table(columns)


def planted_anomalies(n_rows: int, *, seed: int = 1) -> pa.Table:
    """Rows off the curve: each feature drawn independently over its normal range."""
    rng = np.random.default_rng(seed)
    z = rng.uniform(-5.0, 5.0, (n_rows, 4))
    x = np.stack([z[:, 0] ** 2, z[:, 1] ** 3, np.sin(z[:, 2]), np.exp(z[:, 3])], axis=1)
    columns = {"id": [f"anomaly-{i:04d}" for i in range(n_rows)], "z": np.full(n_rows, np.nan)}
    columns.update({name: x[:, j] for j, name in enumerate(FEATURES)})
    return pa.table(columns)
