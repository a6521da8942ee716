"""Composite transforms shared by the train, score and evaluate pipelines.

Row counts travel as ``(name, n)`` pairs on a side output of every step that
accounts for rows; ``WriteRunInfo`` sums them on the runner and writes them, with
any other results, to one small JSON file the launching process reads after the
job. That works the same on every runner, unlike metric queries, which some
runners only approximate; the same figures also go to Beam counters for
monitoring. On long inputs, each worker also logs the rows it has validated so
far, at most every ``PROGRESS_SECONDS``, through the ``autoenc.progress`` logger
(the one training progress uses).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time

import apache_beam as beam
import numpy as np
import pyarrow as pa

from autoenc.categorical import top_counts, value_counts
from autoenc.schema import FeatureSpec
from autoenc.training import staged_file
from autoenc.validation import rejected_table, validate_batch

from . import io
from .io import BatchCoder

COUNTS = "counts"
REJECTED = "rejected"

# A worker logs its rows read so far at most this often (and not at all on
# inputs it reads in less time).
PROGRESS_SECONDS = 30.0
# autoenc.progress.LOGGER, named here so that the Beam workers of a training job
# need not import Keras.
_progress = logging.getLogger("autoenc.progress")


class RowsSoFar:
    """Counts the rows a DoFn instance has read and logs the totals at most
    every ``PROGRESS_SECONDS`` (a clock read per call, so per chunk, nothing
    per row). Create it in ``DoFn.setup``; call ``add`` once per chunk.

    Example:
        >>> rows = RowsSoFar()
        >>> rows.add(1000, rejected=3)
        >>> rows.read, rows.rejected
        (1000, 3)
    """

    def __init__(self):
        self.read = self.rejected = 0
        self._started = self._reported = time.monotonic()

    def add(self, rows: int, *, rejected: int = 0) -> None:
        self.read += rows
        self.rejected += rejected
        now = time.monotonic()
        if now - self._reported >= PROGRESS_SECONDS:
            self._reported = now
            _progress.info(
                "%d rows read so far on this worker (%d rejected), %.0f rows/s",
                self.read,
                self.rejected,
                self.read / max(now - self._started, 1e-9),
            )


@dataclasses.dataclass(frozen=True)
class ValidRows:
    """The valid rows of one chunk.

    Attributes:
        source: the file they came from.
        key: the chunk's name (``io.chunk_key``: its file's place in the
            input and its first row), naming every file written from it.
        rows: int64 row numbers within ``source``.
        columns: the columns kept for the output (may have no columns).
        features: float64 [n, n_features], raw units, model order.
        labels: bool [n], True for rows labeled anomalous, when the rows were
            validated with a label column; else ``None``.
    """

    source: str
    key: str
    rows: np.ndarray
    columns: pa.RecordBatch
    features: np.ndarray
    labels: np.ndarray | None = None


beam.coders.registry.register_coder(ValidRows, BatchCoder)


# Counts named with this prefix are TFRecord features found in records but
# missing from the schema inferred at launch (they are not read).
UNKNOWN_FEATURE = "unknown_feature:"
# Counts named with this prefix: missing values imputed in that feature.
MISSING_IN = "missing:"


def imputed_counts(checked) -> list[tuple[str, int]]:
    """The counts of a validated batch's imputed values (``--missing impute``):
    values, rows, and values per feature (``MISSING_IN`` + its name)."""
    if checked.imputed is None or not checked.imputed.any():
        return []
    return [
        ("imputed_values", int(checked.imputed.sum())),
        ("imputed_rows", int(np.count_nonzero(checked.imputed))),
        *((MISSING_IN + name, n) for name, n in checked.missing.items()),
    ]


# Counts named with this prefix: scored rows whose value of that categorical
# column was outside its vocabulary (the out-of-vocabulary slot).
UNSEEN_IN = "unseen:"


def unseen_counts(checked) -> list[tuple[str, int]]:
    """The counts of a validated batch's out-of-vocabulary categorical
    values: rows with any, and rows per column (``UNSEEN_IN`` + its name)."""
    if checked.out_of_vocabulary is None or not checked.out_of_vocabulary.any():
        return []
    return [
        ("unseen_rows", int(np.count_nonzero(checked.out_of_vocabulary))),
        *((UNSEEN_IN + name, n) for name, n in checked.unseen.items()),
    ]


def unseen_summary(counts: dict, spec, training: dict | None, *, max_share: float) -> dict:
    """What a run's summary says of its categorical values outside the
    vocabulary: rows with any, and per categorical column the rows, their
    share of the scored rows, the share in training (values too rare to make
    the vocabulary), and ``warning`` when a column's share exceeds its
    training share by more than ``max_share`` (new categories: the model
    has never seen them, and scores them all alike)."""
    scored = max(int(counts.get("scored", 0)), 1)
    by_column, reasons = {}, []
    for feature in spec.categorical_features:
        rows = int(counts.get(UNSEEN_IN + feature.name, 0))
        seen = (training or {}).get(feature.name) or {}
        training_share = 1.0 - seen["rows_kept"] / seen["rows"] if seen.get("rows") else 0.0
        share = rows / scored
        by_column[feature.name] = {"rows": rows, "share": share, "training_share": training_share}
        if share - training_share > max_share:
            reasons.append(
                f"{share:.1%} of the rows have a value of '{feature.name}' outside its "
                f"{len(feature.categories)} categories (training: {training_share:.1%})"
            )
    return {
        "rows": int(counts.get("unseen_rows", 0)),
        "by_column": by_column,
        "max_share": max_share,
        "warning": "; ".join(reasons) or None,
    }


def imputed_summary(counts: dict, imputation) -> dict:
    """What a run's summary says of its imputed values: rows, values, per
    column, and the columns without a missing indicator (none in the model's
    training sample: the median alone stands in for their values)."""
    by_column = {k.removeprefix(MISSING_IN): v for k, v in sorted(counts.items()) if k.startswith(MISSING_IN)}
    return {
        "rows": counts.get("imputed_rows", 0),
        "values": counts.get("imputed_values", 0),
        "by_column": by_column,
        "without_indicator": sorted(set(by_column) - set(imputation.indicator_columns)),
    }


class _ValidateFn(beam.DoFn):
    def __init__(self, spec: FeatureSpec, keep_columns: tuple[str, ...], label_column: str | None, bounds):
        self._spec = spec
        self._keep = list(keep_columns)
        self._label = label_column
        self._bounds = bounds
        self._rejected = beam.metrics.Metrics.counter("autoenc", "rows_rejected")
        self._valid = beam.metrics.Metrics.counter("autoenc", "rows_valid")

    def setup(self):
        self._rows = RowsSoFar()

    def process(self, chunk):
        checked = validate_batch(
            chunk.batch,
            self._spec,
            prior_reasons=chunk.reasons,
            label_column=self._label,
            bounds=self._bounds,
        )
        n_rejected = len(checked.reasons)
        self._rows.add(chunk.batch.num_rows, rejected=n_rejected)
        yield beam.pvalue.TaggedOutput(COUNTS, ("read", chunk.batch.num_rows))
        for name, n in (chunk.unknown_features or {}).items():
            yield beam.pvalue.TaggedOutput(COUNTS, (UNKNOWN_FEATURE + name, n))
        if n_rejected:
            self._rejected.inc(n_rejected)
            yield beam.pvalue.TaggedOutput(COUNTS, ("rejected", n_rejected))
            yield beam.pvalue.TaggedOutput(
                REJECTED,
                (
                    chunk.key,
                    rejected_table(
                        chunk.batch,
                        checked.valid,
                        checked.reasons,
                        source=chunk.source,
                        first_row=chunk.first_row,
                    ),
                ),
            )
        if n_rejected == chunk.batch.num_rows:
            return
        for count in imputed_counts(checked):
            yield beam.pvalue.TaggedOutput(COUNTS, count)
        self._valid.inc(chunk.batch.num_rows - n_rejected)
        columns = chunk.batch.select(self._keep)
        positions = np.arange(chunk.batch.num_rows, dtype=np.int64)
        if n_rejected:
            columns = columns.filter(pa.array(checked.valid))
            positions = positions[checked.valid]
        yield ValidRows(
            chunk.source, chunk.key, positions + chunk.first_row, columns, checked.features, checked.labels
        )


class Validate(beam.PTransform):
    """Splits chunks into valid rows and rejected-row tables.

    Returns a ``DoOutputsTuple`` with the main output (``ValidRows``), ``rejected``
    (``(chunk key, pa.Table)`` with the rejected-rows schema) and ``counts``
    (``(name, n)``).

    Args:
        spec: the feature spec.
        keep_columns: columns of the input to keep on the valid rows.
        label_column: a column of anomaly labels to check too (a row with a
            missing or unknown label is rejected) and to carry as ``labels``.
        bounds: ``autoenc.preprocessing.ExtremeBounds``: also reject values
            outside them (training).
    """

    def __init__(
        self,
        spec: FeatureSpec,
        keep_columns: tuple[str, ...] = (),
        label_column: str | None = None,
        bounds=None,
    ):
        super().__init__()
        self._spec = spec
        self._keep = tuple(keep_columns)
        self._label = label_column
        self._bounds = bounds

    def expand(self, chunks):
        return chunks | "Check" >> beam.ParDo(
            _ValidateFn(self._spec, self._keep, self._label, self._bounds)
        ).with_output_types(ValidRows).with_outputs(COUNTS, REJECTED, main="valid")


class _StageFn(beam.DoFn):
    def __init__(self, directory: str, part: str):
        self._directory = directory
        self._part = part
        self._staged = beam.metrics.Metrics.counter("autoenc", f"rows_staged_{part}")

    def process(self, element):
        key, rows = element
        io.write_bytes(io.join(self._directory, f"{self._part}-{key}.tfrecord"), staged_file(rows))
        self._staged.inc(len(rows))
        yield self._part, len(rows)


class StageRows(beam.PTransform):
    """Writes ``(chunk key, float64 rows)`` elements as staged files
    ``DIR/<part>-<chunk key>.tfrecord`` (``autoenc.training.staged_file``: the
    rows and their statistics), one whole file per chunk, and returns the
    counts ``(part, rows)``.

    Files are named by their chunk's place in the input, so listing them in
    name order gives the rows in the same order on every runner, however the
    work was split, and a retried bundle rewrites the same file."""

    def __init__(self, directory: str, part: str):
        super().__init__()
        self._directory = directory
        self._part = part

    def expand(self, rows):
        return rows | "Write" >> beam.ParDo(_StageFn(self._directory, self._part))


def _write_json(_, path, counts, **results):
    data = {"counts": {name: int(n) for name, n in counts.items()}}
    for name, value in results.items():
        data[name] = value
    io.write_bytes(path, json.dumps(data, default=_jsonable).encode())


def _jsonable(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serializable: {type(value)}")


class WriteRunInfo(beam.PTransform):
    """Sums ``(name, n)`` counts and writes them, and singleton results, to ``path``.

    Args:
        path: the JSON file to write.
        results: name -> singleton ``PCollection`` whose value is added to the file.
    """

    def __init__(self, path: str, **results):
        super().__init__()
        self._path = path
        self._results = results

    def expand(self, counts):
        totals = counts | "Sum" >> beam.CombinePerKey(sum)
        side = {name: beam.pvalue.AsSingleton(pc) for name, pc in self._results.items()}
        return (
            counts.pipeline
            | "Once" >> beam.Create([None])
            | "Write" >> beam.Map(_write_json, self._path, beam.pvalue.AsDict(totals), **side)
        )


def read_run_info(path: str) -> dict:
    """Reads (and deletes) the file ``WriteRunInfo`` wrote."""
    data = json.loads(io.read_bytes(path).decode())
    io.delete_tree(path)
    return data


def reconcile(
    *,
    declared: int | None,
    counts: dict,
    outcomes: tuple[str, ...],
    written: dict | None = None,
) -> dict:
    """Checks the row counts of a run against each other and against what the
    files say, so that a lost or duplicated row fails the run.

    Args:
        declared: rows the input files declare (Parquet footers, read at
            launch); ``None`` for TFRecord (its records are counted while
            read, every checksum and the GZIP trailer checked).
        counts: the job's counts; ``read`` and each of ``outcomes``.
        outcomes: the counts every read row ends in exactly one of (e.g.
            ``scored``, ``rejected``).
        written: count name -> rows the files written for it declare (Parquet
            footers, staged files' headers), each to equal ``counts[name]``.

    Returns:
        ``{"reconciled": bool, "checks": [{"check", "expected", "found", "ok"}]}``.

    Example:
        >>> reconcile(declared=10, counts={"read": 10, "scored": 7, "rejected": 2},
        ...           outcomes=("scored", "rejected"))["reconciled"]
        False
    """
    checks = []

    def check(what: str, expected: int, found: int) -> None:
        checks.append(
            {"check": what, "expected": int(expected), "found": int(found), "ok": expected == found}
        )

    read = counts.get("read", 0)
    if declared is not None:
        check("rows read = rows the input files' footers declare", declared, read)
    check(f"rows read = {' + '.join(outcomes)}", read, sum(counts.get(name, 0) for name in outcomes))
    for name, rows in (written or {}).items():
        check(f"rows {name} = rows in the files written for them", counts.get(name, 0), rows)
    return {"reconciled": all(c["ok"] for c in checks), "checks": checks}


def reconciliation_error(result: dict, where: str):
    """The ``ReconciliationError`` for a failed ``reconcile``."""
    from autoenc.errors import ReconciliationError

    failed = "; ".join(
        f"{c['check']}: expected {c['expected']}, found {c['found']}" for c in result["checks"] if not c["ok"]
    )
    return ReconciliationError(
        f"Row counts do not reconcile ({failed}), so rows were lost or duplicated and nothing was "
        f"committed to {where}. If an input file changed while the job ran, run again; otherwise "
        "this is a bug in autoenc or the runner: please report it with these figures."
    )


class _CountValuesFn(beam.DoFn):
    """Per chunk: ((column, value), count) of each categorical column's values
    (rows that did not fit the schema left out)."""

    def __init__(self, names: tuple[str, ...], nulls: bool):
        self._names = names
        self._nulls = nulls

    def process(self, chunk):
        batch = chunk.batch
        if chunk.reasons is not None:
            batch = batch.filter(pa.array([r is None for r in chunk.reasons]))
        for name in self._names:
            for value, count in value_counts(batch.column(name), nulls=self._nulls).items():
                yield (name, value), count


class _TopCategoriesFn(beam.CombineFn):
    """Per column, from complete (value, count) pairs: the ``limit`` most
    frequent (``autoenc.categorical.top_counts``), how many distinct values
    there were and how many rows had one."""

    def __init__(self, limit: int):
        self._limit = limit

    def create_accumulator(self):
        return [], 0, 0

    def add_input(self, accumulator, element):
        top, distinct, rows = accumulator
        return top_counts([*top, element], self._limit), distinct + 1, rows + element[1]

    def merge_accumulators(self, accumulators):
        top, distinct, rows = [], 0, 0
        for t, d, r in accumulators:
            top, distinct, rows = top_counts([*top, *t], self._limit), distinct + d, rows + r
        return top, distinct, rows

    def extract_output(self, accumulator):
        top, distinct, rows = accumulator
        return {
            "categories": [value for value, _ in top],
            "counts": [int(count) for _, count in top],
            "distinct": int(distinct),
            "rows": int(rows),
        }


class LearnVocabularies(beam.PTransform):
    """The vocabularies of categorical columns from input chunks: every
    value counted over the whole input (``CombinePerKey``), then per column
    the ``max_categories`` most frequent (ties in value order), written as
    JSON to ``path``: column -> {categories, counts, distinct, rows}.

    Args:
        names: the categorical columns.
        path: the JSON file to write.
        max_categories: categories kept per column.
        nulls: count nulls as a value (``--missing impute``).
    """

    def __init__(self, names, path: str, *, max_categories: int, nulls: bool):
        super().__init__()
        self._names = tuple(names)
        self._path = path
        self._limit = int(max_categories)
        self._nulls = nulls

    def expand(self, chunks):
        path = self._path
        return (
            chunks
            | "CountValues" >> beam.ParDo(_CountValuesFn(self._names, self._nulls))
            | "SumCounts" >> beam.CombinePerKey(sum)
            | "ByColumn" >> beam.MapTuple(lambda key, count: (key[0], (key[1], count)))
            | "TopCategories" >> beam.CombinePerKey(_TopCategoriesFn(self._limit))
            | "AllColumns" >> beam.combiners.ToDict()
            | "Write" >> beam.Map(lambda data: io.write_bytes(path, json.dumps(data).encode()))
        )
