"""The canonical byte form of a table: per column, its name, type tag and the sha256 of its data.

A column's data is its little-endian numpy buffer for numeric columns, the uint32 byte lengths and UTF-8 bytes
of its values for all-string columns, a JSON list for anything else (nulls, mixed types). Each column's data is
hashed on its own, without copying (numpy and arrow buffers are read as they are), so a large table's columns
are hashed on two cores at once: sha256 runs at ~1.5 GB/s here and was two thirds of the engine's overhead
on a 10,000-row table (2 MB of column data). The names and tags are length-prefixed and every column digest
is 32 bytes, so no two tables share canonical bytes. Writing CSV instead cost ~100 ms per 10,000 rows;
building one pandas Series per column cost ~40% of what was left.
"""

from __future__ import annotations

import collections
import hashlib
import json
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Iterator, Sequence

__all__ = ["TABLE_FORMAT", "column_arrays", "table_canonical_bytes"]

TABLE_FORMAT = b"gensdk-table/3"
PARALLEL_MIN_BYTES = 1 << 20  # below this, handing columns to a second thread costs more than it saves

Piece = bytes | memoryview


def table_canonical_bytes(frame: Any) -> bytes:
    columns = [(name, *_column_pieces(values)) for name, values in column_arrays(frame)]
    digests = column_digests([pieces for _, _, pieces in columns])
    parts = [TABLE_FORMAT]
    for (name, tag, _), digest in zip(columns, digests):
        for field in (str(name).encode("utf-8", "surrogatepass"), tag.encode()):
            parts += [len(field).to_bytes(8, "big"), field]
        parts.append(digest)
    return b"".join(parts)


def column_digests(columns: Sequence[Sequence[Piece]]) -> list[bytes]:
    """The sha256 of each column's pieces; large tables on this thread and a helper at once (hashlib
    releases the GIL while it hashes a buffer), largest columns first so the two finish together."""
    digests: list[bytes] = [b""] * len(columns)
    sizes = [sum(len(piece) for piece in pieces) for pieces in columns]
    todo = collections.deque(sorted(range(len(columns)), key=sizes.__getitem__, reverse=True))

    def hash_until_done() -> None:
        while True:
            try:
                index = todo.popleft()  # atomic: each column is taken by one thread
            except IndexError:
                return
            hasher = hashlib.sha256()
            for piece in columns[index]:
                hasher.update(piece)
            digests[index] = hasher.digest()

    helper = _helper_pool().submit(hash_until_done) if sum(sizes) >= PARALLEL_MIN_BYTES and _cores() > 1 else None
    hash_until_done()
    if helper is not None and not helper.cancel():  # started: it may still be on its last column
        helper.result()
    return digests


_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _helper_pool() -> ThreadPoolExecutor:
    """One helper thread for the process, started on first use. Calls never wait for another call's work:
    a helper job that has not started when its caller is done is cancelled."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gensdk-digest")
        return _pool


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def column_arrays(frame: Any) -> Iterator[tuple[Any, Any]]:
    """(name, array) per column, in order, duplicates included.

    `DataFrame._iter_column_arrays` is private but has been in pandas since 1.3: it hands out the columns'
    arrays without building a Series each (~15 µs for 15 columns instead of ~250 µs plus the garbage those
    Series leave). Where it is missing, the public `items()` gives the same arrays."""
    fast = getattr(frame, "_iter_column_arrays", None)
    if callable(fast):
        return zip(frame.columns, fast())
    return ((name, column.array) for name, column in frame.items())


def _column_pieces(values: Any) -> tuple[str, tuple[Piece, ...]]:
    """The column's type tag and its data (no copy where a numpy or arrow buffer can be read as it is)."""
    import numpy as np

    text = _arrow_text_pieces(values)  # first: to_numpy() alone would build one Python str per value
    if text is not None:
        return text
    array = values if isinstance(values, np.ndarray) else values.to_numpy()
    if array.dtype.kind in "biuf":
        little = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
        return str(array.dtype), (little.view(np.uint8).data,)
    items = array.tolist()
    text = _python_text_pieces(items)
    if text is not None:
        return text
    return "json", (json.dumps(items, ensure_ascii=False, default=str).encode("utf-8", "surrogatepass"),)


def _python_text_pieces(values: list[Any]) -> tuple[str, tuple[bytes, bytes]] | None:
    """The values' byte lengths (see `_lengths`), then their UTF-8; None unless every value is a str."""
    import numpy as np

    if not all(isinstance(v, str) for v in values):
        return None
    encoded = [v.encode("utf-8", "surrogatepass") for v in values]
    tag, lengths = _lengths(np.fromiter(map(len, encoded), dtype="<i8", count=len(encoded)))
    return tag, (lengths, b"".join(encoded))


def _lengths(lengths: Any) -> tuple[str, bytes]:
    """Little-endian uint32 byte lengths (tag "utf8-len32"), int64 if a value is 4 GiB or longer: half the
    bytes to hash of int64 lengths, which were a third of a typical table's canonical form."""
    import numpy as np

    if len(lengths) and int(lengths.max()) >= 1 << 32:
        return "utf8-len64", lengths.astype("<i8").tobytes()
    return "utf8-len32", lengths.astype("<u4").tobytes()


def _arrow_text_pieces(values: Any) -> tuple[str, tuple[bytes, memoryview]] | None:
    """The same as `_python_text_pieces`, read straight from a pyarrow-backed string array's buffers
    (pandas' default string storage): ~15x faster, with no Python object per value. None when the array is
    not arrow-backed text or holds a null."""
    import numpy as np

    if not hasattr(values, "__arrow_array__") or getattr(values.dtype, "kind", None) not in ("O", "U"):
        return None  # numpy arrays, and extension arrays that are not text (arrow-backed numbers, dates)
    try:
        import pyarrow as pa

        array = pa.array(values)
    except (ImportError, TypeError, ValueError, pa.ArrowException):
        return None
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if array.null_count or not (pa.types.is_string(array.type) or pa.types.is_large_string(array.type)):
        return None
    width = "<i4" if pa.types.is_string(array.type) else "<i8"
    _, offsets, data = array.buffers()
    ends = np.frombuffer(offsets, dtype=width)[array.offset: array.offset + len(array) + 1]
    body = memoryview(data)[int(ends[0]): int(ends[-1])] if len(array) else memoryview(b"")
    tag, lengths = _lengths(np.diff(ends))
    return tag, (lengths, body)
