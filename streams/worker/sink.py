"""Batched, retried inserts into ClickHouse.

A batch is written whole or, if the failure is transient (ClickHouse unreachable,
overloaded, timing out), retried with capped exponential backoff; while it retries
the agent consumes nothing more (backpressure), and Kafka offsets are not committed.
Past ``sink_max_retry_seconds`` the worker exits hard so that no offset of an
unwritten batch can ever be committed; on restart Kafka replays it. A refusal that
no retry can change (an unknown column, a type mismatch, a read-only user) stops
the worker at once, naming the table and ClickHouse's error, without committing.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Sequence
from typing import Any

from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import (
    DatabaseError,
    DataError,
    Error,
    IntegrityError,
    NotSupportedError,
    OperationalError,
    ProgrammingError,
)

from streams import clients
from streams.settings import Settings

log = logging.getLogger("lintas.sink")
EXIT_SINK_UNAVAILABLE = 75  # EX_TEMPFAIL
EXIT_SINK_REFUSED = 70  # EX_SOFTWARE: the rows or the schema are wrong, not the server's state
# ClickHouse error codes that say "not now" rather than "never": timeouts, overload, memory, network,
# too many parts, replicas or keeper briefly away, an insert whose outcome is unknown.
TRANSIENT_CODES = frozenset({159, 160, 202, 203, 209, 210, 241, 242, 252, 285, 319, 425, 439, 473, 999, 1000})


def transient(exc: BaseException) -> bool:
    """Whether retrying the same insert can succeed: a connection failure, or a server error of the "not now" kind."""
    if not isinstance(exc, Error):
        return isinstance(exc, OSError | TimeoutError)  # below the driver: sockets, DNS
    if isinstance(exc, OperationalError):
        return True  # unreachable, connection lost mid-request, retried and failed
    if isinstance(exc, ProgrammingError | DataError | IntegrityError | NotSupportedError):
        return False  # the request itself is wrong
    code = getattr(exc, "code", None)
    return isinstance(exc, DatabaseError) and (code is None or code in TRANSIENT_CODES)  # no code: a bare 5xx


class ClickHouseSink:
    """A clickhouse-connect client per thread (each agent writes from its own I/O thread)."""

    def __init__(self, settings: Settings) -> None:
        """Connect lazily: a thread's first write (or retry) opens its connection."""
        self.settings = settings
        self._local = threading.local()

    @property
    def _client(self) -> Client | None:
        return getattr(self._local, "client", None)

    @_client.setter
    def _client(self, client: Client | None) -> None:
        self._local.client = client

    def client(self) -> Client:
        """This thread's client, connected on first use."""
        if self._client is None:
            self._client = clients.clickhouse_client(self.settings, compress="lz4", connect_timeout=5,
                                                     send_receive_timeout=60)
        return self._client  # type: ignore[return-value]

    def write(self, table: str, rows: Sequence[dict[str, Any]]) -> None:
        """Insert the rows in one block, retrying until ClickHouse has them or the retry budget is spent."""
        if not rows:
            return
        columns = list(rows[0])
        data = [[row[c] for row in rows] for c in columns]  # by column: what the driver sends, no transpose
        deadline = time.monotonic() + self.settings.sink_max_retry_seconds
        delay = 0.2
        while True:
            try:
                self.client().insert(table, data, column_names=columns, column_oriented=True)
                return
            except Exception as exc:  # noqa: BLE001 - ClickHouse does not have the batch: retry or stop
                self._client = None
                if not transient(exc):
                    log.critical("ClickHouse refused the rows for %s (%s code %s); no retry can change that: "
                                 "exiting without committing (check migrations: `lintas db migrate`)", table,
                                 type(exc).__name__, getattr(exc, "code", None))
                    logging.shutdown()
                    os._exit(EXIT_SINK_REFUSED)
                if time.monotonic() + delay > deadline:
                    log.critical("ClickHouse unavailable for %.0fs writing %s (%s); exiting without committing",
                                 self.settings.sink_max_retry_seconds, table, type(exc).__name__)
                    logging.shutdown()
                    os._exit(EXIT_SINK_UNAVAILABLE)
                log.warning("ClickHouse write to %s failed (%s); retrying in %.1fs", table, type(exc).__name__, delay)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
