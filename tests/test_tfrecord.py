"""TFRecord framing under fault injection: every record comes back intact, or
the file is an error naming it; nothing is lost quietly."""

from __future__ import annotations

import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autoenc.tfrecord import BLOCK_BYTES, CorruptFileError, gzip_bytes, iter_records, write_record

records_lists = st.lists(st.binary(max_size=300), min_size=1, max_size=20)


def _file(records: list[bytes], gzip: bool) -> bytes:
    buffer = io.BytesIO()
    for record in records:
        write_record(buffer, record)
    data = buffer.getvalue()
    return gzip_bytes(data) if gzip else data


def _read(data: bytes) -> list[bytes]:
    return list(iter_records(io.BytesIO(data), source="part-0.tfrecord"))


def _boundaries(records: list[bytes]) -> set[int]:
    ends, at = {0}, 0
    for record in records:
        at += 16 + len(record)
        ends.add(at)
    return ends


@settings(max_examples=150, deadline=None)
@given(records_lists, st.booleans(), st.data())
def test_a_cut_file_is_an_error_unless_cut_between_records_of_a_plain_file(records, gzip, data):
    whole = _file(records, gzip)
    assert _read(whole) == records
    # (An empty file is named at planning, before any reading: test_hostile.py.)
    cut = data.draw(st.integers(1, len(whole) - 1), label="cut")
    if not gzip and cut in _boundaries(records):
        # A plain file cut between records is a valid shorter file: the format
        # cannot tell (GZIP can: its trailer is checked).
        assert _read(whole[:cut]) == records[: sorted(_boundaries(records)).index(cut)]
        return
    with pytest.raises(CorruptFileError, match="part-0.tfrecord"):
        _read(whole[:cut])


@settings(max_examples=150, deadline=None)
@given(records_lists, st.booleans(), st.data())
def test_a_changed_byte_is_an_error(records, gzip, data):
    whole = bytearray(_file(records, gzip))
    at = data.draw(st.integers(0, len(whole) - 1), label="at")
    if gzip and at < 10:
        return  # the GZIP header's flags, time and OS byte are not checksummed
    whole[at] ^= data.draw(st.integers(1, 255), label="xor")
    with pytest.raises(CorruptFileError, match="part-0.tfrecord"):
        _read(bytes(whole))


def test_records_longer_than_a_read_block_and_across_blocks():
    records = [b"a" * (BLOCK_BYTES + 5), b"b" * 7, b"c" * (3 * BLOCK_BYTES // 2), b""]
    for gzip in (False, True):
        assert _read(_file(records, gzip)) == records
