"""Each agent's one librdkafka producer: queue every record of a batch, then wait for all of them at once.

Not Faust's ``topic.send``, for its cost per record (docs/architecture.md): a crossing makes four or
five records on its way through.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

from confluent_kafka import KafkaError, Message, Producer

from schemas.errors import LintasError
from streams import clients
from streams.settings import Settings
from streams.topics import Role


class DeliveryFailed(LintasError):
    """Kafka did not take a record for good: the batch is not committed and the worker stops."""

    code = "delivery_failed"


class KafkaSender:
    """Every record one agent sends, through one librdkafka producer: queue them, then wait for all of them.

    ``send`` only queues (a C call, no future per record); :meth:`flush` waits until Kafka
    acknowledged every queued record (``acks=all``, idempotent), off the event loop, and
    raises :class:`DeliveryFailed` naming the topic and Kafka's error if one was refused.
    Records without a partition are placed by murmur2 on their key, as Java clients and
    Faust do, so a key's records and its state live on the same partition.
    """

    def __init__(self, settings: Settings, name: str, producer: Producer | None = None) -> None:
        """A producer for agent ``name`` (``producer``: a test's stand-in)."""
        self.name = name
        self._producer = producer or clients.producer(settings, Role.WORKER, **{
            **clients.SAME_PARTITION_AS_FAUST, "client.id": f"lintas-{name}", "linger.ms": 5,
            "compression.type": "lz4", "batch.num.messages": 10_000, "queue.buffering.max.messages": 1_000_000,
            "queue.buffering.max.kbytes": 512 * 1024, "message.timeout.ms": int(settings.sink_max_retry_seconds * 1000),
            "on_delivery": self._delivered,
        })
        self._failed: list[tuple[str, str]] = []
        self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"send-{name}")
        self.queued = 0  # records sent since the last flush
        self.waited = 0.0  # seconds spent waiting for acknowledgements

    def _delivered(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self._failed.append((msg.topic() or "", err.str()))

    def send(self, topic: str, value: bytes | None, key: bytes | None = None, partition: int | None = None,
             headers: list[tuple[str, bytes]] | None = None) -> None:
        """Queue one record (``value`` None: a tombstone)."""
        while True:
            try:
                self._producer.produce(topic, value, key, -1 if partition is None else partition,
                                       headers=headers)  # type: ignore[arg-type]
                self.queued += 1
                return
            except BufferError:  # librdkafka's queue is full: let it drain
                self._producer.poll(0.05)

    async def flush(self) -> None:
        """Wait until Kafka acknowledged everything queued; :class:`DeliveryFailed` if it refused something."""
        if self.queued:
            t0 = time.monotonic()
            await asyncio.get_running_loop().run_in_executor(self._io, self._wait)
            self.waited += time.monotonic() - t0
        self.queued = 0
        if self._failed:
            topic, reason = self._failed[0]
            failed, self._failed = len(self._failed), []
            raise DeliveryFailed(f"{failed} record(s) not delivered, first to {topic}: {reason}")

    def _wait(self) -> None:
        while self._producer.flush(1.0):
            pass

    def close(self) -> None:
        """Deliver what is queued (bounded) and stop the I/O thread."""
        self._producer.flush(10.0)
        self._io.shutdown(wait=False)
