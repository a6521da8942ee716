"""Row checks on whole Arrow batches, and the records of rejected rows.

Every input row ends up either valid (fed to the model) or rejected with a
reason that names the column and the problem. The checks are columnar: Python
loops only run over the rows that fail, which are few in healthy data.

Example:
    >>> import pyarrow as pa
    >>> from autoenc.schema import infer_spec
    >>> batch = pa.record_batch({"x": [1.0, None, float("nan")]})
    >>> spec = infer_spec(batch.schema, source="example")
    >>> checked = validate_batch(batch, spec)
    >>> checked.valid.tolist(), checked.reasons
    ([True, False, False], ["column 'x' is null", "column 'x' is NaN"])
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from autoenc.categorical import encode, one_hot
from autoenc.errors import InputError
from autoenc.schema import FeatureSpec, is_tensor, list_depth, shape_text


@dataclasses.dataclass(frozen=True)
class ConformedBatch:
    """A batch cast to the reference schema, with the rows that could not be.

    Attributes:
        batch: the rows with the reference schema's columns and types; a value
            that could not be represented there is null.
        reasons: ``None`` when every row fit, else one entry per row: ``None``
            for a row that fit, or why it did not.
        unknown: TFRecord only: features of the records that the schema lacks
            (name -> records), or ``None``.
    """

    batch: pa.RecordBatch
    reasons: list[str | None] | None = None
    unknown: dict | None = None


@dataclasses.dataclass(frozen=True)
class ValidatedBatch:
    """The outcome of checking one batch.

    Attributes:
        valid: bool per input row, True when the row can be scored.
        features: float64 array [n_valid, n_features] of the valid rows, in raw
            (not normalized) units and model order.
        reasons: why each invalid row was rejected, in row order.
        labels: bool [n_valid], True for a row labeled anomalous, when a label
            column was checked; else ``None``.
        imputed: int32 [n_valid], missing values imputed per valid row
            (``--missing impute``); else ``None``.
        missing: feature name -> missing values imputed in it (only features
            with any), with ``imputed``; else ``None``.
        out_of_vocabulary: bool [n_valid], True for a valid row with a
            categorical value outside its vocabulary (the OOV slot), when
            the spec has categorical features; else ``None``.
        unseen: categorical feature -> valid rows whose value took its OOV
            slot (only features with any), with ``out_of_vocabulary``.
    """

    valid: np.ndarray
    features: np.ndarray
    reasons: list[str]
    labels: np.ndarray | None = None
    imputed: np.ndarray | None = None
    missing: dict[str, int] | None = None
    out_of_vocabulary: np.ndarray | None = None
    unseen: dict[str, int] | None = None


def conform_batch(
    batch: pa.RecordBatch, reference: pa.Schema, spec: FeatureSpec | None, *, source: str
) -> ConformedBatch:
    """Brings a batch read from one file to the reference schema of the whole input.

    Files of one input can differ: a column missing, or stored with another type.
    Columns of another numeric width are cast. A feature column that is missing or
    cannot be cast rejects its rows; any other column that cannot be cast does too
    (its value could not be written out), while a missing non-feature column is
    simply null.

    Args:
        batch: rows as read from ``source``.
        reference: the schema all outputs use (``autoenc.schema.unify_schemas``).
        spec: the feature spec, to know which columns are features (``None``: none).
        source: the file the batch came from, named in reasons.

    Returns:
        The conformed batch and per-row reasons for the rows that did not fit.
    """
    if batch.schema.equals(reference):
        return ConformedBatch(batch)
    features = set(spec.names) if spec is not None else set()
    columns, problems = [], []
    row_problems: list[tuple[int, str]] = []
    for field in reference:
        index = batch.schema.get_field_index(field.name)
        if index < 0:
            columns.append(pa.nulls(batch.num_rows, field.type))
            if field.name in features:
                problems.append(f"column '{field.name}' is missing from {source}")
            continue
        column = batch.column(index)
        if column.type.equals(field.type):
            columns.append(column)
            continue
        try:
            columns.append(cast(column, field.type))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            if field.name in features and is_tensor(field.type) and is_tensor(column.type):
                # One row of another length fails the whole cast to a fixed-size
                # list: cast row by row, so only the rows that do not fit are lost.
                cast_column, failed = _cast_rows(column, field.type)
                columns.append(cast_column)
                row_problems.extend(
                    (
                        i,
                        f"column '{field.name}' has a value that does not fit {field.type} (the input's type for it)",
                    )
                    for i in failed
                )
                continue
            columns.append(pa.nulls(batch.num_rows, field.type))
            problems.append(
                f"column '{field.name}' has type {column.type} in {source}, expected "
                f"{field.type} (the type the other input files agree on)"
            )
    conformed = pa.RecordBatch.from_arrays(columns, schema=reference)
    if not problems and not row_problems:
        return ConformedBatch(conformed)
    reasons: list[list[str]] = [list(problems) for _ in range(batch.num_rows)]
    for i, message in row_problems:
        reasons[i].append(message)
    return ConformedBatch(conformed, ["; ".join(r) if r else None for r in reasons])


def cast(column, target: pa.DataType):
    """Casts a column, refusing any loss except the precision of an integer or
    decimal made floating point (an int64 beyond 2**53 becomes the nearest
    float64: a relative change under 1.2e-16).

    Example:
        >>> cast(pa.array([2**60 + 1]), pa.float64()).to_pylist()
        [1.152921504606847e+18]
    """
    source = column.type
    lossy_ok = pa.types.is_floating(target) and (pa.types.is_integer(source) or pa.types.is_decimal(source))
    return pc.cast(column, target, safe=not lossy_ok)


def _cast_rows(column: pa.Array, target: pa.DataType) -> tuple[pa.Array, list[int]]:
    """Casts ``column`` to ``target`` one row at a time; rows that fail become null.

    Returns:
        The cast column and the indices of the rows that failed.
    """
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    parts, failed = [], []
    for i in range(len(column)):
        try:
            parts.append(cast(column.slice(i, 1), target))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            parts.append(pa.nulls(1, target))
            failed.append(i)
    return pa.concat_arrays(parts) if parts else pa.nulls(0, target), failed


def validate_batch(
    batch: pa.RecordBatch,
    spec: FeatureSpec,
    *,
    prior_reasons: Sequence[str | None] | None = None,
    label_column: str | None = None,
    bounds=None,
    missing: str | None = None,
) -> ValidatedBatch:
    """Checks every feature value of a batch: present, not null, finite; and
    every key value: present (a row without its key could never be joined back
    to the scores).

    With an imputation (``spec.imputation``, ``--missing impute``) a missing
    scalar value (null or NaN) is not a problem: it takes the median, the
    row gets its missing indicators, and ``features`` is the model's raw input
    (``spec.model_width`` values a row). Infinite values still reject their row.

    Integer and decimal features are read as float64 (an int64 beyond 2**53
    rounds to the nearest float64, a relative change under 1.2e-16).

    Args:
        batch: rows with (at least) the spec's feature and key columns.
        spec: the feature spec.
        prior_reasons: per-row reasons found earlier (from ``conform_batch`` or
            record parsing); those rows are rejected too, with all reasons joined.
        label_column: also check this column of anomaly labels (``label_values``).
        bounds: an ``autoenc.preprocessing.ExtremeBounds``: also reject rows
            with a value outside it (training).
        missing: ``"reject"`` or ``"impute"``; ``None``: ``"impute"`` when the
            spec has an imputation. ``"impute"`` without one keeps missing
            values as NaN in ``features`` (the launch sample, from which the
            imputation is made).

    Returns:
        A ``ValidatedBatch``.
    """
    n = batch.num_rows
    if missing is None:
        missing = "impute" if spec.imputation is not None else "reject"
    impute = missing == "impute"
    # Scalar features only: each column is copied into a row of a
    # [width, n] array (contiguous writes), which is transposed once at the
    # end; writing columns straight into [n, width] strides through memory
    # and took over twice as long on wide rows.
    by_column = not spec.tensor_features
    columns = np.empty((spec.width, n), dtype=np.float64) if by_column else None
    features = None if by_column else np.empty((n, spec.width), dtype=np.float64)
    bad = np.zeros(n, dtype=bool)
    # (row mask, message) in column order, so a row's reason lists its columns
    # in the order the user sees them.
    problems: list[tuple[np.ndarray, str]] = []
    offset = 0
    out_of_vocabulary = np.zeros(n, dtype=bool) if spec.categorical_features else None
    oov_by_column: dict[str, np.ndarray] = {}
    for feature in spec.features:
        name = feature.name
        column = batch.column(name)
        if feature.categorical:
            codes, null = _category_codes(column, feature, name)
            if by_column:
                block = columns[offset : offset + feature.size]
                block[:] = 0.0
                block[codes, np.arange(n)] = 1.0
            else:
                features[:, offset : offset + feature.size] = one_hot(codes, feature.size)
            offset += feature.size
            oov = codes == feature.size - 1
            if null is not None and not impute and None not in feature.categories:
                problems.append((null, f"column '{name}' is null"))
                bad |= null
                oov &= ~null
            if oov.any():
                oov_by_column[name] = oov
                out_of_vocabulary |= oov
            continue
        if feature.shape:
            values, column_problems = _tensor_values(column, feature)
            features[:, offset : offset + feature.size] = values
            offset += feature.size
            for mask, message in column_problems:
                problems.append((mask, message))
                bad |= mask
            continue
        if not pa.types.is_floating(column.type):
            column = cast(column, pa.float64())
        values = column.to_numpy(zero_copy_only=False)
        if by_column:
            columns[offset] = values
        else:
            features[:, offset] = values
        offset += 1
        finite = np.isfinite(values)
        if finite.all():
            continue
        null = column.is_null().to_numpy(zero_copy_only=False) if column.null_count else np.zeros(n, bool)
        nan = np.isnan(values) & ~null
        posinf = np.isposinf(values)
        neginf = np.isneginf(values)
        checks = ((posinf, "is +inf"), (neginf, "is -inf"))
        if impute:
            # A null (read as NaN) or NaN is missing: imputed below.
            bad |= posinf | neginf
        else:
            checks = ((null, "is null"), (nan, "is NaN"), *checks)
            bad |= ~finite
        for mask, what in checks:
            if mask.any():
                problems.append((mask, f"column '{name}' {what}"))
    if by_column:
        features = np.ascontiguousarray(columns.T)
        del columns
    for name in spec.key_columns:
        for mask, message in key_problems(batch.column(name), name):
            problems.append((mask, message))
            bad |= mask
    if bounds is not None and (~bad).any():
        good = np.flatnonzero(~bad)
        for mask, message in bounds.check(features[good]):
            full = np.zeros(n, dtype=bool)
            full[good[mask]] = True
            problems.append((full, message))
            bad |= full
    labels = None
    if label_column is not None:
        labels, label_problems = label_values(batch.column(label_column), label_column)
        for mask, message in label_problems:
            problems.append((mask, message))
            bad |= mask
    reasons_by_row: dict[int, list[str]] = {}
    if prior_reasons is not None:
        for i, reason in enumerate(prior_reasons):
            if reason is not None:
                reasons_by_row[i] = [reason]
                bad[i] = True
    for mask, message in problems:
        # A value that could not be read was made null, and its reason given
        # earlier: "is null" would only repeat it.
        column = message.removesuffix(" is null") if message.endswith(" is null") else None
        for i in np.flatnonzero(mask):
            prior = reasons_by_row.get(int(i))
            if column is not None and prior and column in prior[0]:
                continue
            reasons_by_row.setdefault(int(i), []).append(message)
    valid = ~bad
    features = features[valid] if bad.any() else features
    imputed = by_column = None
    if impute and spec.imputation is not None:
        imputation = spec.imputation
        gaps = np.isnan(features[:, list(imputation.positions)]).sum(axis=0)
        by_column = {name: int(gaps[j]) for j, name in enumerate(imputation.names) if gaps[j]}
        features, imputed = imputation.apply(features)
    unseen = None
    if out_of_vocabulary is not None:
        unseen = {
            name: int(np.count_nonzero(mask[valid]))
            for name, mask in oov_by_column.items()
            if mask[valid].any()
        }
        out_of_vocabulary = out_of_vocabulary[valid]
    return ValidatedBatch(
        valid=valid,
        features=features,
        reasons=["; ".join(reasons_by_row[i]) for i in sorted(reasons_by_row)],
        labels=None if labels is None else labels[valid],
        imputed=imputed,
        missing=by_column,
        out_of_vocabulary=out_of_vocabulary,
        unseen=unseen,
    )


def _category_codes(column, feature, name: str) -> tuple[np.ndarray, np.ndarray | None]:
    """A categorical column's slots (``autoenc.categorical.encode``) and its
    null mask (``None`` when it has no null)."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    try:
        codes = encode(column, feature.categories)
    except (TypeError, pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
        raise InputError(
            f"Categorical column '{name}' has type {column.type}; expected strings, booleans or "
            f"integers ({e})."
        ) from e
    null = column.is_null().to_numpy(zero_copy_only=False) if column.null_count else None
    return codes, null


def key_problems(column, name: str) -> list[tuple[np.ndarray, str]]:
    """(row mask, message) for key values that cannot identify a row: null, or NaN.

    Example:
        >>> [(m.tolist(), text) for m, text in key_problems(pa.array([1.0, None, float("nan")]), "id")]
        [([False, True, False], "key column 'id' is null"), ([False, False, True], "key column 'id' is NaN")]
    """
    problems = []
    if column.null_count:
        problems.append((column.is_null().to_numpy(zero_copy_only=False), f"key column '{name}' is null"))
    if pa.types.is_floating(column.type):
        nan = pc.fill_null(pc.is_nan(column), False).to_numpy(zero_copy_only=False)
        if nan.any():
            problems.append((nan, f"key column '{name}' is NaN"))
    return problems


def label_values(column, name: str) -> tuple[np.ndarray, list[tuple[np.ndarray, str]]]:
    """Anomaly labels of a boolean or numeric column: true / 1 = anomaly, false /
    0 = normal. A null, NaN or any other number is a problem of its row.

    Returns:
        bool [n] (False where the row has a problem) and (row mask, message) pairs.

    Example:
        >>> labels, problems = label_values(pa.array([0, 1, 2, None]), "y")
        >>> labels.tolist(), [(m.tolist(), text) for m, text in problems]
        ([False, True, False, False], [([False, False, False, True], "label column 'y' is null"), ([False, False, True, False], "label column 'y' is not 0 or 1 (false or true)")])
    """
    null = (
        column.is_null().to_numpy(zero_copy_only=False) if column.null_count else np.zeros(len(column), bool)
    )
    if pa.types.is_boolean(column.type):
        values = column.fill_null(False).to_numpy(zero_copy_only=False).astype(np.float64)
    else:
        values = pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False)
    values = np.where(null, 0.0, values)
    other = ~null & (values != 0) & (values != 1)
    problems = [
        (mask, f"label column '{name}' {what}")
        for mask, what in ((null, "is null"), (other, "is not 0 or 1 (false or true)"))
        if mask.any()
    ]
    return (values == 1) & ~other, problems


def _tensor_values(column: pa.Array, feature) -> tuple[np.ndarray, list[tuple[np.ndarray, str]]]:
    """Checks a (nested) list column against ``feature.shape`` and flattens it.

    A column with d list levels must hold the first d - 1 dimensions of the shape
    as its outer levels and the product of the others in its innermost level;
    a row whose lengths differ anywhere is rejected with the lengths it has.
    Values inside must be present and finite.

    Returns:
        float64 [n, feature.size] (NaN in rejected rows) and (row mask, message)
        pairs for the rejected rows.
    """
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    n = len(column)
    name, size = feature.name, feature.size
    depth = list_depth(column.type)
    expected = list(feature.shape[: depth - 1]) + [math.prod(feature.shape[depth - 1 :])]
    problems: list[tuple[np.ndarray, str]] = []
    null = column.is_null().to_numpy(zero_copy_only=False)
    if null.any():
        problems.append((null, f"column '{name}' is null"))
    bad = null.copy()
    # Walk the levels: each level's list lengths, mapped back to their rows; a
    # row is reported with the first wrong length found in it.
    level, rows = column, np.arange(n)
    for depth_index, want in enumerate(expected, start=1):
        lengths = pc.list_value_length(level).to_numpy(zero_copy_only=False).astype(np.float64)
        wrong = np.isnan(lengths) | (lengths != want)
        wrong &= ~bad[rows]
        if wrong.any():
            first = {}
            for row, length in zip(rows[wrong], lengths[wrong], strict=True):
                first.setdefault(int(row), length)
            by_length: dict[float, list[int]] = {}
            for row, length in first.items():
                by_length.setdefault(length, []).append(row)
            for length, wrong_rows in by_length.items():
                mask = np.zeros(n, dtype=bool)
                mask[wrong_rows] = True
                found = "a null list" if np.isnan(length) else f"a list of {int(length)} values"
                problems.append(
                    (
                        mask,
                        f"column '{name}' has {found} at list level {depth_index}, expected "
                        f"{want} values (shape {shape_text(feature.shape)})",
                    )
                )
                bad |= mask
        # Null lists (already reported) can still span child values in the
        # buffers; drop them so parent indices and flattened values agree.
        present = pc.is_valid(level)
        if level.null_count:
            level = level.filter(present)
            rows = rows[present.to_numpy(zero_copy_only=False)]
        parents = pc.list_parent_indices(level).to_numpy(zero_copy_only=False)
        rows = rows[parents]
        level = pc.list_flatten(level)
    out = np.full((n, size), np.nan)
    good = np.flatnonzero(~bad)
    if len(good):
        kept = column.take(pa.array(good))
        for _ in range(depth):
            kept = pc.list_flatten(kept)
        values = kept.to_numpy(zero_copy_only=False).astype(np.float64).reshape(len(good), size)
        nonfinite = ~np.isfinite(values).all(axis=1)
        if nonfinite.any():
            mask = np.zeros(n, dtype=bool)
            mask[good[nonfinite]] = True
            problems.append((mask, f"column '{name}' has null, NaN or infinite values inside"))
            bad |= mask
        out[good] = values
    return out, problems


def rejected_schema(reference: pa.Schema) -> pa.Schema:
    """Schema of the rejected-rows output: the input columns, then why and where."""
    return pa.schema(
        list(reference)
        + [
            pa.field("reason", pa.string()),
            pa.field("source_file", pa.string()),
            pa.field("source_row", pa.int64()),
        ]
    )


def rejected_table(
    batch: pa.RecordBatch,
    valid: np.ndarray,
    reasons: Sequence[str],
    *,
    source: str,
    first_row: int,
) -> pa.Table:
    """The invalid rows of a batch with their original values and reasons.

    Args:
        batch: the conformed batch (reference schema).
        valid: bool per row, from ``validate_batch``.
        reasons: one reason per invalid row, in row order.
        source: the file the rows came from.
        first_row: row number (0-based) of the batch's first row in ``source``.

    Returns:
        A table with ``rejected_schema(batch.schema)``.
    """
    invalid = np.flatnonzero(~valid)
    rows = batch.take(pa.array(invalid))
    extra = [
        pa.array(reasons, pa.string()),
        pa.array([source] * len(invalid), pa.string()),
        pa.array(invalid + first_row, pa.int64()),
    ]
    return pa.Table.from_arrays(list(rows.columns) + extra, schema=rejected_schema(batch.schema))


SPLITS = ("position", "key")


def key_mask(keys: Sequence[pa.Array], *, seed: int, fraction: float) -> np.ndarray:
    """Deterministic train/validation split by content: True for rows that go to
    validation. A row's side depends only on the seed and its key values, so the
    same row lands on the same side wherever its file lies and however the data
    is cut into files, and rows with equal keys (duplicates) stay together.

    Args:
        keys: the key columns, one array each, all of the same length.
        seed: the split seed.
        fraction: expected share of validation rows, in [0, 1).

    Example:
        >>> ids = pa.array(["a", "b", "c", "d"])
        >>> key_mask([ids], seed=0, fraction=0.5).tolist() == key_mask([ids[::-1]], seed=0, fraction=0.5)[::-1].tolist()
        True
    """
    if not keys:
        raise ValueError("key_mask needs at least one key column")
    values = [k.to_pylist() for k in keys]
    prefix = f"{seed}\0".encode()
    uniform = np.empty(len(values[0]), np.float64)
    for i, row in enumerate(zip(*values, strict=True)):
        digest = hashlib.blake2b(prefix + "\x1f".join(map(repr, row)).encode(), digest_size=8).digest()
        uniform[i] = (int.from_bytes(digest, "little") >> 11) / float(1 << 53)
    return uniform < fraction


def validation_mask(source: str, rows: np.ndarray, *, seed: int, fraction: float) -> np.ndarray:
    """Deterministic train/validation split: True for rows that go to validation.

    A row's side depends only on the seed, its file and its row number in that
    file, so the split is the same on every runner, for every bundling of the
    data and on every re-run.

    Args:
        source: the file the rows came from.
        rows: 0-based row numbers within ``source``.
        seed: the split seed.
        fraction: expected share of validation rows, in [0, 1).

    Returns:
        Bool array, one per row.
    """
    digest = hashlib.blake2b(f"{seed}\0{source}".encode(), digest_size=8).digest()
    key = np.uint64(int.from_bytes(digest, "little"))
    # SplitMix64 finalizer over (file key + row number): a cheap, well-mixed hash.
    z = rows.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15) + key
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    uniform = (z >> np.uint64(11)).astype(np.float64) / float(1 << 53)
    return uniform < fraction
