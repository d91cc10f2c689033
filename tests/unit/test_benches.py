"""The broker-free benchmarks still run against today's handlers (a bench that broke silently measures nothing)."""

from __future__ import annotations

import asyncio

import pytest

from bench import handlers as handlers_bench


def test_the_handlers_bench_measures_every_handler_on_signed_crossings() -> None:
    rows = asyncio.run(handlers_bench.run(300, faces=True, profile=None))
    assert [r["handler"] for r in rows] == ["ingest", "dedup shards", "rules"]
    assert rows[0]["records"] == 300 and all(r["records"] > 0 and r["µs CPU / crossing"] > 0 for r in rows)


def test_the_handlers_bench_refuses_to_report_when_its_crossings_are_dead_lettered(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(handlers_bench, "signed_headers", lambda post, key, value: [])  # unsigned: all refused
    with pytest.raises(SystemExit, match="300 of 300 crossings were dead-lettered"):
        asyncio.run(handlers_bench.run(300, faces=False, profile=None))


def test_the_gallery_memory_bench_accounts_for_each_identity_s_templates(tmp_path) -> None:
    from bench import gallery_memory

    parts = gallery_memory.breakdown(300, tmp_path, hot=300)
    # 512 float32 = 2,048 B: the index's copy and the opened template each hold at least that per identity
    assert parts["1:N index matrix (templates)"] >= 2048 and parts["opened templates"] >= 2048
    assert parts["sealed copies and ids (decoded commands)"] >= 2048
    cold = gallery_memory.breakdown(300, tmp_path, hot=0)
    assert cold["1:N index matrix (templates)"] >= 2048, "the index still holds every template"
    assert cold.get("opened templates", 0) < 100 and cold["sealed copies and ids (decoded commands)"] < 500, (
        "identities not kept decoded leave their templates and sealed copies to the record file")


def test_the_gallery_scale_bench_reports_recall_and_exact_scores_per_model_and_size(tmp_path) -> None:
    from bench import gallery_scale

    row = gallery_scale.measure("hard", 5_000, 40, ["exact", "coded", "rabitq"], nprobes=[16, 4], k=200,
                                where=tmp_path)
    assert {"model", "size", "recall_vs_exact", "ids_per_s", "exact_ids_per_s", "resident_bytes_per_identity"} <= set(row)
    assert (row["model"], row["size"]) == ("hard", 5_000) and row["pairs_at_yellow"] > 0
    assert set(row["methods"]) == {"exact", "coded", "coded@4", "rabitq"} and row["recall_vs_exact"] > 0.9
    assert row["max_score_difference"] < 1e-5, "every reported score is the exact one"
    assert 1 <= row["methods"]["coded"]["exact_reads_per_probe"] < 200, "only candidates near the floor are read"
    starved = gallery_scale.measure("hard", 5_000, 40, ["coded"], nprobes=[1], k=1, where=tmp_path)
    assert starved["recall_vs_exact"] < row["recall_vs_exact"], "the recall check can fail"
