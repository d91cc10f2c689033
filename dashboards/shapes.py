"""What a panel's rows must look like for its visualisation, and the lint of the generated JSON."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from dashboards.model import DATASOURCE_UID, Dashboard, Panel

# Not a broken query: every cell of a suppressed panel is below k (too little data in the range to show).
ALL_SUPPRESSED = "every cell is below k, so suppressed"
# Left behind by Grafana's UI export or by the plugin's older query editor; never in generated JSON.
RESIDUE = ("$$hashKey", "rawQuery", "query_type_legacy", "builderOptions", "meta")


def _number(value: Any) -> bool:
    return value is None or (isinstance(value, int | float | Decimal) and not isinstance(value, bool))


def shape_errors(panel: Panel, columns: Sequence[str], rows: Sequence[Sequence[Any]], k: int | None) -> list[str]:
    """Why ``rows`` would not draw as ``panel`` (empty if they would); ``k`` checks suppression."""
    errors = []
    if not rows:
        return ["no rows"]
    if tuple(columns) != panel.columns:
        return [f"columns {tuple(columns)} are not {panel.columns}"]
    series = panel.kind == "timeseries" and len(columns) > 2 and columns[1] == "series"
    numeric = columns[(2 if series else 1):] if panel.kind in ("timeseries", "barchart") else columns
    records = [dict(zip(columns, row, strict=True)) for row in rows]
    for record in records:
        if panel.kind == "timeseries" and not isinstance(record[columns[0]], datetime | date):
            errors.append(f"time column {columns[0]} holds {type(record[columns[0]]).__name__}")
        if panel.kind == "barchart" and not isinstance(record[columns[0]], str):
            errors.append(f"label column {columns[0]} holds {type(record[columns[0]]).__name__}")
        if panel.kind != "table":
            errors += [f"{c} holds {type(record[c]).__name__}, not a number" for c in numeric if not _number(record[c])]
        if k is not None:
            errors += [f"{c} shows {record[c]}, below k={k}" for c in panel.counts
                       if record[c] is not None and record[c] < k]
        if errors:
            break
    if panel.kind == "stat" and len(rows) != 1:
        errors.append(f"a stat has one row, not {len(rows)}")
    if panel.kind != "table" and all(record[c] is None for record in records for c in numeric):
        errors.append(ALL_SUPPRESSED if k is not None and set(panel.counts) >= set(numeric) else "every value is NULL")
    return errors


def _walk(node: Any, path: str = "") -> list[tuple[str, Any, Any]]:
    """Every (path, key, value) in a JSON tree."""
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            found.append((path, key, value))
            found += _walk(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += _walk(value, f"{path}[{i}]")
    return found


def lint(model: dict[str, Any]) -> list[str]:
    """UI-export residue, duplicate panel ids and datasources other than the provisioned one, in a dashboard's JSON."""
    errors = []
    for path, key, value in _walk(model):
        if key in RESIDUE:
            errors.append(f"{path}.{key}: export residue")
        if key == "datasource" and value is not None:
            if not isinstance(value, dict) or value.get("uid") != DATASOURCE_UID:
                errors.append(f"{path}.datasource: {value!r} is not the provisioned uid {DATASOURCE_UID!r}")
    ids = [p.get("id") for p in model.get("panels", [])]
    errors += [f"panel id {i} is used {ids.count(i)} times" for i in sorted(set(ids), key=str) if ids.count(i) > 1]
    return errors


def audit(dashboards: Sequence[Dashboard]) -> list[str]:
    """Model-level rules: unique uids, regional panels declare their counts."""
    errors = []
    uids = [d.uid for d in dashboards]
    errors += [f"dashboard uid {u} is used twice" for u in set(uids) if uids.count(u) > 1]
    for d in dashboards:
        if d.audience == "regional":
            errors += [f"{d.uid}: panel {p.title!r} names no count column to suppress"
                       for p in d.panels if not p.counts]
        for p in d.panels:
            errors += [f"{d.uid}: panel {p.title!r} count {c!r} is not a column" for c in p.counts
                       if c not in p.columns]
    return errors
