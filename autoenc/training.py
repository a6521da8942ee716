"""Training: ``TrainingConfig`` and a streaming fit from files of row chunks.

The training pipeline stages the valid rows as TFRecord files whose records are
chunks of rows (raw float64 bytes, row-major). ``make_dataset`` streams them back
through ``tf.data`` (read, decode, normalize, shuffle, batch) in blocks of rows, so
the fit never needs the dataset in memory and keeps up with a fit on an
in-memory array; small datasets are cached in memory after the first epoch.

Example:
    >>> config = TrainingConfig(latent_dim=2, epochs=5)
    >>> config.resolved_latent_dim(16)
    2
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Sequence

import numpy as np

from autoenc.errors import ConfigError
from autoenc.preprocessing import MISSING, NORMALIZATIONS, Normalizer

_log = logging.getLogger(__name__)

# Each round of the start selection trains every remaining start this many epochs
# of at most this many steps.
WARMUP_EPOCHS = 2
WARMUP_STEPS_PER_EPOCH = 400

# The spectral start: rows sampled for the neighbourhood graph, gradient steps
# fitting the encoder to their spectral coordinates, then gradient steps fitting
# the decoder alone to that encoder.
SPECTRAL_SAMPLE_ROWS = 2000
SPECTRAL_ENCODER_STEPS = 2000
SPECTRAL_DECODER_STEPS = 1500
INITS = ("auto", "spectral", "random")
# A latent at most this wide gets the spectral start and the start selection by
# default: narrow latents are where folded encodings happen.
NARROW_LATENT = 2
NARROW_N_INIT = 16
# The keys of autoenc.models.BUILDERS (kept here so that importing the config
# does not import Keras).
MODEL_KINDS = ("dense", "sparse", "vae", "pca", "conv", "lstm", "transformer")
# Kinds that take one tensor feature: an image (conv) or a sequence (lstm).
TENSOR_KINDS = ("conv", "lstm", "transformer")
LOSSES = ("auto", "mse", "bce")
NORMALIZATION_CHOICES = ("auto",) + NORMALIZATIONS

# Below this many bytes of staged training data the decoded rows are cached in
# memory after the first epoch; above it every epoch streams from the files.
CACHE_LIMIT_BYTES = 512 * 1024**2
# Most bytes of float32 rows in one shuffling window of the streaming fit.
SHUFFLE_WINDOW_BYTES = 256 * 1024**2


@dataclasses.dataclass(frozen=True)
class TrainingConfig:
    """Hyperparameters of a fit. Defaults suit tabular data of a few to a few
    hundred z-scored features.

    Attributes:
        model: model kind (a key of ``autoenc.models.BUILDERS``): ``dense``,
            ``sparse``, ``vae``, ``pca``, ``conv`` or ``lstm``.
        latent_dim: width of the latent vector; ``None`` picks ceil(sqrt(n_features)).
        hidden_units: encoder layer widths, mirrored in the decoder.
        activation: hidden-layer activation.
        epochs: most epochs to run; early stopping usually ends sooner.
        batch_size: rows per gradient step.
        learning_rate: Adam's initial learning rate; halved (down to 1e-6) when
            validation loss has not fallen by ``min_improvement`` (relative)
            for ``max(2, patience // 3)`` epochs.
        patience: epochs without validation improvement before stopping; the
            best weights are restored.
        min_improvement: the relative fall in validation loss that counts as
            an improvement for ``patience``: the count restarts only when the
            loss falls below ``(1 - min_improvement)`` times the loss at the
            last restart. Smaller falls still update the best weights, but do
            not keep a fit crawling at the learning-rate floor running.
        validation_fraction: share of rows held out for early stopping and the
            threshold.
        contamination: expected share of anomalies; the threshold is the
            (1 - contamination) quantile of validation errors.
        seed: seeds the split, the weights and the shuffling.
        shuffle_buffer: rows in the shuffle buffer of the streaming fit.
        loss: ``"mse"``, ``"bce"`` (binary cross-entropy on min-max normalized
            values, with a sigmoid output) or ``"auto"``: bce for ``conv``, mse
            otherwise.
        normalization: ``"zscore"`` (mean 0, standard deviation 1 per value,
            linear output), ``"minmax"`` (training values scaled to [0, 1],
            sigmoid output: the reconstruction cannot leave the range the
            training rows span, so a row beyond it keeps an error however
            regular its shape) or ``"auto"``: minmax for a bce loss, zscore
            otherwise. bce needs minmax; pca needs zscore.
        trim: share of each batch's highest-loss rows left out of the
            gradient from the first epoch of the training proper (the start
            selection trains on every row; ``autoenc.models.TrimmedLoss``),
            so that anomalies among the training rows, which the model
            reconstructs worst, do not teach it to reconstruct them. The
            validation loss (early stopping) leaves out the same share, and the latent
            distribution is that of the validation rows below the (1 - trim)
            quantile of their errors. 0 trains on every row; ``pca`` (an SVD)
            ignores it.
        sparsity: ``sparse`` only: weight of the L1 penalty on the latent.
        beta: ``vae`` only: weight of the KL term.
        init: ``"spectral"``: the first start is an encoder fitted to the spectral
            coordinates of a sample of the training rows (see
            ``autoenc.spectral``) and a decoder fitted to that encoder; the other
            ``n_init - 1`` are random. ``"random"``: all ``n_init`` are random.
            ``"auto"``: spectral for a narrow latent (at most ``NARROW_LATENT``
            wide, where folded encodings are the rule), random otherwise.
        n_init: starts tried by successive halving (see ``_best_start``); the
            survivor is trained to the end. 1 trains a single start. ``None``:
            16 for a narrow latent, else 1 (a wider latent rarely folds, and the
            selection costs about 60 short epochs).
        missing: ``"reject"``: a row with a missing feature value (null or
            NaN) is rejected; ``"impute"``: the value takes the feature's
            median and the model gets missing indicators
            (``autoenc.preprocessing.Imputation``).
    """

    model: str = "dense"
    latent_dim: int | None = None
    hidden_units: tuple[int, ...] = (100, 100, 100)
    activation: str = "relu"
    epochs: int = 500
    batch_size: int = 128
    learning_rate: float = 1e-3
    patience: int = 20
    min_improvement: float = 1e-4
    validation_fraction: float = 0.2
    contamination: float = 0.01
    trim: float = 0.0
    seed: int = 0
    shuffle_buffer: int = 100_000
    sparsity: float = 1e-4
    beta: float = 1.0
    loss: str = "auto"
    normalization: str = "auto"
    init: str = "auto"
    n_init: int | None = None
    missing: str = "reject"

    @classmethod
    def from_attributes(cls, source, **overrides) -> TrainingConfig:
        """A config from the same-named attributes of ``source`` (``autoenc
        train``'s options, the ``Autoencoder`` estimator), then ``overrides``;
        a field ``source`` lacks keeps its default."""
        values = {f.name: getattr(source, f.name) for f in dataclasses.fields(cls) if hasattr(source, f.name)}
        values.update(overrides)
        if "hidden_units" in values:
            values["hidden_units"] = tuple(values["hidden_units"])
        return cls(**values)

    def __post_init__(self):
        checks = [
            (self.latent_dim is None or self.latent_dim >= 1, "latent_dim", ">= 1"),
            (
                len(self.hidden_units) > 0 and all(u >= 1 for u in self.hidden_units),
                "hidden_units",
                "a non-empty list of positive integers",
            ),
            (self.epochs >= 1, "epochs", ">= 1"),
            (self.batch_size >= 1, "batch_size", ">= 1"),
            (self.learning_rate > 0 and math.isfinite(self.learning_rate), "learning_rate", "> 0"),
            (self.patience >= 0, "patience", ">= 0"),
            (0 <= self.min_improvement < 1, "min_improvement", "in [0, 1)"),
            (0 < self.validation_fraction < 1, "validation_fraction", "in (0, 1)"),
            (0 <= self.contamination < 1, "contamination", "in [0, 1)"),
            (0 <= self.trim < 0.5, "trim", "in [0, 0.5)"),
            (self.shuffle_buffer >= 1, "shuffle_buffer", ">= 1"),
            (self.n_init is None or self.n_init >= 1, "n_init", ">= 1"),
            (self.init in INITS, "init", f"one of {', '.join(INITS)}"),
            (self.missing in MISSING, "missing", f"one of {', '.join(MISSING)}"),
            (self.model in MODEL_KINDS, "model", f"one of {', '.join(MODEL_KINDS)}"),
            (self.sparsity >= 0 and math.isfinite(self.sparsity), "sparsity", ">= 0"),
            (self.beta >= 0 and math.isfinite(self.beta), "beta", ">= 0"),
            (self.loss in LOSSES, "loss", f"one of {', '.join(LOSSES)}"),
            (
                self.normalization in NORMALIZATION_CHOICES,
                "normalization",
                f"one of {', '.join(NORMALIZATION_CHOICES)}",
            ),
            (
                not (self.resolved_loss == "bce" and self.normalization == "zscore"),
                "normalization",
                "minmax (or auto) for a bce loss, whose targets must lie in [0, 1]",
            ),
            (
                not (self.model == "pca" and self.normalization == "minmax"),
                "normalization",
                "zscore (or auto) for pca (an SVD of z-scored values)",
            ),
            (
                not (self.model == "pca" and self.loss == "bce"),
                "loss",
                "mse for pca (an SVD of z-scored values)",
            ),
        ]
        for ok, name, expected in checks:
            if not ok:
                raise ConfigError(f"{name} must be {expected}. Received: {name}={getattr(self, name)!r}")

    @property
    def resolved_loss(self) -> str:
        if self.loss != "auto":
            return self.loss
        return "bce" if self.model == "conv" else "mse"

    @property
    def keras_loss(self) -> str:
        return {"mse": "mse", "bce": "binary_crossentropy"}[self.resolved_loss]

    @property
    def resolved_normalization(self) -> str:
        """``normalization``, or for ``auto``: ``minmax`` for a bce loss, ``zscore`` otherwise."""
        if self.normalization != "auto":
            return self.normalization
        return "minmax" if self.resolved_loss == "bce" else "zscore"

    def resolved_init(self, n_features: int) -> str:
        if self.init != "auto":
            return self.init
        return "spectral" if self.resolved_latent_dim(n_features) <= NARROW_LATENT else "random"

    def resolved_n_init(self, n_features: int) -> int:
        if self.n_init is not None:
            return self.n_init
        return NARROW_N_INIT if self.resolved_latent_dim(n_features) <= NARROW_LATENT else 1

    def resolved_latent_dim(self, n_features: int) -> int:
        return self.latent_dim or max(1, math.ceil(math.sqrt(n_features)))

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["hidden_units"] = list(self.hidden_units)
        return d


@dataclasses.dataclass(frozen=True)
class FitResult:
    """What a fit produced.

    Attributes:
        model: the trained autoencoder (best weights restored).
        loss: training loss per epoch.
        val_loss: validation loss per epoch.
        best_epoch: 1-based epoch whose weights were kept.
        warmup: per round of the start selection, the validation loss of each
            start (empty when ``n_init`` is 1).
        start: the start that was trained to the end: ``"spectral"`` or
            ``"random <i>"``.
        epoch_seconds: wall time of each epoch of the final training
            (validation included).
    """

    model: object
    loss: list[float]
    val_loss: list[float]
    best_epoch: int
    warmup: list[list[float]] = dataclasses.field(default_factory=list)
    start: str = "random 0"
    epoch_seconds: list[float] = dataclasses.field(default_factory=list)


STAGED_FORMAT = 1


def encode_chunk(x: np.ndarray) -> bytes:
    """Serializes rows [n, n_features] as one staged record (raw float64 bytes)."""
    return np.ascontiguousarray(x, dtype="<f8").tobytes()


def staged_file(rows: np.ndarray) -> bytes:
    """The bytes of one staged file: a TFRecord file of two records, a header
    (format, row count, width and the rows' ``MomentStats``) and the rows
    (``encode_chunk``). Files are written per chunk of input rows and named by
    its place in the input, so reading them in name order gives the rows in a
    canonical order, and merging their headers' statistics in that order gives
    the same statistics however the job was split.

    Example:
        >>> import io
        >>> data = staged_file(np.arange(6.0).reshape(3, 2))
        >>> header = read_staged_header(io.BytesIO(data), source="example")
        >>> header.rows, header.width, header.stats.mean.tolist()
        (3, 2, [2.0, 3.0])
        >>> len(data) == staged_size(3, 2)
        True
    """
    from autoenc.preprocessing import MomentStats
    from autoenc.tfrecord import frame

    rows = np.asarray(rows, dtype=np.float64)
    header = np.concatenate(
        [[STAGED_FORMAT, len(rows), rows.shape[1]], MomentStats.from_array(rows).to_array()]
    )
    return frame(encode_chunk(header)) + frame(encode_chunk(rows))


def staged_size(rows: int, width: int) -> int:
    """Bytes of a ``staged_file`` of ``rows`` rows of ``width`` values (framing
    is 16 bytes a record): a written file of another size is incomplete."""
    return 2 * 16 + 8 * (3 + 1 + 4 * width) + 8 * rows * width


@dataclasses.dataclass(frozen=True)
class StagedHeader:
    """The header of a staged file: its row count, row width and statistics."""

    rows: int
    width: int
    stats: object


def read_staged_header(stream, *, source: str) -> StagedHeader:
    """Reads the header record of a staged file from a binary stream.

    Raises:
        InputError: the file is not a staged file of this format.
    """
    from autoenc.errors import InputError
    from autoenc.preprocessing import MomentStats
    from autoenc.tfrecord import iter_records

    record = next(iter_records(stream, source=source), None)
    values = None if record is None else np.frombuffer(record, dtype="<f8")
    if values is None or len(values) < 4 or values[0] != STAGED_FORMAT:
        raise InputError(f"{source} is not a staged-rows file of format {STAGED_FORMAT}.")
    rows, width = int(values[1]), int(values[2])
    return StagedHeader(rows, width, MomentStats.from_array_form(values[3:]))


def read_staged(files: Sequence[str], width: int):
    """Yields the staged rows of ``files`` (written by ``staged_file``) as
    float64 arrays [n, width], in the order given, one file's chunk at a time."""
    import tensorflow as tf

    from autoenc.tfrecord import iter_records

    for path in files:
        with tf.io.gfile.GFile(path, "rb") as f:
            for i, record in enumerate(iter_records(f, source=path)):
                if i:
                    yield np.frombuffer(record, dtype="<f8").reshape(-1, width)


def make_dataset(
    files: Sequence[str],
    n_features: int,
    normalizer: Normalizer,
    *,
    batch_size: int,
    n_rows: int,
    shuffle: bool,
    seed: int,
    shuffle_buffer: int = 100_000,
    cache: bool | None = None,
    reshuffle: bool = True,
):
    """A ``tf.data.Dataset`` of ``(x, x)`` normalized float32 batches from staged
    files (``staged_file``: a header record, then the rows).

    Everything runs on whole blocks of rows, never row by row: tf.data's per-element
    cost (unbatch, shuffle and batch of single rows) made a row-wise pipeline
    the bottleneck of small models. Shuffling is two-level: the order of the
    files and of the chunks is shuffled, chunks of up to 4 files are interleaved,
    and then rows are permuted inside windows of about ``shuffle_buffer`` rows,
    differently every epoch. Memory is bounded by the window (plus the cache).

    Args:
        files: TFRecord files written with ``encode_chunk`` records.
        n_features: row width.
        normalizer: applied to every row.
        batch_size: rows per batch.
        n_rows: rows in the files (decides whether to cache in memory).
        shuffle: shuffle files and rows, differently each epoch.
        seed: shuffling seed.
        shuffle_buffer: rows in one shuffling window.
        cache: keep decoded rows in memory after the first pass; ``None`` caches
            when the rows take at most ``CACHE_LIMIT_BYTES``.
        reshuffle: with ``shuffle``, a new order each pass (drawn from seeds
            that advance with every pass started, so the orders depend on how
            many passes were begun, prefetching included); ``False``: the same
            seeded order every pass, however the dataset was read before.
    """
    import tensorflow as tf

    mean = tf.constant(normalizer.mean, tf.float64)
    scale = tf.constant(normalizer.scale, tf.float64)

    def decode(record):
        rows = tf.reshape(tf.io.decode_raw(record, tf.float64), [-1, n_features])
        return tf.cast((rows - mean) / scale, tf.float32)

    if cache is None:
        cache = n_rows * n_features * 4 <= CACHE_LIMIT_BYTES

    def rows_of(path):
        return tf.data.TFRecordDataset(path).skip(1)  # the header

    ds = tf.data.Dataset.from_tensor_slices(tf.constant(list(files), dtype=tf.string))
    if shuffle and not cache:
        ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=reshuffle)
        ds = ds.interleave(rows_of, cycle_length=min(4, max(len(files), 1)), block_length=1)
    else:
        ds = ds.flat_map(rows_of)
    ds = ds.map(decode)
    if cache:
        ds = ds.cache()
    if shuffle:
        # At most shuffle_buffer rows, and at most SHUFFLE_WINDOW_BYTES of them
        # (wide rows, such as images, get fewer).
        window_rows = max(1, min(shuffle_buffer, max(n_rows, 1), SHUFFLE_WINDOW_BYTES // (4 * n_features)))
        block = min(8192, window_rows)
        if cache:
            ds = ds.shuffle(64, seed=seed, reshuffle_each_iteration=reshuffle)
        # Equal blocks, a window of them, the window's rows permuted as a whole
        # with a seed drawn afresh each epoch.
        windows = ds.rebatch(block).ragged_batch(math.ceil(window_rows / block))
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=reshuffle).batch(2)
        ds = tf.data.Dataset.zip(windows, seeds).map(
            lambda w, s: tf.random.experimental.stateless_shuffle(w.merge_dims(0, 1), seed=s)
        )
    ds = ds.rebatch(batch_size)
    if n_rows:
        # A known length lets Keras show progress and end epochs without warnings.
        ds = ds.apply(tf.data.experimental.assert_cardinality(math.ceil(n_rows / batch_size)))
    return ds.map(lambda x: (x, x)).prefetch(2)


def fit(
    config: TrainingConfig,
    *,
    n_features: int,
    normalizer: Normalizer,
    shape: Sequence[int] | None = None,
    train_files: Sequence[str],
    val_files: Sequence[str],
    n_train: int,
    n_val: int,
    verbose: int | str = "auto",
    categorical_blocks: Sequence[tuple[int, int]] = (),
) -> FitResult:
    """Builds the model of ``config`` and fits it on staged rows with early stopping.

    Args:
        config: the hyperparameters.
        n_features: row width.
        normalizer: normalization fitted on the training rows.
        shape: for ``conv`` and ``lstm``: the shape of the one tensor feature.
        train_files, val_files: staged TFRecord files (see ``encode_chunk``).
        n_train, n_val: rows in each.
        categorical_blocks: (first value, size) of each categorical
            feature's one-hot block (``FeatureSpec.categorical_slots``): the
            model reconstructs them with a softmax, and the loss is
            ``autoenc.models.ReconstructionLoss``. The pca kind takes them as
            plain values.
        verbose: the progress shown during the final training
            (``autoenc.progress``): 0 none, 1 one line rewritten in place, 2 a
            log line every few epochs and at the end, ``"auto"`` 1 when
            standard error is a terminal, else 2.

    Returns:
        A ``FitResult``.
    """
    from autoenc.progress import TrainingProgress, progress_mode

    mode = progress_mode(verbose)
    if n_train < 1 or n_val < 1:
        raise ConfigError(
            f"Training needs at least one training and one validation row. Received: "
            f"{n_train} training and {n_val} validation rows; supply more data or "
            "change --validation_fraction."
        )
    common = dict(n_features=n_features, normalizer=normalizer, seed=config.seed)
    training_rows = dict(
        batch_size=config.batch_size, n_rows=n_train, shuffle=True, shuffle_buffer=config.shuffle_buffer
    )
    train_ds = make_dataset(train_files, **training_rows, **common)
    val_ds = make_dataset(
        val_files, batch_size=max(config.batch_size, 4096), n_rows=n_val, shuffle=False, **common
    )
    if config.model == "pca":
        return _fit_pca(config, n_features, shape, train_ds, val_ds)
    blocks = tuple(categorical_blocks)
    # The start selection reads the rows in passes cut short (a sample for the
    # spectral start; a repeated dataset stopped after some steps, whose
    # prefetching may or may not have begun the next pass): with reshuffling,
    # how many passes were begun, and so every later order, would depend on
    # timing. It gets a dataset with one fixed order of its own, and train_ds
    # stays unread until the training proper, so the same seed gives the same
    # model however busy the machine is.
    selection_ds = make_dataset(train_files, **training_rows, reshuffle=False, **common)
    model, warmup, start = _best_start(
        config, n_features, shape, selection_ds, val_ds, n_train, n_val, blocks
    )
    del selection_ds  # its cached rows
    stopper = early_stopping(config.patience, config.min_improvement)
    timer = epoch_timer()
    callbacks = [
        stopper,
        reduce_learning_rate(max(2, config.patience // 3), config.min_improvement),
        timer,
    ]
    if config.trim > 0:
        callbacks.append(trimming())
    if mode is not None:
        # After reduce_learning_rate, so that the epoch's logs hold the learning rate.
        callbacks.append(TrainingProgress(live=mode == "live", stopper=stopper))
    _log.info("Training the chosen start for up to %d epochs", config.epochs)
    history = model.fit(
        train_ds,
        validation_data=val_ds,
        epochs=config.epochs,
        callbacks=callbacks,
        verbose=0,
        shuffle=False,  # the dataset shuffles itself
    )
    val_loss = [float(v) for v in history.history["val_loss"]]
    return FitResult(
        model=model,
        loss=[float(v) for v in history.history["loss"]],
        val_loss=val_loss,
        best_epoch=int(np.argmin(val_loss)) + 1,
        warmup=warmup,
        start=start,
        epoch_seconds=timer.seconds,
    )


class _Stall:
    """Counts epochs since the validation loss last fell below ``(1 -
    min_improvement)`` times the loss at the last counted improvement: the rule
    both ``early_stopping`` and ``reduce_learning_rate`` act on. A NaN loss never
    counts as an improvement."""

    def __init__(self, min_improvement: float):
        self.min_improvement = min_improvement
        self.reference = math.inf
        self.epochs = 0

    def update(self, loss: float) -> int:
        """Takes one epoch's validation loss; returns the epochs without improvement."""
        if self.reference == math.inf or loss < self.reference * (1.0 - self.min_improvement):
            self.reference = loss
            self.epochs = 0
        else:
            self.epochs += 1
        return self.epochs


def early_stopping(patience: int, min_improvement: float):
    """A Keras callback: stop after ``patience`` epochs without a relative fall
    of ``min_improvement`` in validation loss; restore the best weights seen.

    Keras's own ``EarlyStopping`` takes an absolute ``min_delta``, which suits no
    single scale of loss, and with one set it keeps the weights of the last
    counted improvement rather than the best.
    """
    import keras

    class EarlyStop(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.patience = patience
            self.stall = _Stall(min_improvement)

        @property
        def wait(self) -> int:
            """Epochs since the last counted improvement (shown by the progress lines)."""
            return self.stall.epochs

        def on_train_begin(self, logs=None):
            self.best = math.inf
            self.best_weights = None
            self.stall = _Stall(min_improvement)

        def on_epoch_end(self, epoch, logs=None):
            loss = float((logs or {}).get("val_loss", math.nan))
            if math.isnan(loss):  # diverged: stop now, keep the best weights
                self.model.stop_training = True
                return
            if loss < self.best:
                self.best = loss
                self.best_weights = self.model.get_weights()
            if self.stall.update(loss) >= patience:
                self.model.stop_training = True

        def on_train_end(self, logs=None):
            if self.best_weights is not None:
                self.model.set_weights(self.best_weights)

    return EarlyStop()


def reduce_learning_rate(patience: int, min_improvement: float, factor: float = 0.5, min_lr: float = 1e-6):
    """A Keras callback: multiply the learning rate by ``factor`` (not below
    ``min_lr``) after ``patience`` epochs without a relative fall of
    ``min_improvement`` in validation loss, the rule ``early_stopping`` counts by.

    Keras's ``ReduceLROnPlateau`` counts an epoch as an improvement only when the
    loss falls by an absolute ``min_delta`` (1e-4 by default): a model whose
    validation loss is below 1e-4 (a well-fitted model, or most models on min-max
    scaled values) can never improve by that much, so its learning rate was
    halved every ``patience`` epochs down to the floor and training all but
    stopped.
    """
    import keras

    class ReduceLearningRate(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.stall = _Stall(min_improvement)

        def on_epoch_end(self, epoch, logs=None):
            logs = logs if logs is not None else {}
            optimizer = self.model.optimizer
            rate = float(keras.ops.convert_to_numpy(optimizer.learning_rate))
            if self.stall.update(float(logs.get("val_loss", math.nan))) >= patience and rate > min_lr:
                rate = max(rate * factor, min_lr)
                optimizer.learning_rate = rate
                self.stall.epochs = 0  # the next cut waits `patience` epochs more
            logs["learning_rate"] = rate

    return ReduceLearningRate()


def epoch_timer():
    """A Keras callback recording each epoch's wall time in ``.seconds``."""
    import keras

    class EpochTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.seconds = []

        def on_epoch_begin(self, epoch, logs=None):
            self._started = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(round(time.perf_counter() - self._started, 4))

    return EpochTimer()


def _fit_pca(config: TrainingConfig, n_features: int, shape, train_ds, val_ds) -> FitResult:
    """PCA in one streaming pass: the Gram matrix of the normalized training rows
    (float64), its top eigenvectors as the weights of ``build_pca``'s linear
    encoder and decoder. The rows are z-scored with the training statistics, so
    they have mean zero and no centring is needed."""
    model = _new_model(config, n_features, shape, config.seed)
    gram = np.zeros((n_features, n_features))
    n = 0
    for x, _ in train_ds:
        x = x.numpy().astype(np.float64)
        gram += x.T @ x
        n += len(x)
    _, vectors = np.linalg.eigh(gram / max(n, 1))
    top = vectors[:, ::-1][:, : config.resolved_latent_dim(n_features)]
    # A deterministic sign: the largest loading of each direction is positive.
    top = top * np.sign(top[np.abs(top).argmax(axis=0), np.arange(top.shape[1])])
    model.set_weights([top.astype(np.float32), top.T.astype(np.float32)])
    model.compile(loss="mse")
    loss = float(model.evaluate(train_ds, verbose=0))
    val_loss = float(model.evaluate(val_ds, verbose=0))
    _log.info("PCA from %d rows: training loss %.4g, validation loss %.4g", n, loss, val_loss)
    return FitResult(model=model, loss=[loss], val_loss=[val_loss], best_epoch=1, start="svd")


def build_model(config: TrainingConfig, n_features: int, shape=None, seed: int = 0, categorical_blocks=()):
    """A freshly initialized, uncompiled model of ``config``'s kind for rows of
    ``n_features`` values (``shape``: the tensor feature's, for conv and lstm;
    ``categorical_blocks``: as ``fit``).

    Raises:
        ConfigError: the kind cannot take this data (e.g. a pca latent wider than
            the data, or an image shape conv cannot use).
    """
    return _new_model(config, n_features, shape, seed, tuple(categorical_blocks))


def _new_model(config: TrainingConfig, n_features: int, shape, seed: int, blocks=()):
    """A freshly initialized, uncompiled model of ``config``'s kind."""
    import keras

    from autoenc.models import BUILDERS

    keras.utils.set_random_seed(seed)
    return BUILDERS[config.model](
        n_features,
        latent_dim=config.resolved_latent_dim(n_features),
        hidden_units=config.hidden_units,
        activation=config.activation,
        sparsity=config.sparsity,
        beta=config.beta,
        shape=shape,
        output_activation="sigmoid" if config.resolved_normalization == "minmax" else None,
        categorical_blocks=blocks if config.model != "pca" else (),
    )


def training_loss(config: TrainingConfig, model):
    """The loss ``model`` trains with: ``config.keras_loss``, or with
    categorical blocks in its output, ``autoenc.models.ReconstructionLoss``;
    with ``config.trim``, that loss inside ``autoenc.models.TrimmedLoss``,
    leaving out nothing until ``trimming`` says otherwise."""
    from autoenc.models import ReconstructionLoss, TrimmedLoss, categorical_blocks

    blocks = categorical_blocks(model)
    loss = config.keras_loss
    if blocks:
        loss = ReconstructionLoss(blocks, model.outputs[0].shape[-1], numeric=config.resolved_loss)
    if config.trim == 0:
        return loss
    trimmed = TrimmedLoss(loss, config.trim)
    trimmed.share.assign(0.0)
    return trimmed


def trimming():
    """A callback for a model compiled with a ``TrimmedLoss``: its ``trim``
    share leaves rows out of the gradient and of the validation loss from the
    first epoch of the fit it is given to (the start selection before it
    trained on every row). Measured on the anomaly panel, trimming from the
    first epoch beat a 10-epoch warm-up on 9 of 13 sets with anomalies among
    the training rows: a cluster of anomalies is learned within the first
    epochs, after which it is no longer among a batch's worst rows."""
    import keras

    class Trimming(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.model.loss.share.assign(self.model.loss.trim)

    return Trimming()


def _best_start(config, n_features, shape, train_ds, val_ds, n_train, n_val, blocks=()):
    """Successive halving over ``config.resolved_n_init`` starts.

    A narrow bottleneck trained from random weights can settle early into a
    folded encoding: stretches of the data mapped onto the latent in opposite
    directions, joined by steep jumps whose rows then reconstruct badly. That is a
    local minimum further training does not leave (on the article's curve with a
    1-wide latent only about 1 random start in 50 escapes it). The spectral start
    (``config.resolved_init`` is ``"spectral"``, see ``_spectral_start``) avoids it by
    construction; random starts compete with it, in case some data suits them
    better: every start trains two short epochs, the better half is kept, and
    that repeats until one is left. (An unfolded start shows a validation loss
    several times lower than a folded one after two short epochs.)

    One compiled model serves every start: its weights and optimizer state are
    swapped in and out, so the training step is traced once, not once per start.

    Returns:
        The chosen model (compiled, with its optimizer state), per round the
        validation loss of every start in it, and the chosen start's name.
    """
    import keras

    n_init = config.resolved_n_init(n_features)
    model = _new_model(config, n_features, shape, config.seed * 1000, blocks)
    starts = []  # (name, weights)
    if config.resolved_init(n_features) == "spectral":
        spectral = _spectral_start(config, n_features, shape, train_ds, n_train, blocks)
        if spectral is not None:
            starts.append(("spectral", spectral))
    if not starts or n_init > 1:
        starts.append(("random 0", model.get_weights()))
    for i in range(1, n_init - (starts[0][0] == "spectral")):
        starts.append(
            (
                f"random {i}",
                _new_model(config, n_features, shape, config.seed * 1000 + i, blocks).get_weights(),
            )
        )
    model.compile(optimizer=keras.optimizers.Adam(config.learning_rate), loss=training_loss(config, model))
    if len(starts) == 1:
        model.set_weights(starts[0][1])
        return model, [], starts[0][0]
    optimizer = model.optimizer
    optimizer.build(model.trainable_variables)
    fresh_optimizer = [v.numpy() for v in optimizer.variables]
    starts = [(name, weights, fresh_optimizer) for name, weights in starts]
    steps = min(math.ceil(n_train / config.batch_size), WARMUP_STEPS_PER_EPOCH)
    # Judge the starts on at most this many validation rows.
    val_batches = math.ceil(min(n_val, 50_000) / max(config.batch_size, 4096))
    rounds = []
    while len(starts) > 1:
        losses, trained = [], []
        for name, weights, optimizer_state in starts:
            model.set_weights(weights)
            for variable, value in zip(optimizer.variables, optimizer_state, strict=True):
                variable.assign(value)
            model.fit(
                train_ds.repeat(), steps_per_epoch=steps, epochs=WARMUP_EPOCHS, verbose=0, shuffle=False
            )
            trained.append((name, model.get_weights(), [v.numpy() for v in optimizer.variables]))
            losses.append(float(model.evaluate(val_ds.take(val_batches), verbose=0)))
        rounds.append(losses)
        starts = [trained[k] for k in np.argsort(losses, kind="stable")[: max(1, len(starts) // 2)]]
        _log.info(
            "Start selection, round %d: %d starts, validation loss best %.4g (%s), median %.4g; keeping %d",
            len(rounds),
            len(losses),
            min(losses),
            starts[0][0],
            np.median(losses),
            len(starts),
        )
    name, weights, optimizer_state = starts[0]
    model.set_weights(weights)
    for variable, value in zip(optimizer.variables, optimizer_state, strict=True):
        variable.assign(value)
    return model, rounds, name


def _spectral_start(config, n_features, shape, train_ds, n_train, blocks=()):
    """Weights of a model whose encoder maps a sample of the training rows to their
    spectral coordinates (``autoenc.spectral``) and whose decoder was then fitted
    to that encoder, with the encoder frozen. Training the whole network at once
    from there keeps the unfolded encoding; training it with a random decoder from
    the first step does not (measured on the article's curve: the encoder's order
    along the curve is lost within a few epochs).

    Returns:
        The weights, or ``None`` when the training rows are too few for the graph.
    """
    import keras
    import tensorflow as tf

    from autoenc.models import LATENT_LAYER
    from autoenc.spectral import spectral_coordinates

    latent_dim = config.resolved_latent_dim(n_features)
    rows = []
    for x, _ in train_ds:
        rows.append(x.numpy())
        if sum(len(r) for r in rows) >= SPECTRAL_SAMPLE_ROWS:
            break
    sample = np.concatenate(rows)[:SPECTRAL_SAMPLE_ROWS]
    if len(sample) < max(20, latent_dim + 2):
        _log.info("Spectral start skipped: %d training rows are too few for the graph", len(sample))
        return None
    started = time.time()
    target = spectral_coordinates(sample, latent_dim).astype(np.float32)
    if config.model == "sparse":
        # Its latent is a ReLU: the targets must be >= 0 to be reachable.
        target -= target.min(axis=0)
    model = _new_model(
        config, n_features, shape, config.seed * 1000 + config.resolved_n_init(n_features), blocks
    )
    encoder = keras.Model(model.inputs, model.get_layer(LATENT_LAYER).output)
    encoder.compile(optimizer=keras.optimizers.Adam(config.learning_rate), loss="mse")
    batch = min(64, len(sample))
    pairs = tf.data.Dataset.from_tensor_slices((sample, target)).shuffle(len(sample), seed=config.seed)
    history = encoder.fit(
        pairs.repeat().batch(batch),
        steps_per_epoch=SPECTRAL_ENCODER_STEPS,
        epochs=1,
        verbose=0,
        shuffle=False,
    )
    encoder_loss = history.history["loss"][-1]
    for layer in encoder.layers:
        layer.trainable = False
    model.compile(optimizer=keras.optimizers.Adam(config.learning_rate), loss=training_loss(config, model))
    history = model.fit(
        train_ds.repeat(), steps_per_epoch=SPECTRAL_DECODER_STEPS, epochs=1, verbose=0, shuffle=False
    )
    for layer in encoder.layers:
        layer.trainable = True
    _log.info(
        "Spectral start from %d rows in %.1f s: encoder fit loss %.3g, decoder fit loss %.3g",
        len(sample),
        time.time() - started,
        encoder_loss,
        history.history["loss"][-1],
    )
    return model.get_weights()
