import pyarrow as pa
import pytest

from autoenc.errors import InputError
from autoenc.schema import SCORE_COLUMNS, FeatureSpec, check_compatible, infer_spec

SCHEMA = pa.schema(
    [("id", pa.string()), ("a", pa.float64()), ("b", pa.int32()), ("label", pa.string()), ("c", pa.float32())]
)
WITH_LIST = SCHEMA.append(pa.field("l", pa.list_(pa.string())))


def test_default_features_are_numeric_columns_minus_keys():
    spec = infer_spec(SCHEMA, key_columns=["id"], source="f.parquet")
    assert spec.names == ("a", "b", "c")
    assert spec.key_columns == ("id",)
    assert [f.dtype for f in spec.features] == ["double", "int32", "float"]


def test_key_column_excluded_from_default_features():
    spec = infer_spec(SCHEMA, key_columns=["b"], source="f.parquet")
    assert spec.names == ("a", "c")


def test_explicit_features_keep_their_order():
    assert infer_spec(SCHEMA, features=["c", "a"], source="f").names == ("c", "a")


def test_spec_round_trips_through_dict():
    spec = infer_spec(SCHEMA, key_columns=["id"], source="f")
    assert FeatureSpec.from_dict(spec.to_dict()) == spec


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"features": ["a", "zz"]}, ["Feature column 'zz'", "f.parquet", "Columns there: id, a, b"]),
        ({"key_columns": ["nope"]}, ["Key column 'nope'", "f.parquet"]),
        ({"features": ["a", "l"]}, ["'l'", "type list<item: string>", "categorical"]),
        ({"features": ["a"], "categorical_columns": ["c"]}, ["'c'", "not a feature"]),
        ({"categorical_columns": ["c"]}, ["'c'", "type in f.parquet is float", "cannot be one"]),
        ({"features": ["a", "a"]}, ["named twice", "a"]),
        ({"features": ["a"], "key_columns": ["a"]}, ["named twice"]),
    ],
)
def test_bad_column_choices_name_the_column_and_the_file(kwargs, words):
    with pytest.raises(InputError) as info:
        infer_spec(WITH_LIST, source="f.parquet", **kwargs)
    for word in words:
        assert word in str(info.value)


def test_no_usable_column_is_an_error():
    with pytest.raises(InputError, match="no column to use as a feature"):
        infer_spec(pa.schema([("s", pa.list_(pa.string())), ("user_id", pa.string())]), source="f")


def test_string_bool_and_dictionary_columns_are_categorical_by_default():
    rows = pa.table(
        {
            "id": [f"u{i}" for i in range(100)],
            "colour": ["red", "blue"] * 50,
            "note": [f"free text {i}" for i in range(100)],
            "ok": [True, False] * 50,
            "kind": pa.array(["a", "b"] * 50).dictionary_encode(),
            "n": list(range(100)),
            "x": [0.5] * 100,
        }
    )
    spec = infer_spec(rows.schema, first_rows=rows, source="f")
    assert spec.names == ("colour", "ok", "kind", "n", "x")
    assert [f.name for f in spec.categorical_features] == ["colour", "ok", "kind"]
    assert dict(spec.excluded)["id"] == "its name looks like an identifier"
    assert dict(spec.excluded)["note"].startswith("100 distinct values in 100 sampled rows")
    # An integer column is categorical only when named; named columns join even if excluded.
    named = infer_spec(rows.schema, first_rows=rows, categorical_columns=["n", "note"], source="f")
    assert [f.name for f in named.categorical_features] == ["colour", "note", "ok", "kind", "n"]
    assert named.pending_vocabularies == ("colour", "note", "ok", "kind", "n")
    learned = named.with_vocabularies({n: ("a", None) for n in named.pending_vocabularies})
    assert learned.pending_vocabularies == () and learned.width == 5 * 3 + 1
    assert FeatureSpec.from_dict(learned.to_dict()) == learned


def test_reserved_output_names_are_refused_where_they_would_be_copied():
    schema = pa.schema([("anomaly_score", pa.float64()), ("x", pa.float64()), ("id", pa.string())])
    # Not copied to the scores (not a key): allowed, and not a default feature either way.
    infer_spec(schema, key_columns=["id"], features=["x"], source="f")
    with pytest.raises(InputError, match="Input column 'anomaly_score' in f would be written to the scores"):
        infer_spec(
            schema.set(2, pa.field("anomaly_score", pa.string())).remove(0),
            key_columns=["anomaly_score"],
            source="f",
        )
    spec = infer_spec(schema, key_columns=["id"], features=["x"], source="f")
    for name in SCORE_COLUMNS:
        renamed = pa.schema([("x", pa.float64()), ("id", pa.string()), (name, pa.float64())])
        check_compatible(spec, renamed, source="g", model="m")  # keys only: fine
        with pytest.raises(InputError, match=f"Input column '{name}' in g would be written to the scores"):
            check_compatible(spec, renamed, source="g", model="m", copied=renamed.names)
    with pytest.raises(InputError, match="'reason' in g would be written to its rejected rows"):
        check_compatible(spec, schema.append(pa.field("reason", pa.string())), source="g", model="m")


def test_check_compatible_names_missing_features():
    spec = infer_spec(SCHEMA, key_columns=["id"], source="f")
    other = pa.schema([("id", pa.string()), ("a", pa.float64()), ("c", pa.float32())])
    with pytest.raises(InputError) as info:
        check_compatible(spec, other, source="g.parquet", model="m/v1")
    assert "lacks feature column(s) b" in str(info.value)
    assert "g.parquet" in str(info.value)


def test_check_compatible_refuses_a_text_feature():
    spec = infer_spec(SCHEMA, features=["a"], source="f")
    with pytest.raises(InputError, match="type string"):
        check_compatible(spec, pa.schema([("a", pa.string())]), source="g", model="m")
