"""Dedup on the stream: captures → probes → shard visits → decisions, links and gallery records (pure functions).

The Faust agents in :mod:`streams.app` only loop, call these and send:

1. ingest turns each biometric capture of a crossing or landing into a probe
   (sealed template, identity token) sent to the first shard of its chain;
   sealed under the person's own key (:mod:`agents.sealing`);
2. each shard searches its part of the gallery (:meth:`agents.dedup.Shard.visit`)
   and forwards the probe with the best candidates so far to the next shard;
3. the last shard of the chain is the probe's owner: it decides, enrols new
   subjects (a sealed :data:`GALLERY_ENTRY` record, the shard's changelog), sends
   aliases to the shard of a linked subject, and emits the decision row and, for
   a red or yellow link, an ``IdentityLink`` for adjudication;
4. an ERASE command (``lintas erase``) makes a shard forget an erased subject
   and drop the erased identity from the subjects that presented it.

Templates exist in clear only inside a shard's memory: sealed on Kafka, absent
from rows, links, logs and dead letters.
"""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import fastavro
import numpy as np

from agents.dedup import Candidate, Decision, Outcome, Probe, Shard, Thresholds, Visit, route, shard_of
from agents.gallery import check_template
from agents.pseudonymise import Tokeniser, person_token
from agents.sealing import KeyDestroyed, SealError, SubjectSealer, person_key, subject_key
from streams.wire import avro_bytes

_INTERNAL = Path(__file__).resolve().parent.parent / "schemas" / "internal"
PROBE_COMMAND = fastavro.parse_schema(json.loads((_INTERNAL / "ProbeCommand.avsc").read_text()))
GALLERY_ENTRY = fastavro.parse_schema(json.loads((_INTERNAL / "GalleryEntry.avsc").read_text()))
LINK_OUTCOMES = {Outcome.LINK_RED: "RED", Outcome.LINK_YELLOW: "YELLOW"}


def _read(schema: Any, data: bytes) -> dict[str, Any]:
    return fastavro.schemaless_reader(io.BytesIO(data), schema, schema)  # type: ignore[return-value]


def template_bytes(template: np.ndarray) -> bytes:
    """A template as little-endian float32 bytes (the plaintext that gets sealed)."""
    return np.ascontiguousarray(template, "<f4").tobytes()


def opened_templates(sealer: SubjectSealer,
                     items: Sequence[tuple[bytes, str]]) -> tuple[list[np.ndarray | None], int, int]:
    """Open sealed templates: (templates, erased, unreadable); ``None`` where one cannot be opened.

    *Erased*: the key was destroyed. *Unreadable*: tampered, moved, or sealed in a format or
    with a key this store never had (e.g. a record from before per-subject sealing). Neither
    stops the batch: one bad record must not halt a shard (the caller counts and logs them).
    """
    out: list[np.ndarray | None] = []
    erased = unreadable = 0
    for result in sealer.open(items):
        if isinstance(result, SealError):
            out.append(None)
            erased += isinstance(result, KeyDestroyed)
            unreadable += not isinstance(result, KeyDestroyed)
        else:
            out.append(np.frombuffer(result, "<f4"))
    return out, erased, unreadable


@dataclass(frozen=True)
class Capture:
    """One person's biometric capture in an event, with the identity they presented (a token)."""

    probe_id: str
    event_id: str
    source: str
    post_id: str
    occurred_at: datetime
    identity: str
    capture: dict[str, Any]
    field: str


def captures(record: dict[str, Any], source: str, tok: Tokeniser) -> list[Capture]:
    """Every biometric capture of a decoded crossing (``source='crossing'``) or landing event.

    The identity presented is the person's operations token (:func:`person_token`).
    """
    if source == "crossing":
        if not record.get("biometric"):
            return []
        return [Capture(str(record["event_id"]), str(record["event_id"]), source, record["post"]["post_id"],
                        record["occurred_at"], person_token(tok, record["traveller"]), record["biometric"],
                        "biometric")]
    out = []
    for n, person in enumerate(record.get("persons") or []):
        if person.get("biometric"):
            out.append(Capture(f"{record['landing_id']}/{n}", str(record["landing_id"]), source,
                               record["site"]["site_id"], record["occurred_at"], person_token(tok, person["traveller"]),
                               person["biometric"], f"persons[{n}].biometric"))
    return out


def search_commands(probes: Sequence[tuple[Capture, np.ndarray]], sealer: SubjectSealer,
                    shards: int) -> list[tuple[int, bytes]]:
    """The first hop of each capture's chain: (partition, ProbeCommand bytes), template under the person's key."""
    sealed = sealer.seal([(template_bytes(t), cap.probe_id, person_key(cap.identity)) for cap, t in probes])
    out = []
    for (cap, _), value in zip(probes, sealed, strict=True):
        owner = shard_of(cap.probe_id, shards)
        first, _ = route(owner, 0, shards)
        out.append((first, avro_bytes(PROBE_COMMAND, {
            "kind": "SEARCH", "probe_id": cap.probe_id, "event_id": cap.event_id, "source": cap.source,
            "post_id": cap.post_id, "occurred_at": cap.occurred_at, "identity": cap.identity,
            "sealed_template": value, "owner": owner, "hop": 0, "candidates": [], "subject": "",
        })))
    return out


def erase_command(shard: int, subject: str, identity: str, requested_at: datetime) -> bytes:
    """An ERASE command for one shard: forget ``subject`` (if it lives there) and ``identity`` everywhere."""
    return avro_bytes(PROBE_COMMAND, {
        "kind": "ERASE", "probe_id": "", "event_id": "", "source": "erasure", "post_id": "",
        "occurred_at": requested_at, "identity": identity, "sealed_template": b"", "owner": shard, "hop": 0,
        "candidates": [], "subject": subject,
    })


def probe_template(cap: Capture, dimension: int, quality_floor: float) -> np.ndarray:
    """The capture's unit template, or :class:`TemplateRejected` (for the dead-letter topic)."""
    c = cap.capture
    return check_template(c["template"], c["dimension"], c["quality"], dimension, quality_floor)


def entries_bytes(entries: Sequence[tuple[str, np.ndarray, dict[str, str]]], sealer: SubjectSealer,
                  enrolled_at: datetime) -> list[tuple[str, bytes]]:
    """Subjects' gallery records (their shard's changelog): (subject, record), each template under its subject's key."""
    sealed = sealer.seal([(template_bytes(t), s, subject_key(s)) for s, t, _ in entries])
    return [(subject, avro_bytes(GALLERY_ENTRY, {
        "subject": subject, "sealed_template": value,
        "identities": [{"identity": i, "probe_id": p} for i, p in sorted(identities.items())],
        "enrolled_at": enrolled_at,
    })) for (subject, _, identities), value in zip(entries, sealed, strict=True)]


def load_entries(shard: Shard, values: Sequence[bytes | None], sealer: SubjectSealer) -> tuple[int, int]:
    """Rebuild a shard from its gallery records (later records of a subject win).

    A subject whose key was destroyed (erased) is skipped, and so is one whose record cannot
    be opened at all (counted: the caller warns). Returns (subjects added, unreadable records).
    """
    latest: dict[str, dict[str, Any]] = {}
    for value in values:
        if value is None:
            continue
        rec = _read(GALLERY_ENTRY, value)
        latest[rec["subject"]] = rec
    if not latest:
        return 0, 0
    subjects = list(latest)
    opened, _, unreadable = opened_templates(sealer, [(latest[s]["sealed_template"], s) for s in subjects])
    kept = [i for i, t in enumerate(opened) if t is not None]
    if not kept:
        return 0, unreadable
    return shard.enrol([subjects[i] for i in kept], np.stack([opened[i] for i in kept]),  # type: ignore[misc]
                       [{u["identity"]: u["probe_id"] for u in latest[subjects[i]]["identities"]} for i in kept]
                       ), unreadable


@dataclass
class StepOutput:
    """What one batch at one shard sends on.

    ``forwards`` and ``aliases``: (partition, ProbeCommand) for biometric.probes;
    ``gallery``: (subject, GalleryEntry) for biometric.gallery at this shard's partition;
    ``decisions``: dedup_decisions rows; ``links``: IdentityLink records.
    """

    forwards: list[tuple[int, bytes]] = field(default_factory=list)
    aliases: list[tuple[int, bytes]] = field(default_factory=list)
    gallery: list[tuple[str, bytes]] = field(default_factory=list)
    decisions: list[dict[str, Any]] = field(default_factory=list)
    links: list[dict[str, Any]] = field(default_factory=list)
    erased: int = 0  # probes dropped because their person was erased while they were in flight
    unreadable: int = 0  # probes dropped because their template could not be opened (tampered, foreign)


@dataclass(frozen=True)
class DedupConfig:
    """What a shard step needs besides the shard: thresholds, sealing, tokens, shard count, index name."""

    thresholds: Thresholds
    sealer: SubjectSealer
    tok: Tokeniser
    shards: int
    index_kind: str


def subject_id(tok: Tokeniser, probe_id: str) -> str:
    """The pseudonymous id a probe's subject gets if enrolled: the same on every replay."""
    return "S" + tok.token("subject", probe_id)[:24]


def link_id(tok: Tokeniser, subject: str, identity: str) -> str:
    """One link per subject and identity, however often it is raised."""
    return "L" + tok.token("link", subject, identity)[:24]


def shard_step(shard: Shard, commands: Sequence[bytes], cfg: DedupConfig, now: datetime) -> StepOutput:
    """Apply a batch of ProbeCommands to ``shard``: aliases and erasures, then searches (one batched search)."""
    out = StepOutput()
    searches: list[dict[str, Any]] = []
    rewrite: dict[str, np.ndarray | None] = {}  # subjects whose gallery record changes (None: the shard's template)
    for raw in commands:
        cmd = _read(PROBE_COMMAND, raw)
        if cmd["kind"] == "ALIAS":
            if shard.add_identity(cmd["subject"], cmd["identity"], cmd["probe_id"]):
                rewrite.setdefault(cmd["subject"], None)
        elif cmd["kind"] == "ERASE":
            _, changed = shard.erase(cmd["subject"], cmd["identity"])
            rewrite.pop(cmd["subject"], None)
            for subject in changed:
                rewrite.setdefault(subject, None)
        else:
            searches.append(cmd)
    templates, out.erased, out.unreadable = opened_templates(
        cfg.sealer, [(c["sealed_template"], c["probe_id"]) for c in searches])
    searches = [c for c, t in zip(searches, templates, strict=True) if t is not None]
    visits = []
    for cmd, template in zip(searches, [t for t in templates if t is not None], strict=True):
        probe = Probe(cmd["probe_id"], template, cmd["identity"])
        carried = tuple(Candidate(c["subject"], c["shard"], c["score"], c["same_identity"])
                        for c in cmd["candidates"])
        visits.append(Visit(probe, carried, final=route(cmd["owner"], cmd["hop"], cfg.shards)[1]))
    results = shard.visit(visits, cfg.thresholds, lambda probe_id: subject_id(cfg.tok, probe_id)) if visits else []
    for cmd, visit, result in zip(searches, visits, results, strict=True):
        if result.decision is None:
            nxt, _ = route(cmd["owner"], cmd["hop"] + 1, cfg.shards)
            out.forwards.append((nxt, avro_bytes(PROBE_COMMAND, {
                **cmd, "hop": cmd["hop"] + 1,
                "candidates": [c.__dict__ for c in result.candidates]})))
            continue
        decision = result.decision
        if result.enrolled and decision.subject:
            rewrite[decision.subject] = visit.probe.template
        if result.alias is not None:
            out.aliases.append((result.alias.shard, avro_bytes(PROBE_COMMAND, {
                **cmd, "kind": "ALIAS", "sealed_template": b"", "candidates": [], "subject": result.alias.subject})))
        out.decisions.append(decision_row(cmd, decision, result.candidates, cfg, now))
        if decision.outcome in LINK_OUTCOMES:
            out.links.append(link_record(cmd, decision, cfg, now))
    out.gallery = entries_bytes([(s, t if t is not None else shard.template(s), shard.identities[s])
                                 for s, t in rewrite.items() if s in shard.identities], cfg.sealer, now)
    return out


def decision_row(cmd: dict[str, Any], decision: Decision, candidates: Sequence[Candidate], cfg: DedupConfig,
                 now: datetime) -> dict[str, Any]:
    """The dedup_decisions row: ids, scores and the threshold version; never a template."""
    return {
        "probe_id": cmd["probe_id"], "event_id": uuid.UUID(cmd["event_id"]), "source": cmd["source"],
        "post_id": cmd["post_id"], "occurred_at": cmd["occurred_at"], "outcome": decision.outcome.value,
        "subject_id": decision.subject or "", "identity_token": cmd["identity"], "score": decision.score,
        "thresholds_version": decision.thresholds_version, "index_kind": cfg.index_kind,
        "candidate_subjects": [c.subject for c in candidates], "candidate_scores": [c.score for c in candidates],
        "decided_at": now, "key_id": cfg.tok.key_id,
    }


def link_record(cmd: dict[str, Any], decision: Decision, cfg: DedupConfig, now: datetime) -> dict[str, Any]:
    """A new, open IdentityLink for adjudication (a link decision always names the matched subject)."""
    subject = decision.subject or ""
    return {
        "link_id": link_id(cfg.tok, subject, cmd["identity"]), "subject_id": subject,
        "identity_token": cmd["identity"], "probe_id": cmd["probe_id"], "event_id": cmd["event_id"],
        "source": cmd["source"], "post_id": cmd["post_id"], "colour": LINK_OUTCOMES[decision.outcome],
        "score": decision.score, "thresholds_version": decision.thresholds_version, "status": "OPEN",
        "officer_token": "", "raised_at": now, "updated_at": now, "key_id": cfg.tok.key_id,
    }


STATUS_RANK = {"OPEN": 0, "CONFIRMED": 1, "REJECTED": 1}


def link_row(link: dict[str, Any]) -> dict[str, Any]:
    """The dedup_links row of a link state; ``version`` lets a decided state win over a replayed open one."""
    updated: datetime = link["updated_at"]
    version = STATUS_RANK[link["status"]] * 10**13 + int(updated.timestamp() * 1000)
    return {**link, "event_id": uuid.UUID(str(link["event_id"])), "version": version}


class AdjudicationRejected(ValueError):
    """An adjudication decision that cannot be applied; ``code`` and ``field`` for the dead letter."""

    def __init__(self, code: str, field: str, reason: str) -> None:
        """Stable code, the field at fault, and why (never the value)."""
        self.code, self.field, self.reason = code, field, reason
        super().__init__(f"{field}: {code}: {reason}")


def adjudicate(link: dict[str, Any] | None, decision: dict[str, Any], tok: Tokeniser) -> dict[str, Any]:
    """The link's new state after an officer's decision, or :class:`AdjudicationRejected`."""
    if link is None:
        raise AdjudicationRejected("unknown_link", "link_id", "no link with this id was raised")
    status = "CONFIRMED" if decision["decision"] == "CONFIRM" else "REJECTED"
    officer = tok.token("officer", decision["officer_id"])
    if link["status"] == status and link["officer_token"] == officer:
        return link  # the same decision again (a replay): nothing changes
    if link["status"] != "OPEN":
        raise AdjudicationRejected("already_decided", "link_id", f"the link is already {link['status']}")
    if not decision["officer_id"].strip():
        raise AdjudicationRejected("missing_officer", "officer_id", "a decision needs the officer's id")
    decided_at: datetime = decision["decided_at"]
    if decided_at < link["raised_at"]:
        raise AdjudicationRejected("before_link", "decided_at", "decided before the link was raised")
    return {**link, "status": status, "officer_token": officer, "updated_at": decided_at.astimezone(UTC)}
