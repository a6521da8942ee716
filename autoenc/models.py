"""Keras model factories, one per model kind (``--model``).

Every factory returns a functional ``keras.Model`` mapping normalized features to
their reconstruction, with the bottleneck layer named ``"latent"``.
``scoring_model`` turns any of them into a model with two outputs, ``[latent,
reconstruction]``, so scoring runs the network once per batch for both.

Kinds: ``dense`` (the symmetric fully-connected autoencoder), ``sparse`` (the
same with a ReLU latent under an L1 activity penalty), ``vae`` (variational:
the latent is the posterior mean; sampling happens only in training), ``pca``
(linear, weights fitted by SVD in ``autoenc.training``, not by gradient
descent).

Example:
    >>> model = build_dense(4, latent_dim=1, hidden_units=(8, 8))
    >>> [tuple(t.shape) for t in scoring_model(model).outputs]
    [(None, 1), (None, 4)]
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import keras
import numpy as np

from autoenc.errors import ConfigError

LATENT_LAYER = "latent"
DECODER = "decoder"


def build_dense(
    n_features: int,
    *,
    latent_dim: int,
    hidden_units: Sequence[int] = (100, 100, 100),
    activation: str = "relu",
    output_activation: str | None = None,
    categorical_blocks: Sequence[tuple[int, int]] = (),
    **_,
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
    inputs, x = _encoder(n_features, latent_dim, hidden_units, activation)
    latent = keras.layers.Dense(latent_dim, name=LATENT_LAYER)(x)
    outputs = _decoder_stack(
        latent, n_features, hidden_units, activation, output_activation, categorical_blocks
    )
    return keras.Model(inputs, outputs, name="dense_autoencoder")


def build_sparse(
    n_features: int,
    *,
    latent_dim: int,
    hidden_units: Sequence[int] = (100, 100, 100),
    activation: str = "relu",
    sparsity: float = 1e-4,
    output_activation: str | None = None,
    categorical_blocks: Sequence[tuple[int, int]] = (),
    **_,
) -> keras.Model:
    """A sparse autoencoder: ``build_dense`` with a ReLU latent whose activity
    carries an L1 penalty of weight ``sparsity`` (mean over rows of the summed
    absolute latent values), so most latent units are zero for a given row.

    Raises:
        ConfigError: as ``build_dense``, or ``sparsity`` is negative.
    """
    if not sparsity >= 0:
        raise ConfigError(f"sparsity must be >= 0. Received: sparsity={sparsity!r}")
    inputs, x = _encoder(n_features, latent_dim, hidden_units, activation)
    latent = keras.layers.Dense(
        latent_dim,
        activation="relu",
        activity_regularizer=keras.regularizers.L1(sparsity),
        name=LATENT_LAYER,
    )(x)
    outputs = _decoder_stack(
        latent, n_features, hidden_units, activation, output_activation, categorical_blocks
    )
    return keras.Model(inputs, outputs, name="sparse_autoencoder")


@keras.saving.register_keras_serializable(package="autoenc")
class Sampling(keras.layers.Layer):
    """The VAE's reparameterization: ``z = mean + exp(log_var / 2) * eps`` in
    training, ``z = mean`` otherwise (so scoring is deterministic). Adds
    ``beta * KL(q(z|x) || N(0, I)) / n_features`` to the model's losses, which
    puts the KL term on the scale of the per-feature mean squared error.
    """

    def __init__(self, beta: float = 1.0, n_features: int = 1, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.beta = float(beta)
        self.n_features = int(n_features)
        self.seed = seed
        self._seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs, training=None):
        mean, log_var = inputs
        kl = -0.5 * keras.ops.sum(1.0 + log_var - keras.ops.square(mean) - keras.ops.exp(log_var), axis=-1)
        self.add_loss(self.beta * keras.ops.mean(kl) / self.n_features)
        if not training:
            return mean
        eps = keras.random.normal(keras.ops.shape(mean), seed=self._seed_generator)
        return mean + keras.ops.exp(0.5 * log_var) * eps

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        return {**super().get_config(), "beta": self.beta, "n_features": self.n_features, "seed": self.seed}


def build_vae(
    n_features: int,
    *,
    latent_dim: int,
    hidden_units: Sequence[int] = (100, 100, 100),
    activation: str = "relu",
    beta: float = 1.0,
    output_activation: str | None = None,
    categorical_blocks: Sequence[tuple[int, int]] = (),
    **_,
) -> keras.Model:
    """A variational autoencoder.

    The encoder gives a posterior mean (the ``"latent"`` layer: the latent vector
    scoring reports) and log-variance; ``Sampling`` draws from it in training
    and passes the mean through otherwise; the decoder is a nested model named
    ``"decoder"`` that ``autoenc sample`` feeds draws from N(0, I).

    Raises:
        ConfigError: as ``build_dense``, or ``beta`` is negative.
    """
    if not beta >= 0:
        raise ConfigError(f"beta must be >= 0. Received: beta={beta!r}")
    inputs, x = _encoder(n_features, latent_dim, hidden_units, activation)
    mean = keras.layers.Dense(latent_dim, name=LATENT_LAYER)(x)
    log_var = keras.layers.Dense(
        latent_dim, kernel_initializer="zeros", bias_initializer="zeros", name="latent_log_var"
    )(x)
    z = Sampling(beta=beta, n_features=n_features, name="sampling")([mean, log_var])
    code = keras.Input(shape=(latent_dim,), name="code")
    decoder = keras.Model(
        code,
        _decoder_stack(code, n_features, hidden_units, activation, output_activation, categorical_blocks),
        name=DECODER,
    )
    return keras.Model(inputs, decoder(z), name="variational_autoencoder")


def build_pca(n_features: int, *, latent_dim: int, **_) -> keras.Model:
    """PCA as a linear autoencoder: ``latent = x V``, ``reconstruction = latent V^T``
    for the top ``latent_dim`` principal directions ``V`` of the (z-scored,
    zero-mean) training rows. ``autoenc.training`` sets the weights from an SVD.

    Raises:
        ConfigError: ``latent_dim`` is larger than ``n_features``.
    """
    _check_widths(n_features, latent_dim, ())
    if latent_dim > n_features:
        raise ConfigError(
            f"pca needs latent_dim <= the number of features. Received: latent_dim={latent_dim} "
            f"for {n_features} feature(s)."
        )
    inputs = keras.Input(shape=(n_features,), name="features")
    latent = keras.layers.Dense(latent_dim, use_bias=False, name=LATENT_LAYER)(inputs)
    outputs = keras.layers.Dense(n_features, use_bias=False, name="reconstruction")(latent)
    return keras.Model(inputs, outputs, name="pca")


def _check_tensor_shape(kind, what, ranks, n_features, shape) -> None:
    if shape is None or len(shape) not in ranks or n_features != math.prod(shape):
        raise ConfigError(
            f"{kind} needs exactly one feature, {what}. Received: shape "
            f"{None if shape is None else tuple(shape)} for {n_features} input value(s); "
            "declare it with --shape."
        )


def _check_widths(n_features, latent_dim, hidden_units) -> None:
    if n_features < 1:
        raise ConfigError(f"n_features must be >= 1. Received: n_features={n_features}")
    if latent_dim < 1:
        raise ConfigError(f"latent_dim must be >= 1. Received: latent_dim={latent_dim}")
    if any(u < 1 for u in hidden_units):
        raise ConfigError(f"hidden_units must all be >= 1. Received: hidden_units={list(hidden_units)}")


def _encoder(n_features, latent_dim, hidden_units, activation):
    """The input and the encoder's hidden stack, after checking the widths."""
    _check_widths(n_features, latent_dim, hidden_units)
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
    return inputs, x


def _decoder_stack(x, n_features, hidden_units, activation, output_activation=None, categorical_blocks=()):
    """The mirrored hidden stack and the output layer (linear, or sigmoid for a
    binary cross-entropy loss; with ``categorical_blocks``, a softmax over each
    one-hot block: ``CategoricalOutput``), applied to ``x``."""
    for i, units in enumerate(reversed(hidden_units)):
        x = keras.layers.Dense(units, activation=activation, name=f"decoder_{i}")(x)
    if not categorical_blocks:
        return keras.layers.Dense(n_features, activation=output_activation, name="reconstruction")(x)
    x = keras.layers.Dense(n_features, name="reconstruction_logits")(x)
    return CategoricalOutput(categorical_blocks, activation=output_activation, name="reconstruction")(x)


def _check_blocks(blocks, width: int) -> list[tuple[int, int]]:
    blocks = sorted((int(start), int(size)) for start, size in blocks)
    end = 0
    for start, size in blocks:
        if start < end or size < 2 or start + size > width:
            raise ConfigError(
                f"categorical blocks must be disjoint, of 2 or more values, within {width} values. "
                f"Received: {blocks}"
            )
        end = start + size
    return blocks


@keras.saving.register_keras_serializable(package="autoenc")
class CategoricalOutput(keras.layers.Layer):
    """The output layer of a model with categorical features: a softmax over
    each categorical feature's one-hot block (``blocks``: (first value,
    size) pairs), so the block is a probability for each category, and
    ``activation`` (none, or sigmoid) on every other value."""

    def __init__(self, blocks, activation: str | None = None, **kwargs):
        super().__init__(**kwargs)
        self.blocks = [(int(start), int(size)) for start, size in blocks]
        self.activation_name = activation
        self._activation = keras.activations.get(activation)

    def call(self, x):
        width = x.shape[-1]
        parts, position = [], 0
        for start, size in _check_blocks(self.blocks, width):
            if start > position:
                parts.append(self._activation(x[:, position:start]))
            parts.append(keras.ops.softmax(x[:, start : start + size], axis=-1))
            position = start + size
        if position < width:
            parts.append(self._activation(x[:, position:]))
        return keras.ops.concatenate(parts, axis=-1) if len(parts) > 1 else parts[0]

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "blocks": self.blocks, "activation": self.activation_name}


def categorical_blocks(model: keras.Model) -> list[tuple[int, int]]:
    """The (first value, size) of each softmax block of a model's output
    (``CategoricalOutput``, searched in nested models too); ``[]`` for a
    model without one (every kind without categorical features, and pca,
    which reconstructs one-hot values linearly)."""
    for layer in model.layers:
        if isinstance(layer, CategoricalOutput):
            return sorted((int(a), int(b)) for a, b in layer.blocks)
        if isinstance(layer, keras.Model):
            found = categorical_blocks(layer)
            if found:
                return found
    return []


# A predicted probability is taken as at least this in a cross-entropy (a
# softmax in float32 rounds tiny probabilities to 0): at most -log(1e-7) = 16.1.
MIN_PROBABILITY = 1e-7


@keras.saving.register_keras_serializable(package="autoenc")
class ReconstructionLoss(keras.losses.Loss):
    """The training loss of a model with categorical features: per row, the
    mean over its columns of each column's error: a numeric value's squared
    error (``numeric="mse"``) or binary cross-entropy (``"bce"``), and a
    categorical column's cross-entropy divided by ``log(size)`` (its block's
    values), the cross-entropy of a uniform guess, so that knowing nothing of
    a column costs about 1 either way (as predicting the mean of a z-scored
    value does)."""

    def __init__(self, blocks, width: int, numeric: str = "mse", name: str = "reconstruction_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.blocks = _check_blocks(blocks, int(width))
        self.width = int(width)
        self.numeric = numeric
        mask = np.ones(self.width, dtype="float32")
        for start, size in self.blocks:
            mask[start : start + size] = 0.0
        self._mask = mask
        self._columns = float(mask.sum() + len(self.blocks))

    def call(self, y_true, y_pred):
        ops = keras.ops
        y_true = ops.cast(y_true, y_pred.dtype)
        if self.numeric == "bce":
            p = ops.clip(y_pred, MIN_PROBABILITY, 1.0 - MIN_PROBABILITY)
            numeric = -(y_true * ops.log(p) + (1.0 - y_true) * ops.log(1.0 - p))
        else:
            numeric = ops.square(y_pred - y_true)
        total = ops.sum(numeric * ops.convert_to_tensor(self._mask, dtype=y_pred.dtype), axis=-1)
        for start, size in self.blocks:
            p_true = ops.sum(y_true[:, start : start + size] * y_pred[:, start : start + size], axis=-1)
            total = total - ops.log(ops.maximum(p_true, MIN_PROBABILITY)) / math.log(size)
        return total / self._columns

    def get_config(self):
        return {**super().get_config(), "blocks": self.blocks, "width": self.width, "numeric": self.numeric}


@keras.saving.register_keras_serializable(package="autoenc")
class TrimmedLoss(keras.losses.Loss):
    """A reconstruction loss with the highest-loss rows of each batch left out.

    Per row, ``inner``'s loss (a Keras loss name or ``Loss``) averaged over
    the row's values; then the ``ceil(share * rows)`` highest of the batch
    count nothing, and the loss is the mean of the others (rows tied with the
    last kept one are kept too). Rows the model cannot reconstruct, as
    anomalies among the training rows are, stop pulling the model towards
    them. ``share`` is a variable: the fit sets it (``autoenc.training``),
    0 while the model first learns the bulk of the rows, ``trim`` after. The
    rows left out are chosen without a gradient (a mask).
    """

    def __init__(self, inner, trim: float, name: str = "trimmed_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        if not 0 <= float(trim) < 1:
            raise ValueError(f"trim must be in [0, 1). Received: trim={trim!r}")
        self.inner = keras.losses.get(inner)
        self.trim = float(trim)
        self.share = keras.Variable(self.trim, trainable=False, dtype="float32", name="trim_share")

    def call(self, y_true, y_pred):
        ops = keras.ops
        inner = self.inner.call if isinstance(self.inner, keras.losses.Loss) else self.inner
        per_row = ops.cast(inner(y_true, y_pred), "float32")
        if len(per_row.shape) > 1:
            per_row = ops.mean(ops.reshape(per_row, (ops.shape(per_row)[0], -1)), axis=-1)
        rows = ops.cast(ops.shape(per_row)[0], "float32")
        left_out = ops.minimum(ops.ceil(ops.convert_to_tensor(self.share) * rows - 1e-6), rows - 1.0)
        cutoff = ops.take(ops.sort(per_row), ops.cast(rows - left_out - 1.0, "int32"))
        keep = ops.stop_gradient(ops.cast(per_row <= cutoff, "float32"))
        return per_row * keep * rows / ops.maximum(ops.sum(keep), 1.0)

    def get_config(self):
        return {**super().get_config(), "inner": keras.losses.serialize(self.inner), "trim": self.trim}


def build_conv(
    n_features: int,
    *,
    latent_dim: int,
    shape: Sequence[int],
    filters: Sequence[int] = (32, 64),
    output_activation: str | None = "sigmoid",
    **_,
) -> keras.Model:
    """A convolutional autoencoder for one image feature of ``shape`` (H, W) or (H, W, C).

    Encoder: per entry of ``filters`` a 3x3 Conv2D with stride 2 and "same"
    padding (ReLU), halving the image each time, then a dense ``latent``
    layer. Decoder: a dense layer back to the smallest feature map, 3x3
    Conv2DTranspose layers with stride 2 in reverse, cropped to (H, W), and a
    3x3 Conv2D to C channels (sigmoid for a binary cross-entropy loss). The
    model's input and output are the image flattened row-major, like every
    autoenc model, so scoring is unchanged.

    Raises:
        ConfigError: ``shape`` is not an image shape.
    """
    _check_tensor_shape("conv", "an image of shape H,W or H,W,C", (2, 3), n_features, shape)
    _check_widths(n_features, latent_dim, ())
    h, w = shape[0], shape[1]
    c = shape[2] if len(shape) == 3 else 1
    inputs = keras.Input(shape=(n_features,), name="features")
    x = keras.layers.Reshape((h, w, c), name="to_image")(inputs)
    for i, f in enumerate(filters):
        x = keras.layers.Conv2D(f, 3, strides=2, padding="same", activation="relu", name=f"encoder_conv_{i}")(
            x
        )
    small = tuple(x.shape[1:])
    x = keras.layers.Flatten(name="encoder_flatten")(x)
    latent = keras.layers.Dense(latent_dim, name=LATENT_LAYER)(x)
    x = keras.layers.Dense(math.prod(small), activation="relu", name="decoder_dense")(latent)
    x = keras.layers.Reshape(small, name="decoder_reshape")(x)
    for i, f in enumerate(reversed(filters)):
        x = keras.layers.Conv2DTranspose(
            f, 3, strides=2, padding="same", activation="relu", name=f"decoder_deconv_{i}"
        )(x)
    x = keras.layers.Cropping2D(((0, x.shape[1] - h), (0, x.shape[2] - w)), name="decoder_crop")(x)
    x = keras.layers.Conv2D(c, 3, padding="same", activation=output_activation, name="reconstruction_image")(
        x
    )
    outputs = keras.layers.Flatten(name="reconstruction")(x)
    return keras.Model(inputs, outputs, name="conv_autoencoder")


def build_lstm(
    n_features: int,
    *,
    latent_dim: int,
    shape: Sequence[int],
    hidden_units: Sequence[int] = (100,),
    output_activation: str | None = None,
    **_,
) -> keras.Model:
    """A sequence-to-sequence LSTM autoencoder for one sequence feature of
    ``shape`` (T, F) or (T,) (one value per step).

    Encoder: stacked LSTMs of ``hidden_units`` (the last returns its final
    state), then a dense ``latent`` layer. Decoder: the latent repeated T times,
    stacked LSTMs in reverse, a dense layer per step back to F values. Input and
    output are the sequence flattened row-major.

    Raises:
        ConfigError: ``shape`` is not a sequence shape.
    """
    _check_tensor_shape("lstm", "a sequence of shape T,F or T", (1, 2), n_features, shape)
    _check_widths(n_features, latent_dim, hidden_units)
    t, f = shape[0], shape[1] if len(shape) == 2 else 1
    inputs = keras.Input(shape=(n_features,), name="features")
    x = keras.layers.Reshape((t, f), name="to_sequence")(inputs)
    for i, units in enumerate(hidden_units):
        last = i == len(hidden_units) - 1
        x = keras.layers.LSTM(units, return_sequences=not last, name=f"encoder_lstm_{i}")(x)
    latent = keras.layers.Dense(latent_dim, name=LATENT_LAYER)(x)
    x = keras.layers.RepeatVector(t, name="decoder_repeat")(latent)
    for i, units in enumerate(reversed(hidden_units)):
        x = keras.layers.LSTM(units, return_sequences=True, name=f"decoder_lstm_{i}")(x)
    x = keras.layers.TimeDistributed(
        keras.layers.Dense(f, activation=output_activation), name="reconstruction_steps"
    )(x)
    outputs = keras.layers.Flatten(name="reconstruction")(x)
    return keras.Model(inputs, outputs, name="lstm_autoencoder")


@keras.saving.register_keras_serializable(package="autoenc")
class PositionalEncoding(keras.layers.Layer):
    """Adds the fixed sinusoidal position code of "Attention Is All You Need"
    to a sequence ``[batch, steps, width]``: ``sin`` on even channels, ``cos``
    on odd ones, wavelengths from 2 pi to 10000 * 2 pi. No weights, so it is
    the same for every seed and needs nothing saved.
    """

    def build(self, input_shape):
        steps, width = int(input_shape[-2]), int(input_shape[-1])
        position = np.arange(steps, dtype=np.float64)[:, None]
        rate = np.exp(-math.log(10000.0) * (2 * (np.arange(width) // 2)) / width)[None, :]
        angle = position * rate
        code = np.where(np.arange(width)[None, :] % 2 == 0, np.sin(angle), np.cos(angle))
        self._code = code.astype("float32")[None]
        super().build(input_shape)

    def call(self, inputs):
        return inputs + keras.ops.convert_to_tensor(self._code, dtype=inputs.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape


def _attention_heads(width: int) -> int:
    """The most heads, up to 4, that divide ``width`` evenly."""
    return next(h for h in (4, 2, 1) if width % h == 0)


def _transformer_block(x, width: int, activation: str, name: str):
    """Self-attention over all steps, then a position-wise feed-forward layer
    twice as wide, each added back to its input and layer-normalized (the
    post-norm block of the original transformer, without dropout so that a
    seed fixes the model)."""
    heads = _attention_heads(width)
    attended = keras.layers.MultiHeadAttention(heads, width // heads, name=f"{name}_attention")(x, x)
    x = keras.layers.LayerNormalization(name=f"{name}_norm_1")(
        keras.layers.Add(name=f"{name}_add_1")([x, attended])
    )
    fed = keras.layers.Dense(2 * width, activation=activation, name=f"{name}_feed_forward")(x)
    fed = keras.layers.Dense(width, name=f"{name}_feed_forward_out")(fed)
    return keras.layers.LayerNormalization(name=f"{name}_norm_2")(
        keras.layers.Add(name=f"{name}_add_2")([x, fed])
    )


def build_transformer(
    n_features: int,
    *,
    latent_dim: int,
    shape: Sequence[int],
    hidden_units: Sequence[int] = (32, 32),
    activation: str = "relu",
    output_activation: str | None = None,
    **_,
) -> keras.Model:
    """A transformer autoencoder for one sequence feature of ``shape`` (T, F)
    or (T,), as ``lstm``.

    Encoder: each step's F values projected to ``hidden_units[0]`` channels,
    the sinusoidal position code added, one transformer block per entry of
    ``hidden_units`` (self-attention over the T steps, then a feed-forward
    layer; up to 4 heads), the steps averaged and a dense ``latent`` layer.
    Decoder: the latent projected back to the channels and repeated T times,
    the position code added (so the steps can differ), as many blocks, and a
    dense layer per step back to F values. Every block has the width of
    ``hidden_units[0]`` (the residual sums need one width).

    Raises:
        ConfigError: ``shape`` is not a sequence shape.
    """
    _check_tensor_shape("transformer", "a sequence of shape T,F or T", (1, 2), n_features, shape)
    _check_widths(n_features, latent_dim, hidden_units)
    t, f = shape[0], shape[1] if len(shape) == 2 else 1
    width = int(hidden_units[0])
    inputs = keras.Input(shape=(n_features,), name="features")
    x = keras.layers.Reshape((t, f), name="to_sequence")(inputs)
    x = keras.layers.Dense(width, name="encoder_embedding")(x)
    x = PositionalEncoding(name="encoder_positions")(x)
    for i in range(len(hidden_units)):
        x = _transformer_block(x, width, activation, f"encoder_block_{i}")
    x = keras.layers.GlobalAveragePooling1D(name="encoder_pooling")(x)
    latent = keras.layers.Dense(latent_dim, name=LATENT_LAYER)(x)
    x = keras.layers.Dense(width, name="decoder_embedding")(latent)
    x = keras.layers.RepeatVector(t, name="decoder_repeat")(x)
    x = PositionalEncoding(name="decoder_positions")(x)
    for i in range(len(hidden_units)):
        x = _transformer_block(x, width, activation, f"decoder_block_{i}")
    x = keras.layers.Dense(f, activation=output_activation, name="reconstruction_steps")(x)
    outputs = keras.layers.Flatten(name="reconstruction")(x)
    return keras.Model(inputs, outputs, name="transformer_autoencoder")


# Model kinds by the name used in --model and in the artifact metadata.
BUILDERS: dict[str, Callable[..., keras.Model]] = {
    "dense": build_dense,
    "sparse": build_sparse,
    "vae": build_vae,
    "pca": build_pca,
    "conv": build_conv,
    "lstm": build_lstm,
    "transformer": build_transformer,
}


def scoring_model(autoencoder: keras.Model) -> keras.Model:
    """The same network with two outputs: ``[latent, reconstruction]``."""
    latent = autoencoder.get_layer(LATENT_LAYER).output
    return keras.Model(autoencoder.inputs, [latent, autoencoder.outputs[0]])
