"""The sink retries what time can fix and stops at once on what it cannot."""

from __future__ import annotations

from typing import Any

import pytest
from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError, ProgrammingError

from streams.settings import Settings
from streams.worker import sink


@pytest.mark.parametrize(("exc", "expected"), [
    (OperationalError("connection refused"), True),
    (ConnectionRefusedError(111, "refused"), True),
    (DatabaseError("Received ClickHouse exception, code: 241 MEMORY_LIMIT_EXCEEDED", code=241), True),
    (DatabaseError("HTTP driver received HTTP status 503"), True),  # no code: the server could not say
    (DatabaseError("Received ClickHouse exception, code: 16 NO_SUCH_COLUMN_IN_TABLE", code=16), False),
    (DatabaseError("Received ClickHouse exception, code: 164 READONLY", code=164), False),
    (ProgrammingError("bad parameter"), False),
    (KeyError("column"), False),
])
def test_transient_errors_are_told_from_refusals(exc: BaseException, expected: bool) -> None:
    assert sink.transient(exc) is expected


class FlakyClient:
    """Raises the given errors one after the other, then takes the rows."""

    def __init__(self, errors: list[BaseException]) -> None:
        self.errors, self.inserted = errors, []

    def insert(self, table: str, data: list[list[Any]], column_names: list[str], column_oriented: bool = False) -> None:
        assert column_oriented, "the sink sends columns"
        if self.errors:
            raise self.errors.pop(0)
        self.inserted.append((table, data, column_names))


def _sink(monkeypatch: pytest.MonkeyPatch, client: FlakyClient) -> sink.ClickHouseSink:
    out = sink.ClickHouseSink(Settings(sink_max_retry_seconds=30))
    monkeypatch.setattr(out, "client", lambda: client)
    monkeypatch.setattr(sink.time, "sleep", lambda s: None)

    def exit_(code: int) -> None:
        raise SystemExit(code)
    monkeypatch.setattr(sink.os, "_exit", exit_)
    return out


def test_a_transient_failure_is_retried_until_clickhouse_has_the_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    client = FlakyClient([OperationalError("down"), DatabaseError("busy", code=202)])
    _sink(monkeypatch, client).write("crossings", [{"a": 1}])
    assert client.inserted == [("crossings", [[1]], ["a"])]


def test_a_refusal_stops_the_worker_at_once_without_retrying(monkeypatch: pytest.MonkeyPatch,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    client = FlakyClient([DatabaseError("Received ClickHouse exception, code: 16", code=16)])
    with pytest.raises(SystemExit) as stopped:
        _sink(monkeypatch, client).write("crossings", [{"no_such_column": 1}])
    assert stopped.value.code == sink.EXIT_SINK_REFUSED
    assert client.inserted == []
    assert "refused the rows for crossings" in caplog.text
