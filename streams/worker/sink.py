"""Batched inserts into ClickHouse, one attempt each; a failure says whether time can fix it.

A batch is written whole in one block, by columns. If ClickHouse does not take it, the sink
raises :class:`SinkUnavailable` when retrying the same insert can succeed (ClickHouse
unreachable, overloaded, timing out) and :class:`SinkRefused` when no retry can change it (an
unknown column, a type mismatch, a read-only user). It never waits and never exits: the worker's
lanes (:mod:`streams.worker.lanes`) retry what time can fix, and the runtime stops the worker
on what it cannot, without committing (quix-streams' sinks raise ``SinkBackpressureError`` for
their runtime the same way).
"""

from __future__ import annotations

import logging
import threading
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

from schemas.errors import LintasError, Unavailable
from streams import clients
from streams.settings import Settings

log = logging.getLogger("lintas.sink")
# ClickHouse error codes that say "not now" rather than "never": timeouts, overload, memory, network,
# too many parts, replicas or keeper briefly away, an insert whose outcome is unknown.
TRANSIENT_CODES = frozenset({159, 160, 202, 203, 209, 210, 241, 242, 252, 285, 319, 425, 439, 473, 999, 1000})


class SinkUnavailable(Unavailable):
    """ClickHouse did not take the rows, and the same insert may succeed later."""

    code = "clickhouse_unavailable"

    def __init__(self, doing: str, exc: BaseException) -> None:
        """Say what was being done (``writing crossings``) and the kind of failure, never the rows."""
        super().__init__(f"ClickHouse unavailable {doing} ({type(exc).__name__})")


class SinkRefused(LintasError):
    """ClickHouse refused the rows for a reason no retry can change: the rows or the schema are wrong."""

    code = "clickhouse_refused"

    def __init__(self, doing: str, exc: BaseException) -> None:
        """Say what was being done (``writing crossings``) and ClickHouse's error code."""
        self.clickhouse_code = getattr(exc, "code", None)
        super().__init__(f"ClickHouse refused {doing} ({type(exc).__name__} code {self.clickhouse_code}); no retry "
                         "can change that (check migrations: `lintas db migrate`)")


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

    def query(self, sql: str, parameters: dict[str, Any]) -> list[dict[str, Any]]:
        """Rows of a read, as dicts; :class:`SinkUnavailable` or :class:`SinkRefused` as for :meth:`write`."""
        try:
            result = self.client().query(sql, parameters=parameters)
        except Exception as exc:  # noqa: BLE001 - the same two kinds as a write
            self._client = None
            raise (SinkUnavailable if transient(exc) else SinkRefused)("reading", exc) from exc
        return [dict(zip(result.column_names, row, strict=True)) for row in result.result_rows]

    def write(self, table: str, rows: Sequence[dict[str, Any]]) -> None:
        """Insert the rows in one block; :class:`SinkUnavailable` or :class:`SinkRefused` if ClickHouse did not."""
        if not rows:
            return
        columns = list(rows[0])
        data = [[row[c] for row in rows] for c in columns]  # by column: what the driver sends, no transpose
        try:
            self.client().insert(table, data, column_names=columns, column_oriented=True)
        except Exception as exc:  # noqa: BLE001 - ClickHouse does not have the batch: say whether to retry
            self._client = None  # the next attempt connects afresh
            if transient(exc):
                raise SinkUnavailable(f"writing {table}", exc) from exc
            raise SinkRefused(f"writing {table}", exc) from exc
