"""Strings of captured requests (categorical values, row ids): their check and encoding on the
request path, and Arrow string arrays of many requests' strings off it.

A request's strings travel as *sections*, one per column (a categorical feature, or the row
ids): the int32 UTF-8 byte length of each row's value (-1 for a null), native byte order,
then the values' bytes one after another. A request's categorical columns are encoded
together, section after section, as one pair of bytes: ``(lengths, text)``. Both writers
keep these pairs (the thread writer in its buffer, the process writer in its spool), so the
request path encodes a request's strings at once and never builds Arrow objects, and the
flusher turns many requests' pairs into one array per column with index arithmetic.
"""

from __future__ import annotations

import reprlib
import struct
from collections.abc import Sequence
from itertools import chain

import numpy as np
import pyarrow as pa

from ingest.errors import SchemaError
from ingest.schema import ModelSchema

__all__ = ["MAX_VALUE_BYTES", "Strings", "check_strings", "gather", "split_sections"]

# The most UTF-8 bytes one categorical value or one row id may hold. Categories and ids are
# short labels; a longer value is almost always a wrong column (free text, a serialised
# object), and the spool holds rows, not documents.
MAX_VALUE_BYTES = 1024

# (int32 byte lengths, section after section, -1 for null; the UTF-8 bytes of the non-null
# values in the same order): bytes, not an array.array, so a buffered block stays untracked
# by the garbage collector
Strings = tuple[bytes, bytes]

_repr = reprlib.Repr()
_repr.maxstring = _repr.maxother = 40
_show = _repr.repr


_SEQUENCES = frozenset({list, tuple, np.ndarray})  # what callers pass; checked at once


class _Bad(Exception):
    """A value refused: its position among the values encoded together, and why."""

    def __init__(self, index: int, problem: str) -> None:
        self.index, self.problem = index, problem


def check_strings(
    schema: ModelSchema,
    categories: tuple[str, ...],
    rows: int,
    categorical: Sequence[Sequence[str | None]] | None,
    row_ids: Sequence[str] | None,
) -> tuple[Strings | None, Strings | None]:
    """Return a block's categorical columns (one section per name of ``categories``, the
    schema's categorical features; None if there are none) and its row ids (None if not
    given), encoded, if they are valid.

    Raises
    ------
    SchemaError
        Naming the column (and row) and the problem: a missing or extra column, a column
        that is not one value per row, a value that is not a str (or None, in a categorical
        column), an empty row id, or a value over :data:`MAX_VALUE_BYTES` UTF-8 bytes.
    """
    cats = None
    if categorical is None:
        if categories:
            raise _error(
                schema,
                f"expected categorical columns {list(categories)} (one sequence of str or "
                "None per categorical feature, in schema order); got categorical=None",
            )
    else:
        size = _size(categorical)
        if size is None:
            raise _error(
                schema,
                f"categorical must be a sequence of {len(categories)} columns, "
                f"not {type(categorical).__name__}",
            )
        if size != len(categories):
            raise _error(
                schema,
                f"expected {len(categories)} categorical columns {list(categories)} in "
                f"schema order; got {size}",
            )
        if categories:
            cats = _encode(schema, categories, categorical, rows, True)
    ids = None if row_ids is None else _encode(schema, None, (row_ids,), rows, False)
    return cats, ids


def _encode(
    schema: ModelSchema,
    names: tuple[str, ...] | None,
    columns: Sequence[Sequence[str | None]],
    rows: int,
    nullable: bool,
) -> Strings:
    """``columns`` (the categorical features ``names``, or the row ids if None; ``rows``
    values each) as one pair of sections."""
    for i, values in enumerate(columns):
        size = _size(values)
        if size is None:
            raise _error(
                schema,
                f"{_label(names, i)} must be a sequence of {rows} strings, "
                f"not {type(values).__name__}",
            )
        if size != rows:
            raise _error(
                schema, f"{_label(names, i)} has {size} values; expected one per row ({rows})"
            )
    try:
        try:
            # str.join refuses None and every non-str (bytes too) in C; one encode for all
            joined = "".join(chain.from_iterable(columns))
            text = joined.encode()
            if joined.isascii():  # a flag of the string: bytes are characters
                lengths = list(map(len, chain.from_iterable(columns)))
            else:
                lengths = [len(v.encode()) for v in chain.from_iterable(columns)]
        except (TypeError, UnicodeEncodeError):
            lengths, text = _encode_each(chain.from_iterable(columns), nullable)
        if len(text) > MAX_VALUE_BYTES:  # else no value can be over the limit
            longest = max(lengths)
            if longest > MAX_VALUE_BYTES:
                raise _Bad(
                    lengths.index(longest),
                    f"a value of {longest} UTF-8 bytes, over the limit of {MAX_VALUE_BYTES} "
                    "(ingest.capture.MAX_VALUE_BYTES)",
                )
        if not nullable and 0 in lengths:
            raise _Bad(lengths.index(0), "an empty id; expected a non-empty str")
    except _Bad as bad:
        column, row = divmod(bad.index, rows)
        raise _error(schema, f"{_label(names, column)} row {row}: {bad.problem}") from None
    return _pack(lengths), text


def _pack(lengths: list[int]) -> bytes:
    """``lengths`` as native int32s."""
    n = len(lengths)
    packer = _packers.get(n)
    if packer is None:
        if len(_packers) >= 64:  # counts a caller varies without bound: stay small
            _packers.clear()
        packer = _packers[n] = struct.Struct(f"{n}i")
    return packer.pack(*lengths)


_packers: dict[int, struct.Struct] = {}


def _size(values: object) -> int | None:
    """How many values a column holds; None if it is not a sequence of values (a string is
    one value, not a sequence of characters)."""
    try:
        if type(values) not in _SEQUENCES and isinstance(values, str | bytes):
            return None
        return len(values)  # type: ignore[arg-type]
    except TypeError:  # no length, or a numpy scalar
        return None


def _label(names: tuple[str, ...] | None, column: int) -> str:
    return "row_ids" if names is None else f"categorical column {names[column]!r}"


def _encode_each(values: chain, nullable: bool) -> tuple[list[int], bytes]:
    """The slow path of :func:`_encode`, for columns with a null or a bad value."""
    lengths, parts = [], []
    expected = "a str or None" if nullable else "a non-empty str"
    for i, v in enumerate(values):
        if v is None and nullable:
            lengths.append(-1)
            continue
        if not isinstance(v, str):
            raise _Bad(i, f"{type(v).__name__} {_show(v)}; expected {expected}")
        try:
            b = v.encode()
        except UnicodeEncodeError as exc:
            raise _Bad(i, f"{_show(v)} is not encodable as UTF-8 ({exc.reason})") from None
        lengths.append(len(b))
        parts.append(b)
    return lengths, b"".join(parts)


def _error(schema: ModelSchema, detail: str) -> SchemaError:
    return SchemaError(
        f"block for model {schema.model!r} does not match its landing schema: {detail}"
    )


def gather(values: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """A copy of ``values[s : s + l]`` for each start and length, concatenated."""
    if not len(lengths):
        return values[:0].copy()
    if lengths.mean() >= 256:  # long pieces: slicing each beats an index per value
        return np.concatenate(
            [values[s : s + n] for s, n in zip(starts.tolist(), lengths.tolist(), strict=True)]
        )
    ends = np.cumsum(lengths)
    return values[np.arange(ends[-1]) + np.repeat(starts - (ends - lengths), lengths)]


def split_sections(
    raw: np.ndarray,
    lengths: np.ndarray,
    counts: np.ndarray,
    sections: int,
    text_at: np.ndarray | None = None,
) -> tuple[pa.StringArray, ...]:
    """One string array per section of many requests' strings, no loop over requests.

    ``lengths`` holds each request's ``sections`` x ``counts[i]`` lengths (section after
    section), requests one after another; ``raw`` (uint8) their bytes. If ``text_at`` is
    None the requests' bytes are back to back in ``raw``, in the order of ``lengths``; else
    request ``i``'s bytes start at ``raw[text_at[i]]``.
    """
    per = counts * sections  # lengths per request
    sizes = np.maximum(lengths, 0)
    before = np.zeros(len(sizes) + 1, np.int64)  # bytes before each value, over all requests
    np.cumsum(sizes, out=before[1:])
    first = np.cumsum(per) - per  # each request's first length, as an index into ``lengths``
    value_at = before[:-1]
    if text_at is not None:  # its request's text start, plus the bytes before it in there
        value_at = value_at + np.repeat(text_at - before[first], per)
    n = int(counts.sum())
    row_in_block = np.arange(n) - np.repeat(np.cumsum(counts) - counts, counts)
    out = []
    for s in range(sections):  # over a schema's categorical features
        index = np.repeat(first + s * counts, counts) + row_in_block
        column = lengths[index]
        out.append(_string_array(column, gather(raw, value_at[index], sizes[index])))
    return tuple(out)


def _string_array(lengths: np.ndarray, text: np.ndarray) -> pa.StringArray:
    """The Arrow strings of ``lengths`` (-1 for null) and ``text`` (the non-null values'
    bytes, in order), built from buffers."""
    n = len(lengths)
    valid = lengths >= 0
    nulls = n - int(np.count_nonzero(valid))
    offsets = np.zeros(n + 1, np.int32)
    np.cumsum(lengths if nulls == 0 else np.where(valid, lengths, 0), out=offsets[1:])
    bitmap = None if nulls == 0 else pa.py_buffer(np.packbits(valid, bitorder="little"))
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(text), bitmap, nulls)
