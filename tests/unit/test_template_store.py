"""A shard's local files: rows kept in order as they grow, records replaced in place, erasure reaching the file,
nothing left by name."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np

from agents.gallery import CodedIndex, SampleIndex
from streams.template_store import MappedRows, RecordFile, mapped_stores


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


def test_records_are_replaced_and_dropped_as_zeros_and_survive_the_file_being_written_afresh(tmp_path: Path) -> None:
    records, rng = RecordFile(tmp_path / "gallery"), np.random.default_rng(3)
    assert list((tmp_path / "gallery").iterdir()) == [], "nameless, like the template store"
    fd = records._file.fileno()
    assert stat.S_IMODE(os.fstat(fd).st_mode) == 0o600
    first = rng.bytes(3000)
    records.put("m|a", first)
    records.put("m|b", rng.bytes(10))
    records.put("m|a", b"second")
    assert records.get("m|a") == b"second" and len(records) == 2 and "m|b" in records
    assert os.pread(fd, 3000, 0) == bytes(3000), "the replaced record is zeros in the file"
    records.drop("m|b")
    assert records.get("m|b") is None and records.keys() == ["m|a"]
    assert os.pread(fd, 10, 3000) == bytes(10), "a dropped record too"
    values = {f"m|{i}": rng.bytes(int(rng.integers(1, 5000))) for i in range(300)}
    before = records._file
    for _ in range(120):  # rewrite every record again and again: zeroed space outgrows live, the file is rewritten
        for key, value in values.items():
            records.put(key, value)
    assert records._file is not before and records._end < 2 * records._live + 64 * 2**20
    assert all(records.get(k) == v for k, v in values.items()) and records.get("m|a") == b"second"
    assert os.fstat(records._file.fileno()).st_size == records._end
    records.close()
