"""RunInference and ``apache_beam.ml.anomaly`` for models trained by autoenc:
``AutoencoderModelHandler`` and ``offline_detector``.

A module of its own because Beam's ``apache_beam.ml.inference.base`` imports
its model manager, which imports PyTorch where it is installed (1.6 s on 2
cores): ``autoenc score`` and the ``Score`` transform (``inference``) do
without it.

Example:
    >>> import apache_beam as beam                                    # doctest: +SKIP
    >>> from apache_beam.ml.inference.base import RunInference        # doctest: +SKIP
    >>> from autoenc_beam import AutoencoderModelHandler                 # doctest: +SKIP
    >>> with beam.Pipeline() as p:                                    # doctest: +SKIP
    ...     rows = p | beam.Create([{"x1": 0.1, "x2": 0.2, "x3": 0.3, "x4": 0.4}])
    ...     rows | RunInference(AutoencoderModelHandler("models/demo")) | beam.Map(print)
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Sequence

import numpy as np
import pyarrow as pa
from apache_beam.ml.inference.base import ModelHandler, PredictionResult

from autoenc import artifact as artifacts
from autoenc.schema import FeatureSpec
from autoenc.scoring import score_columns, score_fields
from autoenc.validation import validate_batch

from . import io
from .inference import (
    BATCH_ROWS,
    _as_dict,
    _is_row,
    _one_batch,
    _rows_in,
    conformed_chunk,
    resolve_threshold,
    rows_to_batch,
    scoring_setup,
)


@dataclasses.dataclass(frozen=True)
class RowScores:
    """The scores of one row (``PredictionResult.inference`` of a one-row element).

    Attributes:
        latent: float32 [latent_dim], the encoder's output (NaN for an extreme row).
        reconstruction_error: mean squared error over the normalized features;
            higher = more anomalous (+inf for a row beyond float32).
        anomaly_score: in [0, 1], the share of the model's validation rows with
            a lower error.
        is_anomaly: ``reconstruction_error`` above the threshold.
        latent_distance: Mahalanobis distance of the latent from the
            validation rows' latents (``None`` for models without one).
        imputed_values: missing values imputed (a model trained with
            ``--missing impute``; else ``None``).
        combined_score: in [0, 1], the larger of ``anomaly_score`` and the
            share of validation rows with a smaller latent distance (``None``
            for models trained before it existed).
        total_distance: the latent distance and the reconstruction error as
            one distance (``autoenc.scoring.Scores``; ``None`` for models
            trained before it existed).
    """

    latent: np.ndarray
    reconstruction_error: float
    anomaly_score: float
    is_anomaly: bool
    latent_distance: float | None = None
    imputed_values: int | None = None
    combined_score: float | None = None
    total_distance: float | None = None

    def __float__(self) -> float:
        # apache_beam.ml.anomaly's OfflineDetector.score_prediction_adapter
        # reads the score with float().
        return float(self.reconstruction_error)


class _HandlerModel:
    """What ``AutoencoderModelHandler.load_model`` returns."""

    def __init__(self, scorer, spec: FeatureSpec, version: str):
        self.scorer = scorer
        self.spec = spec
        self.version = version
        self.names = list(spec.model_names)


class AutoencoderModelHandler(ModelHandler):
    """A RunInference ``ModelHandler`` for models trained by autoenc.

    Elements, each one of:

    * a numpy array [width] or a ``dict`` / ``beam.Row`` of the features (one
      row): its inference is a ``RowScores``; RunInference batches these rows
      for the model;
    * a numpy array [n, width] or an Arrow record batch / table (many rows: the
      columnar path, no per-row Python): its inference is an Arrow table of
      the score columns (``autoenc score``'s), one row per input row.

    A row that cannot be scored (a missing, NaN or infinite feature, a value
    that is not a number) raises ``ValueError`` naming the row and column: wrap
    the handler with RunInference's ``with_exception_handling()`` to send such
    batches to the dead-letter output (or use ``Score``, which rejects single
    rows). Wrap it in ``KeyedModelHandler`` for keyed elements.

    Args:
        model_dir: the model directory.
        model_version: the version (default: ``LATEST``'s, read when the model
            is loaded; ``update_model_path`` switches versions).
        threshold: a fixed threshold instead of the model's.
        contamination: the threshold as this share of validation rows.
        explain_top_k: features named per row in the ``top_features`` column
            of batch elements' tables (0: none).
        min_batch_size, max_batch_size: RunInference's batching, in rows (a
            batch element counts its rows: one over ``max_batch_size`` goes to
            the model alone). Default: up to 8,192 rows.
        share_model_across_processes: one model per machine (Beam's
            multi-process shared model) instead of one per process.
        model_copies: models per machine with ``share_model_across_processes``.
        metrics_namespace: the namespace of RunInference's metrics.

    Example:
        >>> from apache_beam.ml.inference.base import RunInference       # doctest: +SKIP
        >>> handler = AutoencoderModelHandler("models/demo")             # doctest: +SKIP
        >>> rows | RunInference(handler)                                 # doctest: +SKIP
    """

    def __init__(
        self,
        model_dir: str,
        model_version: str | None = None,
        *,
        threshold: float | None = None,
        contamination: float | None = None,
        explain_top_k: int = 0,
        min_batch_size: int | None = None,
        max_batch_size: int = BATCH_ROWS,
        share_model_across_processes: bool = False,
        model_copies: int | None = None,
        metrics_namespace: str = "autoenc",
    ):
        super().__init__()
        self._model_dir = model_dir
        self._version = model_version
        self._threshold = threshold
        self._contamination = contamination
        self._top_k = explain_top_k
        self._batching = {"max_batch_size": max_batch_size, "element_size_fn": _rows_in}
        if min_batch_size:
            self._batching["min_batch_size"] = min_batch_size
        self._share = share_model_across_processes
        self._copies = model_copies
        self._namespace = metrics_namespace

    def load_model(self) -> _HandlerModel:
        artifact = artifacts.load_artifact(self._model_dir, version=self._version)
        value, _ = resolve_threshold(
            artifact.metadata, threshold=self._threshold, contamination=self._contamination
        )
        spec = artifact.metadata.spec
        scorer = artifact.scorer(value, top_k=min(self._top_k, len(spec.model_names)))
        return _HandlerModel(scorer, spec, artifact.version)

    def update_model_path(self, model_path: str | None = None) -> None:
        """Switches to another model version (RunInference calls this when its
        model side input, e.g. ``WatchFilePattern``, names a new file): a path
        inside a version folder (``MODEL_DIR/<version>/metadata.json``) selects
        that version; ``MODEL_DIR/LATEST`` (or the model directory) selects
        whatever ``LATEST`` names when the model is loaded."""
        if not model_path:
            return
        path = model_path.rstrip("/")
        if os.path.basename(path) == artifacts.LATEST_FILE:
            self._model_dir, self._version = os.path.dirname(path), None
        elif os.path.basename(path) in (artifacts.METADATA_FILE, artifacts.MODEL_FILE):
            version_dir = os.path.dirname(path)
            self._model_dir, self._version = os.path.dirname(version_dir), os.path.basename(version_dir)
        else:
            self._model_dir, self._version = path, None

    def run_inference(self, batch: Sequence, model: _HandlerModel, inference_args=None) -> Iterable:
        rows = [e for e in batch if _is_one_row(e)]
        results: dict[int, PredictionResult] = {}
        if rows:
            features, imputed = _row_features(rows, model)
            scores = model.scorer.score(features)
            i_row = 0
            for i, element in enumerate(batch):
                if _is_one_row(element):
                    results[i] = PredictionResult(
                        element, _row_scores(scores, i_row, imputed), model_id=model.version
                    )
                    i_row += 1
        for i, element in enumerate(batch):
            if i in results:
                continue
            features, imputed = _many_features(element, model)
            scores = model.scorer.score(features)
            table = pa.Table.from_arrays(
                score_columns(scores, model.names, imputed),
                schema=pa.schema(
                    score_fields(
                        top_k=model.scorer.top_k,
                        latent_distance=scores.latent_distance is not None,
                        imputed=imputed is not None,
                        combined=scores.combined_score is not None,
                        total=scores.total_distance is not None,
                    )
                ),
            )
            results[i] = PredictionResult(element, table, model_id=model.version)
        return [results[i] for i in range(len(batch))]

    def get_num_bytes(self, batch: Sequence) -> int:
        return sum(io.batch_nbytes(e) if not _is_row(e) else 8 * len(_as_dict(e)) for e in batch)

    def get_metrics_namespace(self) -> str:
        return self._namespace

    def batch_elements_kwargs(self):
        return dict(self._batching)

    def share_model_across_processes(self) -> bool:
        return self._share

    def model_copies(self) -> int:
        return self._copies or 1


def _is_one_row(element) -> bool:
    return _is_row(element) or (isinstance(element, np.ndarray) and element.ndim == 1)


def _checked(
    batch: pa.RecordBatch, reasons, model: _HandlerModel, what: str
) -> tuple[np.ndarray, np.ndarray | None]:
    spec = dataclasses.replace(model.spec, key_columns=())  # the handler needs no keys
    chunk = conformed_chunk(batch, reasons, spec, source=what)
    checked = validate_batch(chunk.batch, spec, prior_reasons=chunk.reasons)
    if checked.reasons:
        bad = np.flatnonzero(~checked.valid)
        raise ValueError(
            f"{len(bad)} row(s) of {what} cannot be scored: row {bad[0]}: {checked.reasons[0]}"
            f"{'; ...' if len(bad) > 1 else ''}."
        )
    return checked.features, checked.imputed


def _row_features(rows, model: _HandlerModel) -> tuple[np.ndarray, np.ndarray | None]:
    if all(isinstance(r, np.ndarray) for r in rows):
        features = np.stack(rows).astype(np.float64, copy=False)
        if features.shape[1] != model.spec.width:
            raise ValueError(
                f"Rows of {features.shape[1]} values; model version {model.version} takes "
                f"{model.spec.width} ({', '.join(model.spec.names)})."
            )
        return _model_input(features, model.spec, "the batch")
    batch, reasons = rows_to_batch([r for r in rows if _is_row(r)], model.spec)
    if len(batch) != len(rows):
        raise ValueError("A batch mixes numpy rows with dicts or beam.Rows; give one kind.")
    return _checked(batch, reasons, model, "the batch")


def _many_features(element, model: _HandlerModel) -> tuple[np.ndarray, np.ndarray | None]:
    if isinstance(element, np.ndarray):
        features = element.reshape(len(element), -1).astype(np.float64, copy=False)
        if features.shape[1] != model.spec.width:
            raise ValueError(
                f"An array of {features.shape[1]} values a row; model version {model.version} takes "
                f"{model.spec.width} ({', '.join(model.spec.names)})."
            )
        return _model_input(features, model.spec, "an array element")
    if isinstance(element, pa.Table):
        element = _one_batch(element)
    if isinstance(element, pa.RecordBatch):
        return _checked(element, None, model, "a record batch")
    raise TypeError(
        "AutoencoderModelHandler takes numpy arrays, dicts, beam.Rows, Arrow record batches or "
        f"tables. Received: {type(element).__name__}."
    )


def _model_input(features: np.ndarray, spec: FeatureSpec, what: str) -> tuple[np.ndarray, np.ndarray | None]:
    """Raw numeric rows -> the model's input and the values imputed per row
    (``None`` for a model without imputation, where NaN is an error)."""
    # A model that imputes takes NaN as a missing value; infinities never.
    bad = np.isinf(features) if spec.imputation is not None else ~np.isfinite(features)
    if bad.any():
        row, column = np.argwhere(bad)[0]
        raise ValueError(
            f"{int(bad.any(axis=1).sum())} row(s) of {what} cannot be scored: row {row} has "
            f"{features[row, column]} at value {column}."
        )
    if spec.imputation is None:
        return features, None
    return spec.imputation.apply(features)


def _row_scores(scores, i: int, imputed: np.ndarray | None = None) -> RowScores:
    return RowScores(
        latent=scores.latent[i],
        reconstruction_error=float(scores.reconstruction_error[i]),
        anomaly_score=float(scores.anomaly_score[i]),
        is_anomaly=bool(scores.is_anomaly[i]),
        latent_distance=None if scores.latent_distance is None else float(scores.latent_distance[i]),
        imputed_values=None if imputed is None else int(imputed[i]),
        combined_score=None if scores.combined_score is None else float(scores.combined_score[i]),
        total_distance=None if scores.total_distance is None else float(scores.total_distance[i]),
    )


def offline_detector(
    model_dir: str,
    model_version: str | None = None,
    *,
    threshold: float | None = None,
    contamination: float | None = None,
    threshold_criterion=None,
    model_id: str | None = None,
    **handler_args,
):
    """An ``apache_beam.ml.anomaly`` ``OfflineDetector`` that scores with the
    model: its score is the reconstruction error (higher = more anomalous).

    Use it inside ``AnomalyDetection`` alone or in an ensemble with Beam's
    aggregations (``AverageScore``, ``MaxScore``, ``AnyVote``, ...). By default
    the model's threshold labels the rows (a ``FixedThreshold`` just above it:
    Beam flags scores at or above its cutoff, autoenc those above its
    threshold, so both flag the same rows); give ``threshold_criterion``
    (e.g. ``QuantileThreshold``) for one of Beam's.

    Args:
        model_dir, model_version: the model (``LATEST``'s version by default,
            resolved now so the threshold and the scores come from one version).
        threshold, contamination: as for ``Score``.
        threshold_criterion: a Beam ``ThresholdFn`` instead of the model's threshold.
        model_id: the detector's id in the results (default ``autoenc:<version>``).
        handler_args: passed to ``AutoencoderModelHandler``.

    Example:
        >>> from apache_beam.ml.anomaly.transforms import AnomalyDetection  # doctest: +SKIP
        >>> keyed_rows | AnomalyDetection(offline_detector("models/demo"))   # doctest: +SKIP
    """
    from apache_beam.ml.anomaly.detectors.offline import OfflineDetector
    from apache_beam.ml.anomaly.thresholds import FixedThreshold
    from apache_beam.ml.inference.base import KeyedModelHandler

    setup = scoring_setup(model_dir, model_version, threshold=threshold, contamination=contamination)
    handler = AutoencoderModelHandler(model_dir, setup.version, threshold=setup.threshold, **handler_args)
    keyed = KeyedModelHandler(handler).with_postprocess_fn(OfflineDetector.score_prediction_adapter)
    if threshold_criterion is None:
        threshold_criterion = FixedThreshold(float(np.nextafter(setup.threshold, np.inf)))
    return OfflineDetector(
        keyed,
        threshold_criterion=threshold_criterion,
        features=list(setup.spec.names),
        model_id=model_id or f"autoenc:{setup.version}",
    )
