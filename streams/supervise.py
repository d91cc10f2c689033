"""Keep the Faust worker running: restart it when it dies, stop it when asked.

faust-streaming can crash its worker on a race inside table recovery (a
rebalance while changelogs are read back), and the ClickHouse sink exits on
purpose after its retry budget (exit 75) so Kafka replays the batch. Either way
the right move is the same as a service manager's: start it again, with a
growing pause, and say so in the log. A SIGTERM or SIGINT to the supervisor is
passed to the worker and ends the loop; a clean exit (0) ends it too.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from types import FrameType

log = logging.getLogger("lintas.supervise")


def next_delay(delay: float, ran_s: float, *, first: float = 1.0, cap: float = 30.0, healthy_s: float = 60.0) -> float:
    """The pause before the next start: back to ``first`` after a healthy run, else doubled up to ``cap``."""
    return first if ran_s >= healthy_s else min(max(delay * 2, first), cap)


def supervise(command: Sequence[str], *, first_delay: float = 1.0, max_delay: float = 30.0,
              healthy_s: float = 60.0, max_restarts: int | None = None,
              sleep: Callable[[float], None] = time.sleep) -> int:
    """Run ``command`` until it exits 0 or this process is told to stop; its last exit code."""
    stopping = False
    child: subprocess.Popen[bytes] | None = None

    def stop(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        if child is not None and child.poll() is None:
            child.send_signal(signum)

    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    delay, restarts = 0.0, 0
    try:
        while True:
            started = time.monotonic()
            child = subprocess.Popen(list(command))  # noqa: S603 - our own worker command
            code = child.wait()
            ran = time.monotonic() - started
            if stopping or code == 0:
                return code
            if max_restarts is not None and restarts >= max_restarts:
                log.error("worker exited with %d; %d restart(s) used, giving up", code, restarts)
                return code
            delay = next_delay(delay, ran, first=first_delay, cap=max_delay, healthy_s=healthy_s)
            log.error("worker exited with %d after %.0fs; starting it again in %.0fs", code, ran, delay)
            sleep(delay)
            restarts += 1
            if stopping:
                return code
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
