"""Read one gallery shard back from its compacted Kafka partition (biometric.gallery), or any compacted partition.

The topic is the shard's changelog: every enrolment and alias is written (and
acknowledged by Kafka) before the probe that caused it is committed, so reading
the partition to its end gives every enrolment a committed probe ever made.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from confluent_kafka import OFFSET_BEGINNING, KafkaError, TopicPartition

from schemas.errors import LintasError
from streams import clients
from streams.settings import Settings
from streams.topics import BIOMETRIC_GALLERY, GALLERY_LOADER_GROUP, Role


class GalleryUnavailable(LintasError):
    """The gallery partition could not be read to its end in time; the shard is not served half-loaded."""

    code = "gallery_unavailable"


def read_partition(settings: Settings, topic: str, partition: int,
                   timeout_s: float = 300.0) -> Iterator[tuple[bytes | None, bytes | None]]:
    """Every (key, value) of one partition, oldest first, tombstones included (value ``None``), as they are read.

    Nothing holds the partition whole: a gallery shard of a million identities is gigabytes of
    records, and its loader keeps only the latest of each. :class:`GalleryUnavailable` rises
    from the iteration if the partition cannot be read to the end it had when reading began.
    """
    consumer = clients.consumer(settings, Role.WORKER, GALLERY_LOADER_GROUP, **{
        "enable.partition.eof": True, "fetch.max.bytes": 64 * 1024 * 1024,
        "max.partition.fetch.bytes": 16 * 1024 * 1024,
    })
    try:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=30)
        if high <= low:
            return
        consumer.assign([TopicPartition(topic, partition, OFFSET_BEGINNING)])
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for msg in consumer.consume(10_000, timeout=1.0):
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        if (msg.offset() or 0) >= high:
                            return
                        continue
                    raise GalleryUnavailable(f"reading {topic} partition {partition}: {err.str()}")
                yield msg.key(), msg.value()
                if (msg.offset() or 0) >= high - 1:
                    return
        raise GalleryUnavailable(f"{topic} partition {partition} not read to offset {high} within {timeout_s:.0f}s")
    finally:
        consumer.close()


def read_shard(settings: Settings, shard: int, timeout_s: float = 300.0) -> list[bytes]:
    """Every record value of gallery partition ``shard``, oldest first (tombstones skipped)."""
    return [v for _, v in read_partition(settings, BIOMETRIC_GALLERY.name, shard, timeout_s) if v is not None]
