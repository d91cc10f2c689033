"""SQL text handling shared by the ClickHouse adapter and the migrations, and a one-value query helper."""

from __future__ import annotations

from typing import Any


def split_statements(sql: str) -> list[str]:
    """Split SQL on top-level semicolons, skipping quotes and comments; empty statements dropped."""
    statements: list[str] = []
    start, i, n = 0, 0, len(sql)
    while i < n:
        c = sql[i]
        if c in "'\"`":
            i += 1
            while i < n and sql[i] != c:
                i += 2 if sql[i] == "\\" else 1
        elif sql.startswith("--", i) or c == "#":
            while i < n and sql[i] != "\n":
                i += 1
        elif sql.startswith("/*", i):
            end = sql.find("*/", i + 2)
            i = n if end < 0 else end + 1
        elif c == ";":
            statements.append(sql[start:i])
            start = i + 1
        i += 1
    statements.append(sql[start:])
    return [s for s in statements if strip_comments(s).strip()]


def strip_comments(sql: str) -> str:
    """SQL without ``--``, ``#`` and ``/* */`` comments (quotes respected)."""
    out, i, n = [], 0, len(sql)
    while i < n:
        c = sql[i]
        if c in "'\"`":
            j = i + 1
            while j < n and sql[j] != c:
                j += 2 if sql[j] == "\\" else 1
            out.append(sql[i:j + 1])
            i = j + 1
        elif sql.startswith("--", i) or c == "#":
            while i < n and sql[i] != "\n":
                i += 1
        elif sql.startswith("/*", i):
            end = sql.find("*/", i + 2)
            i = n if end < 0 else end + 2
            out.append(" ")
        else:
            out.append(c)
            i += 1
    return "".join(out)


def scalar(client: Any, sql: str, parameters: dict[str, Any]) -> int:
    """The integer a one-value query returns (0 for NULL or no row)."""
    rows = client.query(sql, parameters=parameters).result_rows
    return int(rows[0][0] or 0) if rows else 0
