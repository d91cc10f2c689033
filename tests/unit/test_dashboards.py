"""Dashboards as code: the JSON is generated, clean and pinned to the provisioned datasource; macros expand."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from dashboards.lintas import DASHBOARDS, K
from dashboards.macros import MacroError, Range, interpolate
from dashboards.model import DATASOURCE_UID, Panel, to_grafana
from dashboards.render import JSON_DIR, documents, stale
from dashboards.shapes import ALL_SUPPRESSED, audit, lint, shape_errors

T0, T1 = datetime(2026, 11, 30, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC)


def test_the_committed_json_is_what_the_code_generates(tmp_path: Path) -> None:
    assert stale() == [], "run `lintas dashboards build` and commit dashboards/json"
    (tmp_path / "old.json").write_text("{}")  # the check can fail: a file no dashboard generates
    assert stale(tmp_path) == sorted([*documents(), "old.json"])


def test_every_dashboard_is_clean_and_on_the_provisioned_datasource() -> None:
    assert not audit(DASHBOARDS)
    for name, text in documents().items():
        model = json.loads(text)
        assert lint(model) == [], name
        targets = [t for p in model["panels"] for t in p["targets"]]
        assert targets and all(t["datasource"]["uid"] == DATASOURCE_UID and t["rawSql"] for t in targets)
    provisioning = (JSON_DIR.parent / "provisioning" / "datasources" / "lintas-clickhouse.yaml").read_text()
    assert f"uid: {DATASOURCE_UID}" in provisioning and "READONLY" in provisioning


def test_the_lint_rejects_export_residue_duplicate_ids_and_other_datasources() -> None:
    model = to_grafana(DASHBOARDS[0])
    residue = copy.deepcopy(model)
    residue["panels"][0]["targets"][0]["rawQuery"] = True
    residue["panels"][1]["$$hashKey"] = "object:42"
    assert [e.split(": ")[1] for e in lint(residue)] == ["export residue", "export residue"]
    duplicate = copy.deepcopy(model)
    duplicate["panels"][1]["id"] = duplicate["panels"][0]["id"]
    assert lint(duplicate) == ["panel id 1 is used 2 times"]
    foreign = copy.deepcopy(model)
    foreign["panels"][2]["datasource"] = {"type": "grafana-clickhouse-datasource", "uid": "P1234"}
    foreign["templating"]["list"][0]["datasource"] = "ClickHouse"
    assert len(lint(foreign)) == 2 and all("not the provisioned uid" in e for e in lint(foreign))


def test_a_regional_panel_without_a_count_to_suppress_is_refused() -> None:
    regional = DASHBOARDS[0]
    assert regional.audience == "regional"
    bare = Panel("Raw", "barchart", "SELECT 'a' AS label, 1 AS n", ("label", "n"))
    broken = type(regional)(**{**regional.__dict__, "panels": (*regional.panels, bare)})
    assert audit([broken]) == ["lintas-regional-flows: panel 'Raw' names no count column to suppress"]


def test_macros_and_variables_expand_as_the_plugin_does() -> None:
    sql = ("SELECT $__timeInterval(t) AS time FROM x WHERE $__timeFilter(t) AND $__dateFilter(d) "
           "AND c IN (${c:singlequote}) AND $__fromTime < $__toTime LIMIT $n")
    out = interpolate(sql, {"c": ["IDN", "O'Brien"], "n": ["5"]}, Range(T0, T1, 3600))
    assert out == ("SELECT toStartOfInterval(toDateTime(t), INTERVAL 3600 second) AS time FROM x WHERE "
                   "t >= toDateTime(1795996800) AND t <= toDateTime(1796083200) AND "
                   "d >= toDate(toDateTime(1795996800)) AND d <= toDate(toDateTime(1796083200)) "
                   "AND c IN ('IDN','O\\'Brien') AND toDateTime(1795996800) < toDateTime(1796083200) LIMIT 5")
    with pytest.raises(MacroError, match=r"\$missing"):
        interpolate("SELECT ${missing:singlequote}", {}, Range(T0, T1))
    with pytest.raises(MacroError, match="__timeGroup"):
        interpolate("SELECT $__timeGroup(t, 1h)", {}, Range(T0, T1))


def test_every_panel_query_names_only_its_dashboards_variables_and_known_macros() -> None:
    for dashboard in DASHBOARDS:
        values = {v.name: ["X"] for v in dashboard.variables}
        for panel in dashboard.panels:
            assert "$" not in interpolate(panel.sql, values, Range(T0, T1)), (dashboard.uid, panel.title)


def test_shapes_catch_wrong_columns_types_empty_results_and_small_cells() -> None:
    series = Panel("S", "timeseries", "", ("time", "series", "n"), counts=("n",))
    good = [(T0, "ENTRY", 40), (T0, "EXIT", None)]
    assert shape_errors(series, ["time", "series", "n"], good, K) == []
    assert shape_errors(series, ["time", "n"], good, K) == ["columns ('time', 'n') are not ('time', 'series', 'n')"]
    assert shape_errors(series, ["time", "series", "n"], [], K) == ["no rows"]
    assert shape_errors(series, ["time", "series", "n"], [("x", "ENTRY", 40)], K) == ["time column time holds str"]
    assert shape_errors(series, ["time", "series", "n"], [(T0, "ENTRY", 3)], K) == [f"n shows 3, below k={K}"]
    assert shape_errors(series, ["time", "series", "n"], [(T0, "ENTRY", None)], K) == [ALL_SUPPRESSED]
    assert shape_errors(series, ["time", "series", "n"], [(T0, "ENTRY", None)], None) == ["every value is NULL"]
    bars = Panel("B", "barchart", "", ("label", "n"))
    assert shape_errors(bars, ["label", "n"], [("a", "12")], None) == ["n holds str, not a number"]
    stat = Panel("T", "stat", "", ("n",))
    assert shape_errors(stat, ["n"], [(1,), (2,)], None) == ["a stat has one row, not 2"]
