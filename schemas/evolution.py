"""Schema evolution: check the frozen history of every event and freeze new versions.

A new version may only be frozen when it is compatible with every earlier one
under :data:`schemas.contracts.COMPATIBILITY`, judged by Apache Avro's own
reader/writer compatibility checker (the same one the local registry uses).
"""

from __future__ import annotations

import json
from pathlib import Path

import avro.schema

from schemas.compatibility import incompatibilities
from schemas.contracts import COMPATIBILITY, EVENT_CONTRACTS, HISTORY_DIR, Contract, history


def history_problems(versions: list[dict], level: str = COMPATIBILITY) -> list[str]:
    """Every pair of versions in the history that breaks the policy."""
    parsed = [avro.schema.parse(json.dumps(v)) for v in versions]
    problems = []
    for i in range(1, len(parsed)):
        for why in incompatibilities(parsed[i], parsed[:i], level):
            problems.append(f"v{i + 1} against earlier versions: {why}")
    return problems


def pending_change(contract: Contract) -> bool:
    """True if the schema in ``schemas/`` differs from its latest frozen version."""
    versions = history(contract.name)
    if not versions:
        return True
    latest = avro.schema.parse(json.dumps(versions[-1]))
    return bool(latest.canonical_form != contract.canonical_form or versions[-1] != contract.schema)


def freeze(contract: Contract, level: str = COMPATIBILITY) -> Path | None:
    """Write the current schema as the next version if it changed and keeps the policy; None if unchanged."""
    if not pending_change(contract):
        return None
    versions = history(contract.name)
    problems = history_problems([*versions, contract.schema], level)
    if problems:
        raise ValueError(f"{contract.name} breaks {level}: " + " | ".join(problems))
    path = HISTORY_DIR / contract.name / f"v{len(versions) + 1}.avsc"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(contract.schema, indent=2) + "\n")
    return path


def freeze_all() -> list[Path]:
    """Freeze every event whose schema changed."""
    return [p for c in EVENT_CONTRACTS.values() if (p := freeze(c)) is not None]
