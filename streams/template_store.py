"""A gallery shard's files on local disk: full templates, memory-mapped (the re-scoring tier), and identity records.

A coded index (:class:`agents.gallery.CodedIndex`) keeps only compact codes in memory and
re-scores its candidates against the full templates; at ten million 512-d templates those
are 20 GB, more than a worker should hold. :class:`MappedRows` keeps them in a file the
kernel pages in as candidates are read: it is :class:`agents.gallery.Rows` with a file
under the matrix, so the index does not know which it has.

The file is a cache of what the sealed gallery records on Kafka hold, nothing more: a
nameless temporary file (``O_TMPFILE``, 0600) in the state directory, so no other process
can open it and it is gone when its index is dropped or its worker dies, kill -9 included;
an erased subject's rows are overwritten with zeros (written out at the next
:meth:`MappedRows.flush`, before the next search). How a production machine encrypts the
disk under it: ``docs/privacy.md``, *Local gallery files*.
"""

from __future__ import annotations

import mmap
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from agents.gallery import Rows
from agents.shard import Records


class MappedRows(Rows):
    """:class:`Rows` in a nameless file: growing the file keeps the filled rows where they are, no copy."""

    def __init__(self, directory: Path, dim: int) -> None:
        """An empty store in a new nameless file under ``directory``."""
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.dim, self._n = dim, 0
        self._file = tempfile.TemporaryFile(dir=directory)  # noqa: SIM115 (closed by close())
        self._data = self._grown(1024)

    def _grown(self, rows: int) -> np.memmap:  # type: ignore[type-arg]
        """The file grown to ``rows`` rows, mapped again."""
        if hasattr(self, "_data"):
            self.flush()
        os.ftruncate(self._file.fileno(), rows * self.dim * 4)
        data = np.memmap(self._file, dtype=np.float32, mode="r+", shape=(rows, self.dim))
        # A re-score reads a few scattered rows per query, and the kernel's readahead pulled far more
        # than each one: random access took a cold 10M search from 24 to 130 id/s (bench.gallery_scale).
        data._mmap.madvise(mmap.MADV_RANDOM)  # type: ignore[attr-defined]
        return data

    @contextmanager
    def sequential(self) -> Iterator[None]:
        """Read ahead while the rows are read in order (coding a whole store), then back to scattered reads."""
        self._data._mmap.madvise(mmap.MADV_SEQUENTIAL)  # type: ignore[attr-defined]
        try:
            yield
        finally:
            self._data._mmap.madvise(mmap.MADV_RANDOM)  # type: ignore[attr-defined]

    def flush(self) -> None:
        """Write changed rows (erased ones included) to the file."""
        self._data.flush()  # type: ignore[attr-defined]

    def evict(self) -> None:
        """Write the rows out and drop their pages from memory: the next reads come from disk, as from a cold store."""
        self.flush()
        self._data._mmap.madvise(mmap.MADV_DONTNEED)  # type: ignore[attr-defined]
        os.posix_fadvise(self._file.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)

    def close(self) -> None:
        """Unmap and close: the file's blocks return to the file system."""
        del self._data
        self._file.close()


def mapped_stores(directory: Path) -> Callable[[int], MappedRows]:
    """What a gallery shard calls for a template store once it turns to codes: a mapped file under ``directory``."""
    return lambda dim: MappedRows(directory, dim)


class RecordFile(Records):
    """:class:`Records` in a nameless file: each record appended, its place in memory, a replaced or dropped one zeroed.

    The file holds only each identity's latest record (older copies are overwritten with
    zeros as they are replaced); it is written afresh, live records only, once the zeroed
    space outgrows them, so it stays under twice their size.
    """

    LENGTH_BITS = 24  # a record's place is offset << 24 | length: one int per identity

    def __init__(self, directory: Path) -> None:
        """An empty store in a new nameless file under ``directory``."""
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._directory = directory
        self._file = tempfile.TemporaryFile(dir=directory)  # noqa: SIM115 (closed by close())
        self._held: dict[str, int] = {}
        self._end = self._live = 0

    def get(self, key: str) -> bytes | None:
        """The key's record, read from the file; None if it has none."""
        place = self._held.get(key)
        if place is None:
            return None
        return os.pread(self._file.fileno(), place & self._mask, place >> self.LENGTH_BITS)

    def put(self, key: str, value: bytes) -> None:
        """Append ``value`` as the key's record; its previous one is zeroed."""
        if len(value) > self._mask:
            raise ValueError(f"an identity record of {len(value)} bytes exceeds the store's {self._mask}")
        self.drop(key)
        os.pwrite(self._file.fileno(), value, self._end)
        self._held[key] = self._end << self.LENGTH_BITS | len(value)
        self._end += len(value)
        self._live += len(value)
        if self._end - self._live > max(self._live, 64 * 2**20):
            self._rewrite()

    def drop(self, key: str) -> None:
        """Forget the key's record, its bytes overwritten with zeros."""
        place = self._held.pop(key, None)
        if place is not None:
            os.pwrite(self._file.fileno(), bytes(place & self._mask), place >> self.LENGTH_BITS)
            self._live -= place & self._mask

    def _rewrite(self) -> None:
        """The live records into a new file, in order; the old file (zeros and live copies) is closed and freed."""
        fresh = tempfile.TemporaryFile(dir=self._directory)  # noqa: SIM115 (closed by close())
        places, end = {}, 0
        for key, place in self._held.items():
            value = os.pread(self._file.fileno(), place & self._mask, place >> self.LENGTH_BITS)
            os.pwrite(fresh.fileno(), value, end)
            places[key] = end << self.LENGTH_BITS | len(value)
            end += len(value)
        self._file.close()
        self._file, self._held, self._end = fresh, places, end

    @property
    def _mask(self) -> int:
        return (1 << self.LENGTH_BITS) - 1

    def close(self) -> None:
        """Close the file: its blocks return to the file system."""
        self._file.close()


def record_files(directory: Path) -> Callable[[], RecordFile]:
    """What a gallery shard calls for its identities' records: a nameless file under ``directory``."""
    return lambda: RecordFile(directory)
