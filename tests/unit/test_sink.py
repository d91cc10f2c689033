"""The sink says whether time can fix a failure; the worker's lanes retry what it can, and the runtime stops on the rest."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError, ProgrammingError

from streams.settings import Settings
from streams.worker import lanes, sink


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
    out = sink.ClickHouseSink(Settings())
    monkeypatch.setattr(out, "client", lambda: client)
    return out


def _lane(monkeypatch: pytest.MonkeyPatch, budget_s: float) -> tuple[lanes.Lane, list[float]]:
    """A lane whose pauses are recorded, not slept, and whose clock moves by them."""
    now, pauses = [0.0], []

    async def sleep(s: float) -> None:
        pauses.append(s)
        now[0] += s

    monkeypatch.setattr(lanes.asyncio, "sleep", sleep)
    monkeypatch.setattr(lanes.time, "monotonic", lambda: now[0])
    return lanes.Lane("ingest_crossings", Settings(sink_max_retry_seconds=budget_s)), pauses


def test_the_sink_says_whether_time_can_fix_a_failure_and_never_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    client = FlakyClient([OperationalError("down"), DatabaseError("code: 16", code=16)])
    out = _sink(monkeypatch, client)
    with pytest.raises(sink.SinkUnavailable):
        out.write("crossings", [{"a": 1}])
    with pytest.raises(sink.SinkRefused, match="writing crossings.*code 16"):
        out.write("crossings", [{"a": 1}])
    out.write("crossings", [{"a": 1}])
    assert client.inserted == [("crossings", [[1]], ["a"])]


def test_a_transient_failure_is_retried_until_clickhouse_has_the_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    client = FlakyClient([OperationalError("down"), DatabaseError("busy", code=202)])
    lane, pauses = _lane(monkeypatch, budget_s=30)
    asyncio.run(lane(_sink(monkeypatch, client).write, "crossings", [{"a": 1}]))
    assert client.inserted == [("crossings", [[1]], ["a"])]
    assert pauses == [0.2, 0.4], "a growing pause between tries"


def test_clickhouse_away_past_its_budget_rises_to_the_runtime(monkeypatch: pytest.MonkeyPatch) -> None:
    client = FlakyClient([OperationalError("down")] * 100)
    lane, pauses = _lane(monkeypatch, budget_s=10)
    with pytest.raises(sink.SinkUnavailable):
        asyncio.run(lane(_sink(monkeypatch, client).write, "crossings", [{"a": 1}]))
    assert client.inserted == [] and sum(pauses) <= 10 < sum(pauses) + lanes.LONGEST_PAUSE_S, "gives up within it"


def test_a_refusal_rises_at_once_without_retrying(monkeypatch: pytest.MonkeyPatch) -> None:
    client = FlakyClient([DatabaseError("Received ClickHouse exception, code: 16", code=16)])
    lane, pauses = _lane(monkeypatch, budget_s=30)
    with pytest.raises(sink.SinkRefused):
        asyncio.run(lane(_sink(monkeypatch, client).write, "crossings", [{"no_such_column": 1}]))
    assert client.inserted == [] and pauses == []


def test_the_registry_is_waited_for_past_clickhouse_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    from schemas.wire import RegistryUnavailable

    tries = iter([RegistryUnavailable("down")] * 20 + [None])

    def fetch() -> str:
        if (exc := next(tries)) is not None:
            raise exc
        return "schemas"

    lane, pauses = _lane(monkeypatch, budget_s=10)
    assert asyncio.run(lane(fetch)) == "schemas"
    assert sum(pauses) > 10, "no message is at fault: nothing can be decoded without the registry"


def test_the_worker_exits_75_for_a_server_away_and_70_for_anything_else(monkeypatch: pytest.MonkeyPatch) -> None:
    from streams.worker import app

    codes = []
    monkeypatch.setattr(app.os, "_exit", codes.append)
    monkeypatch.setattr(app.logging, "shutdown", lambda: None)
    app.stop("ingest_crossings", sink.SinkUnavailable("writing crossings", OSError()))
    app.stop("ingest_crossings", sink.SinkRefused("writing crossings", KeyError("x")))
    assert codes == [75, 70]
