"""Benchmarks: each prints its results as a table; the commands and what they measured are in docs/benchmarks.md."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
BENCH_PORT_BASE = 24000  # benchmarks that need a stack of their own; tests use 19xxx-29xxx others


def best_of(fn: Callable[[], Any], repeat: int = 3) -> float:
    """Seconds of the fastest of ``repeat`` runs of ``fn`` (the least disturbed by the rest of the machine)."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


@contextmanager
def own_stack(tmp: str, secure: bool = True, port_base: int = BENCH_PORT_BASE) -> Iterator[Any]:
    """A stack of the benchmark's own (state in ``tmp``, ports 24xxx, installed jars shared), stopped after.

    ``secure=False``: no TLS and no authentication, only to measure what they cost.
    """
    from infra.stack import Stack
    from streams.settings import Settings

    settings = Settings(state_dir=Path(tmp) / "state", dist=REPO / ".lintas" / "dist", secure=secure,
                        kafka_port=port_base + 92, kafka_controller_port=port_base + 93,
                        schema_registry_port=port_base + 81, clickhouse_port=port_base + 123)
    stack = Stack(settings)
    stack.up(say=lambda _: None)
    try:
        yield stack
    finally:
        stack.down(say=lambda _: None)


def print_table(rows: list[dict[str, Any]], floats: dict[str, str] | None = None) -> None:
    """Rows of equal keys as a Markdown table (paste-able into an issue note)."""
    if not rows:
        return
    floats = floats or {}
    cols = list(rows[0])

    def cell(col: str, value: Any) -> str:
        if isinstance(value, float):
            return "-" if math.isnan(value) else floats.get(col, "{:.3f}").format(value)
        return f"{value:,}" if isinstance(value, int) else str(value)

    cells = [[cell(c, r[c]) for c in cols] for r in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(cols)]
    print("| " + " | ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in cells:
        print("| " + " | ".join(v.rjust(w) if v[:1].isdigit() or v[:1] in "-." else v.ljust(w)
                                for v, w in zip(r, widths, strict=True)) + " |")
