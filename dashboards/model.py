"""Dashboards as typed values, written out as Grafana dashboard JSON for the ClickHouse datasource plugin.

One small model instead of hand-edited UI exports: a :class:`Panel` carries its
SQL, the columns its visualisation needs (checked against ClickHouse by the
tests) and whether its counts are suppressed below k. :func:`to_grafana` gives
the JSON Grafana provisions; :mod:`dashboards.macros` expands the same SQL the
way the plugin does, for the tests and the local preview.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

DATASOURCE_UID = "lintas-clickhouse"
DATASOURCE = {"type": "grafana-clickhouse-datasource", "uid": DATASOURCE_UID}
PLUGIN_VERSION = "4.10.1"

Kind = Literal["timeseries", "barchart", "table", "stat"]
Audience = Literal["regional", "operating_state"]


@dataclass(frozen=True)
class Panel:
    """One panel: its query and the shape of rows it must return.

    ``columns`` are the result's column names in order. For ``timeseries`` the
    first is the time and the rest numbers (an optional ``series`` string column
    second makes one line per value); for ``barchart`` a label then numbers; for
    ``stat`` one number. ``counts`` names the columns that count people or
    events: in a regional dashboard each is NULL or at least k.
    """

    title: str
    kind: Kind
    sql: str
    columns: tuple[str, ...]
    description: str = ""
    counts: tuple[str, ...] = ()
    width: int = 12
    height: int = 8
    unit: str = ""


@dataclass(frozen=True)
class Variable:
    """A query variable: ``$name`` in the SQL, multi-valued with "All" unless said otherwise."""

    name: str
    label: str
    sql: str
    multi: bool = True
    include_all: bool = True
    sort: int = 1  # Grafana's: 0 as the query orders, 1 alphabetical


@dataclass(frozen=True)
class Dashboard:
    """A dashboard for one audience; regional ones are seen outside the operating state."""

    uid: str
    title: str
    description: str
    audience: Audience
    panels: tuple[Panel, ...]
    variables: tuple[Variable, ...] = ()
    tags: tuple[str, ...] = field(default=("lintas",))
    time_from: str = "now-7d"


def _target(panel: Panel) -> dict[str, Any]:
    time_series = panel.kind == "timeseries"
    return {
        "refId": "A",
        "datasource": DATASOURCE,
        "editorType": "sql",
        "queryType": "timeseries" if time_series else "table",
        "format": 0 if time_series else 1,  # the plugin's Format enum: 0 time series, 1 table
        "pluginVersion": PLUGIN_VERSION,
        "rawSql": panel.sql.strip(),
    }


def _options(panel: Panel) -> dict[str, Any]:
    if panel.kind == "stat":
        return {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                "colorMode": "value", "graphMode": "none", "textMode": "value"}
    if panel.kind == "barchart":
        return {"orientation": "horizontal", "showValue": "auto", "legend": {"showLegend": True}}
    if panel.kind == "table":
        return {"showHeader": True, "cellHeight": "sm"}
    return {"legend": {"showLegend": True, "displayMode": "list", "placement": "bottom"},
            "tooltip": {"mode": "multi", "sort": "desc"}}


def _variable(variable: Variable) -> dict[str, Any]:
    return {
        "type": "query",
        "name": variable.name,
        "label": variable.label,
        "datasource": DATASOURCE,
        "query": variable.sql.strip(),
        "definition": variable.sql.strip(),
        "refresh": 2,  # on time range change
        "multi": variable.multi,
        "includeAll": variable.include_all,
        "sort": variable.sort,
        "current": {},
        "hide": 0,
    }


def to_grafana(dashboard: Dashboard) -> dict[str, Any]:
    """The dashboard as Grafana's JSON model (schema 39), panels laid out left to right, top to bottom."""
    panels, x, y, row_height = [], 0, 0, 0
    for number, panel in enumerate(dashboard.panels, start=1):
        if x + panel.width > 24:
            x, y, row_height = 0, y + row_height, 0
        panels.append({
            "id": number,
            "type": panel.kind,
            "title": panel.title,
            "description": panel.description,
            "datasource": DATASOURCE,
            "gridPos": {"x": x, "y": y, "w": panel.width, "h": panel.height},
            "targets": [_target(panel)],
            "fieldConfig": {"defaults": {"unit": panel.unit} if panel.unit else {}, "overrides": []},
            "options": _options(panel),
        })
        x, row_height = x + panel.width, max(row_height, panel.height)
    return {
        "uid": dashboard.uid,
        "title": dashboard.title,
        "description": dashboard.description,
        "tags": [*dashboard.tags, dashboard.audience],
        "timezone": "utc",
        "editable": False,
        "graphTooltip": 1,
        "schemaVersion": 39,
        "version": 1,
        "refresh": "1m",
        "time": {"from": dashboard.time_from, "to": "now"},
        "templating": {"list": [_variable(v) for v in dashboard.variables]},
        "annotations": {"list": []},
        "links": [],
        "panels": panels,
    }
