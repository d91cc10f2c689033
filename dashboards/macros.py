"""Grafana's query interpolation for the ClickHouse plugin, for tests and the local preview.

Grafana replaces template variables (``$post``, ``${post:singlequote}``) first,
then the plugin expands its macros. The expansions below are the plugin's
(grafana-clickhouse-datasource 4.x, ``pkg/macros``): ``$__timeFilter(c)`` is
``c >= toDateTime(from) AND c <= toDateTime(to)`` in epoch seconds,
``$__dateFilter(c)`` the same on dates, ``$__timeInterval(c)`` is
``toStartOfInterval(toDateTime(c), INTERVAL n second)``, ``$__fromTime`` and
``$__toTime`` are ``toDateTime(epoch)``, ``$__interval_s`` is the step.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from schemas.errors import LintasError

_VARIABLE = re.compile(r"\$\{(\w+)(?::(\w+))?\}|\$(?!__)(\w+)")
_MACRO = re.compile(r"\$__(timeFilter|dateFilter|timeInterval)\(([^()]*)\)")


class MacroError(LintasError):
    """A query names a variable that is not set or a macro this expander does not know."""

    code = "dashboard_macro"


@dataclass(frozen=True)
class Range:
    """The dashboard's time range and the step Grafana would choose for a panel."""

    start: datetime
    end: datetime
    interval_s: int = 3600


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def variables(sql: str, values: dict[str, list[str]]) -> str:
    """Replace template variables: multi-values comma-joined, ``:singlequote`` quotes each."""

    def one(match: re.Match[str]) -> str:
        name, fmt = (match[1], match[2]) if match[1] else (match[3], None)
        if name not in values:
            raise MacroError(f"variable ${name} is not set")
        chosen = values[name]
        if fmt == "singlequote":
            return ",".join(_quote(v) for v in chosen) if chosen else "''"
        if fmt not in (None, "raw", "csv"):
            raise MacroError(f"variable format {fmt!r} of ${name} is not supported")
        return ",".join(chosen)

    return _VARIABLE.sub(one, sql)


def macros(sql: str, time: Range) -> str:
    """Expand the plugin's macros for ``time``."""
    start, end = int(time.start.timestamp()), int(time.end.timestamp())

    def one(match: re.Match[str]) -> str:
        name, column = match[1], match[2].strip()
        if name == "timeFilter":
            return f"{column} >= toDateTime({start}) AND {column} <= toDateTime({end})"
        if name == "dateFilter":
            return f"{column} >= toDate(toDateTime({start})) AND {column} <= toDate(toDateTime({end}))"
        return f"toStartOfInterval(toDateTime({column}), INTERVAL {time.interval_s} second)"

    sql = _MACRO.sub(one, sql)
    sql = sql.replace("$__fromTime", f"toDateTime({start})").replace("$__toTime", f"toDateTime({end})")
    sql = sql.replace("$__interval_s", str(time.interval_s))
    left = re.search(r"\$__\w+", sql)
    if left:
        raise MacroError(f"macro {left[0]} is not expanded by this preview")
    return sql


def interpolate(sql: str, values: dict[str, list[str]], time: Range) -> str:
    """What Grafana sends to ClickHouse for this panel: variables first, then macros."""
    return macros(variables(sql, values), time)
