"""The worker's supervisor: a crashed worker is started again with a growing pause; a clean exit ends it."""

from __future__ import annotations

from pathlib import Path

from streams.supervise import next_delay, supervise


def test_a_crashing_worker_is_restarted_until_it_exits_cleanly(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    # exits 3 twice (a crash), then 0: the run count is kept in a file
    script = f'echo x >> {runs}; [ "$(wc -l < {runs})" -ge 3 ]'
    pauses: list[float] = []
    assert supervise(["sh", "-c", script], sleep=pauses.append) == 0
    assert runs.read_text().count("x") == 3
    assert pauses == [1.0, 2.0]


def test_it_gives_up_after_the_restarts_it_may_use(tmp_path: Path) -> None:
    pauses: list[float] = []
    assert supervise(["sh", "-c", "exit 75"], max_restarts=2, sleep=pauses.append) == 75
    assert len(pauses) == 2


def test_the_pause_doubles_to_a_cap_and_resets_after_a_healthy_run() -> None:
    assert [next_delay(d, 1.0) for d in (0.0, 1.0, 16.0, 30.0)] == [1.0, 2.0, 30.0, 30.0]
    assert next_delay(30.0, 600.0) == 1.0
