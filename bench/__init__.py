"""Benchmarks: each prints its results as a table; commands in the README."""

from __future__ import annotations

import math
from typing import Any


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
