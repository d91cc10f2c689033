"""``lintas dashboards build`` and ``render``: the provisioned JSON, and a static preview of every panel.

Grafana cannot run on these machines, so the preview does what Grafana would:
it sets each variable to its options (all of them where "All" is allowed, the
first otherwise), expands the plugin's macros for the chosen range, runs each
panel's SQL through the read-only ClickHouse user the datasource provisions,
and draws the rows (matplotlib PNGs for charts, HTML for stats and tables) on
one page. Each panel's element carries ``data-rows`` and ``data-errors`` so a
browser test can check that every panel shows data.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from dashboards.lintas import DASHBOARDS, K
from dashboards.macros import Range, interpolate, variables
from dashboards.model import Dashboard, Panel, to_grafana
from dashboards.shapes import shape_errors

JSON_DIR = Path(__file__).parent / "json"


def documents() -> dict[str, str]:
    """File name → JSON text of every dashboard, as ``build`` writes them."""
    return {f"{d.uid}.json": json.dumps(to_grafana(d), indent=2, ensure_ascii=False) + "\n" for d in DASHBOARDS}


def stale(directory: Path = JSON_DIR) -> list[str]:
    """JSON files in ``directory`` that differ from the code, are missing, or no dashboard generates."""
    wanted = documents()
    present = {p.name: p.read_text(encoding="utf-8") for p in directory.glob("*.json")}
    return sorted(name for name in wanted.keys() | present.keys() if wanted.get(name) != present.get(name))


def build(out: Path = JSON_DIR) -> list[Path]:
    """Write the dashboards' JSON for provisioning; the files written."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in documents().items():
        (out / name).write_text(text, encoding="utf-8")
        written.append(out / name)
    return written


@dataclass
class Drawn:
    """One panel's outcome in the preview."""

    dashboard: str
    panel: str
    kind: str
    rows: int
    errors: list[str]
    sql: str


def step_for(time: tuple[datetime, datetime], points: int = 96) -> int:
    """About ``points`` buckets over the range, in whole minutes (as Grafana's $__interval on a wide panel)."""
    seconds = (time[1] - time[0]).total_seconds() / points
    return max(60, int(math.ceil(seconds / 60.0)) * 60)


def variable_values(client: Any, dashboard: Dashboard) -> dict[str, list[str]]:
    """Each variable's options from ClickHouse, chosen as a freshly opened dashboard would."""
    chosen: dict[str, list[str]] = {}
    for variable in dashboard.variables:
        options = [str(r[0]) for r in client.query(variables(variable.sql, chosen)).result_rows]
        chosen[variable.name] = options if (variable.multi and variable.include_all) else options[:1]
    return chosen


def run_panel(client: Any, panel: Panel, values: dict[str, list[str]], time: Range,
              k: int | None) -> tuple[list[str], list[tuple[Any, ...]], list[str], str]:
    """The panel's columns, rows and shape errors, and the SQL as sent."""
    sql = interpolate(panel.sql, values, time)
    result = client.query(sql)
    columns, rows = list(result.column_names), [tuple(r) for r in result.result_rows]
    return columns, rows, shape_errors(panel, columns, rows, k), sql


def _plot(panel: Panel, columns: Sequence[str], rows: Sequence[tuple[Any, ...]], path: Path, time: Range) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.dates import date2num

    fig, ax = plt.subplots(figsize=(8, 3.2), dpi=90)
    if panel.kind == "timeseries":
        if len(columns) > 2 and columns[1] == "series":
            for name in sorted({r[1] for r in rows}):
                points = [(r[0], r[2]) for r in rows if r[1] == name]
                ax.plot([p[0] for p in points], [math.nan if p[1] is None else p[1] for p in points],
                        marker=".", label=f"{name}")
        else:
            for i, column in enumerate(columns[1:], start=1):
                ax.plot([r[0] for r in rows], [math.nan if r[i] is None else r[i] for r in rows], marker=".",
                        label=column)
        ax.legend(fontsize=7, loc="upper left")
        ax.set_xlim(float(date2num(time.start)), float(date2num(time.end)))  # as Grafana: the dashboard's range
        fig.autofmt_xdate()
    else:  # barchart
        labels, values = [str(r[0]) for r in rows][::-1], [r[1] or 0 for r in rows][::-1]
        ax.barh(labels, values, color="#3274d9")
        ax.tick_params(axis="y", labelsize=7)
    ax.set_title(panel.title, fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _cell(value: Any) -> str:
    return "—" if value is None else html.escape(str(value))


def render(client: Any, out: Path, start: datetime | None = None, end: datetime | None = None) -> list[Drawn]:
    """Run every panel against ClickHouse and write ``out/index.html`` with PNGs beside it."""
    end = end or datetime.now(UTC)
    start = start or end - timedelta(days=7)
    time = Range(start, end, step_for((start, end)))
    out.mkdir(parents=True, exist_ok=True)
    drawn: list[Drawn] = []
    sections = []
    for dashboard in DASHBOARDS:
        values = variable_values(client, dashboard)
        k = K if dashboard.audience == "regional" else None
        cards = []
        for number, panel in enumerate(dashboard.panels, start=1):
            columns, rows, errors, sql = run_panel(client, panel, values, time, k)
            drawn.append(Drawn(dashboard.uid, panel.title, panel.kind, len(rows), errors, sql))
            if errors:
                body = "<p class='error'>" + html.escape("; ".join(errors)) + "</p>"
            elif panel.kind in ("timeseries", "barchart"):
                image = f"{dashboard.uid}-{number}.png"
                _plot(panel, columns, rows, out / image, time)
                body = f"<img src='{image}' alt='{html.escape(panel.title)}'>"
            elif panel.kind == "stat":
                values_ = zip(columns, rows[0], strict=True)
                body = "<div class='stat'>" + "".join(
                    f"<div><b>{_cell(v)}</b><span>{html.escape(c)}</span></div>" for c, v in values_) + "</div>"
            else:
                head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
                lines = "".join("<tr>" + "".join(f"<td>{_cell(v)}</td>" for v in r) + "</tr>" for r in rows[:25])
                body = f"<table><tr>{head}</tr>{lines}</table><p class='more'>{len(rows)} row(s)</p>"
            cards.append(f"<section class='panel {panel.kind}' style='grid-column: span {panel.width}' "
                         f"data-rows='{len(rows)}' data-errors='{len(errors)}'>"
                         f"<h3>{html.escape(panel.title)}</h3>{body}</section>")
        chosen = "; ".join(f"{name} = {', '.join(v[:6])}{' …' if len(v) > 6 else ''}" for name, v in values.items())
        sections.append(f"<h2>{html.escape(dashboard.title)} <small>{dashboard.audience}</small></h2>"
                        f"<p class='vars'>{html.escape(chosen or 'no variables')}</p>"
                        f"<div class='grid'>{''.join(cards)}</div>")
    page = f"""<!doctype html><html><head><meta charset='utf-8'><title>Lintas dashboards preview</title><style>
body {{ font-family: sans-serif; background: #111217; color: #ccccdc; margin: 16px; }}
.grid {{ display: grid; grid-template-columns: repeat(24, 1fr); gap: 8px; }}
.panel {{ background: #181b1f; border: 1px solid #2a2d33; padding: 6px; overflow: auto; }}
.panel img {{ width: 100%; background: white; }}
h3 {{ font-size: 13px; margin: 0 0 4px; }} small {{ color: #8e8e8e; font-size: 12px; }}
.stat {{ display: flex; gap: 24px; }} .stat b {{ font-size: 32px; color: #73bf69; display: block; }}
table {{ font-size: 11px; border-collapse: collapse; }} td, th {{ border-bottom: 1px solid #2a2d33; padding: 2px 6px; }}
.error {{ color: #f2495c; }} .vars, .more {{ font-size: 11px; color: #8e8e8e; }}
</style></head><body>
<h1>Lintas dashboards — preview of {time.start:%Y-%m-%d %H:%M} to {time.end:%Y-%m-%d %H:%M} UTC</h1>
{''.join(sections)}
<script>
// What a browser test reads back: each panel drawn (image loaded, or its table/stat present) with rows.
window.addEventListener('load', () => {{
  let drawn = 0;
  document.querySelectorAll('section.panel').forEach(p => {{
    const img = p.querySelector('img');
    const shown = img ? img.complete && img.naturalWidth > 0 : p.querySelector('table, .stat') !== null;
    p.dataset.drawn = shown && Number(p.dataset.rows) > 0 && p.dataset.errors === '0' ? 'yes' : 'no';
    if (p.dataset.drawn === 'yes') drawn++;
  }});
  document.body.dataset.panelsDrawn = String(drawn);
}});
</script></body></html>"""
    (out / "index.html").write_text(page, encoding="utf-8")
    return drawn
