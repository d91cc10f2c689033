"""From a border post's JSON to a valid Avro record, or the field and reason it fails.

JSON lines follow the Avro schema field by field, with three conveniences a
post's software can produce without Avro tooling: timestamps as ISO-8601 with a
UTC offset (or epoch milliseconds), dates as ``YYYY-MM-DD``, and biometric
templates as base64 of little-endian float32 values. Unions take the plain
value (no ``{"string": ...}`` wrapper).

Errors name the field (dotted path) and the reason; they never repeat the value,
which may be personal data.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from schemas.contracts import Contract
from schemas.errors import InvalidMessage

_COUNTRY = re.compile(r"^[A-Z]{3}$")
_PRIMITIVES: dict[str, tuple[type, ...]] = {
    "string": (str,), "boolean": (bool,), "int": (int,), "long": (int,), "float": (int, float),
    "double": (int, float), "bytes": (bytes, str), "null": (type(None),),
}
INT_RANGE = (-(2**31), 2**31 - 1)
LONG_RANGE = (-(2**63), 2**63 - 1)
# Events further in the future than this are clock errors at the post.
MAX_CLOCK_SKEW = timedelta(hours=24)
EARLIEST_EVENT = datetime(2000, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class FieldError:
    """One reason a record is invalid: the field's dotted path, a stable code and a reason."""

    field: str
    code: str
    reason: str

    def __str__(self) -> str:
        """``field: reason``."""
        return f"{self.field or '(record)'}: {self.reason}"


class ValidationError(InvalidMessage):
    """A record failed validation; ``errors`` lists every field and reason, the first one is the error's own."""

    def __init__(self, errors: list[FieldError]) -> None:
        """Keep the errors; the message names fields, never values."""
        self.errors = errors
        first = errors[0] if errors else FieldError("", "invalid_record", "invalid record")
        super().__init__(first.code, first.field, first.reason)
        self.args = ("; ".join(str(e) for e in errors),)


def parse_json_line(line: str, contract: Contract, now: datetime | None = None) -> dict[str, Any]:
    """Parse one JSON line into a valid Avro datum of ``contract`` or raise :class:`ValidationError`."""
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValidationError(
            [FieldError("", "malformed_json", f"not valid JSON ({exc.msg} at column {exc.colno})")]) from None
    if not isinstance(obj, dict):
        raise ValidationError([FieldError("", "malformed_json", "a JSON object is required")])
    errors: list[FieldError] = []
    datum = _convert(obj, contract.schema, "", errors, named={})
    if not errors:
        errors.extend(check_semantics(contract.name, datum, now))
    if errors:
        raise ValidationError(errors)
    return datum


def _convert(value: Any, schema: Any, path: str, errors: list[FieldError], named: dict[str, Any]) -> Any:
    """Check ``value`` against an Avro schema node, converting logical types; append errors."""
    if isinstance(schema, list):
        return _convert_union(value, schema, path, errors, named)
    if isinstance(schema, str):
        if schema in named:
            return _convert(value, named[schema], path, errors, named)
        return _convert_primitive(value, schema, None, path, errors)
    kind = schema["type"]
    if kind == "record":
        named.setdefault(f"{schema.get('namespace', 'id.lintas.events')}.{schema['name']}", schema)
        named.setdefault(schema["name"], schema)
        if not isinstance(value, dict):
            errors.append(FieldError(path, "invalid_type", f"expected an object ({schema['name']})"))
            return None
        known = {f["name"] for f in schema["fields"]}
        for extra in sorted(set(value) - known):
            errors.append(FieldError(_join(path, extra), "unknown_field", "not a field of " + schema["name"]))
        out = {}
        for f in schema["fields"]:
            fpath = _join(path, f["name"])
            if f["name"] not in value:
                if "default" in f:
                    out[f["name"]] = f["default"]
                    continue
                errors.append(FieldError(fpath, "missing_field", "required field is missing"))
                continue
            out[f["name"]] = _convert(value[f["name"]], f["type"], fpath, errors, named)
        return out
    if kind == "enum":
        named.setdefault(f"{schema.get('namespace', 'id.lintas.events')}.{schema['name']}", schema)
        named.setdefault(schema["name"], schema)
        if value not in schema["symbols"]:
            errors.append(FieldError(path, "invalid_enum", f"must be one of {', '.join(schema['symbols'])}"))
        return value
    if kind == "array":
        if not isinstance(value, list):
            errors.append(FieldError(path, "invalid_type", "expected an array"))
            return []
        return [_convert(item, schema["items"], f"{path}[{i}]", errors, named) for i, item in enumerate(value)]
    if kind == "map":
        if not isinstance(value, dict):
            errors.append(FieldError(path, "invalid_type", "expected an object (map)"))
            return {}
        return {k: _convert(v, schema["values"], f"{path}.{k}", errors, named) for k, v in value.items()}
    return _convert_primitive(value, kind, schema.get("logicalType"), path, errors)


def _convert_union(value: Any, branches: list[Any], path: str, errors: list[FieldError],
                   named: dict[str, Any]) -> Any:
    if value is None:
        if "null" in branches:
            return None
        errors.append(FieldError(path, "missing_value", "must not be null"))
        return None
    last: list[FieldError] = []
    for branch in branches:
        if branch == "null":
            continue
        attempt: list[FieldError] = []
        converted = _convert(value, branch, path, attempt, named)
        if not attempt:
            return converted
        last = attempt
    errors.extend(last)
    return None


def _convert_primitive(value: Any, kind: str, logical: str | None, path: str, errors: list[FieldError]) -> Any:
    if logical == "timestamp-millis":
        return _timestamp(value, path, errors)
    if logical == "date":
        return _date(value, path, errors)
    allowed = _PRIMITIVES.get(kind)
    if allowed is None:
        errors.append(FieldError(path, "unsupported_type", f"unsupported schema type {kind}"))
        return None
    if not isinstance(value, allowed) or (kind != "boolean" and isinstance(value, bool)):
        errors.append(FieldError(path, "invalid_type", f"expected {kind}"))
        return None
    if kind in ("int", "long") and isinstance(value, int):
        lo, hi = INT_RANGE if kind == "int" else LONG_RANGE
        if not lo <= value <= hi:
            errors.append(FieldError(path, "out_of_range", f"outside the {kind} range"))
    if kind in ("float", "double") and isinstance(value, (int, float)) and not math.isfinite(value):
        errors.append(FieldError(path, "invalid_value", "must be a finite number"))
    if kind == "bytes" and isinstance(value, str):
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            errors.append(FieldError(path, "invalid_encoding", "expected base64"))
            return None
    if logical == "uuid" and isinstance(value, str):
        try:
            uuid.UUID(value)
        except ValueError:
            errors.append(FieldError(path, "invalid_value", "expected a UUID"))
    return value


def _timestamp(value: Any, path: str, errors: list[FieldError]) -> datetime | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return datetime.fromtimestamp(value / 1000, tz=UTC)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            errors.append(FieldError(path, "invalid_timestamp", "expected ISO-8601 with a UTC offset"))
            return None
        if parsed.tzinfo is None:
            errors.append(FieldError(path, "naive_timestamp", "timestamp has no UTC offset"))
            return None
        return parsed.astimezone(UTC)
    errors.append(FieldError(path, "invalid_type", "expected an ISO-8601 timestamp or epoch milliseconds"))
    return None


def _date(value: Any, path: str, errors: list[FieldError]) -> date | None:
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    errors.append(FieldError(path, "invalid_date", "expected a date YYYY-MM-DD"))
    return None


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def check_semantics(event_type: str, datum: dict[str, Any], now: datetime | None = None) -> list[FieldError]:
    """Rules the schema cannot express: codes, clocks, counts, template shape."""
    now = now or datetime.now(UTC)
    errors: list[FieldError] = []
    occurred = datum.get("occurred_at")
    if isinstance(occurred, datetime):
        if occurred > now + MAX_CLOCK_SKEW:
            errors.append(FieldError("occurred_at", "in_future", "more than 24 h in the future"))
        elif occurred < EARLIEST_EVENT:
            errors.append(FieldError("occurred_at", "too_old", "before 2000-01-01"))
    if event_type == "CrossingEvent":
        errors.extend(_check_country(datum, ("post", "country"), ("origin_country",), ("destination_country",)))
        traveller = datum["traveller"]
        if traveller.get("document") is None:
            errors.append(FieldError("traveller.document", "missing_value", "a crossing needs a travel document"))
        errors.extend(_check_traveller(traveller, "traveller", occurred))
        if datum.get("refusal_reason") is not None and not datum.get("refused"):
            errors.append(FieldError("refusal_reason", "inconsistent", "set although refused is false"))
        for i, companion in enumerate(datum.get("companions") or []):
            errors.extend(_check_country(companion, ("document_issuing_state",), prefix=f"companions[{i}]"))
        errors.extend(_check_biometric(datum.get("biometric"), "biometric"))
    elif event_type == "LandingEvent":
        errors.extend(_check_country(datum, ("site", "country")))
        for name in ("adults", "minors", "unaccompanied_minors"):
            if datum[name] < 0:
                errors.append(FieldError(name, "out_of_range", "must not be negative"))
        if datum["unaccompanied_minors"] > datum["minors"]:
            errors.append(FieldError("unaccompanied_minors", "inconsistent", "more than the number of minors"))
        site = datum["site"]
        if not (-90 <= site["latitude"] <= 90 and -180 <= site["longitude"] <= 180):
            errors.append(FieldError("site", "out_of_range", "coordinates outside WGS84 bounds"))
        for i, code in enumerate(datum.get("nationalities") or []):
            if not _COUNTRY.match(code):
                errors.append(FieldError(f"nationalities[{i}]", "invalid_country", "expected ISO 3166-1 alpha-3"))
        for i, person in enumerate(datum.get("persons") or []):
            errors.extend(_check_traveller(person["traveller"], f"persons[{i}].traveller", occurred))
            errors.extend(_check_biometric(person.get("biometric"), f"persons[{i}].biometric"))
    return errors


def _check_country(datum: dict[str, Any], *paths: tuple[str, ...], prefix: str = "") -> list[FieldError]:
    errors = []
    for path in paths:
        value: Any = datum
        for part in path:
            value = value.get(part) if isinstance(value, dict) else None
        if value is not None and not _COUNTRY.match(value):
            errors.append(FieldError(_join(prefix, ".".join(path)), "invalid_country", "expected ISO 3166-1 alpha-3"))
    return errors


def _check_traveller(traveller: dict[str, Any], path: str, occurred: datetime | None) -> list[FieldError]:
    errors = _check_country(traveller, ("nationality",), prefix=path)
    document = traveller.get("document")
    if document is not None:
        errors.extend(_check_country(document, ("issuing_state",), prefix=f"{path}.document"))
        if not document["number"].strip():
            errors.append(FieldError(f"{path}.document.number", "missing_value", "must not be empty"))
    born = traveller.get("date_of_birth")
    if born is not None and occurred is not None and born > occurred.date():
        errors.append(FieldError(f"{path}.date_of_birth", "in_future", "after the event"))
    if not (traveller["given_names"].strip() or traveller["surname"].strip()):
        errors.append(FieldError(f"{path}.given_names", "missing_value", "a name is required"))
    return errors


_MODEL = re.compile(r"[A-Za-z0-9._/:+-]{1,64}")


def _check_biometric(capture: dict[str, Any] | None, path: str) -> list[FieldError]:
    if capture is None:
        return []
    errors = []
    if len(capture["template"]) != 4 * capture["dimension"]:
        errors.append(FieldError(f"{path}.template", "invalid_template", "length is not 4 bytes x dimension"))
    if not 0.0 <= capture["quality"] <= 1.0:
        errors.append(FieldError(f"{path}.quality", "out_of_range", "must be within [0, 1]"))
    model = capture.get("model", "unspecified")
    if not _MODEL.fullmatch(model):
        errors.append(FieldError(f"{path}.model", "invalid_format",
                                 "1-64 characters of letters, digits and . _ / : + - (an algorithm name and version)"))
    return errors
