"""Keep the Faust workers running: restart each when it dies, stop them all when asked.

A worker stops itself on purpose when an agent fails (:func:`streams.worker.app.stop`: exit 75
when ClickHouse stayed away past its budget, so Kafka replays the batch; 70 otherwise), and
faust-streaming can crash it on a race of its own. Either way the right move is a service
manager's: start it again, with a growing pause, and say so in the log. A SIGTERM or SIGINT to the supervisor is
passed to the worker and ends the loop; a clean exit (0) ends it too.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import FrameType

log = logging.getLogger("lintas.supervise")


def next_delay(delay: float, ran_s: float, *, first: float = 1.0, cap: float = 30.0, healthy_s: float = 60.0) -> float:
    """The pause before the next start: back to ``first`` after a healthy run, else doubled up to ``cap``."""
    return first if ran_s >= healthy_s else min(max(delay * 2, first), cap)


def supervise(command: Sequence[str], *, first_delay: float = 1.0, max_delay: float = 30.0,
              healthy_s: float = 60.0, max_restarts: int | None = None,
              sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic,
              on_restart: Callable[[int, float], None] | None = None) -> int:
    """Run ``command`` until it exits 0 or this process is told to stop; its last exit code."""
    return supervise_all([(command, None)], first_delay=first_delay, max_delay=max_delay, healthy_s=healthy_s,
                         max_restarts=max_restarts, sleep=sleep, clock=clock, on_restart=on_restart)


@dataclass
class _Child:
    command: Sequence[str]
    env: Mapping[str, str] | None
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    delay: float = 0.0
    due: float | None = None  # when it is to be started again, while it waits out its pause
    restarts: int = 0
    code: int | None = None  # its last exit code, once it is done for good

    def start(self, now: float) -> None:
        self.started, self.due = now, None
        self.proc = subprocess.Popen(list(self.command), env=None if self.env is None else dict(self.env))  # noqa: S603 - our own worker command


def supervise_all(children: Sequence[tuple[Sequence[str], Mapping[str, str] | None]], *, first_delay: float = 1.0,
                  max_delay: float = 30.0, healthy_s: float = 60.0, max_restarts: int | None = None,
                  sleep: Callable[[float], None] = time.sleep, poll_s: float = 0.2,
                  clock: Callable[[], float] = time.monotonic,
                  on_restart: Callable[[int, float], None] | None = None) -> int:
    """Run every (command, environment) as its own process, each restarted on its own when it dies.

    Each child waits out its own pause (a due time, not a sleep of the loop), so one that keeps
    crashing never holds back another's restart. A child that exits 0 is done; a SIGTERM or SIGINT
    to the supervisor goes to every child and ends the loop once they have all exited (a child
    waiting out its pause is not started again). Returns the highest exit code of the children.
    ``on_restart(n, when)`` hears of every restart.
    """
    stopping = False
    running = [_Child(command, env) for command, env in children]

    def stop(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for child in running:
            if child.proc is not None and child.proc.poll() is None:
                child.proc.send_signal(signum)

    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        for child in running:
            child.start(clock())
        while any(c.code is None for c in running):
            sleep(poll_s)
            for n, child in enumerate(running):
                if child.code is not None:
                    continue
                now = clock()
                if child.due is not None:  # waiting out its pause
                    if stopping:
                        child.code = child.proc.returncode if child.proc is not None else 0
                    elif now >= child.due:
                        child.restarts += 1
                        child.start(now)
                        if on_restart is not None:
                            on_restart(n, now)
                    continue
                if child.proc is None or (code := child.proc.poll()) is None:
                    continue
                ran = now - child.started
                if stopping or code == 0:
                    child.code = code
                    continue
                if max_restarts is not None and child.restarts >= max_restarts:
                    log.error("worker %d exited with %d; %d restart(s) used, giving up", n, code, child.restarts)
                    child.code = code
                    continue
                child.delay = next_delay(child.delay, ran, first=first_delay, cap=max_delay, healthy_s=healthy_s)
                child.due = now + child.delay
                log.error("worker %d exited with %d after %.0fs; starting it again in %.0fs", n, code, ran,
                          child.delay)
        return max(c.code or 0 for c in running)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
