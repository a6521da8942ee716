"""``tf.train.Example`` records to Arrow batches, and their schema.

TFRecord input carries no schema, so one is inferred from the first records of
the first file (and completed from the first records of others,
``complete_schema``): ``float_list`` -> float32, ``int64_list`` -> int64, ``bytes_list``
-> string (binary when not UTF-8); a feature with more than one value per record
becomes a list column. Columns are sorted by name. Records that do not fit the
schema (another kind, more values than one) are kept as rows with a reason, so
they reach the rejected output instead of failing the job.

Example:
    >>> import tensorflow as tf
    >>> ex = tf.train.Example(features=tf.train.Features(feature={
    ...     "x": tf.train.Feature(float_list=tf.train.FloatList(value=[1.5]))}))
    >>> schema = infer_schema([ex.SerializeToString()], source="example")
    >>> examples_to_batch([ex.SerializeToString()], schema).batch.to_pydict()
    {'x': [1.5]}
"""

from __future__ import annotations

import functools
from collections.abc import Collection, Iterable, Sequence

import numpy as np
import pyarrow as pa

from autoenc.errors import InputError
from autoenc.validation import ConformedBatch

# How many records of the first file schema inference reads.
INFER_RECORDS = 1000

_SCALAR_TYPES = {"float_list": pa.float32(), "int64_list": pa.int64(), "bytes_list": pa.string()}


@functools.cache
def _example_class():
    # Imported on first use, not at module import: it loads TensorFlow.
    from tensorflow.core.example import example_pb2

    return example_pb2.Example


def _parse(record: bytes):
    example = _example_class()()
    example.ParseFromString(record)
    return example.features.feature


def infer_schema(records: Iterable[bytes], *, source: str, limit: int | None = INFER_RECORDS) -> pa.Schema:
    """Infers the Arrow schema of ``tf.train.Example`` records.

    Args:
        records: serialized examples (the first ``limit`` are read; ``None``: all).
        source: the file(s) they came from, for error messages.
        limit: most records to read.

    Raises:
        InputError: no record, or a record that is not a ``tf.train.Example``.
    """
    kinds: dict[str, str] = {}
    multi: set[str] = set()
    not_utf8: set[str] = set()
    seen = 0
    for i, record in enumerate(records):
        if limit is not None and i >= limit:
            break
        seen += 1
        try:
            features = _parse(record)
        except Exception as e:
            raise InputError(
                f"Record {i} of {source} is not a serialized tf.train.Example ({e}). "
                "autoenc reads TFRecord files of tf.train.Example; pass --format parquet "
                "for Parquet files."
            ) from e
        for name, feature in features.items():
            kind = feature.WhichOneof("kind")
            if kind is None:
                continue
            values = getattr(feature, kind).value
            if len(values) > 1:
                multi.add(name)
            # A float anywhere makes a numeric column float: ints fit in it.
            if kinds.get(name) != "float_list" and not (kind == "int64_list" and name in kinds):
                kinds[name] = kind
            if kind == "bytes_list" and any(not _is_utf8(v) for v in values):
                not_utf8.add(name)
    if not seen:
        raise InputError(f"{source} holds no records; autoenc needs data to infer the columns.")
    fields = []
    for name in sorted(kinds):
        arrow_type = _SCALAR_TYPES[kinds[name]]
        if arrow_type == pa.string() and name in not_utf8:
            arrow_type = pa.binary()
        if name in multi:
            arrow_type = pa.list_(arrow_type)
        fields.append(pa.field(name, arrow_type))
    return pa.schema(fields)


def complete_schema(schema: pa.Schema, other: pa.Schema) -> pa.Schema:
    """``schema`` completed by a schema inferred from other records: their new
    features are added (sorted among the others), and a feature stored as
    integers in one and floats in the other becomes float.

    Example:
        >>> complete_schema(pa.schema([("a", pa.int64())]), pa.schema([("a", pa.float32()), ("b", pa.int64())]))
        a: float
        b: int64
    """
    fields = {f.name: f for f in schema}
    for field in other:
        mine = fields.get(field.name)
        if mine is None:
            fields[field.name] = field
        elif pa.types.is_integer(_leaf(mine.type)) and pa.types.is_floating(_leaf(field.type)):
            fields[field.name] = pa.field(
                field.name, pa.list_(pa.float32()) if pa.types.is_list(mine.type) else pa.float32()
            )
    return pa.schema([fields[name] for name in sorted(fields)])


def _leaf(arrow_type: pa.DataType) -> pa.DataType:
    return arrow_type.value_type if pa.types.is_list(arrow_type) else arrow_type


def _is_utf8(value: bytes) -> bool:
    try:
        value.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _convert(values, kind: str, arrow_type: pa.DataType):
    """Values of one feature -> a Python value of ``arrow_type``, or raise ValueError."""
    is_list = pa.types.is_list(arrow_type)
    item_type = arrow_type.value_type if is_list else arrow_type
    if pa.types.is_floating(item_type):
        if kind not in ("float_list", "int64_list"):
            raise ValueError(f"expected float_list or int64_list, got {kind}")
        items = [float(v) for v in values]
    elif pa.types.is_integer(item_type):
        if kind != "int64_list":
            raise ValueError(f"expected int64_list, got {kind}")
        items = list(values)
    elif pa.types.is_string(item_type):
        if kind == "bytes_list":
            try:
                items = [v.decode("utf-8") for v in values]
            except UnicodeDecodeError as e:
                raise ValueError("expected UTF-8 text, got bytes that are not UTF-8") from e
        else:
            items = [str(v) for v in values]
    else:  # binary
        if kind != "bytes_list":
            raise ValueError(f"expected bytes_list, got {kind}")
        items = list(values)
    if is_list:
        return items
    if len(items) > 1:
        raise ValueError(f"has {len(items)} values, expected 1")
    return items[0] if items else None


def examples_to_batch(
    records: Sequence[bytes],
    schema: pa.Schema,
    *,
    known: Collection[str] | pa.Schema | None = None,
) -> ConformedBatch:
    """Parses serialized examples into a batch with ``schema``.

    A value that does not fit its column becomes null and its row gets a reason;
    a record that is not a ``tf.train.Example`` at all is a row of nulls with a
    reason. Features absent from a record are null.

    A batch is parsed whole by ``tf.io.parse_example`` when every record fits
    (``_parse_batch``); a batch where anything is off (a value that does not
    fit, a feature outside ``known``) is parsed record by record, which names
    each problem. Both give the same result.

    Args:
        records: serialized examples.
        schema: the columns to read.
        known: every feature the input's schema has (default: ``schema``'s): its
            names, or the schema itself (faster: its features that ``schema``
            lacks can then be told apart from unknown ones on the fast path).
            A record's feature outside it is counted in ``unknown``: inference
            from the first records missed it, and it is not read.

    Returns:
        A ``ConformedBatch`` (reasons ``None`` when every record fit).

    Example:
        >>> one, other = _example_class()(), _example_class()()
        >>> one.features.feature["x"].float_list.value.append(2.5)
        >>> other.features.feature["y"].float_list.value.append(1.0)
        >>> records = [one.SerializeToString(), other.SerializeToString()]
        >>> examples_to_batch(records, pa.schema([("x", pa.float32())]), known=["x", "y"]).batch.to_pydict()
        {'x': [2.5, None]}
    """
    if known is None:
        known = schema
    others = [f for f in known if f.name not in schema.names] if isinstance(known, pa.Schema) else None
    names = frozenset(known.names if isinstance(known, pa.Schema) else known)
    if others is None and names.issubset(schema.names):
        others = []
    batch = _parse_batch(records, schema, others) if others is not None else None
    if batch is not None:
        return ConformedBatch(batch)
    return _parse_each(records, schema, names)


def _parse_dtype(arrow_type: pa.DataType):
    """The TensorFlow type a column is parsed as (``None``: not parsed fast).
    float64 columns are scalar integer features the model reads as floats
    (``autoenc_beam.io.model_schema``): stored as int64_list."""
    import tensorflow as tf

    leaf = _leaf(arrow_type)
    if pa.types.is_float32(leaf):
        return tf.float32
    if pa.types.is_integer(leaf) or pa.types.is_float64(leaf):
        return tf.int64
    if pa.types.is_string(leaf) or pa.types.is_binary(leaf):
        return tf.string
    return None


def _parse_batch(records: Sequence[bytes], schema: pa.Schema, others: list) -> pa.RecordBatch | None:
    """The records as a batch, all parsed at once; ``None`` when any record
    does not fit (the caller then parses record by record, which says why).

    ``None`` when: a record is not a ``tf.train.Example``; a feature has
    another kind than its column's usual one (int64_list in a float32 column,
    say, which ``_parse_each`` converts or rejects); a scalar feature holds
    more than one value; a list feature is empty or absent (both read as an
    empty list here, while ``_parse_each`` tells them apart); text is not
    UTF-8; or a record holds any feature that is neither a column nor in
    ``others`` (the known features not read), or an empty one.

    ``tf.io.parse_example`` reads only the features it is asked for. So each
    record's features are counted (``_feature_counts``): when that equals the
    number of features, read or known, that hold a value in the record, the
    record holds no other feature.
    """
    import tensorflow as tf

    if not records:
        return None
    fields = list(schema) + list(others)
    dtypes = {f.name: _parse_dtype(f.type) for f in fields}
    if any(d is None for d in dtypes.values()):
        return None
    spec = {name: tf.io.RaggedFeature(dtype, row_splits_dtype=tf.int64) for name, dtype in dtypes.items()}
    serialized = tf.constant(list(records), dtype=tf.string)
    try:
        parsed = tf.io.parse_example(serialized, spec) if spec else {}
        counts = _feature_counts(serialized)
    except Exception:  # InvalidArgumentError, or an error message TensorFlow could not decode
        return None
    n = len(records)
    splits = {name: ragged.row_splits.numpy() for name, ragged in parsed.items()}
    holding = sum((np.diff(s) > 0 for s in splits.values()), np.zeros(n, dtype=np.int64))
    if not np.array_equal(holding, counts):
        return None
    arrays = []
    for field in schema:
        lengths = np.diff(splits[field.name])
        values = parsed[field.name].values.numpy()
        if pa.types.is_list(field.type):
            if (lengths == 0).any() or len(values) > np.iinfo(np.int32).max:
                return None
            array = _leaf_array(values, field.type.value_type)
            if array is None:
                return None
            offsets = pa.array(splits[field.name].astype(np.int32), type=pa.int32())
            arrays.append(pa.ListArray.from_arrays(offsets, array).cast(field.type))
            continue
        if (lengths > 1).any():
            return None
        array = _leaf_array(values, field.type)
        if array is None:
            return None
        if len(array) < n:  # features absent from some records: null there
            present = lengths == 1
            array = array.take(pa.array(np.cumsum(present) - 1, mask=~present))
        arrays.append(array)
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def _feature_counts(serialized) -> np.ndarray:
    """The number of features (map entries, a key written twice counted
    twice) of each serialized ``tf.train.Example``."""
    import tensorflow as tf

    _, (features,) = tf.io.decode_proto(serialized, "tensorflow.Example", ["features"], [tf.string])
    counts, _ = tf.io.decode_proto(
        tf.reshape(features, [-1]), "tensorflow.Features", ["feature"], [tf.string]
    )
    return counts.numpy().reshape(-1)


def _leaf_array(values: np.ndarray, arrow_type: pa.DataType) -> pa.Array | None:
    """Parsed values as an Arrow array of ``arrow_type``; ``None`` for text that is not UTF-8."""
    if pa.types.is_string(arrow_type):
        try:
            return pa.array(values, type=pa.binary()).cast(pa.string())
        except pa.ArrowInvalid:
            return None
    if pa.types.is_binary(arrow_type):
        return pa.array(values, type=pa.binary())
    # int64 -> float64 rounds as float() does; float32 -> float64 is exact.
    return pa.array(values.astype(arrow_type.to_pandas_dtype(), copy=False), type=arrow_type)


def _parse_each(records: Sequence[bytes], schema: pa.Schema, known: frozenset) -> ConformedBatch:
    """``examples_to_batch`` record by record, feature by feature: slow, and
    says what is wrong with each record."""
    columns: dict[str, list] = {f.name: [None] * len(records) for f in schema}
    reasons: list[str | None] = [None] * len(records)
    unknown: dict[str, int] = {}
    for i, record in enumerate(records):
        try:
            features = _parse(record)
        except Exception:
            reasons[i] = "record is not a serialized tf.train.Example"
            continue
        if len(features) > len(known) or not known.issuperset(features.keys()):
            for name in features.keys():
                if name not in known:
                    unknown[name] = unknown.get(name, 0) + 1
        problems = []
        for field in schema:
            feature = features.get(field.name)
            kind = feature.WhichOneof("kind") if feature is not None else None
            if kind is None:
                continue
            try:
                columns[field.name][i] = _convert(getattr(feature, kind).value, kind, field.type)
            except ValueError as e:
                problems.append(f"column '{field.name}' {_as_phrase(str(e))}")
        if problems:
            reasons[i] = "; ".join(problems)
    batch = pa.RecordBatch.from_arrays(
        [pa.array(columns[f.name], type=f.type) for f in schema], schema=schema
    )
    return ConformedBatch(batch, reasons if any(r is not None for r in reasons) else None, unknown or None)


def _as_phrase(message: str) -> str:
    return message if message.startswith("has ") else f"has the wrong type: {message}"
