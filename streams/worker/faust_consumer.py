"""Faust's Kafka consumer with the three offset shortcuts that lost events closed.

Lintas commits an input offset only when its event is in ClickHouse (agents
ack a ``take_events`` batch after its sink write). faust-streaming 0.15's
consumer has three shortcuts that let a committed offset run past events that
were never processed; a stress test with kills and rebalances lost 76
consecutive crossings with them (``tests/integration/test_pipeline.py``):

1. *Gap filling.* When a fetched offset jumps past the last read one, faust
   records the skipped offsets as done (meant for compaction and transaction
   markers). Records fetched before a rebalance's seek and delivered after it
   make such a jump, so offsets nobody processed were committed; the refetched
   copies were then
2. *dropped as already read*, because the stale record had moved the read
   offset forward.
3. *Acks of skipped messages.* A message dequeued while flow is stopped for a
   rebalance (or carrying the previous generation) is skipped, never processed,
   and still acked; the next commit passes it, and nothing fetches it again.

Our topics are never compacted and never written in transactions, so a jump is
never a real gap: here nothing is gap-filled, nothing is dropped (a refetched
message is processed again; rows are idempotent by event id), a message that
was never handed to a stream is not counted as done but sought back to and read
again, and the commit waits for the message at the committed offset itself,
read back from Kafka after every assignment (faust forgets it at each
revocation and would commit from wherever the acks start). The price is
duplicates after a rebalance, which the sinks absorb; a commit can now only
wait, never skip.

A fourth path lost no offset but stalled: faust's Cython stream iterator (used
whenever its extension is built, as in the 0.15.3 wheel) drops a message it
skips during a rebalance without acking it, so the consumer never hears of it,
never reads it again, and the commit waits on it until the worker restarts (CI
saw 184 of 1,000 biometric probes stuck that way). :class:`SafeStream` always
runs faust's pure-Python iterator, which acks the skipped message and so reaches
the seek back; and a commit that has waited on a message no stream holds for
longer than a rebalance takes reads it again whatever dropped it.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import logging
import time
from collections import defaultdict
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from typing import Any, cast

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP, Message
from faust.types.tuples import ack_lock

from schemas.errors import LintasError

log = logging.getLogger("lintas.consumer")
STALL_WARNING_S = 30.0  # after a rebalance commits wait seconds for refetched messages; longer is a stall
FAUST_VERSION = "0.15.3"  # pinned exactly in pyproject.toml: the members below are faust's private API
# faust's private members this module overrides or reads: methods on the classes, attributes on instances.
METHODS: dict[type, tuple[str, ...]] = {
    faust_aiokafka.Consumer: ("_new_offset", "seek_to_committed", "on_partitions_revoked", "seek_wait", "ack",
                              "seek", "assignment"),
    faust.Stream: ("_py_aiter",),
    faust.App: ("_new_transport",),
}
CONSUMER_ATTRIBUTES = ("_read_offset", "_committed_offset", "_acked", "_unacked_messages")
STREAM_ATTRIBUTES = ("_active_agens",)


class FaustIncompatible(LintasError):
    """The installed faust-streaming lacks a private member the commit guarantee relies on."""

    code = "faust_incompatible"


def check_faust(installed: str | None = None) -> None:
    """Fail, naming what is missing, unless faust-streaming is the pinned version with every member relied on."""
    installed = installed or importlib.metadata.version("faust-streaming")
    if installed != FAUST_VERSION:
        raise FaustIncompatible(f"faust-streaming {installed} is installed; Lintas' consumer overrides private "
                                f"members of {FAUST_VERSION} (streams/worker/faust_consumer.py): install that version "
                                "or port the overrides and their tests")
    missing = [f"{cls.__name__}.{name}" for cls, names in METHODS.items() for name in names
               if not callable(getattr(cls, name, None))]
    if missing:
        raise FaustIncompatible(f"faust-streaming {installed} has no {', '.join(missing)}: the commit guarantee "
                                "of streams/worker/faust_consumer.py would be lost")


def _check_instance(obj: object, names: tuple[str, ...]) -> None:
    missing = [name for name in names if not hasattr(obj, name)]
    if missing:
        raise FaustIncompatible(f"faust's {type(obj).__mro__[1].__name__} instances have no {', '.join(missing)}: "
                                "the commit guarantee of streams/worker/faust_consumer.py would be lost")


check_faust()


class _NeverRead(defaultdict[TP, int | None]):
    """A read-offset map that always answers "nothing read yet": no gap filling, no dropping."""

    def __getitem__(self, tp: TP) -> int | None:
        return None


class SafeConsumer(faust_aiokafka.Consumer):
    """faust's aiokafka consumer whose commits never pass an offset that was not processed."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """The aiokafka consumer, with a read-offset map that never reports a gap or an already-read offset."""
        super().__init__(*args, **kwargs)
        _check_instance(self, CONSUMER_ATTRIBUTES)
        self._read_offset = _NeverRead(lambda: None)
        # Partitions whose committed offset was read back since they were (re)assigned: only these commit.
        self._positioned: set[TP] = set()
        self._waiting: dict[TP, tuple[int, float, bool]] = {}  # offset waited for, since, warned
        self._redeliver: dict[TP, int] = {}  # partition -> lowest skipped offset to read again
        self._seeks: set[asyncio.Task[None]] = set()

    async def seek_to_committed(self) -> Mapping[TP, int]:
        """Seek every assigned partition to its committed offset; from now on they may commit."""
        offsets: Mapping[TP, int] = await super().seek_to_committed()
        self._positioned |= set(self.assignment())
        self._redeliver.clear()  # whatever was skipped before is at or after the committed offset: read again now
        return offsets

    async def on_partitions_revoked(self, revoked: set[TP]) -> None:
        """Revoked partitions stop committing until a seek reads their committed offset back."""
        self._positioned -= revoked
        await super().on_partitions_revoked(revoked)

    async def seek_wait(self, partitions: Mapping[TP, int]) -> None:
        """Table recovery's seeks, each to a real offset.

        For a changelog partition a rebalance took away mid-recovery faust computes no offset (None) or
        one below 0, and aiokafka's seek raised, crashing the worker. Those partitions are not sought
        (the next recovery, for the new assignment, seeks what it still owns); below 0 reads from the start.
        """
        await super().seek_wait({tp: max(offset, 0) for tp, offset in partitions.items() if offset is not None})

    def ack(self, message: Message) -> bool:
        """Count a message as done only if a stream took it (``tracked``); a skipped one is read again."""
        if self.app.topics.acks_enabled_for(message.topic) and not message.tracked:
            with ack_lock:
                message.acked = True  # released; it is not counted as done
            self._read_again(message.tp, message.offset)
            return False
        return bool(super().ack(message))

    def _read_again(self, tp: TP, offset: int) -> None:
        """Seek back to a skipped message so a stream gets it; one seek per partition for a run of skips."""
        committed = self._committed_offset[tp]
        if committed is not None and offset < committed:
            return  # a stale copy of something already committed
        pending = self._redeliver.get(tp)
        self._redeliver[tp] = offset if pending is None else min(pending, offset)
        if pending is None:
            task = asyncio.get_running_loop().create_task(self._seek_back(tp))
            self._seeks.add(task)
            task.add_done_callback(self._seeks.discard)

    async def _seek_back(self, tp: TP, settle_s: float = 0.5) -> None:
        """Seek to the lowest skipped offset once flow runs again, unless a seek to the committed offset came first.

        A message is skipped while flow is stopped, and flow stays stopped after the rebalance's seek to the
        committed offset until table recovery ends: that seek does not read it again, this one must.
        """
        await asyncio.sleep(settle_s)  # the rest of a skipped run arrives meanwhile
        while not self.app.flow_control.is_active() and tp in self.assignment() and not self.should_stop:
            await asyncio.sleep(settle_s)
        offset = self._redeliver.pop(tp, None)
        if offset is None or tp not in self.assignment() or self.should_stop:
            return  # cleared by a seek to the committed offset (which reads it again), or no longer ours
        log.info("%s[%d]: offset %d was skipped, not processed; reading again from it", tp.topic, tp.partition, offset)
        await self.seek(tp, offset)

    def _unstall(self, tp: TP, committed: int, ahead: int) -> None:
        """A commit waiting on one offset longer than a rebalance's catch-up: warn once, and read it again.

        Later offsets were processed, so the message is not queued behind them; unless a stream holds it
        (a long batch), it was dropped, and only a seek brings it back. Retried every ``STALL_WARNING_S``.
        """
        now = time.monotonic()
        offset, since, warned = self._waiting.get(tp, (committed, now, False))
        if offset != committed:
            since, warned = now, False
        if now - since > STALL_WARNING_S:
            if not warned:
                log.warning("%s[%d]: offset %d not processed for %.0fs while %d later one(s) are; commits wait for it",
                            tp.topic, tp.partition, committed, now - since, ahead)
                warned = True
            if not any(m.tp == tp and m.offset == committed for m in self._unacked_messages):
                self._read_again(tp, committed)
                since = now
        self._waiting[tp] = (committed, since, warned)

    def _new_offset(self, tp: TP) -> int | None:
        """The next offset to commit, or None while the message at the committed offset is not acked."""
        acked, committed = self._acked[tp], self._committed_offset[tp]
        if not acked:
            return None
        if tp not in self._positioned:
            return None  # between a revocation and the seek faust forgets the committed offset: wait for it
        if committed is not None and min(acked) > committed:
            self._unstall(tp, committed, len(acked))
            return None  # faust would commit past `committed` when min(acked) == committed + 1
        return super()._new_offset(tp)  # type: ignore[no-any-return]


class SafeStream(faust.Stream):
    """``faust.Stream`` on faust's pure-Python iterator, whose skipped messages reach :meth:`SafeConsumer.ack`."""

    def __aiter__(self) -> AsyncIterator[Any]:
        """Always ``_py_aiter``: faust would take its Cython iterator whenever the extension is built."""
        _check_instance(self, STREAM_ATTRIBUTES)
        iterator = cast(AsyncGenerator[Any, None], self._py_aiter())  # an async generator, typed as an iterator
        self._active_agens.add(iterator)  # closed by on_stop, as faust's own __aiter__ arranges
        return iterator


class SafeTransport(faust_aiokafka.Transport):
    """The aiokafka transport with :class:`SafeConsumer`."""

    Consumer = SafeConsumer


class App(faust.App):
    """``faust.App`` on :class:`SafeTransport` whatever the broker URL's scheme, its streams :class:`SafeStream`."""

    def __init__(self, id: str, **options: Any) -> None:
        """``faust.App(id, **options)`` with ``Stream=SafeStream`` unless another stream class is given."""
        options.setdefault("Stream", SafeStream)
        super().__init__(id, **options)

    def _new_transport(self) -> Any:
        return SafeTransport(self.conf.broker_consumer, self)
