"""Spectral coordinates of a sample: the starting latent for a fit.

A narrow bottleneck trained from random weights often settles into a folded
encoding (stretches of the data mapped onto the latent in opposite directions,
joined by steep jumps), a local minimum that further training does not leave.
The leading non-trivial eigenvectors of a neighbourhood graph (Laplacian
eigenmaps; UMAP starts from them for the same reason) vary smoothly and
monotonically along the data: on a curve, the first one orders the points along
it. ``autoenc.training`` fits the encoder to these coordinates before the
autoencoder is trained as a whole.

Numpy only: the graph of a sample of a few thousand rows is dense and small.

Example:
    >>> import numpy as np
    >>> t = np.linspace(0.0, 3.0, 200)
    >>> curve = np.stack([np.cos(t), np.sin(t), t**2], axis=1)
    >>> coords = spectral_coordinates(curve, 1)
    >>> coords.shape
    (200, 1)
    >>> order = np.argsort(coords[:, 0])  # the points' order along the coordinate
    >>> bool(abs(np.corrcoef(order, np.arange(200))[0, 1]) > 0.999)
    True
"""

from __future__ import annotations

import numpy as np

from autoenc.errors import ConfigError


def spectral_coordinates(x: np.ndarray, dim: int, *, n_neighbors: int = 10) -> np.ndarray:
    """The first ``dim`` non-trivial Laplacian-eigenmap coordinates of the rows of ``x``.

    The graph joins every row to its ``n_neighbors`` nearest rows (Euclidean),
    symmetrized, plus the edges of a minimum spanning tree, so it is always
    connected (a sparse stretch of the data cannot split it into pieces whose
    indicator vectors would crowd out the coordinates). Edges have weight 1.
    Each returned coordinate is replaced by its rank, scaled to zero mean and unit
    variance: the order along the data is what matters, and ranks spread it
    evenly instead of crowding the ends as the raw eigenvectors do.

    Args:
        x: rows [n, n_features], already normalized; n should be a few thousand
            at most (memory and time grow as n^2 and n^3).
        dim: coordinates wanted; needs ``dim < n - 1``.
        n_neighbors: neighbours per row in the graph.

    Returns:
        float64 [n, dim].

    Raises:
        ConfigError: too few rows for ``dim`` coordinates.
    """
    x = np.asarray(x, dtype=np.float64)
    n = len(x)
    if dim < 1 or n < dim + 2:
        raise ConfigError(
            f"Spectral coordinates need more rows than coordinates + 1. Received: {n} rows for dim={dim}"
        )
    k = min(n_neighbors, n - 1)
    sq = np.einsum("ij,ij->i", x, x)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2.0 * (x @ x.T), 0.0)
    np.fill_diagonal(d2, np.inf)
    w = np.zeros((n, n))
    neighbors = np.argpartition(d2, k - 1, axis=1)[:, :k]
    w[np.repeat(np.arange(n), k), neighbors.ravel()] = 1.0
    _add_spanning_tree(d2, w)
    w = np.maximum(w, w.T)
    # Top eigenvectors of D^-1/2 W D^-1/2 give those of the random-walk Laplacian.
    inv_sqrt_degree = 1.0 / np.sqrt(w.sum(axis=1))
    _, vectors = np.linalg.eigh(inv_sqrt_degree[:, None] * w * inv_sqrt_degree[None, :])
    # eigh sorts ascending; the last vector is the trivial (constant) one.
    coords = vectors[:, -2 : -dim - 2 : -1] * inv_sqrt_degree[:, None]
    ranks = np.argsort(np.argsort(coords, axis=0, kind="stable"), axis=0).astype(np.float64)
    return (ranks - ranks.mean(axis=0)) / ranks.std(axis=0)


def _add_spanning_tree(d2: np.ndarray, w: np.ndarray) -> None:
    """Sets ``w`` to 1 on the edges of a minimum spanning tree of the distances ``d2`` (Prim)."""
    n = len(d2)
    in_tree = np.zeros(n, dtype=bool)
    in_tree[0] = True
    best = d2[0].copy()
    parent = np.zeros(n, dtype=np.int64)
    for _ in range(n - 1):
        j = int(np.argmin(np.where(in_tree, np.inf, best)))
        in_tree[j] = True
        w[j, parent[j]] = 1.0
        closer = d2[j] < best
        parent[closer] = j
        best = np.minimum(best, d2[j])
