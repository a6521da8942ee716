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
from collections.abc import Sequence

import pyarrow as pa

from autoenc.errors import InputError

# Column names that autoenc adds to its outputs; an input column of the same name
# would be overwritten, so it is refused up front.
SCORE_COLUMNS = ("latent", "reconstruction_error", "is_anomaly")
REJECTED_COLUMNS = ("reason", "source_file", "source_row")


def is_numeric(arrow_type: pa.DataType) -> bool:
    """True for the Arrow types a feature may have: integers and floating point."""
    return pa.types.is_integer(arrow_type) or pa.types.is_floating(arrow_type)


@dataclasses.dataclass(frozen=True)
class Feature:
    """One model input column.

    Attributes:
        name: column name in the input data.
        dtype: Arrow type name of the column at training time, e.g. ``"double"``.
    """

    name: str
    dtype: str


@dataclasses.dataclass(frozen=True)
class FeatureSpec:
    """The ordered model inputs and the key columns that identify a row.

    Attributes:
        features: model inputs, in the order the model sees them.
        key_columns: columns copied to the scores to identify each row.
    """

    features: tuple[Feature, ...]
    key_columns: tuple[str, ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        """Feature names in model order."""
        return tuple(f.name for f in self.features)

    @property
    def n_features(self) -> int:
        return len(self.features)

    def to_dict(self) -> dict:
        return {
            "features": [dataclasses.asdict(f) for f in self.features],
            "key_columns": list(self.key_columns),
        }

    @classmethod
    def from_dict(cls, data: dict) -> FeatureSpec:
        return cls(
            features=tuple(Feature(name=f["name"], dtype=f["dtype"]) for f in data["features"]),
            key_columns=tuple(data["key_columns"]),
        )


def check_reserved_names(schema: pa.Schema, *, source: str) -> None:
    """Refuses input columns whose names clash with the columns autoenc writes."""
    reserved = SCORE_COLUMNS + REJECTED_COLUMNS
    for name in schema.names:
        if name in reserved:
            raise InputError(
                f"Input column '{name}' in {source} has a name autoenc uses for its own "
                f"output columns ({', '.join(reserved)}). Rename it."
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
    source: str,
) -> FeatureSpec:
    """Builds the feature spec for data with the given Arrow schema.

    Args:
        schema: Arrow schema of the input data.
        features: feature columns in model order; ``None`` selects every numeric
            column that is not a key column, in schema order.
        key_columns: columns that identify a row (copied to the scores).
        source: file the schema was read from, named in error messages.

    Returns:
        The ``FeatureSpec``.

    Raises:
        InputError: a named column is missing, a feature is not numeric, a
            column is named twice, or no numeric feature is left.
    """
    key_columns = tuple(key_columns)
    for name in key_columns:
        if name not in schema.names:
            raise _missing("Key", name, schema, source)
    check_reserved_names(schema, source=source)
    if features is None:
        names = [f.name for f in schema if f.name not in key_columns and is_numeric(f.type)]
        if not names:
            raise InputError(
                f"{source} has no numeric column to use as a feature (columns: "
                f"{', '.join(f'{f.name}: {f.type}' for f in schema)}). autoenc needs "
                "integer or floating-point feature columns; pass --features to choose them."
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
    spec_features = []
    for name in names:
        if name not in schema.names:
            raise _missing("Feature", name, schema, source)
        arrow_type = schema.field(name).type
        if not is_numeric(arrow_type):
            raise InputError(
                f"Feature column '{name}' in {source} has type {arrow_type}; a dense "
                "autoencoder needs integer or floating-point features. Leave it out of "
                "--features (or make it a key column), or convert it to a number."
            )
        spec_features.append(Feature(name=name, dtype=str(arrow_type)))
    return FeatureSpec(features=tuple(spec_features), key_columns=key_columns)


def check_compatible(spec: FeatureSpec, schema: pa.Schema, *, source: str, model: str) -> None:
    """Checks that data with ``schema`` can be scored by a model trained on ``spec``.

    Raises:
        InputError: a feature or key column is missing or a feature is not numeric.
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
    for name in spec.names:
        arrow_type = schema.field(name).type
        if not is_numeric(arrow_type):
            raise InputError(
                f"Feature column '{name}' in {source} has type {arrow_type}, but the "
                f"model {model} was trained on it as {spec_dtype(spec, name)}. "
                "Convert the column to a number."
            )
    check_reserved_names(schema, source=source)


def spec_dtype(spec: FeatureSpec, name: str) -> str:
    return next(f.dtype for f in spec.features if f.name == name)
