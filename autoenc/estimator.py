"""``Autoencoder``: autoenc as a scikit-learn / PyOD-style estimator.

Fits in memory (numpy, pandas or Arrow), through the same code as ``autoenc
train`` (the rows are validated, split, staged in chunks and trained on by
``autoenc.trainer.train_staged``), and saves the same artifact the command
line writes, so ``autoenc score`` scores it and ``Autoencoder.load`` reads one
the command line trained.

* PyOD's API: ``decision_function`` (the reconstruction error: higher = more
  anomalous), ``predict`` (1 = anomaly), ``predict_proba`` (``anomaly_score``
  as the probability of an anomaly), ``decision_scores_``, ``threshold_``,
  ``labels_``.
* scikit-learn's: ``transform`` gives the latent vectors (dimensionality
  reduction in a ``Pipeline``), ``fit_transform``, ``get_params`` /
  ``set_params``, ``clone``; ``score_samples`` points scikit-learn's way
  (higher = more normal: the negated error).

Example:
    >>> import numpy as np
    >>> from autoenc import Autoencoder
    >>> rng = np.random.default_rng(0)
    >>> z = rng.uniform(-1, 1, (600, 1))
    >>> X = np.hstack([z, z**2, -z])
    >>> ae = Autoencoder(latent_dim=1, hidden_units=(16,), epochs=3, n_init=1).fit(X)
    >>> ae.transform(X[:4]).shape, ae.predict(X[:4]).shape, ae.labels_.shape
    ((4, 1), (4,), (600,))
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import warnings

import numpy as np
import pyarrow as pa
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_array, check_is_fitted

from autoenc.errors import ConfigError

# How rows held in memory are named in metadata.json (``input.pattern``).
IN_MEMORY = "(in memory)"
# Launch-time sample for the bounds of extreme values: the first rows, as the
# command line samples one file of one row group.
SAMPLE_ROWS = 10_000


class Autoencoder(TransformerMixin, BaseEstimator):
    """An autoencoder for dimensionality reduction and anomaly detection.

    Parameters are named as ``autoenc train``'s flags (see ``autoenc train
    --help``); ``__init__`` only stores them.

    Args:
        model: ``dense``, ``sparse``, ``vae``, ``pca``, ``conv`` or ``lstm``.
        latent_dim: width of the latent vector (``None``: ceil(sqrt(features))).
        hidden_units: encoder layer widths, mirrored in the decoder.
        contamination: the threshold is the (1 - contamination) quantile of the
            validation rows' errors (unless ``threshold`` is given).
        trim: share of each batch's highest-loss rows left out of the
            gradient (``autoenc train --trim``), for training
            rows that hold anomalies.
        threshold: a fixed threshold on the reconstruction error.
        shape: for one image or sequence feature given as an array of rank
            > 2 (or a list column): its shape per row (default: from the data).
        extreme_value_spreads: training rows with a value farther than this
            many interquartile ranges from its feature's median are left out
            (``rejected_rows_``).
        missing: ``"reject"``: a row with a missing value (NaN, or null)
            raises ``ValueError``; ``"impute"``: it takes the feature's median
            over the first 10,000 rows, and the model gets a missing indicator
            for each feature with missing values there (``autoenc train
            --missing impute``).
        categorical_columns: columns of a DataFrame or Arrow table to treat
            as categorical (one-hot blocks of their ``max_categories`` most
            frequent values; ``autoenc train --categorical_columns``); string,
            boolean and dictionary (pandas ``category``) columns always are.
        max_categories: categories a categorical column keeps; rarer and
            unseen values share one out-of-vocabulary slot.
        verbose: the training progress shown: 0 none, 1 one line rewritten
            in place (a terminal, a notebook), 2 a line every few epochs
            through the ``autoenc.progress`` logger (for logs), ``"auto"`` 1
            when standard error is a terminal, else 2.
        Others: as the flags of the same names.

    Attributes (after ``fit``):
        model_: the Keras autoencoder.
        metadata_: the ``ArtifactMetadata`` (what ``save`` writes).
        threshold_: the anomaly threshold on the reconstruction error.
        decision_scores_: the reconstruction errors of the rows fitted on.
        labels_: 1 for the rows fitted on that score above the threshold, else 0.
        rejected_rows_: (row, reason) of the rows left out of training.
        n_features_in_, feature_names_in_: the input columns.
    """

    def __init__(
        self,
        model: str = "dense",
        *,
        latent_dim: int | None = None,
        hidden_units: tuple[int, ...] = (100, 100, 100),
        activation: str = "relu",
        epochs: int = 500,
        batch_size: int = 128,
        learning_rate: float = 1e-3,
        patience: int = 20,
        min_improvement: float = 1e-4,
        validation_fraction: float = 0.2,
        contamination: float = 0.01,
        trim: float = 0.0,
        threshold: float | None = None,
        loss: str = "auto",
        normalization: str = "auto",
        sparsity: float = 1e-4,
        beta: float = 1.0,
        init: str = "auto",
        n_init: int | None = None,
        seed: int = 0,
        shape: tuple[int, ...] | None = None,
        extreme_value_spreads: float = 1e6,
        missing: str = "reject",
        categorical_columns: tuple[str, ...] | None = None,
        max_categories: int = 50,
        read_batch_rows: int = 65536,
        verbose: int | str = 0,
    ):
        self.model = model
        self.latent_dim = latent_dim
        self.hidden_units = hidden_units
        self.activation = activation
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.patience = patience
        self.min_improvement = min_improvement
        self.validation_fraction = validation_fraction
        self.contamination = contamination
        self.trim = trim
        self.threshold = threshold
        self.loss = loss
        self.normalization = normalization
        self.sparsity = sparsity
        self.beta = beta
        self.init = init
        self.n_init = n_init
        self.seed = seed
        self.shape = shape
        self.extreme_value_spreads = extreme_value_spreads
        self.missing = missing
        self.categorical_columns = categorical_columns
        self.max_categories = max_categories
        self.read_batch_rows = read_batch_rows
        self.verbose = verbose

    # -- fitting ----------------------------------------------------------------

    def _config(self):
        from autoenc.training import TrainingConfig

        return TrainingConfig.from_attributes(self)

    def fit(self, X, y=None, *, keys=None):
        """Fits the autoencoder on the rows of ``X``; returns ``self``.

        Args:
            X: rows: a numpy array [n, features] (or [n, *shape] for one image
                or sequence feature), a pandas DataFrame or an Arrow table
                (numeric columns are the features; list columns are tensor
                features). Rows with a null, NaN or infinite value raise
                ``ValueError``.
            y: ignored (unsupervised); accepted for scikit-learn pipelines.
            keys: optional values identifying each row (one per row): the
                train / validation split then follows them as ``autoenc train
                --split_by key`` does; otherwise it follows the row number.

        Raises:
            ValueError: a bad row, or a parameter out of range.
        """
        from autoenc.preprocessing import ExtremeBounds, Imputation
        from autoenc.trainer import PARTS, ThresholdOptions, train_staged
        from autoenc.training import TENSOR_KINDS, build_model, read_staged_header, staged_file
        from autoenc.validation import key_mask, validation_mask

        config = self._config()
        table, row_shape = self._table(X, fitting=True)
        spec = self._spec(table, row_shape)
        if spec.pending_vocabularies:
            spec = self._vocabularies(table, spec, nulls=config.missing == "impute")
        features = self._features(table, spec, missing=config.missing)
        n = len(features)
        if n < 2:
            raise ValueError(
                f"Found {n} sample(s) in X; at least 2 are needed (rows to train on and held-out "
                "rows for the threshold)."
            )
        shape = spec.features[0].shape if config.model in TENSOR_KINDS else None
        if config.model in TENSOR_KINDS and (spec.n_features != 1 or not spec.features[0].shape):
            raise ConfigError(
                f"model={config.model!r} needs one image or sequence feature (an array of rank > 2)."
            )
        if config.missing == "impute":
            imputation = Imputation.from_sample(
                features[:SAMPLE_ROWS],
                spec.names,
                sizes=[f.size for f in spec.features],
                categorical=[f.name for f in spec.categorical_features],
            )
            spec = dataclasses.replace(spec, imputation=imputation)
        build_model(
            config,
            spec.model_width,
            shape,
            categorical_blocks=spec.categorical_slots if config.model != "pca" else (),
        )
        bounds = ExtremeBounds.from_sample(
            features[:SAMPLE_ROWS],
            spec.names,
            sizes=[f.size for f in spec.features],
            spreads=self.extreme_value_spreads,
        )
        extreme = np.zeros(n, dtype=bool)
        self.rejected_rows_ = []
        for mask, reason in bounds.check(features):
            extreme |= mask
            self.rejected_rows_.append((int(np.flatnonzero(mask)[0]), reason))
        if self.rejected_rows_:
            warnings.warn(
                f"{len(self.rejected_rows_)} row(s) left out of training as too extreme "
                f"(rejected_rows_): {self.rejected_rows_[0][1]}",
                stacklevel=2,
            )
        imputed = None
        if spec.imputation is not None:
            features, imputed = spec.imputation.apply(features)
            imputed = imputed[~extreme]
        if keys is not None:
            keys = pa.array(list(keys))
            if len(keys) != n:
                raise ValueError(f"keys has {len(keys)} values for {n} rows.")
            to_validation = key_mask([keys], seed=config.seed, fraction=config.validation_fraction)
        else:
            to_validation = validation_mask(
                "", np.arange(n), seed=config.seed, fraction=config.validation_fraction
            )
        with tempfile.TemporaryDirectory(prefix="autoenc-fit-") as staging:
            files = {part: [] for part in PARTS}
            for start in range(0, n, self.read_batch_rows):
                rows = np.arange(start, min(start + self.read_batch_rows, n))
                rows = rows[~extreme[rows]]
                for part, chosen in (
                    ("train", rows[~to_validation[rows]]),
                    ("validation", rows[to_validation[rows]]),
                ):
                    if len(chosen):
                        path = os.path.join(staging, f"{part}-{0:06d}-{start:012d}.tfrecord")
                        with open(path, "wb") as f:
                            f.write(staged_file(features[chosen]))
                        files[part].append(path)
            headers = {part: [_header(p, read_staged_header) for p in files[part]] for part in PARTS}
            counts = {part: sum(h.rows for h in headers[part]) for part in PARTS}
            counts.update(read=n, rejected=int(extreme.sum()))
            if imputed is not None:
                counts.update(imputed_rows=int(np.count_nonzero(imputed)), imputed_values=int(imputed.sum()))
            model, metadata = train_staged(
                config,
                spec,
                files=files,
                headers=headers,
                counts=counts,
                threshold=ThresholdOptions(
                    threshold=self.threshold,
                    contamination=None if self.threshold is not None else self.contamination,
                ),
                input_info={
                    "pattern": IN_MEMORY,
                    "format": "memory",
                    "files": 0,
                    "label_column": None,
                    "split_by": "key" if keys is not None else "position",
                    "extreme_value_bounds": bounds.to_dict(),
                    "determinism": {
                        "seed": config.seed,
                        "split_by": "key" if keys is not None else "position",
                        "validation_fraction": config.validation_fraction,
                    },
                },
                verbose=self.verbose,
            )
        self._set_fitted(model, metadata)
        scores = self.scorer_.score(features)
        self.decision_scores_ = scores.reconstruction_error
        self.labels_ = scores.is_anomaly.astype(int)
        return self

    def _set_fitted(self, model, metadata) -> None:
        from autoenc.scoring import Scorer

        self.model_ = model
        self.metadata_ = metadata
        self.threshold_ = metadata.threshold
        self.scorer_ = Scorer(
            model,
            metadata.normalization,
            metadata.threshold,
            metadata.validation_error_quantiles,
            feature_sizes=list(metadata.spec.model_sizes),
            latent_distribution=metadata.latent_distribution,
        )
        self.n_features_in_ = metadata.spec.n_features
        self.feature_names_in_ = np.asarray(metadata.spec.names, dtype=object)

    # -- input ------------------------------------------------------------------

    def _table(self, X, *, fitting: bool) -> tuple[pa.Table, tuple[int, ...] | None]:
        """``X`` as an Arrow table with named columns, and the per-row shape of
        a numpy array of rank > 2 (one image or sequence feature a row)."""
        if isinstance(X, pa.RecordBatch):
            return pa.Table.from_batches([X]), None
        if isinstance(X, pa.Table):
            return X, None
        if hasattr(X, "columns") and hasattr(X, "iloc"):  # a pandas DataFrame
            return pa.Table.from_pandas(X, preserve_index=False), None
        # numpy and other array-likes: scikit-learn's own checks (sparse, complex,
        # object, empty and 1D input get its messages); NaN and infinite values
        # pass here and are named by row in ``_features``.
        array = check_array(
            X,
            accept_sparse=False,
            dtype=np.float64,
            allow_nd=True,
            ensure_all_finite=False,
            ensure_min_samples=1,
            input_name="X",
            estimator=self,
        )
        if array.ndim == 2:
            names = (
                list(self.feature_names_in_)
                if not fitting and hasattr(self, "feature_names_in_")
                else [f"x{j}" for j in range(array.shape[1])]
            )
            if len(names) != array.shape[1]:
                raise ValueError(
                    f"X has {array.shape[1]} features, but Autoencoder is expecting {len(names)} "
                    "features as input."
                )
            return pa.table(
                {name: np.ascontiguousarray(array[:, j], dtype=np.float64) for j, name in enumerate(names)}
            ), None
        width = int(np.prod(array.shape[1:]))
        flat = np.ascontiguousarray(array.reshape(len(array), width), dtype=np.float64)
        offsets = pa.array(np.arange(0, (len(array) + 1) * width, width, dtype=np.int64))
        column = pa.LargeListArray.from_arrays(offsets, pa.array(flat.ravel()))
        name = self.feature_names_in_[0] if not fitting and hasattr(self, "feature_names_in_") else "x"
        return pa.table({name: column}), tuple(int(d) for d in array.shape[1:])

    def _spec(self, table: pa.Table, row_shape: tuple[int, ...] | None):
        """The feature spec of ``X``: a list column's shape is ``shape``, else
        that of a numpy array's rows, else inferred from the first rows."""
        from autoenc.schema import infer_spec

        shape = self.shape or row_shape
        lists = [f.name for f in table.schema if pa.types.is_large_list(f.type) or pa.types.is_list(f.type)]
        shapes = tuple(f"{name}={','.join(map(str, shape))}" for name in lists) if shape else ()
        return infer_spec(
            table.schema,
            shapes=shapes,
            first_rows=table.slice(0, 100),
            categorical_columns=self.categorical_columns,
            source="X",
        )

    def _vocabularies(self, table: pa.Table, spec, *, nulls: bool):
        """The spec with its categorical columns' vocabularies: each one's
        ``max_categories`` most frequent values in ``X``."""
        from autoenc.categorical import choose_categories, value_counts

        if not (isinstance(self.max_categories, int) and self.max_categories >= 1):
            raise ValueError(f"max_categories must be an integer >= 1. Received: {self.max_categories!r}")
        vocabularies = {}
        for name in spec.pending_vocabularies:
            counts = value_counts(table.column(name), nulls=nulls)
            if not counts:
                raise ValueError(f"Categorical column '{name}' of X has no value (every value is null).")
            vocabularies[name] = choose_categories(counts, max_categories=self.max_categories)
        return spec.with_vocabularies(vocabularies)

    def _features(self, table: pa.Table, spec, missing: str | None = None) -> np.ndarray:
        """The rows' features, float64 [n, width] (the model's input, with
        the spec's imputation); a bad row raises ``ValueError``."""
        from autoenc.schema import check_compatible
        from autoenc.validation import conform_batch, validate_batch

        if table.num_rows == 0:
            raise ValueError(f"X has 0 rows (shape {(0, spec.width)}); at least one is needed.")
        try:
            check_compatible(spec, table.schema, source="X", model="this Autoencoder", copied=())
        except Exception as e:
            raise ValueError(str(e)) from e
        batch = table.select(list(spec.names)).combine_chunks().to_batches()[0]
        conformed = conform_batch(batch, batch.schema, spec, source="X")
        checked = validate_batch(conformed.batch, spec, prior_reasons=conformed.reasons, missing=missing)
        if checked.reasons:
            rows = np.flatnonzero(~checked.valid)
            shown = "; ".join(
                f"row {r}: {why}" for r, why in zip(rows[:3], checked.reasons[:3], strict=False)
            )
            raise ValueError(
                f"X has {len(rows)} row(s) autoenc cannot use (NaN, infinite or missing values): {shown}"
                f"{'; ...' if len(rows) > 3 else ''}. Remove or impute them"
                + (", or fit with missing='impute'." if spec.imputation is None else ".")
            )
        return checked.features

    def _check_X(self, X) -> np.ndarray:
        check_is_fitted(self, "model_")
        return self._features(self._table(X, fitting=False)[0], self.metadata_.spec)

    # -- scoring ----------------------------------------------------------------

    def scores(self, X):
        """The rows' full scores (an ``autoenc.scoring.Scores``, with every
        column ``autoenc score`` writes: latent, reconstruction_error,
        anomaly_score, is_anomaly, top_features, latent_distance, extreme,
        combined_score, total_distance)."""
        return self._check_X_scores(X)

    def score(self, X, y=None) -> float:
        """The mean of ``score_samples``: higher = the rows look more normal
        (scikit-learn's convention for model selection); ``y`` is ignored."""
        return float(np.mean(self.score_samples(X)))

    def decision_function(self, X) -> np.ndarray:
        """The reconstruction error of each row: higher = more anomalous (PyOD's direction)."""
        return self._check_X_scores(X).reconstruction_error

    def score_samples(self, X) -> np.ndarray:
        """The negated reconstruction error: higher = more normal (scikit-learn's direction)."""
        return -self.decision_function(X)

    def predict(self, X) -> np.ndarray:
        """1 for rows above the threshold (anomalies), 0 for the others."""
        return self._check_X_scores(X).is_anomaly.astype(int)

    def predict_proba(self, X) -> np.ndarray:
        """[n, 2]: the probability of normal and of anomaly, the anomaly one being
        ``anomaly_score`` (the share of validation rows with a lower error)."""
        anomaly = self._check_X_scores(X).anomaly_score
        return np.column_stack([1.0 - anomaly, anomaly])

    def transform(self, X) -> np.ndarray:
        """The latent vectors [n, latent_dim]: autoenc as dimensionality reduction."""
        return self._check_X_scores(X).latent

    def _check_X_scores(self, X):
        features = self._check_X(X)
        return self.scorer_.score(features)

    # -- the artifact -----------------------------------------------------------

    def save(self, model_dir: str) -> str:
        """Writes the model as a new version of ``model_dir`` (the artifact
        ``autoenc train`` writes; ``autoenc score`` scores it) and points
        ``LATEST`` at it; returns the version directory."""
        from autoenc import artifact as artifacts

        check_is_fitted(self, "model_")
        return artifacts.write_artifact(model_dir, artifacts.new_version(), self.model_, self.metadata_).path

    @classmethod
    def load(cls, model_dir: str, *, version: str | None = None) -> Autoencoder:
        """An ``Autoencoder`` from a model version (``LATEST``'s by default),
        written by ``autoenc train`` or by ``save``; ``decision_scores_`` and
        ``labels_`` are not stored there, so they are absent."""
        from autoenc import artifact as artifacts

        artifact = artifacts.load_artifact(model_dir, version=version)
        hyper = dict(artifact.metadata.hyperparameters)
        params = {k: hyper[k] for k in cls._get_param_names() if k in hyper}
        if "hidden_units" in params:
            params["hidden_units"] = tuple(params["hidden_units"])
        if artifact.metadata.threshold_method.get("method") == "fixed":
            params["threshold"] = artifact.metadata.threshold
        estimator = cls(**params)
        estimator._set_fitted(artifact.model, artifact.metadata)
        return estimator

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = False
        tags.input_tags.allow_nan = self.missing == "impute"
        # The Keras model computes in float32: so are the latent vectors.
        tags.transformer_tags.preserves_dtype = ["float32"]
        return tags

    # -- pickling: the Keras model pickles itself; the scorer's compiled
    # function does not, so it is rebuilt.
    def __getstate__(self):
        state = dict(self.__dict__)
        state.pop("scorer_", None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        if "model_" in state:
            self._set_fitted(self.model_, self.metadata_)


def _header(path: str, read_header):
    with open(path, "rb") as f:
        return read_header(f, source=path)
