"""The mapped template store: rows kept in order as it grows, erasure reaching the file, nothing left by name."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np

from agents.gallery import CodedIndex, SampleIndex
from streams.template_store import MappedRows, mapped_stores


def test_rows_stay_in_order_as_the_file_grows_and_the_file_has_no_name(tmp_path: Path) -> None:
    rows, rng = MappedRows(tmp_path / "gallery", 8), np.random.default_rng(1)
    added = [rng.standard_normal((n, 8)).astype(np.float32) for n in (1, 1023, 1, 5000, 37)]
    for batch in added:
        rows.add(batch)
    assert np.array_equal(rows.view, np.concatenate(added)) and len(rows) == 6062
    assert list((tmp_path / "gallery").iterdir()) == [], "nameless: no other process can open it, kill -9 leaves nothing"
    fd = rows._file.fileno()
    assert stat.S_IMODE(os.fstat(fd).st_mode) == 0o600
    rows.erase(4000)
    rows.flush()
    assert os.pread(fd, 32, 4000 * 32) == bytes(32), "the erased row is zeros in the file itself"
    assert os.pread(fd, 32, 4001 * 32) == added[3][4001 - 1025].tobytes()
    rows.close()


def test_a_coded_shard_keeps_its_templates_in_the_store_and_erases_them_there(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    gallery = rng.standard_normal((3000, 64)).astype(np.float32)
    gallery /= np.linalg.norm(gallery, axis=1, keepdims=True)
    index = SampleIndex(64, exact_max=1000, store=mapped_stores(tmp_path))
    index.add([("S", i) for i in range(3000)], gallery, [f"o{i}" for i in range(3000)])
    assert isinstance(index.index, CodedIndex) and isinstance(index.index._rows, MappedRows)
    store = index.index._rows
    row = index.row[("S", 7)]
    index.remove([("S", 7)])
    [(hits, _)] = index.search(gallery[7:8], 0.99, ["q"])  # a search writes what was erased
    assert hits == [] and os.pread(store._file.fileno(), 256, row * 256) == bytes(256)
    assert not index.index.fine_codes()[row].any(), "its 8-bit code is zeros too"
    [(hits, _)] = index.search(gallery[8:9], 0.99, ["q"])
    assert [k for k, _ in hits] == [("S", 8)]
