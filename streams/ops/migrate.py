"""Versioned ClickHouse schema migrations: ``streams/ops/migrations/NNNN_name.sql``, applied once, in order.

Applied versions are recorded in ``schema_migrations`` with a checksum; an
applied migration whose file changed is refused rather than silently re-run.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path

from clickhouse_connect.driver.client import Client

from agents.privacy import Policy, policy
from schemas.errors import LintasError
from streams.sql import split_statements

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


class MigrationError(LintasError):
    """A migration failed or an applied one was edited."""

    code = "migration_error"


def migrate(client: Client) -> list[str]:
    """Apply pending migrations; return the names applied now."""
    client.command(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version UInt32, name String, checksum String, "
        "applied_at DateTime64(3, 'UTC')) ENGINE = MergeTree ORDER BY version"
    )
    applied = {int(v): c for v, c in client.query("SELECT version, checksum FROM schema_migrations").result_rows}
    done = []
    for path in sorted(MIGRATIONS.glob("*.sql")):
        version = int(path.name.split("_", 1)[0])
        text = path.read_text()
        checksum = hashlib.sha256(text.encode()).hexdigest()
        if version in applied:
            if applied[version] != checksum:
                raise MigrationError(f"migration {path.name} was edited after it was applied; add a new one instead")
            continue
        for statement in split_statements(text):
            try:
                client.command(statement)
            except Exception as exc:
                raise MigrationError(f"migration {path.name} failed: {exc}") from exc
        client.insert("schema_migrations", [(version, path.stem, checksum, datetime.now(UTC))],
                      column_names=["version", "name", "checksum", "applied_at"])
        done.append(path.stem)
    apply_retention(client, policy())
    return done


def ttl_expression(column: str, days: int) -> str:
    """The TTL clause of a retention, as ClickHouse prints it back in ``system.tables.engine_full``."""
    return f"toDateTime({column}) + toIntervalDay({days})"


def apply_retention(client: Client, pol: Policy) -> list[str]:
    """Set the TTL of every table the policy names from its retention class, where it differs; the tables changed."""
    changed = []
    rows = client.query("SELECT name, engine_full FROM system.tables WHERE database = currentDatabase() "
                        "AND name IN {tables:Array(String)}", parameters={"tables": sorted(pol.tables)}).result_rows
    for table, engine in rows:  # the migrations' tables; a unit test checks each has a retention class
        column, days = pol.ttl(table)
        if days < 0:
            if " TTL " in f" {engine} ":
                client.command(f"ALTER TABLE {table} REMOVE TTL")
                changed.append(table)
            continue
        if ttl_expression(column, days) not in engine:
            client.command(f"ALTER TABLE {table} MODIFY TTL toDateTime({column}) + INTERVAL {days} DAY")
            changed.append(table)
    return changed
