"""Scoring inside anyone's Beam pipeline: the ``Score`` transform and the
``AutoencoderModelHandler`` for RunInference.

``Score`` works after any source (BigQuery, CSV, Kafka read in batch, Parquet):
its input is a ``PCollection`` of ``dict``s, ``beam.Row``s, Arrow record
batches or tables, or pandas DataFrames, and every row comes back either scored
(its fields plus the score columns ``autoenc score`` writes) or on the tagged
``rejected`` output with the reason (Beam's dead-letter convention). It is the
transform ``autoenc score`` itself runs, so the numbers are the same.

``AutoencoderModelHandler`` is a RunInference ``ModelHandler`` for those who
assemble their own inference (keyed or not, ``with_exception_handling``, model
refresh by ``WatchFilePattern``, ``apache_beam.ml.anomaly``'s
``OfflineDetector``). It lives in ``handler`` (importing Beam's RunInference
module can load PyTorch; this module does not need it) and is also
reachable from here.

Example:
    >>> import apache_beam as beam                                    # doctest: +SKIP
    >>> from autoenc_beam import Score                                   # doctest: +SKIP
    >>> with beam.Pipeline() as p:                                    # doctest: +SKIP
    ...     rows = p | beam.io.ReadFromCsv("rows.csv")
    ...     result = rows | Score("models/demo")
    ...     result.scores | beam.Map(print)
    ...     result.rejected | beam.Map(print)
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Sequence
from typing import Any

import apache_beam as beam
import numpy as np
import pyarrow as pa
from apache_beam import typehints
from apache_beam.utils import shared

from autoenc import artifact as artifacts
from autoenc.schema import FeatureSpec, check_reserved_names
from autoenc.scoring import error_histogram, score_columns, score_fields, threshold_from_quantiles
from autoenc.validation import conform_batch, rejected_table, validate_batch

from .io import BatchCoder, Chunk
from .transforms import RowsSoFar, imputed_counts, unseen_counts

beam.coders.registry.register_coder(pa.RecordBatch, BatchCoder)

SCORES = "scores"
REJECTED = "rejected"
COUNTS = "counts"
HISTOGRAM = "histogram"
# Rows per model call when the input is rows (dicts, beam.Rows): BatchElements
# grows batches up to this size.
BATCH_ROWS = 8192


@dataclasses.dataclass(frozen=True)
class ScoringSetup:
    """What a scoring run uses, resolved once when the pipeline is built (so
    every worker scores with the same model version and threshold).

    Attributes:
        model_dir: the model directory.
        version: the model version (``LATEST``'s when none was asked for).
        spec: the model's features and key columns.
        threshold: the anomaly threshold on the reconstruction error.
        threshold_method: how it was set (``method``, ``set_at``, ...).
        quantiles: the validation errors' quantiles (for the drift histogram).
        top_k: features named per row in ``top_features`` (0: no column).
        error_map: whether the ``error_map`` column is written.
        latent_distance: whether the model has a latent distribution (and the
            ``latent_distance`` column is written).
        categorical: what training counted of each categorical column
            (``metadata.json``'s ``input.categorical``), for the drift guard.
        combined: whether the ``combined_score`` column is written (a model
            with its validation rows' latent-distance percentiles).
        total: whether the ``total_distance`` column is written (a model with
            its validation rows' mean error).
    """

    model_dir: str
    version: str
    spec: FeatureSpec
    threshold: float
    threshold_method: dict
    quantiles: tuple
    top_k: int = 0
    error_map: bool = False
    latent_distance: bool = True
    categorical: dict | None = None
    combined: bool = False
    total: bool = False

    def fields(self) -> list[pa.Field]:
        """The score columns' fields."""
        return score_fields(
            top_k=self.top_k,
            error_map=self.error_map,
            latent_distance=self.latent_distance,
            imputed=self.spec.imputation is not None,
            combined=self.combined,
            total=self.total,
        )


def resolve_threshold(
    metadata, *, threshold: float | None = None, contamination: float | None = None
) -> tuple[float, dict]:
    """The threshold of a scoring run and how it was set: the model's, a fixed
    ``threshold``, or the ``contamination`` quantile of its validation errors.

    Raises:
        ConfigError: both given, or a value out of range.
    """
    from autoenc.errors import ConfigError

    if threshold is not None and contamination is not None:
        raise ConfigError(
            f"Give a threshold or a contamination, not both. Received: threshold={threshold}, "
            f"contamination={contamination}"
        )
    if threshold is not None:
        return float(threshold), {"method": "fixed", "set_at": "scoring"}
    if contamination is not None:
        value = threshold_from_quantiles(metadata.validation_error_quantiles, contamination)
        return value, {"method": "contamination", "contamination": contamination, "set_at": "scoring"}
    return metadata.threshold, {**metadata.threshold_method, "set_at": "training"}


def scoring_setup(
    model_dir: str,
    model_version: str | None = None,
    *,
    threshold: float | None = None,
    contamination: float | None = None,
    explain_top_k: int = 3,
    error_map: bool = False,
) -> ScoringSetup:
    """Loads the model version once, at pipeline construction, and resolves
    the threshold (``resolve_threshold``). A worker of an in-process runner
    (the DirectRunner's threads) scores with this loaded model instead of
    reading it again.

    Raises:
        ArtifactError: no such model or version, or a damaged one.
        ConfigError: an option out of range.
    """
    from autoenc.errors import ConfigError

    if explain_top_k < 0:
        raise ConfigError(f"explain_top_k must be >= 0. Received: explain_top_k={explain_top_k}")
    artifact = artifacts.load_artifact(model_dir, version=model_version)
    value, method = resolve_threshold(artifact.metadata, threshold=threshold, contamination=contamination)
    spec = artifact.metadata.spec
    with _launched_lock:
        _launched.clear()
        _launched[(model_dir, artifact.version)] = artifact
    return ScoringSetup(
        model_dir=model_dir,
        version=artifact.version,
        spec=spec,
        threshold=value,
        threshold_method=method,
        quantiles=tuple(artifact.metadata.validation_error_quantiles),
        top_k=min(explain_top_k, len(spec.model_names)),
        error_map=error_map,
        latent_distance=artifact.metadata.latent_distribution is not None,
        categorical=artifact.metadata.input.get("categorical"),
        combined=artifact.metadata.combined_score,
        total=artifact.metadata.total_distance,
    )


# -- any element as an Arrow batch ---------------------------------------------


def _is_row(element) -> bool:
    # beam.Row, or the NamedTuple rows of schema-aware sources (ReadFromCsv, SQL).
    return isinstance(element, (dict, beam.Row)) or (
        isinstance(element, tuple) and hasattr(element, "_asdict")
    )


def _is_dataframe(element) -> bool:
    return hasattr(element, "columns") and hasattr(element, "iloc")


def _as_dict(row) -> dict:
    return row if isinstance(row, dict) else row._asdict()


def _rows_in(element) -> int:
    """Rows in an element (BatchElements' size): a batch counts its rows, also
    keyed (RunInference's KeyedModelHandler)."""
    if isinstance(element, tuple) and len(element) == 2 and not hasattr(element, "_asdict"):
        element = element[1]
    if isinstance(element, np.ndarray):
        return len(element) if element.ndim > 1 else 1
    if isinstance(element, (pa.RecordBatch, pa.Table)):
        return element.num_rows
    if isinstance(element, Chunk):
        return element.batch.num_rows
    if _is_dataframe(element):
        return len(element)
    return 1


def _feature_column(name: str, values: list, feature) -> tuple[pa.Array, dict[int, str]]:
    """A feature column built from Python values, and the rows whose value is
    not a number (or, for a tensor feature, not an array of numbers; for a
    categorical one, not a string, boolean or integer)."""
    if feature.categorical:
        return _category_column(name, values)
    try:
        column = pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
        column = None  # mixed types: value by value below
    if column is not None:
        if feature.shape or pa.types.is_integer(column.type) or pa.types.is_floating(column.type):
            return column, {}
        if pa.types.is_null(column.type):
            return pa.nulls(len(values), pa.float64()), {}
    if feature.shape:
        out, problems = [], {}
        for i, value in enumerate(values):
            try:
                out.append(None if value is None else np.asarray(value, dtype=np.float64).ravel())
            except (TypeError, ValueError):
                out.append(None)
                problems[i] = f"column '{name}' is {_show(value)}, expected an array of numbers"
        return pa.array(out, pa.large_list(pa.float64())), problems
    out, problems = [], {}
    for i, value in enumerate(values):
        if value is None or (isinstance(value, (int, float, np.number)) and not isinstance(value, bool)):
            out.append(None if value is None else float(value))
        else:
            out.append(None)
            problems[i] = f"column '{name}' is {_show(value)}, expected a number"
    return pa.array(out, pa.float64()), problems


def _category_column(name: str, values: list) -> tuple[pa.Array, dict[int, str]]:
    """A categorical feature's Python values as text (as
    ``autoenc.categorical.category_text``)."""
    out, problems = [], {}
    for i, value in enumerate(values):
        if value is None or isinstance(value, str):
            out.append(value)
        elif isinstance(value, (bool, np.bool_)):
            out.append("true" if value else "false")
        elif isinstance(value, (int, np.integer)):
            out.append(str(int(value)))
        else:
            out.append(None)
            problems[i] = (
                f"column '{name}' is {_show(value)}, expected a category (a string, boolean or integer)"
            )
    return pa.array(out, pa.string()), problems


def _show(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def rows_to_batch(rows: Sequence, spec: FeatureSpec) -> tuple[pa.RecordBatch, list | None]:
    """``dict``s or ``beam.Row``s as one Arrow batch (columns in first-seen
    order), and per row ``None`` or why a value could not be read."""
    dicts = [_as_dict(r) for r in rows]
    names: dict[str, None] = {}
    for d in dicts:
        names.update(dict.fromkeys(d))
    # A feature no row has is a column of nulls (every row rejected, with why).
    names.update(dict.fromkeys(spec.names))
    features = {f.name: f for f in spec.features}
    columns, reasons = [], [None] * len(dicts)
    for name in names:
        values = [d.get(name) for d in dicts]
        if name in features:
            column, problems = _feature_column(name, values, features[name])
            for i, why in problems.items():
                reasons[i] = why if reasons[i] is None else f"{reasons[i]}; {why}"
        else:
            try:
                column = pa.array(values)
            except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
                column = pa.array([None if v is None else str(v) for v in values], pa.string())
        columns.append(column)
    batch = pa.RecordBatch.from_arrays(columns, names=list(names))
    return batch, (reasons if any(r is not None for r in reasons) else None)


def reference_schema(schema: pa.Schema, spec: FeatureSpec) -> pa.Schema:
    """The schema a user's batch is conformed to: its own columns, with scalar
    features as float64 (categorical ones as text) and missing feature and
    key columns added (null, so their rows are rejected with a reason)."""
    fields = []
    for field in schema:
        feature = next((f for f in spec.features if f.name == field.name), None)
        if feature is not None and feature.categorical:
            field = pa.field(field.name, pa.string())
        elif feature is not None and not feature.shape:
            field = pa.field(field.name, pa.float64())
        fields.append(field)
    for feature in spec.features:
        if feature.name not in schema.names:
            kind = pa.large_list(pa.float64()) if feature.shape else pa.float64()
            fields.append(pa.field(feature.name, pa.string() if feature.categorical else kind))
    for name in spec.key_columns:
        if name not in schema.names:
            fields.append(pa.field(name, pa.string()))
    return pa.schema(fields)


def _one_batch(table: pa.Table) -> pa.RecordBatch:
    batches = table.combine_chunks().to_batches(max_chunksize=None)
    return batches[0] if batches else pa.RecordBatch.from_pylist([], schema=table.schema)


def _merge_reasons(first: list | None, second: list | None) -> list | None:
    """Two per-row reason lists (``None`` = no reasons) as one."""
    if first is None or second is None:
        return first if second is None else second
    return ["; ".join(r for r in (a, b) if r) or None for a, b in zip(first, second, strict=True)]


def conformed_chunk(batch: pa.RecordBatch, reasons: list | None, spec: FeatureSpec, *, source: str) -> Chunk:
    """A user's batch conformed to ``reference_schema``, with the rows that
    could not be (``reasons``: those found while building the batch)."""
    conformed = conform_batch(batch, reference_schema(batch.schema, spec), spec, source=source or "the input")
    return Chunk(
        source=source, first_row=0, batch=conformed.batch, reasons=_merge_reasons(reasons, conformed.reasons)
    )


def as_chunk(element, spec: FeatureSpec, *, source: str = "") -> tuple[Chunk, str]:
    """Any input element as a ``Chunk`` (conformed to ``reference_schema``) and
    the kind of element it was: ``chunk``, ``rows``, ``record_batch``,
    ``table`` or ``dataframe``."""
    if isinstance(element, Chunk):
        return element, "chunk"
    reasons = None
    if isinstance(element, list):
        (batch, reasons), kind = rows_to_batch(element, spec), "rows"
    elif isinstance(element, pa.RecordBatch):
        batch, kind = element, "record_batch"
    elif isinstance(element, pa.Table):
        batch, kind = _one_batch(element), "table"
    elif _is_dataframe(element):
        batch, kind = pa.RecordBatch.from_pandas(element, preserve_index=False), "dataframe"
    else:
        raise TypeError(
            f"Score takes dicts, beam.Rows, Arrow record batches or tables, or pandas DataFrames. "
            f"Received an element of type {type(element).__name__}."
        )
    return conformed_chunk(batch, reasons, spec, source=source), kind


# -- scoring a batch -------------------------------------------------------------


# The artifact ``scoring_setup`` loaded, for a worker in the same process (the
# in-process runner's): the model is then read and built once a run. One entry,
# taken by the first worker that scores with it.
_launched: dict = {}
_launched_lock = threading.Lock()


def _launched_artifact(model_dir: str, version: str):
    """The artifact of ``model_dir``/``version`` loaded at launch in this
    process (and forgotten here), or ``None``."""
    with _launched_lock:
        return _launched.pop((model_dir, version), None)


class _Loaded:
    """Holder for the shared scorer (``Shared`` needs a weak-referenceable object)."""

    def __init__(self, scorer, names):
        self.scorer = scorer
        self.names = names


def load_scorer(setup: ScoringSetup, shared_handle: shared.Shared | None = None):
    """The scorer of ``setup`` and its feature names; loaded once per worker
    process when a ``Shared`` handle is given."""

    def load():
        artifact = _launched_artifact(setup.model_dir, setup.version) or artifacts.load_artifact(
            setup.model_dir, version=setup.version
        )
        scorer = artifact.scorer(setup.threshold, top_k=setup.top_k, error_map=setup.error_map)
        return _Loaded(scorer, list(artifact.metadata.spec.model_names))

    if shared_handle is None:
        return load()
    tag = f"{setup.model_dir}@{setup.version}>{setup.threshold!r},{setup.top_k},{setup.error_map}"
    return shared_handle.acquire(load, tag=tag)


@dataclasses.dataclass(frozen=True)
class ScoredBatch:
    """One batch through validation and the model.

    Attributes:
        scores: the valid rows' kept columns and score columns (``None`` when
            every row was rejected).
        rejected: the rejected rows (``rejected_schema``), or ``None``.
        counts: ``(name, n)``: read, scored, rejected, anomalies, extreme.
        histogram: the valid rows' errors binned by the validation quantiles.
    """

    scores: pa.Table | None
    rejected: pa.Table | None
    counts: list
    histogram: np.ndarray | None


def score_chunk(chunk: Chunk, setup: ScoringSetup, loaded, keep: Sequence[str] | None) -> ScoredBatch:
    """Validates a chunk and scores its valid rows.

    Args:
        chunk: the rows, conformed.
        setup: the scoring run.
        loaded: ``load_scorer``'s result.
        keep: input columns copied to the scores (``None``: every column).
    """
    batch = chunk.batch
    keep = list(batch.schema.names if keep is None else keep)
    checked = validate_batch(batch, setup.spec, prior_reasons=chunk.reasons)
    n = batch.num_rows
    n_rejected = len(checked.reasons)
    counts = [("read", n)]
    for name, count in (chunk.unknown_features or {}).items():
        counts.append((f"unknown_feature:{name}", count))
    rejected = None
    if n_rejected:
        counts.append(("rejected", n_rejected))
        rejected = rejected_table(
            batch, checked.valid, checked.reasons, source=chunk.source, first_row=chunk.first_row
        )
    if n_rejected == n:
        return ScoredBatch(None, rejected, counts, None)
    columns = batch.select(keep)
    if n_rejected:
        columns = columns.filter(pa.array(checked.valid))
    scores = loaded.scorer.score(checked.features)
    anomalies = int(scores.is_anomaly.sum())
    counts += [
        ("scored", len(scores.latent)),
        ("anomalies", anomalies),
        ("extreme", int(scores.extreme.sum())),
    ]
    counts += imputed_counts(checked)
    counts += unseen_counts(checked)
    schema = pa.schema(list(columns.schema) + setup.fields())
    table = pa.Table.from_arrays(
        list(columns.columns) + score_columns(scores, loaded.names, checked.imputed), schema=schema
    )
    return ScoredBatch(table, rejected, counts, error_histogram(scores.reconstruction_error, setup.quantiles))


def _like_input(table: pa.Table, kind: str, *, rejected: bool = False):
    """A result table as the kind of element that came in."""
    if kind == "record_batch":
        return _one_batch(table) if table.num_rows else None
    if kind == "table":
        return table
    if kind == "dataframe":
        return table.to_pandas()
    if rejected and kind == "rows":
        table = table.drop_columns(["source_file", "source_row"])
    return table.to_pylist()


class _ScoreFn(beam.DoFn):
    """Scores lists of input elements (from ``BatchElements``); the model is
    loaded once per worker process."""

    def __init__(self, setup: ScoringSetup, keep: Sequence[str] | None, rows_as: str):
        self._setup = setup
        self._keep = None if keep is None else tuple(keep)
        self._rows_as = rows_as
        self._shared = shared.Shared()
        self._scored = beam.metrics.Metrics.counter("autoenc", "rows_scored")
        self._rejected = beam.metrics.Metrics.counter("autoenc", "rows_rejected")
        self._anomalies = beam.metrics.Metrics.counter("autoenc", "anomalies")

    def setup(self):
        self._loaded = load_scorer(self._setup, self._shared)
        self._rows = RowsSoFar()

    def process(self, elements):
        rows = [e for e in elements if _is_row(e)]
        batches = [e for e in elements if not _is_row(e)]
        if rows:
            yield from self._score(rows, row_kind=type(rows[0]))
        for element in batches:
            yield from self._score(element)

    def _score(self, element, row_kind=None):
        chunk, kind = as_chunk(element, self._setup.spec)
        result = score_chunk(chunk, self._setup, self._loaded, self._keep)
        counts = dict(result.counts)
        self._rows.add(counts.get("read", 0), rejected=counts.get("rejected", 0))
        for name, n in result.counts:
            yield beam.pvalue.TaggedOutput(COUNTS, (name, n))
            if name in ("scored", "rejected", "anomalies"):
                getattr(self, f"_{name}").inc(n)
        if result.histogram is not None:
            yield beam.pvalue.TaggedOutput(HISTOGRAM, result.histogram)
        if kind == "chunk":
            if result.rejected is not None:
                yield beam.pvalue.TaggedOutput(REJECTED, (chunk.key, result.rejected))
            if result.scores is not None:
                yield chunk.key, result.scores
            return
        if result.rejected is not None:
            out = _like_input(result.rejected, kind, rejected=True)
            for item in out if kind == "rows" else [out]:
                yield beam.pvalue.TaggedOutput(REJECTED, _as_row_kind(item, row_kind, self._rows_as))
        if result.scores is not None:
            out = _like_input(result.scores, kind)
            if kind == "rows":
                for item in out:
                    yield _as_row_kind(item, row_kind, self._rows_as)
            elif out is not None:
                yield out


def _as_row_kind(item, row_kind, rows_as: str):
    if row_kind is None or rows_as == "dict" or (rows_as == "input" and row_kind is dict):
        return item
    return beam.Row(**item)


class Score(beam.PTransform):
    """Scores rows with a model trained by autoenc: the latent vector, the
    reconstruction error, the anomaly score and flag (and ``top_features``,
    ``latent_distance``), as ``autoenc score`` writes them.

    Input: a ``PCollection`` of ``dict``s or ``beam.Row``s (one row each;
    batched for the model with ``BatchElements``), or of Arrow record batches,
    Arrow tables or pandas DataFrames (many rows each, scored as they are: the
    columnar path). Feature columns are found by name; integer columns are read
    as float64.

    Output: a tuple of ``PCollection``s (``result.scores``,
    ``result.rejected``, ``result.counts``, ``result.histogram``):

    * ``scores``: each valid row's kept columns, then the score columns, in
      the kind of element that came in (a dict or ``beam.Row`` per row; a
      record batch, table or DataFrame per element). Higher
      ``reconstruction_error`` = more anomalous.
    * ``rejected``: the rows that failed validation (a null, NaN or
      infinite feature, a value that is not a number, a missing key), with
      every input column and ``reason``; for Arrow and DataFrame input also
      ``source_file`` (empty) and ``source_row`` (the row's place in its
      element). Every input row ends up in exactly one of the two.
    * ``counts``: ``(name, n)`` pairs: ``read``, ``scored``, ``rejected``,
      ``anomalies``, ``extreme`` (sum them with ``beam.CombinePerKey(sum)``).
    * ``histogram``: per batch, the errors binned by the model's validation
      quantiles (``autoenc.scoring.drift``).

    Args:
        model_dir: a model directory written by ``autoenc train`` (or
            ``Autoencoder.save``); local or any filesystem TensorFlow reads.
        model_version: the version to use (default: ``LATEST``'s, read once
            when the pipeline is built).
        keep: input columns copied to the scores (default: every input
            column).
        threshold: a fixed threshold on the reconstruction error, instead of
            the model's.
        contamination: the threshold as this share of the model's validation
            rows (instead of the model's).
        explain_top_k: features named per row in ``top_features`` (0: none).
        error_map: also write each value's squared error.
        rows_as: for dict and ``beam.Row`` input: ``"input"`` (the kind that
            came in), ``"dict"`` or ``"row"``.
        batch_rows: the most rows per model call for row input.

    Example:
        >>> result = rows | Score("models/demo")          # doctest: +SKIP
        >>> result.scores | beam.io.WriteToParquet(...)    # doctest: +SKIP
        >>> result.rejected | beam.Map(print)              # doctest: +SKIP
    """

    def __init__(
        self,
        model_dir: str,
        model_version: str | None = None,
        *,
        keep: Sequence[str] | None = None,
        threshold: float | None = None,
        contamination: float | None = None,
        explain_top_k: int = 3,
        error_map: bool = False,
        rows_as: str = "input",
        batch_rows: int = BATCH_ROWS,
        setup: ScoringSetup | None = None,
    ):
        super().__init__()
        if rows_as not in ("input", "dict", "row"):
            from autoenc.errors import ConfigError

            raise ConfigError(f"rows_as must be 'input', 'dict' or 'row'. Received: rows_as={rows_as!r}")
        self._setup = setup or scoring_setup(
            model_dir,
            model_version,
            threshold=threshold,
            contamination=contamination,
            explain_top_k=explain_top_k,
            error_map=error_map,
        )
        if keep is not None:
            check_reserved_names(pa.schema([(k, pa.null()) for k in keep]), copied=keep, source="keep")
        self._keep = keep
        self._rows_as = rows_as
        self._batch_rows = batch_rows

    @property
    def setup(self) -> ScoringSetup:
        """The model version and threshold this transform scores with."""
        return self._setup

    def expand(self, elements):
        # Lists of Arrow batches keep BatchCoder's size estimate (Beam samples
        # element sizes by encoding them otherwise: a pickled 65,536-row batch).
        kind = elements.element_type if elements.element_type in (Chunk, pa.Table, pa.RecordBatch) else Any
        return (
            elements
            | "Batch"
            >> beam.BatchElements(
                min_batch_size=1, max_batch_size=self._batch_rows, element_size_fn=_rows_in
            ).with_output_types(typehints.List[kind])
            | "Score"
            >> beam.ParDo(_ScoreFn(self._setup, self._keep, self._rows_as)).with_outputs(
                REJECTED, COUNTS, HISTOGRAM, main=SCORES
            )
        )


_IN_HANDLER = ("AutoencoderModelHandler", "RowScores", "offline_detector")


def __getattr__(name: str):
    # The RunInference parts moved to .handler; still reachable from here.
    if name in _IN_HANDLER:
        from . import handler

        return getattr(handler, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
