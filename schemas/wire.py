"""Confluent wire format: magic byte 0, a 4-byte big-endian schema id, then Avro binary.

The same bytes confluent-kafka's ``AvroSerializer`` writes and any Confluent
client reads. Lintas encodes with fastavro directly (one schema lookup per
process, not per record) and decodes with the writer's schema from the registry
resolved into the reader's current contract.
"""

from __future__ import annotations

import io
import json
import struct
import threading
from typing import Any, Protocol

import fastavro
import orjson
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from schemas.contracts import COMPATIBILITY, Contract
from schemas.errors import InvalidMessage, Unavailable

MAGIC = 0
HEADER = struct.Struct(">bI")


class DecodeError(InvalidMessage):
    """Bytes that are not a valid Confluent-framed Avro record of the expected contract (no field to name)."""

    def __init__(self, code: str, reason: str) -> None:
        """A stable code (``bad_magic``, ``truncated``, ``unknown_schema``, ...) and a reason without data."""
        super().__init__(code, "", reason)


class RegistryUnavailable(Unavailable):
    """The registry cannot be asked now: retry later, the message is not at fault."""

    code = "registry_unavailable"


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):  # named tuples (state entries) as arrays, as the json module writes them
        return list(value)
    return str(value)  # dates and datetimes as str() gives them, as the states were always written


def json_bytes(value: Any, *, sort_keys: bool = False) -> bytes:
    """Compact JSON of a state for a changelog (orjson: ~5x the json module; the same values read back)."""
    option = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_NON_STR_KEYS | (orjson.OPT_SORT_KEYS if sort_keys else 0)
    return orjson.dumps(value, default=_plain, option=option)


def avro_bytes(parsed: Any, record: dict[str, Any]) -> bytes:
    """Avro binary of one record in a parsed schema (no framing, no registry)."""
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, parsed, record)
    return buf.getvalue()


def encode_payload(contract: Contract, record: dict[str, Any]) -> bytes:
    """Avro binary of one record, without the framing."""
    return avro_bytes(contract.parsed, record)


def frame(schema_id: int, payload: bytes) -> bytes:
    """Prefix Avro binary with the Confluent header."""
    return HEADER.pack(MAGIC, schema_id) + payload


def unframe(data: bytes | None) -> tuple[int, bytes]:
    """Split a Confluent-framed message into schema id and Avro binary."""
    if not data or len(data) < HEADER.size:
        raise DecodeError("truncated", f"message has {len(data or b'')} bytes, fewer than the 5-byte header")
    magic, schema_id = HEADER.unpack_from(data)
    if magic != MAGIC:
        raise DecodeError("bad_magic", f"magic byte is {magic}, not {MAGIC} (not Confluent wire format)")
    return schema_id, data[HEADER.size:]


class WriterSchemas(Protocol):
    """What decoding needs from the registry: the parsed writer schema for an id."""

    def writer_schema(self, schema_id: int) -> Any:
        """Parsed writer schema, or :class:`DecodeError` if the registry does not know the id."""


def subject(topic: str) -> str:
    """Confluent's TopicNameStrategy subject for a topic's values."""
    return f"{topic}-value"


class SchemaIds:
    """Registers each contract once per process and caches writer schemas by id."""

    def __init__(self, registry: SchemaRegistryClient) -> None:
        """Wrap a registry client (confluent-kafka's own)."""
        self.registry = registry
        self._ids: dict[tuple[str, str], int] = {}
        self._writers: dict[int, Any] = {}
        self._lock = threading.Lock()

    def id_for(self, topic: str, contract: Contract) -> int:
        """The registry id of ``contract`` under the topic's subject, registering it on first use."""
        key = (topic, contract.name)
        with self._lock:
            if key not in self._ids:
                subj = subject(topic)
                try:
                    self.registry.get_compatibility(subj)
                except Exception:  # noqa: BLE001 - 40408: the subject has no level yet
                    self.registry.set_compatibility(subj, COMPATIBILITY)
                self._ids[key] = self.registry.register_schema(subj, Schema(contract.schema_str, "AVRO"))
            return self._ids[key]

    def writer_schema(self, schema_id: int) -> Any:
        """The parsed writer schema for an id, fetched once."""
        with self._lock:
            cached = self._writers.get(schema_id)
        if cached is not None:
            return cached
        try:
            text = self.registry.get_schema(schema_id).schema_str
        except SchemaRegistryError as exc:
            if exc.http_status_code == 404:
                raise DecodeError("unknown_schema", f"schema id {schema_id} is not in the registry") from None
            raise RegistryUnavailable(f"schema registry answered {exc.http_status_code}") from None
        except Exception as exc:  # noqa: BLE001 - connection refused, timeouts: retry later, do not dead-letter
            raise RegistryUnavailable(f"schema registry unreachable ({type(exc).__name__})") from None
        parsed = fastavro.parse_schema(json.loads(text or "null"))
        with self._lock:
            self._writers[schema_id] = parsed
        return parsed


    def prefetch(self, messages: list[bytes | None]) -> None:
        """Fetch the writer schemas of these messages not yet cached, so decoding them asks no server.

        Unknown ids and bad framing are left for :func:`decode` to dead-letter; :class:`RegistryUnavailable`
        propagates (retry the batch later).
        """
        ids = set()
        for data in messages:
            try:
                ids.add(unframe(data)[0])
            except DecodeError:
                continue
        for schema_id in sorted(ids - set(self._writers)):
            try:
                self.writer_schema(schema_id)
            except DecodeError:
                continue


_SAME: dict[tuple[int, str], tuple[Any, bool]] = {}  # the writer is held, so its id is never reused


def _resolution(writer: Any, contract: Contract) -> tuple[Any, Any]:
    """(writer, reader) for fastavro: a writer that is the contract itself needs no resolution (~3x faster)."""
    key = (id(writer), contract.name)
    held = _SAME.get(key)
    if held is None or held[0] is not writer:
        same = (fastavro.schema.to_parsing_canonical_form(writer)
                == fastavro.schema.to_parsing_canonical_form(contract.parsed)
                and _logical_types(writer) == _logical_types(contract.parsed))  # the canonical form drops them
        held = _SAME[key] = (writer, same)
    return (contract.parsed, None) if held[1] else (writer, contract.parsed)


def _logical_types(schema: Any) -> list[str]:
    """Every logical type in a parsed schema, in the order met."""
    found: list[str] = []
    stack = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if "logicalType" in node:
                found.append(str(node["logicalType"]))
            stack.extend(v for k, v in sorted(node.items(), reverse=True) if not k.startswith("__"))
        elif isinstance(node, list):
            stack.extend(reversed(node))
    return found


def decode(data: bytes | None, contract: Contract, ids: WriterSchemas) -> dict[str, Any]:
    """Decode a Confluent-framed record written with any registered version into ``contract``'s shape."""
    schema_id, payload = unframe(data)
    writer, reader = _resolution(ids.writer_schema(schema_id), contract)
    buf = io.BytesIO(payload)
    try:
        record = fastavro.schemaless_reader(buf, writer, reader)
    except (EOFError, StopIteration, struct.error) as exc:
        raise DecodeError("truncated", f"Avro payload ends early ({type(exc).__name__})") from None
    except (ValueError, IndexError, UnicodeDecodeError, TypeError, fastavro.read.SchemaResolutionError) as exc:
        if buf.tell() >= len(payload):  # it ran out of bytes: a string or bytes field cut short, say
            raise DecodeError("truncated", f"Avro payload ends early ({type(exc).__name__})") from None
        raise DecodeError("malformed_avro", f"Avro payload does not match schema {schema_id} "
                          f"({type(exc).__name__})") from None
    if buf.tell() != len(payload):
        raise DecodeError("trailing_bytes", f"{len(payload) - buf.tell()} bytes after the record")
    if not isinstance(record, dict):
        raise DecodeError("malformed_avro", f"schema {schema_id} does not describe a record")
    for name in contract.uuid_fields:
        record[name] = str(record[name])
    return record
