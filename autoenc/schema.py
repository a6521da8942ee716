"""Feature spec: which columns feed the model, in which order, with which dtypes.

A ``FeatureSpec`` is inferred once from the Arrow schema of the input (the first
matched file) and then travels with the model artifact, so scoring checks its
input against exactly what the model was trained on.

Example:
    >>> import pyarrow as pa
    >>> schema = pa.schema([("id", pa.string()), ("x", pa.float64()), ("y", pa.int64())])
    >>> infer_spec(schema, key_columns=["id"], source="data.parquet").names
    ('x', 'y')
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from autoenc.categorical import can_be_categorical, is_categorical_type
from autoenc.errors import InputError
from autoenc.preprocessing import Imputation

# Column names that autoenc adds to its outputs (every column
# ``autoenc.scoring.score_fields`` can write, and the rejected rows' own): an
# input column of the same name that would be copied next to them is refused
# up front, since a Parquet file with two columns of one name is unreadable.
SCORE_COLUMNS = (
    "latent",
    "latent_distance",
    "reconstruction_error",
    "anomaly_score",
    "combined_score",
    "total_distance",
    "is_anomaly",
    "imputed_values",
    "top_features",
    "error_map",
)
REJECTED_COLUMNS = ("reason", "source_file", "source_row")


def is_numeric(arrow_type: pa.DataType) -> bool:
    """True for the Arrow types a scalar feature may have: integers, floating
    point and decimals (Spark and Java tools write money as decimals); all are
    read as float64."""
    return (
        pa.types.is_integer(arrow_type) or pa.types.is_floating(arrow_type) or pa.types.is_decimal(arrow_type)
    )


def _is_list(arrow_type: pa.DataType) -> bool:
    return (
        pa.types.is_list(arrow_type)
        or pa.types.is_large_list(arrow_type)
        or pa.types.is_fixed_size_list(arrow_type)
    )


def list_depth(arrow_type: pa.DataType) -> int:
    """How many list levels wrap the values: 0 for a scalar, 2 for list<list<float>>."""
    depth = 0
    while _is_list(arrow_type):
        arrow_type = arrow_type.value_type
        depth += 1
    return depth


def is_tensor(arrow_type: pa.DataType) -> bool:
    """True for (nested) lists of numbers: an image or a sequence per row.

    Example:
        >>> is_tensor(pa.list_(pa.list_(pa.float32()))), is_tensor(pa.list_(pa.string()))
        (True, False)
    """
    if not _is_list(arrow_type):
        return False
    while _is_list(arrow_type):
        arrow_type = arrow_type.value_type
    return is_numeric(arrow_type)


def _fixed_shape(arrow_type: pa.DataType) -> tuple[int, ...] | None:
    """The shape a nest of fixed_size_list types implies, or None if any level varies."""
    shape = []
    while _is_list(arrow_type):
        if not pa.types.is_fixed_size_list(arrow_type):
            return None
        shape.append(arrow_type.list_size)
        arrow_type = arrow_type.value_type
    return tuple(shape)


def parse_shape(text: str) -> tuple[int, ...]:
    """``"28,28,1"`` -> ``(28, 28, 1)``.

    Raises:
        InputError: not a comma-separated list of positive integers.
    """
    try:
        shape = tuple(int(p) for p in text.split(","))
    except ValueError:
        shape = ()
    if not shape or any(d < 1 for d in shape):
        raise InputError(
            f"A shape must be comma-separated positive integers, e.g. 28,28,1. Received: {text!r}"
        )
    return shape


def shape_text(shape: Sequence[int]) -> str:
    return "x".join(str(d) for d in shape)


@dataclasses.dataclass(frozen=True)
class Feature:
    """One model input column.

    Attributes:
        name: column name in the input data.
        dtype: Arrow type name of the column at training time, e.g. ``"double"``
            or ``"list<item: float>"``.
        shape: ``()`` for a scalar column; for a tensor column (an image H x W x C
            or a sequence T x F, stored as (nested) lists), the shape of one row's
            value. The model sees its values flattened in row-major order.
        categories: for a categorical feature, its vocabulary (text values,
            ``None`` for null; ``()`` until it is learned); ``None`` for a
            numeric one.
    """

    name: str
    dtype: str
    shape: tuple[int, ...] = ()
    categories: tuple[str | None, ...] | None = None

    @property
    def categorical(self) -> bool:
        """True for a categorical feature (a one-hot block, ``autoenc.categorical``)."""
        return self.categories is not None

    @property
    def size(self) -> int:
        """Values this feature contributes to a model input row: for a
        categorical one, a slot per category and the out-of-vocabulary slot."""
        if self.categories is not None:
            return len(self.categories) + 1
        return math.prod(self.shape)

    def describe(self) -> str:
        if self.categories is not None:
            return f"{self.name} (categorical{f', {len(self.categories)} categories' if self.categories else ''})"
        return f"{self.name} ({shape_text(self.shape)})" if self.shape else self.name


@dataclasses.dataclass(frozen=True)
class FeatureSpec:
    """The ordered model inputs and the key columns that identify a row.

    Attributes:
        features: model inputs, in the order the model sees them.
        key_columns: columns copied to the scores to identify each row.
        excluded: (column, why) for numeric columns left out of the default
            features because they look like identifiers or timestamps
            (``not_a_measurement``); informational.
        imputation: ``--missing impute``: the ``Imputation`` of missing values
            (``None``: rows with a missing value are rejected).
    """

    features: tuple[Feature, ...]
    key_columns: tuple[str, ...] = ()
    excluded: tuple[tuple[str, str], ...] = ()
    imputation: Imputation | None = None

    @property
    def names(self) -> tuple[str, ...]:
        """Feature names in model order."""
        return tuple(f.name for f in self.features)

    @property
    def n_features(self) -> int:
        """Number of feature columns."""
        return len(self.features)

    @property
    def width(self) -> int:
        """Values in one model input row: one per scalar feature, the product of
        the shape per tensor feature."""
        return sum(f.size for f in self.features)

    @property
    def n_indicators(self) -> int:
        """Missing-indicator inputs (``imputation``) after the feature values."""
        return len(self.imputation.indicators) if self.imputation is not None else 0

    @property
    def model_width(self) -> int:
        """Values in one row of the model's input: ``width``, then the
        missing indicators."""
        return self.width + self.n_indicators

    @property
    def model_names(self) -> tuple[str, ...]:
        """Names of the model's inputs, by feature: the features', then the
        missing indicators' (``"x1 (missing)"``)."""
        return self.names + (self.imputation.indicator_names if self.imputation is not None else ())

    @property
    def model_sizes(self) -> tuple[int, ...]:
        """Values per name of ``model_names``."""
        return tuple(f.size for f in self.features) + (1,) * self.n_indicators

    @property
    def tensor_features(self) -> tuple[Feature, ...]:
        return tuple(f for f in self.features if f.shape)

    @property
    def categorical_features(self) -> tuple[Feature, ...]:
        return tuple(f for f in self.features if f.categorical)

    @property
    def numeric_names(self) -> tuple[str, ...]:
        """The scalar numeric features (the ones ``--missing impute`` imputes)."""
        return tuple(f.name for f in self.features if not f.categorical and not f.shape)

    def offsets(self) -> dict[str, int]:
        """Each feature's first column in a row of the model's raw input."""
        starts = np.cumsum([0] + [f.size for f in self.features[:-1]]) if self.features else []
        return {f.name: int(o) for f, o in zip(self.features, starts, strict=True)}

    @property
    def categorical_slots(self) -> tuple[tuple[int, int], ...]:
        """(first column, size) of each categorical feature's one-hot block."""
        offsets = self.offsets()
        return tuple((offsets[f.name], f.size) for f in self.categorical_features)

    @property
    def pending_vocabularies(self) -> tuple[str, ...]:
        """Categorical features whose vocabulary is not learned yet."""
        return tuple(f.name for f in self.categorical_features if not f.categories)

    def with_vocabularies(self, vocabularies: dict[str, Sequence[str | None]]) -> FeatureSpec:
        """The spec with these categorical features' vocabularies."""
        return dataclasses.replace(
            self,
            features=tuple(
                dataclasses.replace(f, categories=tuple(vocabularies[f.name]))
                if f.categorical and f.name in vocabularies
                else f
                for f in self.features
            ),
        )

    def to_dict(self) -> dict:
        return {
            "features": [
                {
                    "name": f.name,
                    "dtype": f.dtype,
                    "shape": list(f.shape),
                    **({"categories": list(f.categories)} if f.categorical else {}),
                }
                for f in self.features
            ],
            "key_columns": list(self.key_columns),
            **(
                {"excluded_columns": [{"name": n, "reason": why} for n, why in self.excluded]}
                if self.excluded
                else {}
            ),
            "missing": self.imputation.to_dict() if self.imputation is not None else {"policy": "reject"},
        }

    @classmethod
    def from_dict(cls, data: dict) -> FeatureSpec:
        """The inverse of ``to_dict``.

        Raises:
            ValueError: ``missing`` is not a policy autoenc knows, or does not
                match the features.
        """
        features = tuple(
            Feature(
                name=f["name"],
                dtype=f["dtype"],
                shape=tuple(f.get("shape", ())),
                categories=None if f.get("categories") is None else tuple(f["categories"]),
            )
            for f in data["features"]
        )
        spec = cls(
            features=features,
            key_columns=tuple(data["key_columns"]),
            excluded=tuple(
                (e["name"], e["reason"]) for e in data.get("excluded_columns", []) if isinstance(e, dict)
            ),
        )
        return dataclasses.replace(spec, imputation=_imputation(data.get("missing"), spec))


def _imputation(missing, spec: FeatureSpec) -> Imputation | None:
    if missing is None or missing == {"policy": "reject"}:
        return None
    if not isinstance(missing, dict) or missing.get("policy") != "impute":
        raise ValueError(f"missing.policy must be 'reject' or 'impute'. Received: {missing!r}")
    offsets = spec.offsets()
    names = spec.numeric_names
    return Imputation.from_dict(missing, names, positions=[offsets[n] for n in names], width=spec.width)


def check_reserved_names(schema: pa.Schema, *, copied: Sequence[str], source: str) -> None:
    """Refuses input columns whose names clash with the columns autoenc writes.

    Args:
        schema: the input's columns.
        copied: the input columns copied next to the score columns (the key
            columns; every column with ``--passthrough``).
        source: the file, for the message.

    Raises:
        InputError: a copied column has a score column's name, or any column
            has a name of the rejected rows' own columns.
    """
    clashes = [n for n in copied if n in SCORE_COLUMNS] + [n for n in schema.names if n in REJECTED_COLUMNS]
    if clashes:
        name = clashes[0]
        where = "its rejected rows" if name in REJECTED_COLUMNS else "the scores"
        raise InputError(
            f"Input column '{name}' in {source} would be written to {where} next to autoenc's own "
            f"column of that name ({', '.join(REJECTED_COLUMNS if name in REJECTED_COLUMNS else SCORE_COLUMNS)} "
            "are autoenc's). Rename or drop it (for scores of an earlier run, drop their score columns "
            "before scoring again)."
        )


def check_label_column(schema: pa.Schema, name: str, *, source: str) -> None:
    """A label column exists and holds booleans or numbers (true / 1 = anomaly,
    false / 0 = normal).

    Raises:
        InputError: the column is missing or of another type.
    """
    if name not in schema.names:
        raise _missing("Label", name, schema, source)
    arrow_type = schema.field(name).type
    if not (pa.types.is_boolean(arrow_type) or is_numeric(arrow_type)):
        raise InputError(
            f"Label column '{name}' in {source} has type {arrow_type}; expected booleans or "
            "numbers: true or 1 for an anomaly, false or 0 for a normal row."
        )


def _missing(kind: str, name: str, schema: pa.Schema, source: str) -> InputError:
    return InputError(
        f"{kind} column '{name}' is not in {source}. Columns there: "
        f"{', '.join(schema.names) or '(none)'}. Check the spelling, or choose "
        "columns that exist in every input file."
    )


def infer_spec(
    schema: pa.Schema,
    *,
    features: Sequence[str] | None = None,
    key_columns: Sequence[str] = (),
    label_column: str | None = None,
    shapes: Sequence[str] = (),
    first_rows: pa.Table | None = None,
    categorical_columns: Sequence[str] | None = None,
    source: str,
) -> FeatureSpec:
    """Builds the feature spec for data with the given Arrow schema.

    Args:
        schema: Arrow schema of the input data.
        features: feature columns in model order; ``None`` selects every numeric
            column (scalar or tensor) that is not a key column, in schema order.
        key_columns: columns that identify a row (copied to the scores).
        label_column: a column of known anomaly labels (``check_label_column``);
            never a feature.
        shapes: declared shapes of the tensor features (``--shape``): each either
            ``"name=28,28,1"`` or ``"28,28,1"`` (these go to the tensor features
            without a named shape, in order).
        first_rows: the first rows of the data, to infer the shape of a tensor
            column whose shape is neither declared nor fixed by its type.
        categorical_columns: features to treat as categorical (``--categorical_columns``;
            integer columns only when named here). Every string, dictionary and
            boolean feature is categorical too. With ``features=None`` they join
            the default features, and so does every string, dictionary and
            boolean column that does not look like an identifier or free text
            (``not_a_category``). Their vocabularies are learned later
            (``FeatureSpec.with_vocabularies``).
        source: file the schema was read from, named in error messages.

    Returns:
        The ``FeatureSpec``.

    Raises:
        InputError: a named column is missing, a feature is not numeric, a
            column is named twice, no numeric feature is left, or a tensor
            feature's shape is unknown or does not fit its column type.
    """
    key_columns = tuple(key_columns)
    for name in key_columns:
        if name not in schema.names:
            raise _missing("Key", name, schema, source)
    check_reserved_names(schema, copied=key_columns, source=source)
    excluded: list[tuple[str, str]] = []
    if label_column is not None:
        check_label_column(schema, label_column, source=source)
        if features is not None and label_column in features:
            raise InputError(
                f"Column '{label_column}' is the label column (--label_column) and cannot also be a feature."
            )
    if features is None:
        # A list column joins by default only when its shape is certain (fixed by
        # its type, or declared): a variable-length list (tags, counts) would
        # otherwise get the first row's length and reject most rows.
        # Unnamed --shape values go to the first variable-length list columns.
        declared = {text.split("=", 1)[0] for text in shapes if "=" in text}
        variable = [
            f.name
            for f in schema
            if f.name not in key_columns and is_tensor(f.type) and _fixed_shape(f.type) is None
        ]
        unnamed = sum("=" not in text for text in shapes)
        declared |= set([n for n in variable if n not in declared][:unnamed])
        named_categorical = set(categorical_columns or ())
        names = [
            f.name
            for f in schema
            if f.name not in key_columns
            and f.name != label_column
            and (
                is_numeric(f.type)
                or (is_tensor(f.type) and (_fixed_shape(f.type) is not None or f.name in declared))
                or is_categorical_type(f.type)
                or f.name in named_categorical
            )
        ]
        for name in list(names):
            if name in named_categorical:
                continue
            arrow_type = schema.field(name).type
            if is_categorical_type(arrow_type):
                reason = not_a_category(name, arrow_type, first_rows)
            else:
                reason = not_a_measurement(name, arrow_type, _sample_values(first_rows, name))
            if reason:
                names.remove(name)
                excluded.append((name, reason))
        if not names:
            lists = [f.name for f in schema if f.name not in key_columns and is_tensor(f.type)]
            hint = (
                f" List column(s) {', '.join(lists)} join only with a known shape: "
                f"--shape {lists[0]}=H,W,C (or T,F), or name them in --features."
                if lists
                else ""
            )
            skipped = (
                " Left out as not measurements: "
                + "; ".join(f"'{n}' ({why})" for n, why in excluded)
                + ". Name them in --features to use them anyway."
                if excluded
                else ""
            )
            raise InputError(
                f"{source} has no column to use as a feature (columns: "
                f"{', '.join(f'{f.name}: {f.type}' for f in schema)}). autoenc needs "
                "integer or floating-point feature columns, lists of them, or categorical "
                f"(string, boolean) columns; pass --features to choose them.{hint}{skipped}"
            )
    else:
        names = list(features)
        if not names:
            raise InputError("--features is empty; name at least one feature column.")
    duplicates = sorted({n for n in names if names.count(n) > 1} | (set(names) & set(key_columns)))
    if duplicates:
        raise InputError(
            f"Column(s) {', '.join(duplicates)} named twice among features and key "
            "columns; each column may appear once."
        )
    for name in names:
        if name not in schema.names:
            raise _missing("Feature", name, schema, source)
        arrow_type = schema.field(name).type
        if not (is_numeric(arrow_type) or is_tensor(arrow_type) or is_categorical_type(arrow_type)):
            raise InputError(
                f"Feature column '{name}' in {source} has type {arrow_type}; autoenc "
                "needs integer or floating-point features, (nested) lists of them "
                "for images and sequences, or categorical columns (strings, booleans, "
                "dictionaries). Leave it out of --features (or make it a key column), "
                "or convert it."
            )
    categorical = {n for n in names if is_categorical_type(schema.field(n).type)}
    for name in categorical_columns or ():
        if name not in schema.names:
            raise _missing("Categorical", name, schema, source)
        if name not in names:
            raise InputError(
                f"--categorical_columns names '{name}', which is not a feature "
                f"(features: {', '.join(names)}). Add it to --features too."
            )
        if not can_be_categorical(schema.field(name).type):
            raise InputError(
                f"--categorical_columns names '{name}', whose type in {source} is "
                f"{schema.field(name).type}; a categorical column holds strings, booleans or "
                "integers (a floating-point or list column cannot be one)."
            )
        categorical.add(name)
    tensors = [n for n in names if is_tensor(schema.field(n).type)]
    declared = _declared_shapes(shapes, tensors)
    spec_features = []
    for name in names:
        arrow_type = schema.field(name).type
        shape: tuple[int, ...] = ()
        if name in tensors:
            shape = declared.get(name) or _fixed_shape(arrow_type) or _first_row_shape(first_rows, name)
            if shape is None:
                raise InputError(
                    f"Cannot tell the shape of tensor column '{name}' in {source} (type "
                    f"{arrow_type}): declare it with --shape {name}=H,W,C (or T,F)."
                )
            _check_shape_fits(name, shape, arrow_type, source)
        spec_features.append(
            Feature(
                name=name, dtype=str(arrow_type), shape=shape, categories=() if name in categorical else None
            )
        )
    return FeatureSpec(features=tuple(spec_features), key_columns=key_columns, excluded=tuple(excluded))


# Epoch timestamps since 2000-01-01 and before 2100-01-01, in seconds,
# milliseconds, microseconds and nanoseconds.
_EPOCH_RANGES = (
    ("seconds", 946_684_800, 4_102_444_800),
    ("milliseconds", 946_684_800e3, 4_102_444_800e3),
    ("microseconds", 946_684_800e6, 4_102_444_800e6),
    ("nanoseconds", 946_684_800e9, 4_102_444_800e9),
)
_IDENTIFIER_TOKENS = {"id", "ids", "uuid", "guid", "idx", "key", "pk", "hash"}
_TIME_TOKENS = {"ts", "time", "timestamp", "date", "datetime", "epoch", "at", "time_ns", "ns", "ms"}


def _tokens(name: str) -> list[str]:
    """``userId`` -> ['user', 'id']; ``event_ts`` -> ['event', 'ts']."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", name)
    return [t.lower() for t in re.split(r"[^A-Za-z0-9]+", spaced) if t]


def not_a_measurement(name: str, arrow_type: pa.DataType, values: np.ndarray | None) -> str | None:
    """Why a numeric column is left out of the default features, or ``None``.

    Rules (only for columns the user did not name in ``--features``):

    * an integer column whose name is an identifier (a word such as ``id``,
      ``uuid``, ``key`` in it: ``id``, ``user_id``, ``userId``);
    * an integer column with values beyond 2**53 (an identifier or a hash: no
      measurement is that precise);
    * an integer column, or a float column with a time word in its name
      (``ts``, ``time``, ``date``, ``at``, ...), whose sampled values all look
      like epoch timestamps (2000 to 2100 in seconds, milliseconds,
      microseconds or nanoseconds).

    Example:
        >>> not_a_measurement("event_ns", pa.int64(), np.array([1.7e18, 1.71e18]))
        'values look like epoch timestamps in nanoseconds (e.g. 1.7e+18)'
        >>> not_a_measurement("userId", pa.int64(), None)
        'its name looks like an identifier'
        >>> not_a_measurement("amount", pa.float64(), np.array([1.7e9])) is None
        True
    """
    integer = pa.types.is_integer(arrow_type)
    tokens = _tokens(name)
    if integer and _IDENTIFIER_TOKENS.intersection(tokens):
        return "its name looks like an identifier"
    if values is None or not len(values):
        return None
    if integer or (pa.types.is_floating(arrow_type) and _TIME_TOKENS.intersection(tokens)):
        for unit, low, high in _EPOCH_RANGES:
            if ((values >= low) & (values <= high)).all():
                return f"values look like epoch timestamps in {unit} (e.g. {values[0]:.4g})"
    if integer and (np.abs(values) > 2.0**53).any():
        return (
            f"values beyond 2**53 (e.g. {values[np.abs(values) > 2.0**53][0]:.4g}): an identifier or a hash"
        )
    return None


_LABEL_TOKENS = {"label", "labels", "target"}
# A sampled string column with at least this share of distinct values (and
# more than ``autoenc.categorical.MAX_CATEGORIES`` of them) is an identifier
# or free text, not a category.
DISTINCT_SHARE = 0.5


def not_a_category(name: str, arrow_type: pa.DataType, rows: pa.Table | None) -> str | None:
    """Why a string, dictionary or boolean column is left out of the default
    features, or ``None``: its name looks like an identifier (as
    ``not_a_measurement``), or in the sampled rows most of its values are
    distinct (an identifier, a timestamp as text, free text).

    Example:
        >>> not_a_category("user_id", pa.string(), None)
        'its name looks like an identifier'
        >>> rows = pa.table({"comment": [f"text {i}" for i in range(200)]})
        >>> not_a_category("comment", pa.string(), rows)
        '200 distinct values in 200 sampled rows: an identifier or free text, not a category'
    """
    if pa.types.is_boolean(arrow_type):
        return None
    if _IDENTIFIER_TOKENS.intersection(_tokens(name)):
        return "its name looks like an identifier"
    if _LABEL_TOKENS.intersection(_tokens(name)):
        return "its name looks like a label (known anomalies: --label_column)"
    if rows is None or name not in rows.column_names:
        return None
    from autoenc.categorical import MAX_CATEGORIES, category_text

    values = category_text(rows.column(name)).drop_null()
    distinct = len(pc.unique(values)) if len(values) else 0
    if distinct > MAX_CATEGORIES and distinct >= DISTINCT_SHARE * len(values):
        return (
            f"{distinct} distinct values in {len(values)} sampled rows: an identifier or free text, "
            "not a category"
        )
    return None


def _sample_values(rows: pa.Table | None, name: str) -> np.ndarray | None:
    """The non-null values of a scalar numeric column in ``rows`` as float64."""
    if rows is None or name not in rows.column_names:
        return None
    column = rows.column(name)
    if not is_numeric(column.type):
        return None
    values = pc.cast(column.drop_null(), pa.float64(), safe=False).to_numpy(zero_copy_only=False)
    return values[np.isfinite(values)]


def _declared_shapes(shapes: Sequence[str], tensors: Sequence[str]) -> dict[str, tuple[int, ...]]:
    named: dict[str, tuple[int, ...]] = {}
    positional = []
    for text in shapes:
        if "=" in text:
            name, value = text.split("=", 1)
            if name not in tensors:
                raise InputError(
                    f"--shape names column '{name}', which is not a tensor feature. Tensor "
                    f"features: {', '.join(tensors) or '(none)'}."
                )
            if name in named:
                raise InputError(f"--shape names column '{name}' twice; give one shape per tensor feature.")
            named[name] = parse_shape(value)
        else:
            positional.append(parse_shape(text))
    rest = [n for n in tensors if n not in named]
    if len(positional) > len(rest):
        raise InputError(
            f"{len(positional)} unnamed --shape value(s) for {len(rest)} tensor feature(s) "
            f"without a named shape ({', '.join(rest) or 'none'}); give one per tensor feature."
        )
    return {**named, **dict(zip(rest, positional, strict=False))}


def _first_row_shape(first_rows: pa.Table | None, name: str) -> tuple[int, ...] | None:
    """The nested lengths of the first value of column ``name`` with no null and
    no empty list inside (``None`` when there is none)."""
    if first_rows is None or name not in first_rows.column_names:
        return None
    for value in first_rows.column(name).to_pylist():
        shape = _nested_shape(value)
        if shape:
            return shape
    return None


def _nested_shape(value) -> tuple[int, ...] | None:
    """(len, len of the first element, ...) of a regular nest of lists, else None."""
    if not isinstance(value, list) or not value:
        return None
    if not isinstance(value[0], list):
        return (len(value),) if all(v is not None and not isinstance(v, list) for v in value) else None
    inner = [_nested_shape(v) for v in value]
    if inner[0] is None or any(s != inner[0] for s in inner):
        return None
    return (len(value), *inner[0])


def _check_shape_fits(name: str, shape: tuple[int, ...], arrow_type: pa.DataType, source: str) -> None:
    """A column with d list levels holds the first d-1 dimensions as its outer
    levels and the remaining ones flattened in its innermost level."""
    depth = list_depth(arrow_type)
    if len(shape) < depth:
        raise InputError(
            f"Tensor column '{name}' in {source} has {depth} list levels ({arrow_type}), so "
            f"its shape needs at least {depth} dimensions. Received: {shape_text(shape)}."
        )
    expected = list(shape[: depth - 1]) + [math.prod(shape[depth - 1 :])]
    level_type = arrow_type
    for level, size in enumerate(expected):
        if pa.types.is_fixed_size_list(level_type) and level_type.list_size != size:
            raise InputError(
                f"Tensor column '{name}' in {source} has type {arrow_type}, which cannot hold "
                f"shape {shape_text(shape)} (list level {level + 1} has {level_type.list_size} "
                f"values, the shape needs {size})."
            )
        level_type = level_type.value_type


def unify_schemas(schemas: Sequence[pa.Schema]) -> pa.Schema:
    """The one schema of an input made of files with these schemas, in file order.

    Files written by different tools differ: a column stored as int64 in one
    file and double in another, a column only some files have, a non-nullable
    field. Columns come in order of first appearance; every field is nullable
    (a file that lacks a column gives nulls there). Numeric columns of mixed
    types are float64 if any file stores floats or decimals (int64 otherwise);
    any other mix keeps the first file's type, and the rows of files whose
    type cannot be cast to it are rejected, with the file named.

    Example:
        >>> unify_schemas([pa.schema([pa.field("x", pa.int64(), nullable=False)]),
        ...                pa.schema([("x", pa.float64()), ("y", pa.string())])])
        x: double
        y: string
    """
    types: dict[str, list[pa.DataType]] = {}
    for schema in schemas:
        for field in schema:
            types.setdefault(field.name, []).append(field.type)
    fields = []
    for name, seen in types.items():
        chosen = seen[0]
        if any(not t.equals(chosen) for t in seen) and all(is_numeric(t) for t in seen):
            exact = all(pa.types.is_integer(t) for t in seen)
            chosen = pa.int64() if exact else pa.float64()
        fields.append(pa.field(name, chosen, nullable=True))
    return pa.schema(fields)


def check_compatible(
    spec: FeatureSpec,
    schema: pa.Schema,
    *,
    source: str,
    model: str,
    copied: Sequence[str] | None = None,
) -> None:
    """Checks that data with ``schema`` can be scored by a model trained on ``spec``.

    Args:
        copied: the input columns copied into the scores (default: the key columns).

    Raises:
        InputError: a feature or key column is missing, a feature is not
            numeric, or a copied column has a score column's name.
    """
    missing = [n for n in spec.names if n not in schema.names]
    if missing:
        raise InputError(
            f"{source} lacks feature column(s) {', '.join(missing)} that the model "
            f"{model} was trained on. The model expects features "
            f"{', '.join(spec.names)}; the file has columns {', '.join(schema.names)}. "
            "Score data with the training columns, or train a model on these columns."
        )
    for name in spec.key_columns:
        if name not in schema.names:
            raise _missing("Key", name, schema, source)
    for feature in spec.features:
        arrow_type = schema.field(feature.name).type
        if feature.categorical:
            if not can_be_categorical(arrow_type):
                raise InputError(
                    f"Feature column '{feature.name}' in {source} has type {arrow_type}, but the "
                    f"model {model} was trained on it as a categorical column ({feature.dtype}): "
                    "strings, booleans or integers."
                )
            continue
        if feature.shape:
            if not is_tensor(arrow_type):
                raise InputError(
                    f"Feature column '{feature.name}' in {source} has type {arrow_type}, but the "
                    f"model {model} was trained on it as a tensor of shape "
                    f"{shape_text(feature.shape)} ({feature.dtype})."
                )
            _check_shape_fits(feature.name, feature.shape, arrow_type, source)
        elif not is_numeric(arrow_type):
            raise InputError(
                f"Feature column '{feature.name}' in {source} has type {arrow_type}, but the "
                f"model {model} was trained on it as {feature.dtype}. "
                "Convert the column to a number."
            )
    check_reserved_names(schema, copied=spec.key_columns if copied is None else copied, source=source)
