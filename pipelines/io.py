"""Reading records as Arrow batches, and writing Parquet outputs.

``ReadRecords`` matches a glob on any Beam filesystem, splits Parquet files by
row group (TFRecord files are read whole: GZIP cannot be split), redistributes
the splits across workers and reads each as Arrow record batches. Every batch
travels as a ``Chunk`` that remembers its file and first row number, so a
rejected row names exactly where it came from.
"""

from __future__ import annotations

import dataclasses
import logging
import pickle

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io import filebasedsink, fileio, parquetio
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.io.tfrecordio import _TFRecordUtil

from autoenc import tfexample
from autoenc.errors import ConfigError, InputError
from autoenc.schema import FeatureSpec
from autoenc.validation import conform_batch

_log = logging.getLogger(__name__)

TFRECORD_EXTENSIONS = (".tfrecord", ".tfrecords", ".tfr")
COMPRESSION_EXTENSIONS = (".gz", ".gzip")
# Snappy: fast to write and read, and the default of most Parquet tools.
PARQUET_CODEC = "snappy"


@dataclasses.dataclass(frozen=True)
class Chunk:
    """A batch of input rows and where they came from.

    Attributes:
        source: the file path.
        first_row: 0-based row (record) number of the batch's first row in ``source``.
        batch: the rows, conformed to the input's reference schema.
        reasons: ``None``, or per row ``None`` / why the row did not fit the schema.
    """

    source: str
    first_row: int
    batch: pa.RecordBatch
    reasons: list | None = None


class BatchCoder(beam.coders.Coder):
    """Coder of the batch-carrying elements (``pa.Table``, ``Chunk``, ``ValidRows``).

    Encodes with pickle (Arrow pickles through its IPC format) like Beam's
    fallback coder, but estimates an element's size from its buffers. Beam
    samples element sizes for its metrics by encoding the element; for batches
    of 65536 rows that pickling cost more than scoring them.
    """

    def encode(self, value):
        return pickle.dumps(value, pickle.HIGHEST_PROTOCOL)

    def decode(self, encoded):
        return pickle.loads(encoded)

    def is_deterministic(self):
        return False

    def estimate_size(self, value):
        return batch_nbytes(value)


def batch_nbytes(value) -> int:
    """Bytes held by an Arrow batch, a numpy array, or a dataclass of them.

    Example:
        >>> batch_nbytes(pa.table({"x": np.zeros(10)}))
        80
    """
    if isinstance(value, (pa.Table, pa.RecordBatch, pa.Array, pa.ChunkedArray)):
        return value.nbytes
    if isinstance(value, np.ndarray):
        return value.nbytes
    if dataclasses.is_dataclass(value):
        return sum(batch_nbytes(getattr(value, f.name)) for f in dataclasses.fields(value))
    return 0


def detect_format(pattern: str, fmt: str | None) -> str:
    """The input format: ``fmt`` if given, else from the pattern's extension."""
    if fmt:
        return fmt
    name = pattern.lower()
    for ext in COMPRESSION_EXTENSIONS:
        name = name.removesuffix(ext)
    if name.endswith(".parquet"):
        return "parquet"
    if name.endswith(TFRECORD_EXTENSIONS):
        return "tfrecord"
    raise InputError(
        f"Cannot tell the format of --input {pattern!r} from its extension (known: "
        f".parquet, {', '.join(TFRECORD_EXTENSIONS)}, optionally + .gz). Pass "
        "--format parquet or --format tfrecord."
    )


def match_files(pattern: str) -> list[str]:
    """The files matching a glob, sorted.

    Raises:
        InputError: nothing matches.
    """
    try:
        result = FileSystems.match([pattern])[0]
    except Exception as e:  # Beam raises BeamIOError for a missing bucket or scheme.
        raise InputError(f"Could not list --input {pattern!r}: {e}") from e
    paths = sorted(m.path for m in result.metadata_list)
    if not paths:
        raise InputError(
            f"No file matches --input {pattern!r}. Check the path and the glob "
            "(quote it so the shell does not expand it), e.g. --input 'data/*.parquet'."
        )
    return paths


def _open(path: str):
    return FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)


def iter_tfrecords(path: str):
    """Yields the records of a TFRecord file, plain or GZIP (detected from its bytes)."""
    with _open(path) as raw:
        magic = raw.read(2)
    compression = CompressionTypes.GZIP if magic == b"\x1f\x8b" else CompressionTypes.UNCOMPRESSED
    with FileSystems.open(path, compression_type=compression) as f:
        while True:
            try:
                record = _TFRecordUtil.read_record(f)
            except Exception as e:
                raise InputError(f"{path} is not a valid TFRecord file ({e}).") from e
            if record is None:
                return
            yield record


def read_schema(path: str, fmt: str) -> pa.Schema:
    """The Arrow schema of one input file (inferred from records for TFRecord).

    Raises:
        InputError: the file cannot be read in that format.
    """
    if fmt == "tfrecord":
        return tfexample.infer_schema(iter_tfrecords(path), source=path)
    try:
        with _open(path) as f:
            return pq.read_schema(f)
    except (pa.ArrowException, OSError) as e:
        raise InputError(
            f"{path} is not a readable Parquet file ({e}). Pass --format tfrecord for "
            "TFRecord files, or fix the --input glob."
        ) from e


def resolve_input(pattern: str, fmt: str | None) -> tuple[str, list[str], pa.Schema]:
    """The format, the matched files and the reference schema (the first file's).

    Raises:
        InputError: unknown format, no file matches, or the first file is unreadable.
    """
    fmt = detect_format(pattern, fmt)
    files = match_files(pattern)
    return fmt, files, read_schema(files[0], fmt)


def read_first_rows(path: str, fmt: str, schema: pa.Schema, n: int = 100) -> pa.Table:
    """Up to ``n`` first rows of one input file, for inferring tensor shapes."""
    if fmt == "tfrecord":
        records = []
        for record in iter_tfrecords(path):
            records.append(record)
            if len(records) >= n:
                break
        return pa.Table.from_batches([tfexample.examples_to_batch(records, schema).batch])
    with _open(path) as f:
        parquet = pq.ParquetFile(f)
        for batch in parquet.iter_batches(batch_size=n):
            return pa.Table.from_batches([batch])
    return schema.empty_table()


def _plan_splits(metadata, fmt: str):
    """(path, row_group or None, first_row) for each independently readable part."""
    if fmt == "tfrecord":
        yield metadata.path, None, 0
        return
    try:
        with _open(metadata.path) as f:
            meta = pq.ParquetFile(f).metadata
    except (pa.ArrowException, OSError) as e:
        raise InputError(f"{metadata.path} is not a readable Parquet file ({e}).") from e
    first = 0
    for i in range(meta.num_row_groups):
        yield metadata.path, i, first
        first += meta.row_group(i).num_rows


class _ReadSplitFn(beam.DoFn):
    def __init__(self, fmt: str, schema: pa.Schema, spec: FeatureSpec, batch_rows: int):
        self._fmt = fmt
        self._schema = schema
        self._spec = spec
        self._batch_rows = batch_rows
        self._rows_read = beam.metrics.Metrics.counter("autoenc", "rows_read")

    def process(self, split):
        path, row_group, first_row = split
        reader = self._parquet if self._fmt == "parquet" else self._tfrecord
        for chunk in reader(path, row_group, first_row):
            self._rows_read.inc(chunk.batch.num_rows)
            yield chunk

    def _parquet(self, path, row_group, first_row):
        with _open(path) as f:
            for batch in pq.ParquetFile(f).iter_batches(batch_size=self._batch_rows, row_groups=[row_group]):
                conformed = conform_batch(batch, self._schema, self._spec, source=path)
                yield Chunk(path, first_row, conformed.batch, conformed.reasons)
                first_row += batch.num_rows

    def _tfrecord(self, path, row_group, first_row):
        records = []
        for record in iter_tfrecords(path):
            records.append(record)
            if len(records) == self._batch_rows:
                yield self._parse(path, first_row, records)
                first_row += len(records)
                records = []
        if records:
            yield self._parse(path, first_row, records)

    def _parse(self, path, first_row, records):
        conformed = tfexample.examples_to_batch(records, self._schema)
        return Chunk(path, first_row, conformed.batch, conformed.reasons)


class ReadRecords(beam.PTransform):
    """Reads the files matching ``pattern`` as ``Chunk``s.

    Args:
        pattern: glob on any Beam filesystem.
        fmt: ``"parquet"`` or ``"tfrecord"``.
        schema: the reference schema every chunk is conformed to.
        spec: the feature spec (decides which conversion failures reject rows).
        batch_rows: most rows per chunk.

    Example:
        >>> chunks = p | "ReadRecords" >> ReadRecords("in/*.parquet", fmt="parquet",
        ...     schema=schema, spec=spec, batch_rows=65536)  # doctest: +SKIP
    """

    def __init__(self, pattern: str, *, fmt: str, schema: pa.Schema, spec: FeatureSpec, batch_rows: int):
        super().__init__()
        if batch_rows < 1:
            raise ConfigError(f"--read_batch_rows must be >= 1. Received: --read_batch_rows={batch_rows}")
        self._pattern = pattern
        self._fmt = fmt
        self._schema = schema
        self._spec = spec
        self._batch_rows = batch_rows

    def expand(self, pbegin):
        return (
            pbegin
            | "Pattern" >> beam.Create([self._pattern])
            | "Match" >> fileio.MatchAll(empty_match_treatment=fileio.EmptyMatchTreatment.DISALLOW)
            | "Split" >> beam.FlatMap(_plan_splits, self._fmt)
            | "Redistribute" >> beam.Reshuffle()
            | "Read"
            >> beam.ParDo(
                _ReadSplitFn(self._fmt, self._schema, self._spec, self._batch_rows)
            ).with_output_types(Chunk)
        )


def dictionary_columns(schema: pa.Schema) -> list[str]:
    """Columns worth dictionary-encoding: all but floating-point ones (and lists of
    them), whose values rarely repeat, so a dictionary only costs time.

    Example:
        >>> dictionary_columns(pa.schema([("id", pa.string()), ("e", pa.float64()),
        ...                               ("latent", pa.list_(pa.float32()))]))
        ['id']
    """
    names = []
    for field in schema:
        leaf = field.type
        while pa.types.is_list(leaf) or pa.types.is_large_list(leaf) or pa.types.is_fixed_size_list(leaf):
            leaf = leaf.value_type
        if not pa.types.is_floating(leaf):
            names.append(field.name)
    return names


# A row group is written once this much is buffered (in memory, per open file):
# row groups of tens of MiB suit Parquet readers (Spark, DuckDB, BigQuery), and it
# bounds a writer's memory. Beam's row-dict sink buffers the same 64 MiB.
ROW_GROUP_BYTES = 64 * 2**20
# pyarrow's own cap on rows per row group.
ROW_GROUP_ROWS = 2**20


class _RowGroupWriter:
    """A ``pq.ParquetWriter`` that gathers tables into row groups of about
    ``ROW_GROUP_BYTES`` (each ``write_table`` call would otherwise make its own,
    as small as one input batch)."""

    def __init__(self, writer: pq.ParquetWriter):
        self._writer = writer
        self._tables: list[pa.Table] = []
        self._rows = 0
        self._bytes = 0

    def write_table(self, table: pa.Table) -> None:
        self._tables.append(table)
        self._rows += table.num_rows
        self._bytes += table.nbytes
        if self._bytes >= ROW_GROUP_BYTES or self._rows >= ROW_GROUP_ROWS:
            self.flush()

    def flush(self) -> None:
        if self._rows:
            # concat_tables only links the chunks: nothing is copied.
            self._writer.write_table(pa.concat_tables(self._tables), row_group_size=ROW_GROUP_ROWS)
        self._tables, self._rows, self._bytes = [], 0, 0

    def close(self) -> None:
        self.flush()
        self._writer.close()


class _ParquetSink(parquetio._ParquetSink):
    """Beam's Parquet sink with deliberate write options.

    * Dictionary encoding only for columns that are not floating point. Beam's
      own sinks dictionary-encode every column, with no option to turn it off;
      for float columns (scores, latents, passed-through features), whose values
      rarely repeat, that dominated the write time (3.5 s of 4.6 s per million
      64-feature rows, profiled).
    * Row groups of about ``ROW_GROUP_BYTES`` (Beam's batched sink writes one per
      incoming table).
    * Snappy compression (``PARQUET_CODEC``).

    Subclasses a private Beam class: Beam is pinned to 2.77 in setup.py.
    """

    def open(self, temp_path):
        self._file_handle = filebasedsink.FileBasedSink.open(self, temp_path)
        return _RowGroupWriter(
            pq.ParquetWriter(
                self._file_handle,
                self._schema,
                compression=self._codec,
                use_dictionary=dictionary_columns(self._schema),
                use_compliant_nested_type=self._use_compliant_nested_type,
            )
        )


class WriteParquet(beam.PTransform):
    """Writes ``pa.Table`` elements with one schema as ``DIR/part-SSSSS-of-NNNNN.parquet``
    (snappy; dictionary encoding for all but floating-point columns; row groups of
    about 64 MiB), one file per bundle."""

    def __init__(self, directory: str, schema: pa.Schema):
        super().__init__()
        self._directory = directory
        self._schema = schema

    def expand(self, tables):
        sink = _ParquetSink(
            FileSystems.join(self._directory, "part"),
            self._schema,
            PARQUET_CODEC,
            use_deprecated_int96_timestamps=False,
            use_compliant_nested_type=False,  # as Beam's own Parquet sinks
            file_name_suffix=".parquet",
            num_shards=0,
            shard_name_template=None,
            mime_type="application/x-parquet",
            triggering_frequency=None,
        )
        return tables | "Write" >> beam.io.iobase.Write(sink)


beam.coders.registry.register_coder(pa.Table, BatchCoder)
beam.coders.registry.register_coder(Chunk, BatchCoder)

ATTEMPT_DIR = ".attempt"


def delete_tree(path: str) -> None:
    """Deletes a file or a directory and everything under it, if present, on any
    Beam filesystem (object stores have no directories, only files under a prefix)."""
    files = FileSystems.match([FileSystems.join(path, "**")])[0].metadata_list
    if files:
        FileSystems.delete([m.path for m in files])
    if FileSystems.exists(path):
        FileSystems.delete([path])


def start_attempt(output: str) -> str:
    """Prepares ``output`` for a run that writes into ``output/.attempt/``.

    Deletes ``summary.json`` first, so that from now until this run succeeds
    nothing claims the directory holds a finished result, then whatever a killed
    run left in the attempt directory. Two runs must not share one ``output`` at
    the same time.

    Returns:
        The attempt directory.
    """
    delete_tree(FileSystems.join(output, "summary.json"))
    attempt_dir = FileSystems.join(output, ATTEMPT_DIR)
    delete_tree(attempt_dir)
    return attempt_dir


def commit_attempt(output: str, attempt_dir: str, names: tuple[str, ...]) -> None:
    """Replaces ``output/<name>/`` by ``attempt_dir/<name>/`` for each name, then
    deletes the attempt directory. Works file by file (object stores have no
    directory rename); the caller writes ``summary.json`` after this, so a crash
    in between leaves no summary and the run counts as failed."""
    for name in names:
        target = FileSystems.join(output, name)
        delete_tree(target)
        files = [
            m.path for m in FileSystems.match([FileSystems.join(attempt_dir, name, "*")])[0].metadata_list
        ]
        if files:
            if not FileSystems.exists(target):
                FileSystems.mkdirs(target)
            FileSystems.rename(files, [FileSystems.join(target, f.rsplit("/", 1)[-1]) for f in files])
    delete_tree(attempt_dir)
