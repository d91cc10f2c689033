"""The worker's supervisor: a crashed worker is started again with a growing pause; a clean exit ends it."""

from __future__ import annotations

import time
from pathlib import Path

from streams.worker.supervise import next_delay, supervise, supervise_all


class FakeClock:
    """Time that moves only when the supervisor sleeps (and a little real time, for the children to exit)."""

    def __init__(self) -> None:
        self.now = 0.0

    def sleep(self, seconds: float) -> None:
        time.sleep(0.05)  # a child exits within a poll or few: each is 0.2 s of this clock
        self.now += seconds

    def __call__(self) -> float:
        return self.now


def _crashes(runs: Path, times: int) -> list[str]:
    """A child that exits 3 ``times`` times, then 0: the run count is kept in a file."""
    return ["sh", "-c", f'echo x >> {runs}; [ "$(wc -l < {runs})" -gt {times} ] || exit 3']


def test_a_crashing_worker_is_restarted_until_it_exits_cleanly(tmp_path: Path) -> None:
    runs, clock, restarts = tmp_path / "runs", FakeClock(), []
    assert supervise(_crashes(runs, 2), sleep=clock.sleep, clock=clock,
                     on_restart=lambda _n, when: restarts.append(when)) == 0
    assert runs.read_text().count("x") == 3
    assert len(restarts) == 2
    assert 1.0 <= restarts[0] < 2.0 and 2.0 <= restarts[1] - restarts[0] < 4.0  # pauses of 1 s, then 2 s


def test_it_gives_up_after_the_restarts_it_may_use(tmp_path: Path) -> None:
    clock, restarts = FakeClock(), []
    assert supervise(["sh", "-c", "exit 75"], max_restarts=2, sleep=clock.sleep, clock=clock,
                     on_restart=lambda _n, when: restarts.append(when)) == 75
    assert len(restarts) == 2


def test_a_child_that_keeps_crashing_never_holds_back_another_s_restart(tmp_path: Path) -> None:
    clock, restarts = FakeClock(), []
    children = [(["sh", "-c", "exit 3"], None), (_crashes(tmp_path / "b", 1), None)]
    code = supervise_all(children, max_restarts=4, max_delay=16.0, sleep=clock.sleep, clock=clock,
                         on_restart=lambda n, when: restarts.append((n, when)))
    assert code == 3
    a = [when for n, when in restarts if n == 0]
    [b] = [when for n, when in restarts if n == 1]
    assert len(a) == 4 and a[-1] >= 1 + 2 + 4 + 8  # the first child's pauses grew to 8 s
    assert b < 2.0  # the second one was started again after its own 1 s, not after the first one's pauses


def test_the_pause_doubles_to_a_cap_and_resets_after_a_healthy_run() -> None:
    assert [next_delay(d, 1.0) for d in (0.0, 1.0, 16.0, 30.0)] == [1.0, 2.0, 30.0, 30.0]
    assert next_delay(30.0, 600.0) == 1.0
