"""Batched, retried inserts into ClickHouse.

A batch is written whole or retried with capped exponential backoff; while it
retries the agent consumes nothing more (backpressure), and Kafka offsets are
not committed. Past ``sink_max_retry_seconds`` the worker exits hard so that no
offset of an unwritten batch can ever be committed; on restart Kafka replays it.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from typing import Any

import clickhouse_connect
from clickhouse_connect.driver.client import Client

from streams.settings import Settings

log = logging.getLogger("lintas.sink")
EXIT_SINK_UNAVAILABLE = 75  # EX_TEMPFAIL


class ClickHouseSink:
    """One clickhouse-connect client, used from one thread at a time."""

    def __init__(self, settings: Settings) -> None:
        """Connect lazily: the first write (or retry) opens the connection."""
        self.settings = settings
        self._client: Client | None = None

    def client(self) -> Client:
        """The client, connected on first use."""
        if self._client is None:
            self._client = clickhouse_connect.get_client(
                host=self.settings.clickhouse_host, port=self.settings.clickhouse_port,
                username=self.settings.clickhouse_user, password=self.settings.secret("clickhouse_password"),
                database=self.settings.clickhouse_database, compress="lz4",
                connect_timeout=5, send_receive_timeout=60,
            )
        return self._client

    def write(self, table: str, rows: Sequence[dict[str, Any]]) -> None:
        """Insert the rows in one block, retrying until ClickHouse has them or the retry budget is spent."""
        if not rows:
            return
        columns = list(rows[0])
        data = [[row[c] for c in columns] for row in rows]
        deadline = time.monotonic() + self.settings.sink_max_retry_seconds
        delay = 0.2
        while True:
            try:
                self.client().insert(table, data, column_names=columns)
                return
            except Exception as exc:  # noqa: BLE001 - any failure: ClickHouse does not have the batch
                self._client = None
                if time.monotonic() + delay > deadline:
                    log.critical("ClickHouse unavailable for %.0fs writing %s (%s); exiting without committing",
                                 self.settings.sink_max_retry_seconds, table, type(exc).__name__)
                    logging.shutdown()
                    os._exit(EXIT_SINK_UNAVAILABLE)
                log.warning("ClickHouse write to %s failed (%s); retrying in %.1fs", table, type(exc).__name__, delay)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
