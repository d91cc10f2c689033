"""Avro schema compatibility at Confluent's levels, judged by Apache Avro's own checker."""

from __future__ import annotations

import avro.schema
from avro.compatibility import ReaderWriterCompatibilityChecker, SchemaCompatibilityType

LEVELS = ("NONE", "BACKWARD", "BACKWARD_TRANSITIVE", "FORWARD", "FORWARD_TRANSITIVE", "FULL", "FULL_TRANSITIVE")


def incompatibilities(new: avro.schema.Schema, previous: list[avro.schema.Schema], level: str) -> list[str]:
    """Why ``new`` breaks ``level`` against the previous versions (oldest first); empty if compatible."""
    if level == "NONE" or not previous:
        return []
    against = previous if level.endswith("_TRANSITIVE") else previous[-1:]
    checker = ReaderWriterCompatibilityChecker()
    problems: list[str] = []
    for old in against:
        pairs = []
        if level.startswith(("BACKWARD", "FULL")):
            pairs.append(("new schema cannot read data written with an earlier one", new, old))
        if level.startswith(("FORWARD", "FULL")):
            pairs.append(("an earlier schema cannot read data written with the new one", old, new))
        for what, reader, writer in pairs:
            result = checker.get_compatibility(reader, writer)
            if result.compatibility is not SchemaCompatibilityType.compatible:
                detail = "; ".join(sorted(f"{m} at {loc}" for m, loc in zip(result.messages, result.locations,
                                                                              strict=False)))
                problems.append(f"{what} ({detail or 'incompatible'})")
    return problems
