"""Reading input files as Arrow batches, and writing outputs file by file.

At launch, ``plan_input`` lists the files matching ``--input`` once and opens
every one: each Parquet footer is read (rows, row groups, schema), each
TFRecord file's first record is checked, so a damaged, empty or unreadable
file stops the run before anything runs, with every such file named. The
schemas of all files are unified into one (``autoenc.schema.unify_schemas``).
The job then reads exactly the planned files: Parquet split by row group,
TFRecord file by file (``autoenc.tfrecord``: GZIP and record checksums
checked to the end), only the columns the job needs, in batches bounded in
rows and in bytes. A row group that does not hold the rows its footer said
fails the job, naming the file.

Every batch travels as a ``Chunk`` that knows its file (path and place in the
plan) and first row, so a rejected row names exactly where it came from, and
every file the jobs write is named after the chunk it came from
(``chunk_key``) and written whole, by a write-then-rename on local disks (a
single-object write elsewhere): a retried bundle rewrites the same file, so no
row is ever written twice, and file names sort in input order.

Paths used as patterns (Beam's ``FileSystems.match`` and ``delete`` take
globs) are escaped with ``literal``, so an output path with ``[``, ``?`` or
``*`` in it names only itself.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import logging
import math
import os
import pickle
import re
import secrets
import time

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from autoenc import tfexample, tfrecord
from autoenc.errors import ConfigError, InputError
from autoenc.schema import FeatureSpec, unify_schemas
from autoenc.validation import conform_batch

_log = logging.getLogger(__name__)

TFRECORD_EXTENSIONS = (".tfrecord", ".tfrecords", ".tfr")
COMPRESSION_EXTENSIONS = (".gz", ".gzip")
# Snappy: fast to write and read, and the default of most Parquet tools.
PARQUET_CODEC = "snappy"
# Bytes a Parquet reader buffers per column while it decodes pages: memory
# stays bounded by this, not by the size of a row group.
PARQUET_BUFFER_BYTES = 8 * 2**20
# Files whose footers the launching process reads at once.
PLAN_THREADS = 16
# Launch-time sample: at most this many rows, from at most this many places
# spread over the input (see ``sample_rows``).
SAMPLE_ROWS = 10_000
SAMPLE_SPLITS = 16
SAMPLE_BYTES = 256 * 2**20
# TFRecord schema inference: the first INFER_RECORDS records of the first file
# and the first INFER_OTHER_RECORDS of up to INFER_OTHER_FILES other files.
INFER_OTHER_RECORDS = 100
INFER_OTHER_FILES = 15


# ---------------------------------------------------------------------------
# Paths on any Beam filesystem.


def is_local(path: str) -> bool:
    """True for a path on the local filesystem (no ``scheme://``)."""
    return "://" not in path


def literal(path: str) -> str:
    """``path`` as a Beam match pattern that matches only itself.

    Example:
        >>> literal("out/day[1]/run?1/*")
        'out/day[[]1]/run[?]1/[*]'
    """
    return "".join(f"[{c}]" if c in "[?*" else c for c in path)


def join(*parts: str) -> str:
    """Joins path parts with '/', for local paths and URLs like gs:// alike."""
    return "/".join([parts[0].rstrip("/")] + [p.strip("/") for p in parts[1:]])


def list_files(directory: str, suffix: str = "") -> list[tuple[str, int]]:
    """(path, bytes) of the files directly in ``directory`` whose names end with
    ``suffix`` (hidden files left out), sorted by name; empty when it does not exist."""
    if is_local(directory):
        if not os.path.isdir(directory):
            return []
        found = [
            (join(directory, e.name), e.stat().st_size)
            for e in os.scandir(directory)
            if e.is_file() and not e.name.startswith(".") and e.name.endswith(suffix)
        ]
        return sorted(found)
    result = FileSystems.match([join(literal(directory), "*")])[0]
    found = [
        (m.path, m.size_in_bytes)
        for m in result.metadata_list
        if m.path.endswith(suffix) and not m.path.rsplit("/", 1)[-1].startswith(".")
    ]
    return sorted(found)


def delete_tree(path: str) -> None:
    """Deletes a file or a directory and everything under it, if present."""
    if is_local(path):
        import shutil

        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=False)
        elif os.path.lexists(path):
            os.remove(path)
        return
    files = [m.path for m in FileSystems.match([join(literal(path), "**")])[0].metadata_list]
    files += [m.path for m in FileSystems.match([literal(path)])[0].metadata_list]
    if files:
        FileSystems.delete([literal(f) for f in sorted(set(files))])


def makedirs(path: str) -> None:
    if is_local(path):
        os.makedirs(path, exist_ok=True)
    elif not FileSystems.exists(path):
        FileSystems.mkdirs(path)


def write_bytes(path: str, data: bytes) -> None:
    """Writes a whole file so that no reader ever sees a part of it: a
    temporary file renamed into place on a local disk; one object write (which
    object stores make atomic) elsewhere."""
    if not is_local(path):
        with FileSystems.create(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
            f.write(data)
        return
    directory, name = os.path.split(path)
    os.makedirs(directory or ".", exist_ok=True)
    tmp = os.path.join(directory, f".{name}.{secrets.token_hex(4)}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


# What ``write_bytes`` (and ``autoenc.artifact``'s writer) name a file while
# writing it: ".<name>.<8 hex digits>.tmp".
_TEMPORARY = re.compile(r"\..+\.[0-9a-f]{8}\.tmp")


def temporaries(directory: str) -> list[str]:
    """The names of those temporary files in a local ``directory`` ([] elsewhere)."""
    if not is_local(directory) or not os.path.isdir(directory):
        return []
    return [
        n
        for n in sorted(os.listdir(directory))
        if _TEMPORARY.fullmatch(n) and os.path.isfile(os.path.join(directory, n))
    ]


def remove_temporaries(directory: str, *, older_than_s: float = 0.0) -> list[str]:
    """Deletes the temporary files that whole-file writes killed before their
    rename left in a local ``directory`` (only those ``older_than_s`` seconds
    old or more); returns their names. Call it only where no live run can be
    writing, or with an age no write takes."""
    removed = []
    now = time.time()
    for name in temporaries(directory):
        path = os.path.join(directory, name)
        try:
            if now - os.path.getmtime(path) >= older_than_s:
                os.remove(path)
                removed.append(name)
        except FileNotFoundError:  # its writer renamed or removed it meanwhile
            pass
    return removed


def open_file(path: str):
    """A file's raw bytes for reading, on any Beam filesystem (never
    decompressed on the way: GZIP TFRecord files are checked by
    ``autoenc.tfrecord``)."""
    return FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)


def read_bytes(path: str) -> bytes:
    with open_file(path) as f:
        return f.read()


# ---------------------------------------------------------------------------
# The input plan.


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


def match_files(pattern: str) -> list[tuple[str, int]]:
    """(path, bytes) of the files matching a glob, sorted by path.

    Raises:
        InputError: nothing matches.
    """
    try:
        result = FileSystems.match([pattern])[0]
    except Exception as e:  # Beam raises BeamIOError for a missing bucket or scheme.
        raise InputError(f"Could not list --input {pattern!r}: {e}") from e
    found = sorted(
        (m.path, m.size_in_bytes)
        for m in result.metadata_list
        if not (is_local(m.path) and os.path.isdir(m.path))
    )
    if not found:
        raise InputError(
            f"No file matches --input {pattern!r}. Check the path and the glob "
            "(quote it so the shell does not expand it), e.g. --input 'data/*.parquet'. "
            "A literal [, ? or * in a path is written [[], [?] or [*]."
        )
    return found


@dataclasses.dataclass(frozen=True)
class RowGroup:
    """One row group of a Parquet file, as its footer describes it.

    Attributes:
        rows: rows it holds.
        column_bytes: uncompressed bytes per top-level column.
    """

    rows: int
    column_bytes: dict


@dataclasses.dataclass(frozen=True)
class InputFile:
    """One input file as planned at launch.

    Attributes:
        index: its place in the sorted file list (names every chunk of it).
        path: the file.
        size: bytes on disk.
        rows: rows its Parquet footer declares (``None`` for TFRecord, whose
            records are counted, and checked, as they are read).
        columns: its top-level column names (Parquet).
        row_groups: its row groups (Parquet).
    """

    index: int
    path: str
    size: int
    rows: int | None = None
    columns: tuple[str, ...] = ()
    row_groups: tuple[RowGroup, ...] = ()


@dataclasses.dataclass(frozen=True)
class Split:
    """A part of the input one worker reads: a Parquet row group or a TFRecord file."""

    file_index: int
    path: str
    row_group: int | None
    first_row: int
    rows: int | None
    batch_rows: int
    columns: tuple[str, ...] | None


@dataclasses.dataclass(frozen=True)
class InputPlan:
    """What a job will read, decided once at launch.

    Attributes:
        pattern: the ``--input`` glob.
        fmt: ``"parquet"`` or ``"tfrecord"``.
        files: every matched file, in sorted order.
        schema: the unified schema of all files (every field nullable).
    """

    pattern: str
    fmt: str
    files: tuple[InputFile, ...]
    schema: pa.Schema

    @property
    def expected_rows(self) -> int | None:
        """Rows the Parquet footers declare (``None`` for TFRecord)."""
        if self.fmt != "parquet":
            return None
        return sum(f.rows for f in self.files)

    def project(self, columns) -> pa.Schema:
        """The schema restricted to ``columns`` (in schema order)."""
        wanted = set(columns)
        return pa.schema([f for f in self.schema if f.name in wanted])

    def splits(self, *, columns, width: int, batch_rows: int, batch_bytes: int) -> list[Split]:
        """The splits to read, each with its rows per batch: at most
        ``batch_rows``, and at most ``batch_bytes`` of memory per batch (the
        row's Arrow bytes for ``columns``, from the footer, plus 12 bytes per
        model input value: the float64 features and float32 normalized copy)."""
        columns = tuple(columns)
        out = []
        for f in self.files:
            if self.fmt == "tfrecord":
                row_bytes = 12 * width + 64
                out.append(
                    Split(f.index, f.path, None, 0, None, _batch(row_bytes, batch_rows, batch_bytes), None)
                )
                continue
            present = tuple(c for c in columns if c in f.columns)
            first = 0
            for i, group in enumerate(f.row_groups):
                arrow = sum(group.column_bytes.get(c, 0) for c in present) / max(group.rows, 1)
                rows = _batch(arrow + 12 * width, batch_rows, batch_bytes)
                out.append(Split(f.index, f.path, i, first, group.rows, rows, present))
                first += group.rows
        return out

    def describe(self) -> dict:
        """The plan for summary.json: pattern, format, rows declared and every file."""
        return {
            "pattern": self.pattern,
            "format": self.fmt,
            "rows_declared": self.expected_rows,
            "files": [{"path": f.path, "bytes": f.size, "rows": f.rows} for f in self.files],
        }


def _batch(row_bytes: float, batch_rows: int, batch_bytes: int) -> int:
    return int(max(1, min(batch_rows, batch_bytes // max(row_bytes, 1))))


_VALUE_BYTES = {"BOOLEAN": 1, "INT32": 4, "FLOAT": 4, "INT64": 8, "DOUBLE": 8, "INT96": 12}


def _arrow_bytes(chunk) -> int:
    """About the bytes a Parquet column chunk takes in memory once read: at
    least its values times their width (its page bytes can be far fewer, when
    dictionary or run-length encoding packs repeated values)."""
    width = _VALUE_BYTES.get(chunk.physical_type, 0)
    return max(chunk.total_uncompressed_size, width * chunk.num_values)


def _inspect_parquet(index: int, path: str, size: int) -> InputFile | str:
    if size == 0:
        return "is empty (0 bytes)"
    try:
        with open_file(path) as f:
            parquet = pq.ParquetFile(f)
            meta = parquet.metadata
            schema = parquet.schema_arrow
            groups = []
            for i in range(meta.num_row_groups):
                group = meta.row_group(i)
                column_bytes: dict[str, int] = {}
                for j in range(group.num_columns):
                    chunk = group.column(j)
                    name = chunk.path_in_schema.split(".", 1)[0]
                    column_bytes[name] = column_bytes.get(name, 0) + _arrow_bytes(chunk)
                groups.append(RowGroup(group.num_rows, column_bytes))
    except Exception as e:  # pyarrow raises several types for a damaged file
        return f"is not a readable Parquet file ({e})"
    return InputFile(index, path, size, meta.num_rows, tuple(schema.names), tuple(groups)), schema


def _inspect_tfrecord(index: int, path: str, size: int):
    if size == 0:
        return "is empty (0 bytes)"
    try:
        with open_file(path) as f:
            next(tfrecord.iter_records(f, source=path), None)
    except InputError as e:
        return f"is not a readable TFRecord file ({e})"
    except Exception as e:
        return f"could not be read ({e})"
    return InputFile(index, path, size), None


def plan_input(pattern: str, fmt: str | None) -> InputPlan:
    """Lists the input once and opens every file (see the module docstring).

    Raises:
        InputError: unknown format, no file matches, any file is empty,
            damaged or unreadable (all such files named in one message), or
            the files hold no rows.
    """
    fmt = detect_format(pattern, fmt)
    found = match_files(pattern)
    inspect = _inspect_parquet if fmt == "parquet" else _inspect_tfrecord
    with concurrent.futures.ThreadPoolExecutor(min(PLAN_THREADS, len(found))) as pool:
        results = list(pool.map(lambda item: inspect(item[0], *item[1]), enumerate(found)))
    bad = [(path, r) for (path, _), r in zip(found, results, strict=True) if isinstance(r, str)]
    if bad:
        shown = "; ".join(f"{path} {problem}" for path, problem in bad[:10])
        more = f"; and {len(bad) - 10} more" if len(bad) > 10 else ""
        raise InputError(
            f"{len(bad)} of the {len(found)} file(s) matching --input {pattern!r} cannot be read, so "
            f"nothing was read: {shown}{more}. Repair or remove them, or narrow --input, and run again."
        )
    files = tuple(r[0] for r in results)
    if fmt == "parquet":
        schema = unify_schemas([r[1] for r in results])
        total = sum(f.rows for f in files)
        if total == 0:
            raise InputError(
                f"The {len(files)} file(s) matching --input {pattern!r} hold no rows "
                f"({', '.join(f.path for f in files[:5])}{', ...' if len(files) > 5 else ''}). "
                "Nothing to do; check that the files were written completely."
            )
    else:
        schema = _infer_tfrecord_schema(files)
    return InputPlan(pattern, fmt, files, schema)


def _infer_tfrecord_schema(files) -> pa.Schema:
    """The schema of ``tf.train.Example`` records: inferred from the first
    ``INFER_RECORDS`` records of the first file, then completed from the first
    ``INFER_OTHER_RECORDS`` of up to ``INFER_OTHER_FILES`` other files spread
    over the input (a feature only they have is added; a numeric feature they
    store as floats becomes float). Features found later still, while
    reading, are counted and reported (``Chunk.unknown_features``)."""

    def first_records(file, limit):
        with open_file(file.path) as f:
            for i, record in enumerate(tfrecord.iter_records(f, source=file.path)):
                if i >= limit:
                    break
                yield record

    schema = tfexample.infer_schema(first_records(files[0], tfexample.INFER_RECORDS), source=files[0].path)
    others = files[1:]
    if len(others) > INFER_OTHER_FILES:
        picks = np.linspace(0, len(others) - 1, INFER_OTHER_FILES).round().astype(int)
        others = [others[i] for i in sorted(set(picks.tolist()))]
    for other in others:
        try:
            found = tfexample.infer_schema(first_records(other, INFER_OTHER_RECORDS), source=other.path)
        except InputError:
            continue  # a file of no records adds nothing
        schema = tfexample.complete_schema(schema, found)
    return schema


def model_schema(schema: pa.Schema, spec: FeatureSpec, fmt: str) -> pa.Schema:
    """The schema chunks are conformed to: for TFRecord input, whose records
    carry no schema (``int64_list`` or ``float_list`` is the writer's choice),
    scalar integer features are read as float64, the model's type, so a later
    record that stores a float is not rejected."""
    if fmt != "tfrecord":
        return schema
    features = {f.name for f in spec.features if not f.shape}
    return pa.schema(
        [
            pa.field(f.name, pa.float64()) if f.name in features and pa.types.is_integer(f.type) else f
            for f in schema
        ]
    )


def sample_rows(
    plan: InputPlan,
    columns,
    *,
    rows: int = SAMPLE_ROWS,
    places: int = SAMPLE_SPLITS,
    max_bytes: int = SAMPLE_BYTES,
) -> pa.Table:
    """A deterministic sample of up to ``rows`` rows, and about ``max_bytes``,
    for decisions made at launch (tensor shapes, which columns look like
    identifiers, the bounds of extreme training values): the first rows of up
    to ``places`` row groups (TFRecord: files) spread evenly over the input,
    conformed to the plan's schema."""
    schema = plan.project(columns)
    # The rows and bytes are shared among the places actually sampled.
    places = max(1, min(places, len(plan.splits(columns=schema.names, width=0, batch_rows=1, batch_bytes=1))))
    per_place = math.ceil(rows / places)
    budget = max_bytes // places
    splits = plan.splits(columns=schema.names, width=0, batch_rows=per_place, batch_bytes=budget)
    if len(splits) > places:
        picks = np.linspace(0, len(splits) - 1, places).round().astype(int)
        splits = [splits[i] for i in sorted(set(picks.tolist()))]
    batches = []
    for split in splits:
        if plan.fmt == "tfrecord":
            # Records carry no footer: take them while they fit the budget.
            records, size = [], 0
            with open_file(split.path) as f:
                for record in tfrecord.iter_records(f, source=split.path):
                    records.append(record)
                    size += len(record)
                    if len(records) >= per_place or size >= budget:
                        break
            if records:
                batches.append(tfexample.examples_to_batch(records, schema, known=plan.schema).batch)
            continue
        for chunk in read_split(split, plan.fmt, schema):
            batches.append(chunk.batch)
            break
    if not batches:
        return schema.empty_table()
    return pa.Table.from_batches(batches, schema=schema).slice(0, rows)


# ---------------------------------------------------------------------------
# Reading.


@dataclasses.dataclass(frozen=True)
class Chunk:
    """A batch of input rows and where they came from.

    Attributes:
        source: the file path.
        first_row: 0-based row (record) number of the batch's first row in ``source``.
        batch: the rows, conformed to the input's reference schema.
        reasons: ``None``, or per row ``None`` / why the row did not fit the schema.
        file_index: the file's place in the input plan.
        unknown_features: TFRecord only: features found in these records that
            the schema inferred at launch does not have (name -> records).
    """

    source: str
    first_row: int
    batch: pa.RecordBatch
    reasons: list | None = None
    file_index: int = 0
    unknown_features: dict | None = None

    @property
    def key(self) -> str:
        return chunk_key(self.file_index, self.first_row)


def chunk_key(file_index: int, first_row: int) -> str:
    """The name of a chunk: its file's place in the plan and its first row;
    names sort in input order.

    Example:
        >>> chunk_key(3, 65536)
        '000003-000000065536'
    """
    return f"{file_index:06d}-{first_row:012d}"


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
    """Bytes held by an Arrow batch, a numpy array, or a dataclass or tuple of them.

    Example:
        >>> batch_nbytes(pa.table({"x": np.zeros(10)}))
        80
    """
    if isinstance(value, (pa.Table, pa.RecordBatch, pa.Array, pa.ChunkedArray)):
        return value.nbytes
    if isinstance(value, np.ndarray):
        return value.nbytes
    if isinstance(value, tuple):
        return sum(batch_nbytes(v) for v in value)
    if dataclasses.is_dataclass(value):
        return sum(batch_nbytes(getattr(value, f.name)) for f in dataclasses.fields(value))
    return 0


def read_split(
    split: Split,
    fmt: str,
    schema: pa.Schema,
    *,
    spec: FeatureSpec | None = None,
    known: pa.Schema | None = None,
    batch_rows: int | None = None,
):
    """Yields the ``Chunk``s of one split, conformed to ``schema``.

    Args:
        spec: the features (a feature column that is missing or cannot be cast
            rejects its rows; ``None``: no column is a feature).
        known: TFRecord: the whole inferred schema (features outside it are
            counted as ``Chunk.unknown_features``); ``None``: ``schema``.

    Raises:
        InputError: a Parquet row group holds another number of rows than its
            footer declared at launch (the file changed), or a TFRecord file is
            damaged or truncated (``autoenc.tfrecord``).
    """
    size = batch_rows or split.batch_rows
    if fmt == "parquet":
        yield from _read_parquet(split, schema, spec, size)
    else:
        yield from _read_tfrecord(split, schema, spec, schema if known is None else known, size)


def _read_parquet(split: Split, schema: pa.Schema, spec, size: int):
    first = split.first_row
    with contextlib.ExitStack() as stack:
        # A local file by its path: pyarrow's own reader, which reads without
        # holding the GIL (a Python file object is read through Python).
        source = split.path if is_local(split.path) else stack.enter_context(open_file(split.path))
        parquet = stack.enter_context(
            pq.ParquetFile(source, buffer_size=PARQUET_BUFFER_BYTES, pre_buffer=False)
        )
        columns = list(split.columns) if split.columns is not None else None
        for batch in parquet.iter_batches(batch_size=size, row_groups=[split.row_group], columns=columns):
            conformed = conform_batch(batch, schema, spec, source=split.path)
            yield Chunk(split.path, first, conformed.batch, conformed.reasons, split.file_index)
            first += batch.num_rows
    read = first - split.first_row
    if split.rows is not None and read != split.rows:
        raise InputError(
            f"{split.path} changed while the job ran: its row group {split.row_group} held {read} rows, "
            f"its footer said {split.rows} when the job started. Do not rewrite input files while a job "
            "reads them; run again."
        )


def _read_tfrecord(split: Split, schema: pa.Schema, spec, known, size: int):
    first, records = 0, []
    with open_file(split.path) as f:
        for record in tfrecord.iter_records(f, source=split.path):
            records.append(record)
            if len(records) == size:
                yield _parse(split, first, records, schema, spec, known)
                first += len(records)
                records = []
    if records:
        yield _parse(split, first, records, schema, spec, known)


def _parse(split: Split, first_row: int, records, schema: pa.Schema, spec, known) -> Chunk:
    conformed = tfexample.examples_to_batch(records, schema, known=known)
    return Chunk(
        split.path, first_row, conformed.batch, conformed.reasons, split.file_index, conformed.unknown or None
    )


class _ReadSplitFn(beam.DoFn):
    def __init__(self, fmt: str, schema: pa.Schema, spec: FeatureSpec, known: pa.Schema):
        self._fmt = fmt
        self._schema = schema
        self._spec = spec
        self._known = known
        self._rows_read = beam.metrics.Metrics.counter("autoenc", "rows_read")

    def process(self, split):
        for chunk in read_split(split, self._fmt, self._schema, spec=self._spec, known=self._known):
            self._rows_read.inc(chunk.batch.num_rows)
            yield chunk


class ReadRecords(beam.PTransform):
    """Reads the planned input as ``Chunk``s.

    Args:
        plan: the ``InputPlan`` made at launch.
        schema: the schema every chunk is conformed to (the plan's, projected
            to the columns the job needs; ``model_schema``).
        spec: the feature spec (decides which conversion failures reject rows).
        batch_rows: most rows per chunk.
        batch_bytes: most bytes per chunk (see ``InputPlan.splits``).

    Example:
        >>> chunks = p | "ReadRecords" >> ReadRecords(plan, schema=schema, spec=spec,
        ...     batch_rows=65536, batch_bytes=64 * 2**20)  # doctest: +SKIP
    """

    def __init__(
        self,
        plan: InputPlan,
        *,
        schema: pa.Schema,
        spec: FeatureSpec,
        batch_rows: int,
        batch_bytes: int,
    ):
        super().__init__()
        if batch_rows < 1:
            raise ConfigError(f"--read_batch_rows must be >= 1. Received: --read_batch_rows={batch_rows}")
        if batch_bytes < 1:
            raise ConfigError(f"--read_batch_bytes must be >= 1. Received: --read_batch_bytes={batch_bytes}")
        self._fmt = plan.fmt
        self._schema = schema
        self._spec = spec
        # TFRecord: the whole inferred schema, so that features the job does not
        # read are told apart from features inference missed (tfexample.examples_to_batch).
        self._known = plan.schema
        self._splits = plan.splits(
            columns=schema.names, width=spec.width, batch_rows=batch_rows, batch_bytes=batch_bytes
        )

    def expand(self, pbegin):
        return (
            pbegin
            | "Splits" >> beam.Create(self._splits, reshuffle=False)
            | "Redistribute" >> beam.Reshuffle()
            | "Read"
            >> beam.ParDo(_ReadSplitFn(self._fmt, self._schema, self._spec, self._known)).with_output_types(
                Chunk
            )
        )


# ---------------------------------------------------------------------------
# Writing.


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


# pyarrow's own cap on rows per row group.
ROW_GROUP_ROWS = 2**20


def parquet_bytes(table: pa.Table) -> bytes:
    """``table`` as the bytes of a Parquet file: snappy, dictionary encoding
    only for columns that are not floating point (for float columns, whose
    values rarely repeat, dictionaries dominated the write time), nested types
    written as Beam's own sinks write them."""
    sink = pa.BufferOutputStream()
    with pq.ParquetWriter(
        sink,
        table.schema,
        compression=PARQUET_CODEC,
        use_dictionary=dictionary_columns(table.schema),
        use_compliant_nested_type=False,
    ) as writer:
        writer.write_table(table, row_group_size=ROW_GROUP_ROWS)
    return sink.getvalue().to_pybytes()


class _WriteParquetFn(beam.DoFn):
    def __init__(self, directory: str, schema: pa.Schema):
        self._directory = directory
        self._schema = schema

    def process(self, element):
        key, table = element
        if isinstance(table, pa.RecordBatch):
            table = pa.Table.from_batches([table])
        write_bytes(join(self._directory, f"part-{key}.parquet"), parquet_bytes(table.cast(self._schema)))


class WriteParquet(beam.PTransform):
    """Writes ``(chunk key, pa.Table)`` elements as ``DIR/part-<chunk key>.parquet``,
    one whole file per element (see the module docstring)."""

    def __init__(self, directory: str, schema: pa.Schema):
        super().__init__()
        self._directory = directory
        self._schema = schema

    def expand(self, tables):
        return tables | "Write" >> beam.ParDo(_WriteParquetFn(self._directory, self._schema))


EMPTY_PART = "part-empty.parquet"


def ensure_schema_file(directory: str, schema: pa.Schema) -> None:
    """Writes an empty ``part-empty.parquet`` with ``schema`` into ``directory``
    when it holds no Parquet file (no row was written there), so that readers
    (Spark, DuckDB, pyarrow) find the columns of an empty result."""
    if not list_files(directory, ".parquet"):
        write_bytes(join(directory, EMPTY_PART), parquet_bytes(schema.empty_table()))


def footer_rows(directory: str) -> list[tuple[str, int]]:
    """(file name, rows its footer declares) for each Parquet file in ``directory``.

    Raises:
        InputError: a file there is not a complete Parquet file.
    """
    out = []
    for path, _ in list_files(directory, ".parquet"):
        try:
            with open_file(path) as f:
                rows = pq.ParquetFile(f).metadata.num_rows
        except Exception as e:
            raise InputError(f"{path}, written by this run, is not a complete Parquet file ({e}).") from e
        out.append((path.rsplit("/", 1)[-1], rows))
    return out


beam.coders.registry.register_coder(pa.Table, BatchCoder)
beam.coders.registry.register_coder(Chunk, BatchCoder)
