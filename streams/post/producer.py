"""Border-post producer: validate, accept to the spool, forward to Kafka in order.

``lintas produce FILE --type crossing|landing`` and ``lintas simulate`` both go
through :func:`produce_lines` / :class:`Forwarder`: every record is validated
against its contract, accepted durably into the post's spool, then sent by an
idempotent confluent-kafka producer (``acks=all``) in the order accepted, keyed
by post so one post's events stay in one partition, in order. When the broker or
the registry is unreachable the events wait in the spool; nothing accepted is
lost, and a resend is harmless downstream because the event id is the same.

Every event leaves signed by its post (agents/signing.py), and only a registered post
sends (agents/posts.py): its key is made by provisioning, never here. A post's own
process (``LINTAS_POST_ID``) connects as that post and accepts only its own events; the
local stack's gateway sends for every registered post, each signed with that post's key.

A line refused here (not JSON, not valid, an unknown post) is reported and is not an
event; it still goes to its input topic's dead-letter topic, as a ``DeadLetter`` whose
source partition is -1 and source offset its line number, so that bad input is counted
in ``dead_letters`` wherever it was stopped.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import KafkaError, Producer
from confluent_kafka.schema_registry import SchemaRegistryClient

from agents.dead_letters import REFUSED_PARTITION, DeadLetter, Source, dead_letter_payload
from agents.posts import PostRegistry, sender_problems
from agents.signing import Headers, sender_field, sent_by, signed_headers
from schemas.contracts import DEAD_LETTER, EVENT_CONTRACTS
from schemas.errors import LintasError
from schemas.validation import FieldError, ValidationError, parse_json_line
from schemas.wire import SchemaIds, encode_payload, frame
from streams import clients
from streams.post.spool import Spool
from streams.posts import post_key
from streams.settings import Settings
from streams.topics import CROSSING_EVENTS, LANDING_EVENTS, Role, TopicSpec

log = logging.getLogger("lintas.producer")

# --type of `lintas produce` → (contract, topic); each event is keyed by its sender, the post or site id.
EVENT_TYPES: dict[str, tuple[str, str]] = {
    "crossing": ("CrossingEvent", CROSSING_EVENTS.name),
    "landing": ("LandingEvent", LANDING_EVENTS.name),
}
INPUTS: dict[str, TopicSpec] = {CROSSING_EVENTS.name: CROSSING_EVENTS, LANDING_EVENTS.name: LANDING_EVENTS}
MAX_REFUSED_BYTES = 256 * 1024  # of a refused line kept in its dead letter (a line is an event: far less)
ACCEPT_BATCH = 1000


class DeliveryError(LintasError):
    """Kafka refused an event for good (not a connectivity problem); it stays in the spool."""

    code = "delivery_failed"


def producer_config(settings: Settings) -> dict[str, Any]:
    """Librdkafka settings for a post: idempotent, acks=all, and patient when the link is down."""
    return clients.kafka_config(settings, Role.POST, **{
        **clients.RELIABLE,
        "message.timeout.ms": 0,  # never give up on an event: the spool and this queue wait for the link
        "linger.ms": 20,
        "batch.num.messages": 10000,
        "compression.type": "lz4",
        "queue.buffering.max.messages": 200000,
        "reconnect.backoff.max.ms": 2000,
    })


@dataclass
class ProduceReport:
    """What ``lintas produce`` did."""

    lines: int = 0
    accepted: int = 0
    bad: list[tuple[int, list[FieldError]]] = field(default_factory=list)
    delivered: int = 0
    dead_lettered: int = 0
    pending: int = 0

    def summary(self) -> str:
        """One line for the operator."""
        text = (f"{self.lines} lines: {self.accepted} accepted, {len(self.bad)} bad; "
                f"{self.delivered} delivered to Kafka, {self.pending} waiting in the spool")
        if self.dead_lettered:
            text += f"; {self.dead_lettered} bad line(s) in the dead-letter topic"
        return text


def accept_lines(lines: Iterable[str], event_type: str, spool: Spool, report: ProduceReport, posts: PostRegistry,
                 on_bad: Callable[[int, list[FieldError]], None] | None = None, post_id: str | None = None) -> None:
    """Validate each JSON line and durably accept the good ones; a bad line is reported and dead-lettered.

    ``posts``: the registered posts; a line whose post is not one of them, or not as registered, is bad.
    ``post_id``: this process is that post, and a line that names another post is bad.
    """
    contract_name, topic = EVENT_TYPES[event_type]
    contract = EVENT_CONTRACTS[contract_name]
    refused: list[tuple[str, bytes, str, bytes]] = []

    def valid_records() -> Iterator[dict[str, Any]]:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            report.lines += 1
            try:
                record = parse_json_line(line, contract)
                if post_id is not None and sent_by(contract_name, record) != post_id:
                    raise ValidationError([FieldError(sender_field(contract_name), "not_this_post",
                                                      "names another post than the one sending")])
                if problems := sender_problems(contract_name, record, posts):
                    raise ValidationError(problems)
                yield record
            except ValidationError as err:
                report.bad.append((number, err.errors))
                refused.append(refusal(INPUTS[topic], number, line, err.errors[0], post_id))
                if on_bad:
                    on_bad(number, err.errors)

    report.accepted += accept_records(valid_records(), event_type, spool)
    spool.accept(refused)


def refusal(topic: TopicSpec, line_number: int, line: str, error: FieldError,
            post_id: str | None) -> tuple[str, bytes, str, bytes]:
    """The spool row of a refused line: a DeadLetter for the input's dead-letter topic, keyed by who sends it."""
    now = datetime.now(UTC)
    raw = line.rstrip("\n").encode()[:MAX_REFUSED_BYTES]
    letter = DeadLetter(Source(topic.name, REFUSED_PARTITION, line_number, int(now.timestamp() * 1000)),
                        error.code, error.field, error.reason, raw)
    return topic.dlq, (post_id or "gateway").encode(), DEAD_LETTER.name, dead_letter_payload(letter, now)


def accept_records(records: Iterable[dict[str, Any]], event_type: str, spool: Spool) -> int:
    """Accept already-valid records (the simulator's) in batches; returns the count."""
    contract_name, topic = EVENT_TYPES[event_type]
    contract = EVENT_CONTRACTS[contract_name]
    total = 0
    batch: list[tuple[str, bytes, str, bytes]] = []
    for record in records:  # keyed by its post: one post's events stay in order in one partition
        batch.append((topic, sent_by(contract_name, record).encode(), contract.name, encode_payload(contract, record)))
        if len(batch) >= ACCEPT_BATCH:
            total += spool.accept(batch)
            batch.clear()
    return total + spool.accept(batch)


class Forwarder:
    """Sends the spool to Kafka in acceptance order and forgets each event once Kafka has it."""

    def __init__(self, settings: Settings, spool: Spool, window: int = 50_000,
                 registry: SchemaRegistryClient | None = None) -> None:
        """Connect lazily: nothing fails here when the broker or the registry is down."""
        self.settings = settings
        self.spool = spool
        self.window = window
        self.ids = SchemaIds(registry or clients.registry(settings, Role.POST))
        self.producer = Producer(producer_config(settings))
        self._keys: dict[str, bytes] = {}
        self._last_seq = 0
        self._in_flight = 0
        self._acked: list[int] = []
        self._acked_letters = 0
        self._failed: list[str] = []
        self.delivered = 0  # events
        self.dead_lettered = 0  # refused lines

    def _on_delivery(self, seq: int, letter: bool) -> Callable[[KafkaError | None, Any], None]:
        def callback(err: KafkaError | None, _msg: Any) -> None:
            self._in_flight -= 1
            if err is None:
                self._acked.append(seq)
                self._acked_letters += letter
            else:
                self._failed.append(err.name())

        return callback

    def _schema_ids(self, pairs: set[tuple[str, str]]) -> dict[tuple[str, str], int] | None:
        try:
            return {(topic, name): self.ids.id_for(topic, EVENT_CONTRACTS[name]) for topic, name in pairs}
        except Exception as exc:  # noqa: BLE001 - the registry being unreachable is expected at a post
            log.warning("schema registry unreachable (%s); events stay in the spool", type(exc).__name__)
            return None

    def pump(self, timeout_s: float | None = None, idle_stop: bool = True) -> bool:
        """Forward until the spool is empty (True) or the timeout passes (False)."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            self._flush_acks()
            if self._failed:
                raise DeliveryError(f"Kafka refused an event: {self._failed[0]}; it stays in {self.spool.path}")
            room = self.window - self._in_flight
            batch = self.spool.after(self._last_seq, min(room, 5000)) if room > 0 else []
            if batch:
                ids = self._schema_ids({(e.topic, e.contract) for e in batch})
                if ids is None:
                    if deadline is not None and time.monotonic() > deadline:
                        return False
                    time.sleep(1.0)
                    continue
                for event in batch:
                    value = frame(ids[(event.topic, event.contract)], event.payload)
                    if event.contract == DEAD_LETTER.name:  # a refused line: its post may have no key at all
                        self._produce(event.topic, event.key, value, event.seq, [], letter=True)
                    else:
                        post = event.key.decode()
                        self._produce(event.topic, event.key, value, event.seq,
                                      signed_headers(post, self._key(post), value))
                    self._last_seq = event.seq
            self.producer.poll(0.05 if batch else 0.2)
            if not batch and self._in_flight == 0 and idle_stop:
                self._flush_acks()
                if self.spool.pending() == 0:
                    return True
                self._last_seq = 0  # rows left behind (e.g. restored after a crash): send them again
            if deadline is not None and time.monotonic() > deadline:
                self._flush_acks()
                return False

    def _key(self, post: str) -> bytes:
        key = self._keys.get(post)
        if key is None:
            own = self.settings.post_id
            if own is not None and post != own:  # a spool left by another post's process: not ours to sign
                raise DeliveryError(f"the spool holds another post's events; this process is post {own}")
            key = self._keys[post] = post_key(self.settings, post)  # provisioning made it; never made here
        return key

    def _produce(self, topic: str, key: bytes, value: bytes, seq: int, headers: Headers, letter: bool = False) -> None:
        while True:
            try:
                self.producer.produce(topic, key=key, value=value, headers=list(headers),
                                      on_delivery=self._on_delivery(seq, letter))
                self._in_flight += 1
                return
            except BufferError:
                self.producer.poll(0.1)
                self._flush_acks()

    def _flush_acks(self) -> None:
        if self._acked:
            acked, letters, self._acked, self._acked_letters = self._acked, self._acked_letters, [], 0
            self.spool.delivered(acked)
            self.delivered += len(acked) - letters
            self.dead_lettered += letters

    def close(self, timeout_s: float = 5.0) -> None:
        """Flush what can be flushed; anything unacknowledged stays in the spool for next time."""
        self.producer.flush(timeout_s)
        self._flush_acks()


def send_paced(forwarder: Forwarder, spool: Spool, records: Sequence[dict[str, Any]], event_type: str,
               rate: float | None, steps_per_second: int = 5) -> None:
    """Accept ``records`` into the spool and forward them, at ``rate`` events per second (None: at once)."""
    step = max(1, int(rate // steps_per_second)) if rate else max(1, len(records))
    t0 = time.monotonic()
    for start in range(0, len(records), step):
        accept_records(records[start:start + step], event_type, spool)
        forwarder.pump(timeout_s=0, idle_stop=False)
        if rate:
            ahead = (start + step) / rate - (time.monotonic() - t0)
            if ahead > 0:
                time.sleep(ahead)


def read_lines(path: str) -> Iterator[str]:
    """Lines of a JSONL file (``-`` for standard input)."""
    import sys

    if path == "-":
        yield from sys.stdin
        return
    with open(path, encoding="utf-8") as f:
        yield from f
