import pyarrow as pa
import pytest
import tensorflow as tf

from autoenc.errors import InputError
from autoenc.tfexample import examples_to_batch, infer_schema


def example(**features):
    def feature(v):
        values = v if isinstance(v, list) else [v]
        if all(isinstance(x, bytes) for x in values):
            return tf.train.Feature(bytes_list=tf.train.BytesList(value=values))
        if all(isinstance(x, int) for x in values):
            return tf.train.Feature(int64_list=tf.train.Int64List(value=values))
        return tf.train.Feature(float_list=tf.train.FloatList(value=values))

    return tf.train.Example(
        features=tf.train.Features(feature={k: feature(v) for k, v in features.items()})
    ).SerializeToString()


def test_schema_inference_types_and_order():
    records = [example(id=b"a", x=1.5, n=3, v=[1.0, 2.0]), example(id=b"b", x=2.5, n=4, v=[3.0])]
    schema = infer_schema(records, source="f.tfrecord")
    assert schema == pa.schema(
        [("id", pa.string()), ("n", pa.int64()), ("v", pa.list_(pa.float32())), ("x", pa.float32())]
    )


def test_int_then_float_makes_a_float_column():
    schema = infer_schema([example(x=1), example(x=2.5)], source="f")
    assert schema.field("x").type == pa.float32()


def test_records_that_do_not_fit_get_reasons():
    schema = pa.schema([("id", pa.string()), ("x", pa.float32())])
    records = [
        example(id=b"a", x=1.0),
        example(id=b"b", x=b"text"),
        example(id=b"c", x=[1.0, 2.0]),
        example(id=b"d"),
        b"\xff\x00garbage",
    ]
    conformed = examples_to_batch(records, schema)
    assert conformed.batch.column("id").to_pylist() == ["a", "b", "c", "d", None]
    assert conformed.batch.column("x").to_pylist() == [1.0, None, None, None, None]
    assert conformed.reasons[0] is None and conformed.reasons[3] is None
    assert (
        "column 'x' has the wrong type: expected float_list or int64_list, got bytes_list"
        in conformed.reasons[1]
    )
    assert "column 'x' has 2 values, expected 1" in conformed.reasons[2]
    assert "not a serialized tf.train.Example" in conformed.reasons[4]


def test_not_examples_is_a_clear_error():
    with pytest.raises(InputError, match="Record 0 of f.tfrecord is not a serialized tf.train.Example"):
        infer_schema([b"\xff\x00garbage"], source="f.tfrecord")
    with pytest.raises(InputError, match="holds no records"):
        infer_schema([], source="f.tfrecord")
