"""Composite transforms shared by the train and score pipelines.

Row counts travel as ``(name, n)`` pairs on a side output of every step that
accounts for rows; ``WriteRunInfo`` sums them on the runner and writes them, with
any other results, to one small JSON file the launching process reads after the
job. That works the same on every runner, unlike metric queries, which some
runners only approximate; the same figures also go to Beam counters for
monitoring.
"""

from __future__ import annotations

import dataclasses
import json

import apache_beam as beam
import numpy as np
import pyarrow as pa
from apache_beam.io.filesystems import FileSystems

from autoenc.preprocessing import MomentStats
from autoenc.schema import FeatureSpec
from autoenc.validation import rejected_table, validate_batch
from pipelines.io import BatchCoder

COUNTS = "counts"
REJECTED = "rejected"


@dataclasses.dataclass(frozen=True)
class ValidRows:
    """The valid rows of one chunk.

    Attributes:
        source: the file they came from.
        rows: int64 row numbers within ``source``.
        columns: the columns kept for the output (may have no columns).
        features: float64 [n, n_features], raw units, model order.
        labels: bool [n], True for rows labeled anomalous, when the rows were
            validated with a label column; else ``None``.
    """

    source: str
    rows: np.ndarray
    columns: pa.RecordBatch
    features: np.ndarray
    labels: np.ndarray | None = None


beam.coders.registry.register_coder(ValidRows, BatchCoder)


class _ValidateFn(beam.DoFn):
    def __init__(self, spec: FeatureSpec, keep_columns: tuple[str, ...], label_column: str | None):
        self._spec = spec
        self._keep = list(keep_columns)
        self._label = label_column
        self._rejected = beam.metrics.Metrics.counter("autoenc", "rows_rejected")

    def process(self, chunk):
        checked = validate_batch(
            chunk.batch, self._spec, prior_reasons=chunk.reasons, label_column=self._label
        )
        n_rejected = len(checked.reasons)
        yield beam.pvalue.TaggedOutput(COUNTS, ("read", chunk.batch.num_rows))
        if n_rejected:
            self._rejected.inc(n_rejected)
            yield beam.pvalue.TaggedOutput(COUNTS, ("rejected", n_rejected))
            yield beam.pvalue.TaggedOutput(
                REJECTED,
                rejected_table(
                    chunk.batch,
                    checked.valid,
                    checked.reasons,
                    source=chunk.source,
                    first_row=chunk.first_row,
                ),
            )
        if n_rejected == chunk.batch.num_rows:
            return
        columns = chunk.batch.select(self._keep)
        positions = np.arange(chunk.batch.num_rows, dtype=np.int64)
        if n_rejected:
            columns = columns.filter(pa.array(checked.valid))
            positions = positions[checked.valid]
        yield ValidRows(chunk.source, positions + chunk.first_row, columns, checked.features, checked.labels)


class Validate(beam.PTransform):
    """Splits chunks into valid rows and rejected-row tables.

    Returns a ``DoOutputsTuple`` with the main output (``ValidRows``), ``rejected``
    (``pa.Table`` with the rejected-rows schema) and ``counts`` (``(name, n)``).

    Args:
        spec: the feature spec.
        keep_columns: columns of the input to keep on the valid rows.
        label_column: a column of anomaly labels to check too (a row with a
            missing or unknown label is rejected) and to carry as ``labels``.
    """

    def __init__(
        self, spec: FeatureSpec, keep_columns: tuple[str, ...] = (), label_column: str | None = None
    ):
        super().__init__()
        self._spec = spec
        self._keep = tuple(keep_columns)
        self._label = label_column

    def expand(self, chunks):
        return chunks | "Check" >> beam.ParDo(
            _ValidateFn(self._spec, self._keep, self._label)
        ).with_output_types(ValidRows).with_outputs(COUNTS, REJECTED, main="valid")


class StatsCombineFn(beam.CombineFn):
    """Normalization statistics of float64 row arrays, merged across workers."""

    def __init__(self, n_features: int):
        self._n_features = n_features

    def create_accumulator(self):
        return MomentStats.empty(self._n_features)

    def add_input(self, accumulator, rows):
        return MomentStats.merge([accumulator, MomentStats.from_array(rows)])

    def merge_accumulators(self, accumulators):
        return MomentStats.merge(list(accumulators))

    def extract_output(self, accumulator):
        return accumulator


def _write_json(_, path, counts, **results):
    data = {"counts": {name: int(n) for name, n in counts.items()}}
    for name, value in results.items():
        data[name] = value.__dict__ if isinstance(value, MomentStats) else value
    with FileSystems.create(path) as f:
        f.write(json.dumps(data, default=_jsonable).encode())


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
    with FileSystems.open(path) as f:
        data = json.loads(f.read().decode())
    FileSystems.delete([path])
    return data
