"""The consumer's commit never passes an offset no stream processed (streams.worker.faust_consumer), without a broker."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from types import SimpleNamespace
from typing import Any

import faust
import pytest
from faust.transport.drivers.aiokafka import Consumer as FaustConsumer
from faust.types import TP
from faust.types.tuples import ConsumerMessage
from intervaltree import IntervalTree

from streams.worker.faust_consumer import App, SafeConsumer, SafeStream, _NeverRead

TOPIC = TP("crossing.events", 0)


def _consumer(cls: type[Any], committed: int | None) -> Any:
    """The bookkeeping half of a consumer: no broker, no thread."""
    consumer = cls.__new__(cls)
    consumer.app = SimpleNamespace(topics=SimpleNamespace(acks_enabled_for=lambda topic: True))
    consumer._acked, consumer._acked_index = defaultdict(list), defaultdict(set)
    consumer._gap = defaultdict(IntervalTree)
    consumer._committed_offset = defaultdict(lambda: None, {TOPIC: committed})
    consumer._unacked_messages, consumer._n_acked, consumer._waiting_for_ack = set(), 0, None
    consumer._positioned, consumer._waiting = {TOPIC}, {}
    consumer._redeliver, consumer._seeks = {}, set()
    consumer._stopped, consumer._crashed = asyncio.Event(), asyncio.Event()  # should_stop: False
    return consumer


def _seeking(consumer: Any) -> list[tuple[TP, int]]:
    """Record the consumer's seeks instead of making them; the partition is assigned, flow is on."""
    sought: list[tuple[TP, int]] = []

    async def seek(tp: TP, offset: int) -> None:
        sought.append((tp, offset))

    consumer.seek, consumer.assignment = seek, lambda: {TOPIC}
    consumer.app.flow_control = SimpleNamespace(is_active=lambda: True)
    return sought


def _message(offset: int, tracked: bool = True, generation: int = 0) -> ConsumerMessage:
    message = ConsumerMessage(TOPIC.topic, TOPIC.partition, offset, 0.0, 0, None, b"k", b"v", None, tp=TOPIC,
                              generation_id=generation)
    message.tracked = tracked
    return message


def test_the_commit_waits_for_the_message_at_the_committed_offset() -> None:
    # 100 is the next offset to read; 101 and 102 are done but 100 is not.
    faust_says = _consumer(FaustConsumer, 100)
    faust_says._acked[TOPIC] = [101, 102]
    assert faust_says._new_offset(TOPIC) == 103  # what lost events: 100 would never be read again
    ours = _consumer(SafeConsumer, 100)
    ours._acked[TOPIC] = [101, 102]
    assert ours._new_offset(TOPIC) is None
    ours._acked[TOPIC] = [100, 101, 102, 104]
    assert ours._new_offset(TOPIC) == 103  # up to the first hole, as faust does


def test_nothing_commits_between_a_revocation_and_the_seek_that_reads_the_committed_offset_back() -> None:
    consumer = _consumer(SafeConsumer, None)  # faust forgot it at the revocation
    consumer._positioned = set()
    consumer._acked[TOPIC] = [101, 102]
    assert consumer._new_offset(TOPIC) is None
    consumer._positioned, consumer._committed_offset[TOPIC] = {TOPIC}, 101  # seek_to_committed
    assert consumer._new_offset(TOPIC) == 103


async def test_a_message_no_stream_took_is_not_counted_as_done_but_read_again() -> None:
    consumer = _consumer(SafeConsumer, 100)
    sought = _seeking(consumer)
    skipped, also_skipped, processed = _message(100, tracked=False), _message(101, tracked=False), _message(102)
    stale = _message(90, tracked=False)  # before the committed offset: nothing to read again
    for message in (stale, skipped, also_skipped):
        assert message.ack(consumer) is False and message.acked  # released, so nothing waits on it
    assert processed.ack(consumer) is True
    assert consumer._acked[TOPIC] == [102]
    assert consumer._new_offset(TOPIC) is None  # 100 is not done
    await asyncio.gather(*consumer._seeks)
    assert sought == [(TOPIC, 100)]  # one seek for the run, to its lowest offset


async def test_a_message_skipped_while_flow_waits_for_recovery_is_read_again_when_flow_resumes() -> None:
    # after the rebalance's seek to the committed offset, flow stays stopped until table recovery ends:
    # a message fetched then is skipped, and no later seek to the committed offset reads it again
    consumer = _consumer(SafeConsumer, 100)
    sought = _seeking(consumer)
    active = False
    consumer.app.flow_control = SimpleNamespace(is_active=lambda: active)
    assert _message(105, tracked=False).ack(consumer) is False
    await asyncio.sleep(1.2)
    assert sought == []  # not while flow is stopped: the stream would skip it again
    active = True
    await asyncio.gather(*consumer._seeks)
    assert sought == [(TOPIC, 105)]


async def test_a_skip_before_a_seek_to_the_committed_offset_needs_no_seek_of_its_own(monkeypatch: Any) -> None:
    consumer = _consumer(SafeConsumer, 100)
    sought = _seeking(consumer)

    async def faust_seek_to_committed(self: Any) -> dict[TP, int]:
        return {TOPIC: 100}

    monkeypatch.setattr(FaustConsumer, "seek_to_committed", faust_seek_to_committed)
    assert _message(105, tracked=False).ack(consumer) is False
    await consumer.seek_to_committed()  # the rebalance ends: 100 onwards is read again, 105 with it
    await asyncio.gather(*consumer._seeks)
    assert sought == []  # a seek to 105 now could jump past 100..104 before the stream reads them


def test_no_read_offset_is_remembered_so_nothing_is_gap_filled_or_dropped() -> None:
    offsets = _NeverRead(lambda: None)
    offsets.update({TOPIC: 500})
    offsets[TOPIC] = 900
    assert offsets[TOPIC] is None  # _drain_messages: "offset >= r_offset" always holds, and no gap is measured


async def test_recovery_never_seeks_to_an_offset_aiokafka_refuses() -> None:
    sought: list[dict[TP, int]] = []

    class Thread:
        async def seek_wait(self, partitions: dict[TP, int]) -> None:
            sought.append(dict(partitions))

    consumer = _consumer(SafeConsumer, 100)
    consumer._thread = Thread()
    gone, fresh, known = TP("changelog", 0), TP("changelog", 1), TP("changelog", 2)
    await consumer.seek_wait({gone: None, fresh: -2, known: 40})
    assert sought == [{fresh: 0, known: 40}]


async def test_a_commit_waiting_on_a_message_no_stream_holds_warns_once_and_reads_it_again(
        monkeypatch: Any, caplog: Any) -> None:
    import streams.worker.faust_consumer as module

    consumer = _consumer(SafeConsumer, 100)
    sought = _seeking(consumer)
    consumer._acked[TOPIC] = [101]
    monkeypatch.setattr(module, "STALL_WARNING_S", -1.0)
    for _ in range(3):
        assert consumer._new_offset(TOPIC) is None
        await asyncio.gather(*consumer._seeks)
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "offset 100 not processed" in warnings[0]
    assert sought == [(TOPIC, 100)] * 3  # retried while the wait lasts


async def test_a_commit_waiting_on_a_message_a_stream_still_holds_only_waits(monkeypatch: Any) -> None:
    import streams.worker.faust_consumer as module

    consumer = _consumer(SafeConsumer, 100)
    sought = _seeking(consumer)
    consumer._acked[TOPIC] = [101]
    consumer._unacked_messages.add(_message(100))  # in a batch that takes long: reading it again would not help
    monkeypatch.setattr(module, "STALL_WARNING_S", -1.0)
    assert consumer._new_offset(TOPIC) is None
    await asyncio.gather(*consumer._seeks)
    assert sought == []


@pytest.mark.parametrize("stream_class", [faust.Stream, SafeStream])
async def test_a_message_a_stream_skips_in_a_rebalance_reaches_the_consumer_to_be_read_again(
        stream_class: type[faust.Stream]) -> None:
    app = App("lintas-unit-skip", broker="kafka://127.0.0.1:9", Stream=stream_class)
    acked: list[int] = []
    app.consumer.ack = lambda message: bool(acked.append(message.offset))  # what SafeConsumer.ack is given
    channel = app.channel()

    def event(offset: int, generation: int) -> Any:
        message = _message(offset, tracked=False, generation=generation)  # not yet taken by a stream
        message.refcount = 1  # delivered to this one stream
        return channel._create_event(b"k", f"v{offset}".encode(), {}, message)

    stream = app.stream(channel)  # before the puts, as an agent's stream exists before its messages
    app.consumer_generation_id = 2
    app.flow_control.resume()
    await channel.put(event(5, generation=1))  # fetched before the rebalance, dequeued after it: skipped
    await channel.put(event(6, generation=2))
    async for value in stream:
        assert value == b"v6"
        break
    if stream_class is faust.Stream:  # faust's Cython iterator drops it: nothing would ever read offset 5 again
        assert acked == [] and App("lintas-unit-default").conf.Stream is SafeStream
    else:
        assert acked == [5]


def test_another_faust_version_or_a_missing_private_member_fails_with_a_clear_error(monkeypatch) -> None:
    from streams.worker import faust_consumer

    faust_consumer.check_faust()  # the installed, pinned version
    with pytest.raises(faust_consumer.FaustIncompatible, match="faust-streaming 0.16.0 is installed"):
        faust_consumer.check_faust("0.16.0")
    monkeypatch.setattr(faust_consumer.faust_aiokafka.Consumer, "_new_offset", None, raising=False)
    with pytest.raises(faust_consumer.FaustIncompatible, match=r"Consumer\._new_offset"):
        faust_consumer.check_faust()


def test_a_consumer_without_the_attributes_relied_on_is_refused() -> None:
    from streams.worker import faust_consumer

    class Bare:
        pass

    with pytest.raises(faust_consumer.FaustIncompatible, match="_read_offset"):
        faust_consumer._check_instance(Bare(), faust_consumer.CONSUMER_ATTRIBUTES)
