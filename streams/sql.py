"""SQL text handling shared by the ClickHouse adapter and the migrations, and a one-value query helper."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any


def _runs(sql: str) -> Iterator[tuple[str, int, int]]:
    """``(kind, start, end)`` of each run of ``sql`` in order, a run being code, quoted, comment or block or ``;``.

    ``comment`` is ``--`` or ``#`` to the end of the line, ``block`` is ``/* */``; inside quotes nothing is a
    comment, and inside a comment nothing is a quote.
    """
    start, i, n = 0, 0, len(sql)
    while i < n:
        c = sql[i]
        if c in "'\"`":
            end = i + 1
            while end < n and sql[end] != c:
                end += 2 if sql[end] == "\\" else 1
            kind, end = "quoted", min(end + 1, n)
        elif sql.startswith("--", i) or c == "#":
            newline = sql.find("\n", i)
            kind, end = "comment", n if newline < 0 else newline
        elif sql.startswith("/*", i):
            close = sql.find("*/", i + 2)
            kind, end = "block", n if close < 0 else close + 2
        elif c == ";":
            kind, end = ";", i + 1
        else:
            i += 1
            continue
        if start < i:
            yield "code", start, i
        yield kind, i, end
        start = i = end
    if start < n:
        yield "code", start, n


def split_statements(sql: str) -> list[str]:
    """Split SQL on top-level semicolons, skipping quotes and comments; empty statements dropped."""
    statements, start = [], 0
    for kind, i, end in _runs(sql):
        if kind == ";":
            statements.append(sql[start:i])
            start = end
    statements.append(sql[start:])
    return [s for s in statements if strip_comments(s).strip()]


def strip_comments(sql: str) -> str:
    """SQL without ``--``, ``#`` and ``/* */`` comments (quotes respected; a block comment leaves a space)."""
    return "".join(" " if kind == "block" else "" if kind == "comment" else sql[i:end] for kind, i, end in _runs(sql))


def scalar(client: Any, sql: str, parameters: dict[str, Any]) -> int:
    """The integer a one-value query returns (0 for NULL or no row)."""
    rows = client.query(sql, parameters=parameters).result_rows
    return int(rows[0][0] or 0) if rows else 0
