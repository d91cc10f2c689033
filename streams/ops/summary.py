"""The short regional summary `lintas demo` prints, read from ClickHouse with the read-only user."""

from __future__ import annotations

from typing import Any

from clickhouse_connect.driver.client import Client


def _table(title: str, header: tuple[str, ...], rows: list[tuple[Any, ...]]) -> str:
    widths = [max(len(str(h)), *(len(f"{r[i]:,}" if isinstance(r[i], int) else str(r[i])) for r in rows))
              if rows else len(h) for i, h in enumerate(header)]
    fmt = lambda r: "  ".join(  # noqa: E731
        (f"{v:,}".rjust(w) if isinstance(v, int) else str(v).ljust(w)) for v, w in zip(r, widths, strict=True))
    lines = [title, fmt(header), fmt(tuple("-" * w for w in widths))]
    lines += [fmt(r) for r in rows] or ["(none)"]
    return "\n".join(lines)


def regional_summary(client: Client) -> str:
    """Per-post counts, corridors, landings, dead letters, dedup outcomes and links, alerts, and ingest latency."""
    q = lambda sql: [tuple(r) for r in client.query(sql).result_rows]  # noqa: E731
    total = q("SELECT count(), countIf(refused = 1), countIf(has_biometric = 1) FROM crossings FINAL")[0]
    parts = [
        f"Crossings in ClickHouse: {total[0]:,} ({total[1]:,} refused, {total[2]:,} with a face capture)",
        _table("Busiest posts", ("post", "country", "entries", "exits"), q(
            "SELECT post_id, post_country, toInt64(sumIf(n, direction = 'ENTRY')), "
            "toInt64(sumIf(n, direction = 'EXIT')) FROM (SELECT post_id, post_country, direction, "
            "uniqExactMerge(events) AS n FROM crossings_by_post_hour GROUP BY post_id, post_country, direction) "
            "GROUP BY post_id, post_country ORDER BY sum(n) DESC LIMIT 10")),
        _table("Corridors (declared origin -> destination)", ("origin", "destination", "travellers"), q(
            "SELECT origin_country, destination_country, toInt64(uniqExactMerge(events)) AS n "
            "FROM corridor_flows_daily WHERE direction = 'EXIT' GROUP BY origin_country, destination_country "
            "ORDER BY n DESC LIMIT 10")),
        _table("Boat landings", ("site", "province", "landings", "adults", "minors", "unaccompanied"), q(
            "SELECT site_name, province, toInt64(count()), toInt64(sum(adults)), toInt64(sum(minors)), "
            "toInt64(sum(unaccompanied_minors)) FROM landings FINAL GROUP BY site_name, province ORDER BY 3 DESC")),
        _table("Dead letters", ("topic", "error code", "messages"), q(
            "SELECT source_topic, error_code, toInt64(count()) FROM dead_letters FINAL "
            "GROUP BY source_topic, error_code ORDER BY 3 DESC")),
        _table("Biometric dedup (1:1 against the document's subjects)", ("outcome", "captures", "median 1:1 score"), q(
            "SELECT if(identity_kind = 'name' AND outcome = 'another_face', 'another_face (namesake, no document)', "
            "outcome) AS o, toInt64(count()), if(o = 'enrol', '-', toString(round(median(score), 3))) "
            "FROM dedup_decisions FINAL GROUP BY o ORDER BY 2 DESC")),
        _table("Multiple-identity links for review (proposals until an officer decides)", ("colour", "status", "links"),
               q("SELECT colour, status, toInt64(count()) FROM dedup_links FINAL WHERE status != 'WITHDRAWN' "
                 "GROUP BY colour, status ORDER BY 1, 2")),
        _table("Trafficking-pattern alerts for review", ("rule", "severity", "alerts", "evidence events"), q(
            "SELECT rule_id, severity, toInt64(count()), toInt64(sum(evidence_count)) FROM alerts FINAL "
            "WHERE status = 'ACTIVE' AND family = 'trafficking' GROUP BY rule_id, severity ORDER BY 3 DESC, 1")),
        _table("Document, watchlist and overstay alerts for review", ("rule", "severity", "alerts"), q(
            "SELECT rule_id, severity, toInt64(count()) FROM alerts FINAL WHERE status = 'ACTIVE' "
            "AND family IN ('watchlist', 'overstay') GROUP BY rule_id, severity ORDER BY 3 DESC, 1")),
        _table("Stays (entries paired with exits; overstays judged against today)", ("status", "stays", "overstays"), q(
            "SELECT s.status, toInt64(count()), toInt64(countIf(o.stay_id != '')) FROM stays AS s FINAL "
            "LEFT JOIN overstays AS o ON o.stay_id = s.stay_id GROUP BY s.status ORDER BY 2 DESC")),
    ]
    lag = q("SELECT quantile(0.5)(d), quantile(0.99)(d) FROM (SELECT dateDiff('millisecond', produced_at, "
            "ingested_at) AS d FROM crossings WHERE ingested_at > now() - INTERVAL 1 HOUR)")
    if lag and lag[0][0] == lag[0][0]:  # NaN when no recent rows
        parts.append(f"Ingest lag (Kafka produce -> ClickHouse insert), last hour: p50 {lag[0][0]:,.0f} ms, "
                     f"p99 {lag[0][1]:,.0f} ms")
    return "\n\n".join(parts)
