"""The one effect order: sends and rows first, then what marks the batch done, then the record of processing."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from agents.audit import Processing
from streams.topics import AUDIT_PROCESSING
from streams.worker.effects import Effects, perform


class Journal:
    """One list of everything that happened, in order: queued sends, flushes, rows written, tables written."""

    def __init__(self, fail_table: str | None = None) -> None:
        self.events: list[tuple[str, str]] = []
        self.fail_table = fail_table

    # the sender
    def send(self, topic: str, value: bytes | None, key: bytes | None = None, partition: int | None = None,
             headers: Any = None) -> None:
        self.events.append(("send", topic))

    async def flush(self) -> None:
        await asyncio.sleep(0.01)  # Kafka acknowledges while the rows are written
        self.events.append(("ack", ""))

    # the sink
    def write(self, table: str, rows: list[dict[str, Any]]) -> None:
        if table == self.fail_table:
            raise RuntimeError(f"{table} refused")
        self.events.append(("rows", table))

    # a state table
    def table(self) -> Any:
        journal = self

        class Table:
            def write(self) -> int:
                journal.events.append(("changelog", "state"))
                return 1

            def revoked(self, partitions: set[int]) -> None:
                """Nothing held."""

        return Table()


async def _io(fn: Callable[..., Any], *args: Any) -> Any:
    return await asyncio.get_running_loop().run_in_executor(None, fn, *args)


def _effects() -> Effects:
    effects = Effects()
    effects.send("alerts", b"a", b"k")
    effects.write("alerts", [{"id": 1}])
    effects.send("review.cases", b"c", b"k")
    effects.write("cases", [{"id": 1}])
    effects.mark_done("biometric.gallery", b"identity", b"i", 0)
    effects.record(Processing("cases", "analyse", "operations", ("PSEUDONYMOUS",), 2, "t:p0:0-1", "clickhouse:cases"),
                   Processing("cases", "analyse", "operations", ("PSEUDONYMOUS",), 0, "t:p0:0-1", "nowhere"))
    return effects


def test_sends_and_rows_hold_before_the_batch_is_marked_done_and_recorded() -> None:
    journal = Journal()
    asyncio.run(perform(_effects(), journal, _io, journal.write, [journal.table()]))
    events = journal.events
    first_ack = events.index(("ack", ""))
    assert events[:2] == [("send", "alerts"), ("send", "review.cases")], "every send queued first"
    assert {("rows", "alerts"), ("rows", "cases")} <= set(events[:events.index(("send", "biometric.gallery"))])
    assert events.index(("send", "biometric.gallery")) > first_ack, "done only once the sends are acknowledged"
    assert events.index(("changelog", "state")) > first_ack
    assert events[-2:] == [("ack", ""), ("rows", "processing_log")], "recorded last, once all of it holds"
    assert events.count(("send", AUDIT_PROCESSING.name)) == 1, "an entry without records is not recorded"


def test_rows_clickhouse_refuses_leave_the_batch_unmarked_and_unrecorded() -> None:
    journal = Journal(fail_table="cases")
    with pytest.raises(RuntimeError, match="cases refused"):
        asyncio.run(perform(_effects(), journal, _io, journal.write, [journal.table()]))
    assert ("send", "biometric.gallery") not in journal.events
    assert ("changelog", "state") not in journal.events
    assert ("rows", "processing_log") not in journal.events
