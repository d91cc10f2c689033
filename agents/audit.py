"""Record of processing (UU PDP 27/2022: the controller records every processing activity).

Each batch a component handles becomes one :class:`Processing` record: which
component, what it did (the law's verbs: collect, analyse, store, disclose,
transfer, delete), which data classes, for which purpose, how many records, from
where to where, under which policy version and key, and the outcome (``ok`` or a
refusal code). Records go to the append-only ``audit.processing`` topic (JSON
lines, readable with kcat) and the ``processing_log`` table. They hold counts,
codes and coordinates only, never personal data.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from agents.privacy import policy
from schemas.contracts import DATA_CLASSES, Contract

ACTIVITIES = frozenset({"collect", "analyse", "store", "disclose", "transfer", "delete"})
PERSONAL = DATA_CLASSES - {"PUBLIC", "PSEUDONYMOUS"}


def classes_of(contract: Contract) -> tuple[str, ...]:
    """The personal-data classes a contract carries, from its field tags."""
    return tuple(sorted({t for tags in contract.field_tags().values() for t in tags} & PERSONAL))


@dataclass(frozen=True)
class Processing:
    """One processing activity (one batch of one component)."""

    component: str
    activity: str
    purpose: str
    data_classes: tuple[str, ...]
    records: int
    source: str
    destination: str
    key_id: str = ""
    outcome: str = "ok"
    detail: str = ""
    policy_version: str = field(default_factory=lambda: policy().version)
    processed_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    record_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    def __post_init__(self) -> None:
        """Only the law's activities and the policy's purposes."""
        if self.activity not in ACTIVITIES:
            raise ValueError(f"activity {self.activity!r} is not one of {sorted(ACTIVITIES)}")
        if self.purpose not in policy().purposes:
            raise ValueError(f"purpose {self.purpose!r} is not in the privacy policy")

    def row(self) -> dict[str, Any]:
        """The ``processing_log`` row."""
        out = asdict(self)
        out["data_classes"] = list(self.data_classes)
        return out

    def to_json(self) -> bytes:
        """The ``audit.processing`` record: one JSON object, keys sorted."""
        out = self.row()
        out["processed_at"] = self.processed_at.isoformat(timespec="milliseconds")
        return json.dumps(out, sort_keys=True).encode()


def offsets(events: list[tuple[int, int]]) -> str:
    """Kafka coordinates of a batch, compactly: ``p0:10-42,p3:7-7``."""
    spans: dict[int, list[int]] = {}
    for partition, offset in events:
        lo_hi = spans.setdefault(partition, [offset, offset])
        lo_hi[0], lo_hi[1] = min(lo_hi[0], offset), max(lo_hi[1], offset)
    return ",".join(f"p{p}:{lo}-{hi}" for p, (lo, hi) in sorted(spans.items()))
