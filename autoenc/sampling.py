"""New records from a variational autoencoder: draw latent vectors from the
prior N(0, I), decode them and undo the normalization.

Example:
    >>> import numpy as np
    >>> from autoenc.models import build_vae
    >>> from autoenc.preprocessing import Normalizer
    >>> model = build_vae(3, latent_dim=2, hidden_units=(8,))
    >>> z, x = generate(model, Normalizer(np.zeros(3), np.ones(3)), 5, seed=0)
    >>> z.shape, x.shape
    ((5, 2), (5, 3))
"""

from __future__ import annotations

import numpy as np

from autoenc.errors import ConfigError
from autoenc.preprocessing import Normalizer


def generate(model, normalizer: Normalizer, n: int, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Draws ``n`` records from a VAE built by ``autoenc.models.build_vae``.

    Returns:
        The latent draws, float32 [n, latent_dim], and the decoded records in raw
        units, float64 [n, n_features].

    Raises:
        ConfigError: ``n`` is not positive, or the model has no decoder (it is not
            a variational autoencoder).
    """
    from autoenc.models import DECODER

    if n < 1:
        raise ConfigError(f"The number of records to sample must be >= 1. Received: {n}")
    try:
        decoder = model.get_layer(DECODER)
    except ValueError as e:
        raise ConfigError(
            f"Model '{model.name}' has no '{DECODER}' to sample from: only models trained "
            "with --model=vae can generate records."
        ) from e
    latent_dim = decoder.inputs[0].shape[-1]
    z = np.random.default_rng(seed).standard_normal((n, latent_dim)).astype(np.float32)
    decoded = np.concatenate([decoder(z[i : i + 8192], training=False).numpy() for i in range(0, n, 8192)])
    return z, normalizer.inverse_transform(decoded)
