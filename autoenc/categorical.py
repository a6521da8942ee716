"""Categorical columns: their values as text, their vocabularies, their one-hot codes.

A categorical feature (a string, dictionary or boolean column, or an integer
column named in ``--categorical_columns``) enters the model as a one-hot block
of ``len(categories) + 1`` inputs: one per category of its vocabulary, then
one out-of-vocabulary (OOV) slot that every other value takes (a value too
rare to make the vocabulary, or never seen in training). Under ``--missing
impute`` a null is a value like any other (the category ``None``); under
``reject`` a null rejects its row.

The vocabulary is the ``max_categories`` most frequent values of the training
input (``choose_categories``): counted in the Beam pass by ``autoenc train``
(``value_counts`` per batch, summed), most frequent first, ties in value order.

Values are compared as text (``category_text``): a string as itself, a boolean
as ``"true"``/``"false"``, an integer in decimal, so a column stored as
int64 by one tool and as a string by another means the same categories.

Example:
    >>> import pyarrow as pa
    >>> column = pa.array(["a", "b", "a", None, "c"])
    >>> sorted(value_counts(column, nulls=True).items(), key=str)
    [('a', 2), ('b', 1), ('c', 1), (None, 1)]
    >>> categories = choose_categories({"a": 2, "b": 1, "c": 1, None: 1}, max_categories=2)
    >>> categories
    ('a', None)
    >>> encode(column, categories).tolist()
    [0, 2, 0, 1, 2]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

# The default of ``--max_categories``: categories a column keeps; the rest share the OOV slot.
MAX_CATEGORIES = 50
# What ``top_features`` and the report call a column's out-of-vocabulary slot.
OOV = "(other)"


def is_categorical_type(arrow_type: pa.DataType) -> bool:
    """True for the column types that are categorical by default: strings,
    dictionaries (pandas categoricals, Spark's encoded strings) and booleans."""
    return (
        pa.types.is_string(arrow_type)
        or pa.types.is_large_string(arrow_type)
        or pa.types.is_dictionary(arrow_type)
        or pa.types.is_boolean(arrow_type)
    )


def can_be_categorical(arrow_type: pa.DataType) -> bool:
    """True for the types a categorical feature may have: the default ones, and integers."""
    return is_categorical_type(arrow_type) or pa.types.is_integer(arrow_type)


def category_text(column) -> pa.Array:
    """A column's values as text (nulls kept): strings as they are, booleans
    as ``"true"``/``"false"``, integers in decimal, dictionaries by their values.

    Raises:
        TypeError: another type (floats, lists).
    """
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    kind = column.type
    if pa.types.is_dictionary(kind):
        column = column.dictionary_decode()
        kind = column.type
    if pa.types.is_string(kind):
        return column
    if pa.types.is_large_string(kind) or pa.types.is_integer(kind):
        return pc.cast(column, pa.string())
    if pa.types.is_boolean(kind):
        return pc.if_else(column, "true", "false")
    raise TypeError(f"a categorical column holds strings, booleans or integers, not {kind}")


def value_counts(column, *, nulls: bool) -> dict[str | None, int]:
    """How often each value (as text) occurs in ``column``; nulls counted
    under ``None`` when ``nulls``."""
    text = category_text(column)
    counts = pc.value_counts(text)
    out = {
        v: int(c)
        for v, c in zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist(), strict=True)
        if v is not None
    }
    if nulls and text.null_count:
        out[None] = int(text.null_count)
    return out


def _order(item: tuple[str | None, int]) -> tuple:
    value, count = item
    return (-count, value is not None, value or "")


def choose_categories(counts: Mapping[str | None, int], *, max_categories: int) -> tuple[str | None, ...]:
    """The vocabulary: the ``max_categories`` most frequent values, most
    frequent first, ties in value order (null first, then by text)."""
    ranked = sorted(counts.items(), key=_order)
    return tuple(value for value, _ in ranked[: max(0, int(max_categories))])


def top_counts(counts: Sequence[tuple[str | None, int]], limit: int) -> list[tuple[str | None, int]]:
    """The ``limit`` first (value, count) pairs in vocabulary order (for
    combining partial counts: the top of a whole is among the tops of its
    parts only when each part's counts are complete, so combine counts first)."""
    return sorted(counts, key=_order)[:limit]


def encode(column, categories: Sequence[str | None]) -> np.ndarray:
    """Each row's slot: the index of its value in ``categories``, or
    ``len(categories)`` (the OOV slot) for any other value; a null takes the
    ``None`` category when there is one, else the OOV slot (int32 [n])."""
    text = category_text(column)
    known = [c for c in categories if c is not None]
    positions = np.array([i for i, c in enumerate(categories) if c is not None], dtype=np.int32)
    oov = len(categories)
    codes = np.full(len(text), oov, dtype=np.int32)
    if known:
        index = pc.index_in(text, value_set=pa.array(known, pa.string())).fill_null(-1)
        index = index.to_numpy(zero_copy_only=False)
        hit = index >= 0
        codes[hit] = positions[index[hit]]
    if None in categories and text.null_count:
        codes[text.is_null().to_numpy(zero_copy_only=False)] = categories.index(None)
    return codes


def one_hot(codes: np.ndarray, size: int) -> np.ndarray:
    """float64 [n, size] with a 1 in each row's slot."""
    out = np.zeros((len(codes), size), dtype=np.float64)
    out[np.arange(len(codes)), codes] = 1.0
    return out


def slot_names(name: str, categories: Sequence[str | None]) -> list[str]:
    """The names of a column's one-hot inputs: ``"island=Biscoe"``, ...,
    ``"island=(other)"`` (a null category is ``"island=(null)"``)."""
    return [f"{name}={'(null)' if c is None else c}" for c in categories] + [f"{name}={OOV}"]
