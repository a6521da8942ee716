"""TFRecord framing, plain or GZIP, read with every check the format allows.

A TFRecord file is a sequence of records, each framed as::

    uint64 length (little-endian) | uint32 masked CRC32C of the length bytes
    data (length bytes)            | uint32 masked CRC32C of the data

``iter_records`` reads a binary stream (the raw bytes of a file, opened by any
filesystem) and checks both checksums of every record. A GZIP file (detected
from its first two bytes) is decompressed here, not by the filesystem layer,
so that the gzip trailer is checked too: the CRC32 and length of every member,
and that the last member is complete. A file cut anywhere, even exactly on a
record boundary, is therefore an error, not a shorter file.

Example:
    >>> import io
    >>> buffer = io.BytesIO()
    >>> write_record(buffer, b"hello"); write_record(buffer, b"world")
    >>> list(iter_records(io.BytesIO(buffer.getvalue()), source="example"))
    [b'hello', b'world']
"""

from __future__ import annotations

import gzip
import struct
import zlib
from collections.abc import Iterator

import google_crc32c

from autoenc.errors import InputError

GZIP_MAGIC = b"\x1f\x8b"
# Bytes read from the stream at a time, and most bytes a GZIP member may
# expand to per step (bounds memory whatever the compression ratio).
BLOCK_BYTES = 1 << 20
_HEADER = struct.Struct("<QI")
_FOOTER = struct.Struct("<I")


class CorruptFileError(InputError):
    """A TFRecord file is truncated or damaged; the message names the file and where."""


def masked_crc(data) -> int:
    """The masked CRC32C the TFRecord format stores beside each length and record."""
    return _mask(google_crc32c.value(bytes(data)))


def _mask(crc: int) -> int:
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def frame(data: bytes) -> bytes:
    """One record with its framing.

    Example:
        >>> len(frame(b"abc"))  # 12 header bytes + 3 + 4 footer bytes
        19
    """
    length = struct.pack("<Q", len(data))
    return length + struct.pack("<I", masked_crc(length)) + data + struct.pack("<I", masked_crc(data))


def write_record(stream, data: bytes) -> None:
    """Writes one framed record (plain, not compressed) to a binary stream."""
    stream.write(frame(data))


def _plain_blocks(stream, first: bytes) -> Iterator[bytes]:
    if first:
        yield first
    while block := stream.read(BLOCK_BYTES):
        yield block


def _gunzip_blocks(stream, first: bytes, source: str) -> Iterator[bytes]:
    """Decompressed bytes of a (multi-member) GZIP stream, every member's CRC32
    and length checked by zlib; raises when the stream ends inside a member."""
    decompressor = zlib.decompressobj(wbits=31)
    pending = first
    offset = 0  # compressed bytes fed so far, for error messages
    while True:
        if not pending:
            pending = stream.read(BLOCK_BYTES)
            if not pending:
                break
        try:
            out = decompressor.decompress(pending, BLOCK_BYTES)
        except zlib.error as e:
            raise CorruptFileError(
                f"{source} is a damaged GZIP file: {e} (near compressed byte {offset}). "
                "Re-create or re-copy the file; no record of it was used."
            ) from e
        used = len(pending) - len(decompressor.unconsumed_tail) - len(decompressor.unused_data)
        offset += used
        if out:
            yield out
        if decompressor.eof:
            # The member ended (trailer checked). Anything after it must be
            # another member; a stream that ends here is complete.
            rest = decompressor.unused_data
            if not rest:
                rest = stream.read(BLOCK_BYTES)
                if not rest:
                    return
            if rest[:2] != GZIP_MAGIC[: len(rest[:2])]:
                raise CorruptFileError(
                    f"{source} has {len(rest)}+ bytes of garbage after the end of its GZIP data "
                    f"(at compressed byte {offset}). Re-create or re-copy the file."
                )
            decompressor = zlib.decompressobj(wbits=31)
            pending = rest
            continue
        pending = decompressor.unconsumed_tail
    raise CorruptFileError(
        f"{source} is a truncated GZIP file: it ends after {offset} compressed bytes, inside "
        "its compressed data, before the GZIP trailer (checksum and length). Its last "
        "records are missing; re-create or re-copy the file."
    )


def iter_records(stream, *, source: str) -> Iterator[bytes]:
    """Yields the records of a TFRecord stream, plain or GZIP, fully checked.

    Args:
        stream: a binary stream of the file's raw (not decompressed) bytes.
        source: the file's name, for error messages.

    Raises:
        CorruptFileError: a checksum does not match, the file ends inside a
            record or inside its GZIP data, or there is data after its end.
    """
    first = stream.read(BLOCK_BYTES)
    compressed = first[:2] == GZIP_MAGIC
    blocks = _gunzip_blocks(stream, first, source) if compressed else _plain_blocks(stream, first)
    # The data since the next record, as immutable bytes: a record is one
    # slice of it (one copy), and its checksums are computed on the slices
    # without more copies. Refilled (the rest plus new blocks) when a record
    # runs past its end.
    buffer = b""
    start = 0  # position of the next record in buffer
    offset = 0  # position of buffer[0] in the (decompressed) stream
    index = 0
    exhausted = False
    crc, unpack_header, unpack_footer = google_crc32c.value, _HEADER.unpack_from, _FOOTER.unpack_from
    header_size, footer_size = _HEADER.size, _FOOTER.size

    def fill(n: int) -> bool:
        """Reads until buffer holds n bytes from start; False at the end of the data."""
        nonlocal buffer, start, offset, exhausted
        parts, held = [buffer[start:]], len(buffer) - start
        while held < n and not exhausted:
            try:
                block = next(blocks)
            except StopIteration:
                exhausted = True
                break
            parts.append(block)
            held += len(block)
        offset += start
        buffer, start = b"".join(parts), 0
        return held >= n

    where = "decompressed byte" if compressed else "byte"
    while True:
        if len(buffer) - start < header_size and not fill(header_size):
            if len(buffer) > start:
                raise CorruptFileError(
                    f"{source} is truncated: it ends inside the header of record {index} "
                    f"({where} {offset + start}). Its last record is incomplete; re-create or re-copy the file."
                )
            return
        length, length_crc = unpack_header(buffer, start)
        if _mask(crc(buffer[start : start + 8])) != length_crc:
            raise CorruptFileError(
                f"{source} is damaged: the length of record {index} ({where} {offset + start}) "
                "fails its checksum. It is not a TFRecord file, or it was corrupted; "
                "re-create or re-copy it."
            )
        size = header_size + length + footer_size
        if len(buffer) - start < size and not fill(size):
            raise CorruptFileError(
                f"{source} is truncated: record {index} ({where} {offset + start}) should hold "
                f"{length} bytes, and the file ends before it does. Re-create or re-copy the file."
            )
        end = start + header_size + length
        data = buffer[start + header_size : end]
        if _mask(crc(data)) != unpack_footer(buffer, end)[0]:
            raise CorruptFileError(
                f"{source} is damaged: record {index} ({where} {offset + start}, {length} bytes) "
                "fails its checksum. Re-create or re-copy the file."
            )
        yield data
        index += 1
        start = end + footer_size


def gzip_bytes(data: bytes) -> bytes:
    """``data`` as one GZIP member (for tests and tools; deterministic: no timestamp)."""
    return gzip.compress(data, mtime=0)
