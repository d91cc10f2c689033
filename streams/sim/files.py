"""A simulation written out: JSONL events as ``lintas produce`` reads them, the ground truth beside them, and facts."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from streams.sim.simulator import Simulator
from streams.sim.world import Truth

if TYPE_CHECKING:
    from agents.pseudonymise import Tokeniser
    from agents.trafficking.facts import Fact


def to_json_line(record: dict[str, Any]) -> str:
    """One record in the JSONL form ``lintas produce`` reads (ISO times, base64 templates)."""
    def default(value: Any) -> Any:
        if isinstance(value, datetime):
            return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        if isinstance(value, date):
            return value.isoformat()
        if isinstance(value, bytes):
            return base64.b64encode(value).decode()
        raise TypeError(type(value).__name__)

    return json.dumps(record, default=default, separators=(",", ":"))


def write_files(sim: Simulator, n_crossings: int, out_dir: Path, landings: int = 3) -> dict[str, Path]:
    """Write crossings.jsonl, landings.jsonl, truth.json and truth_subjects.csv into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"crossing": out_dir / "crossings.jsonl", "landing": out_dir / "landings.jsonl"}
    with open(paths["crossing"], "w") as crossings, open(paths["landing"], "w") as landing_file:
        for kind, record in sim.events(n_crossings, landings):
            (crossings if kind == "crossing" else landing_file).write(to_json_line(record) + "\n")
    write_truth(sim.truth, out_dir)
    return {**paths, "truth": out_dir / "truth.json"}


def write_truth(truth: Truth, out_dir: Path) -> None:
    """Ground truth next to the data: scenarios as JSON, the subject of each capture as CSV."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "truth.json").write_text(json.dumps(truth.to_json(), indent=1))
    with open(out_dir / "truth_subjects.csv", "w") as f:
        f.write("event_id,subject\n")
        for event_id, subject in truth.event_subject.items():
            f.write(f"{event_id},{subject}\n")


def simulated_facts(sim: Simulator, crossings: int, landings: int, tok: Tokeniser) -> Iterator[Fact]:
    """The trafficking facts the pipeline would make from a simulation, in event order.

    Biometric subjects come from the ground truth (a perfect dedup): each document's face is
    its subject, a second face under a document is another subject, and one face under a
    second document is a confirmed link. For measuring and training the rules on their own.
    """
    from agents.pseudonymise import crossing_row, landing_row, person_token
    from agents.trafficking.facts import crossing_facts, decision_facts, landing_facts, link_facts

    documents: dict[int, list[str]] = {}  # true person → the documents they were seen with, first first
    first_event: dict[tuple[int, str], str] = {}  # (person, document) → the first crossing under it
    for kind, record in sim.events(crossings, landings):
        if kind == "landing":
            yield from landing_facts(record, landing_row(record, tok), tok)
            continue
        row = crossing_row(record, tok)
        yield from crossing_facts(record, row, tok)
        person = sim.truth.event_subject.get(record["event_id"])
        if person is None:
            continue
        identity = person_token(tok, record["traveller"])
        subject = tok.token("subject", str(person), identity)
        yield from decision_facts({"subject_id": subject, "identity_token": identity, "event_id": record["event_id"],
                                   "occurred_at": row["occurred_at"], "post_id": row["post_id"]})
        seen = documents.setdefault(person, [])
        if identity not in seen:
            seen.append(identity)
            first_event[(person, identity)] = str(record["event_id"])
            if len(seen) > 1:  # a confirmed link between this document's subject and the first one's
                first = tok.token("subject", str(person), seen[0])
                a, b = sorted([(first, seen[0]), (subject, identity)])
                # the evidence: each document's first crossing (the pipeline's link facts name the link instead)
                yield from link_facts({"key": f"subject:{a[0]}", "event_id": first_event[(person, side[1])],
                                       "occurred_at": row["occurred_at"], "post_id": row["post_id"],
                                       "traveller": side[1], "subject": other[0], "score": 1.0,
                                       "thresholds_version": "truth", "revision": 1}
                                      for side, other in ((a, b), (b, a)))
