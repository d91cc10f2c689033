"""Sample the worker's processes with py-spy while a benchmark runs, and print where their time went.

    with profiled(worker_pid, out_dir, "burst") as report:
        ...  # the timed run
    print(report())

py-spy samples from outside (no change to the worker, ~1 % overhead at 50 Hz). The summary
counts samples per function: *self* (the function at the top of the stack) and *inclusive*
(anywhere on it), over every thread of every worker process, idle waits included (a thread
blocked in ``epoll``/``consume`` shows there).
"""

from __future__ import annotations

import collections
import shutil
import signal
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from infra.process import descendants


def summary(paths: list[Path], top: int = 25) -> str:
    """Self and inclusive shares of the top functions in py-spy ``--format raw`` files."""
    own: collections.Counter[str] = collections.Counter()
    anywhere: collections.Counter[str] = collections.Counter()
    total = 0
    for path in paths:
        for line in path.read_text(errors="replace").splitlines():
            stack, _, count = line.rpartition(" ")
            if not stack or not count.isdigit():
                continue
            n = int(count)
            frames = stack.split(";")[1:]  # the first frame is the thread
            if not frames:
                continue
            total += n
            own[frames[-1]] += n
            for frame in set(frames):
                anywhere[frame] += n
    if not total:
        return "(no samples)"
    lines = [f"{total:,} samples; self:"]
    lines += [f"  {n / total:6.1%}  {f}" for f, n in own.most_common(top)]
    lines += ["inclusive (application frames):"]
    ours = [(f, n) for f, n in anywhere.most_common() if "/agents/" in f or "/streams/" in f or "/schemas/" in f
            or "(agents" in f or "(streams" in f or "(schemas" in f]
    lines += [f"  {n / total:6.1%}  {f}" for f, n in ours[:top]]
    return "\n".join(lines)


@contextmanager
def profiled(pid: int, out: Path, name: str, rate: int = 50) -> Iterator[Callable[[], str]]:
    """Record every worker process under ``pid`` while the block runs; yields a function giving the summary."""
    spy = shutil.which("py-spy") or str(Path(__file__).resolve().parent.parent / ".venv" / "bin" / "py-spy")
    out.mkdir(parents=True, exist_ok=True)
    workers = [p for p in descendants(pid) if _is_worker(p)]
    files = [out / f"{name}-{p}.txt" for p in workers]
    spies = [subprocess.Popen([spy, "record", "-p", str(p), "-r", str(rate), "-f", "raw", "-o", str(f),  # noqa: S603
                               "--nonblocking"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
             for p, f in zip(workers, files, strict=True)]
    try:
        yield lambda: summary([f for f in files if f.exists()])
    finally:
        for s in spies:
            s.send_signal(signal.SIGINT)  # py-spy writes its file when interrupted
        for s in spies:
            try:
                s.wait(30)
            except subprocess.TimeoutExpired:
                s.kill()


def _is_worker(pid: int) -> bool:
    try:
        return b"--once" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
