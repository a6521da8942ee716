"""Keras model factories.

Every factory returns a functional ``keras.Model`` mapping normalized features to
their reconstruction, with the bottleneck layer named ``"latent"``.
``scoring_model`` turns any of them into a model with two outputs, ``[latent,
reconstruction]``, so scoring runs the network once per batch for both.

Example:
    >>> model = build_dense(4, latent_dim=1, hidden_units=(8, 8))
    >>> [tuple(t.shape) for t in scoring_model(model).outputs]
    [(None, 1), (None, 4)]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import keras

from autoenc.errors import ConfigError

LATENT_LAYER = "latent"


def build_dense(
    n_features: int,
    *,
    latent_dim: int,
    hidden_units: Sequence[int] = (100, 100, 100),
    activation: str = "relu",
) -> keras.Model:
    """A symmetric fully-connected autoencoder.

    ``n_features -> hidden_units -> latent_dim -> reversed(hidden_units) -> n_features``.
    The latent and output layers are linear: the latent is an unconstrained code,
    and the output reconstructs z-scored features, which can take any sign.

    Args:
        n_features: width of the input.
        latent_dim: width of the bottleneck (the latent vector).
        hidden_units: encoder layer widths, mirrored in the decoder.
        activation: activation of the hidden layers (any Keras activation name).

    Returns:
        The uncompiled ``keras.Model``.

    Raises:
        ConfigError: a width is not a positive integer or the activation is unknown.
    """
    if n_features < 1:
        raise ConfigError(f"n_features must be >= 1. Received: n_features={n_features}")
    if latent_dim < 1:
        raise ConfigError(f"latent_dim must be >= 1. Received: latent_dim={latent_dim}")
    if any(u < 1 for u in hidden_units):
        raise ConfigError(f"hidden_units must all be >= 1. Received: hidden_units={list(hidden_units)}")
    try:
        keras.activations.get(activation)
    except ValueError as e:
        raise ConfigError(
            f"Unknown activation. Received: activation={activation!r}; expected a Keras "
            "activation name such as 'relu', 'gelu', 'elu' or 'tanh'."
        ) from e
    inputs = keras.Input(shape=(n_features,), name="features")
    x = inputs
    for i, units in enumerate(hidden_units):
        x = keras.layers.Dense(units, activation=activation, name=f"encoder_{i}")(x)
    latent = keras.layers.Dense(latent_dim, name=LATENT_LAYER)(x)
    x = latent
    for i, units in enumerate(reversed(hidden_units)):
        x = keras.layers.Dense(units, activation=activation, name=f"decoder_{i}")(x)
    outputs = keras.layers.Dense(n_features, name="reconstruction")(x)
    return keras.Model(inputs, outputs, name="dense_autoencoder")


# Model kinds by the name used in --model and in the artifact metadata.
BUILDERS: dict[str, Callable[..., keras.Model]] = {"dense": build_dense}


def scoring_model(autoencoder: keras.Model) -> keras.Model:
    """The same network with two outputs: ``[latent, reconstruction]``."""
    latent = autoencoder.get_layer(LATENT_LAYER).output
    return keras.Model(autoencoder.inputs, [latent, autoencoder.outputs[0]])
