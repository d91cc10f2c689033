"""Multiple-identity links: the evidence (pairs of samples) for one pair of subjects, and its state (pure).

Gallery shards report every pair of samples of two subjects of different identities
that scores at or above the model's pair floor (PAIR), and withdraw it when a sample
is replaced or erased (UNPAIR); :mod:`agents.biometric` shows no pair is missed. A
link's state is a function of the pairs it holds, never of their order:

* its score is the best pair's, its colour RED at or above the model's red threshold,
  YELLOW at or above yellow; below yellow it is no link (a link whose evidence fell away
  before anyone decided is WITHDRAWN);
* a link is a **proposal** until an officer decides (DECIDE: CONFIRMED or REJECTED); the
  first decision stands, a replayed one changes nothing. Red links may be configured to
  confirm themselves; that is recorded as ``decided_by = auto``. Nothing about either
  subject changes because of an open link: each keeps its own identity.

Its subject-pair facts (for ``subject_multiple_documents``) are sent once, when the link
is first red or confirmed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

import orjson

from agents.dedup import ModelThresholds
from schemas.errors import InvalidMessage
from schemas.wire import json_bytes

STATUS_RANK = {"OPEN": 0, "WITHDRAWN": 0, "CONFIRMED": 1, "REJECTED": 1}
DECIDED = ("CONFIRMED", "REJECTED")


@dataclass
class LinkState:
    """What the link agent keeps per link: both subjects, every pair, the decision, and what it last sent."""

    link_id: str
    model: str = ""
    subjects: list[dict[str, str]] = field(default_factory=list)  # [{subject, identity}] in subject order
    pairs: dict[str, dict[str, Any]] = field(default_factory=dict)  # pair key → {score, sides}
    status: str = ""  # "" (never a link), OPEN, WITHDRAWN, CONFIRMED, REJECTED
    officer_token: str = ""
    decided_by: str = ""
    decided_ms: int = 0
    raised_ms: int = 0
    facts_sent: bool = False
    fact_revision: int = 0  # each sending of the link's facts (or their withdrawal) is one revision
    sent: list[Any] | None = None  # (colour, status, score, pair) of the last record sent

    def to_bytes(self) -> bytes:
        """Compact JSON for the table's changelog."""
        return json_bytes({f.name: getattr(self, f.name) for f in fields(self)}, sort_keys=True)

    @classmethod
    def from_bytes(cls, data: bytes | None) -> LinkState | None:
        """The state stored by :meth:`to_bytes`, or ``None``."""
        return cls(**orjson.loads(data)) if data else None

    def best(self) -> tuple[str, dict[str, Any]] | None:
        """The best pair (highest score; the samples, not the shard that found them, break ties)."""
        if not self.pairs:
            return None
        return max(self.pairs.items(), key=lambda kv: (kv[1]["score"], kv[0].rpartition("@")[0]))


@dataclass(frozen=True)
class LinkOutput:
    """What one command changes: the link record to send (or ``None``), a tombstone, and subject-pair facts."""

    state: LinkState | None
    record: dict[str, Any] | None = None
    tombstone: bool = False
    facts: tuple[dict[str, Any], ...] = ()


def colour(score: float, t: ModelThresholds) -> str:
    """RED, YELLOW or '' (no link) for a link's best score."""
    return "RED" if score >= t.red else "YELLOW" if score >= t.yellow else ""


def apply_command(state: LinkState | None, cmd: dict[str, Any], thresholds: Callable[[str], ModelThresholds],
          now: datetime, auto_confirm_red: bool, key_id: str) -> LinkOutput:
    """Apply one LinkCommand to a link's state."""
    kind = cmd["kind"]
    if kind == "UNPAIR" and cmd["erased"]:
        return LinkOutput(None, tombstone=state is not None)  # erased: dropped without a trace
    if kind == "DECIDE":
        if state is None or state.status in DECIDED or not state.status:
            return LinkOutput(state)  # unknown, already decided (the first decision stands), or never raised
        state.status, state.officer_token, state.decided_by = cmd["status"], cmd["officer_token"], "officer"
        state.decided_ms = int(cmd["decided_at"].timestamp() * 1000)
        return _emit(state, thresholds(state.model), now, key_id)
    if kind == "UNPAIR":
        if state is None:
            return LinkOutput(None)
        state.pairs.pop(cmd["pair"], None)
    else:
        state = state or LinkState(cmd["link_id"], cmd["model"],
                                   [{"subject": s["subject"], "identity": s["identity"]} for s in cmd["sides"]])
        state.pairs[cmd["pair"]] = {"score": float(cmd["score"]), "sides": cmd["sides"]}
    t = thresholds(state.model)
    best = state.best()
    shade = colour(best[1]["score"], t) if best else ""
    if state.status not in DECIDED:
        if shade:
            state.status = "OPEN"
            if shade == "RED" and auto_confirm_red:
                state.status, state.decided_by = "CONFIRMED", "auto"
                state.decided_ms = int(now.timestamp() * 1000)
        elif state.status == "OPEN":
            state.status = "WITHDRAWN"
    if not state.status:
        return LinkOutput(state if state.pairs else None)  # evidence below yellow: kept quietly
    return _emit(state, t, now, key_id)


def _raiser(pair: dict[str, Any]) -> dict[str, Any]:
    """Of a pair's two samples, the later one (event time): the capture that raised the link."""
    return max(pair["sides"], key=lambda s: (s["occurred_ms"], s["probe_id"]))


def _emit(state: LinkState, t: ModelThresholds, now: datetime, key_id: str) -> LinkOutput:
    best = state.best()
    score = best[1]["score"] if best else 0.0
    shade = colour(score, t) or (state.sent[0] if state.sent else "YELLOW")
    distinct = len({k.rpartition("@")[0] for k in state.pairs})
    signature = [shade, state.status, score, best[0].rpartition("@")[0] if best else "", distinct]
    if signature == state.sent:
        return LinkOutput(state)
    now_ms = int(now.timestamp() * 1000)
    if not state.raised_ms:
        state.raised_ms = now_ms
    state.sent = signature
    a, b = state.subjects
    raiser: dict[str, Any] = _raiser(best[1]) if best else {"probe_id": "", "event_id": "", "source": "",
                                                             "post_id": "", "occurred_ms": 0}
    updated = max(now_ms, state.decided_ms) if state.status in DECIDED else now_ms
    record = {
        "link_id": state.link_id, "subject_id": a["subject"], "identity_token": b["identity"],
        "probe_id": raiser["probe_id"], "event_id": raiser["event_id"], "source": raiser["source"],
        "post_id": raiser["post_id"], "colour": shade, "score": score, "thresholds_version": t.label,
        "status": state.status, "officer_token": state.officer_token,
        "raised_at": datetime.fromtimestamp(state.raised_ms / 1000, UTC),
        "updated_at": datetime.fromtimestamp(updated / 1000, UTC), "key_id": key_id,
        "linked_subject_id": b["subject"], "subject_identity_token": a["identity"], "model": state.model,
        "pair_count": distinct, "decided_by": state.decided_by,
    }
    facts: tuple[dict[str, Any], ...] = ()
    evidence = bool(best) and (shade == "RED" or state.status == "CONFIRMED") and state.status != "REJECTED"
    if evidence != state.facts_sent and (evidence or state.facts_sent):
        # sent when the link is first red or confirmed; sent again without documents when it is neither any more
        state.facts_sent, state.fact_revision = evidence, state.fact_revision + 1
        at = datetime.fromtimestamp(raiser["occurred_ms"] / 1000, UTC)
        facts = tuple({"key": f"subject:{a['subject']}", "event_id": f"{state.link_id}/{n}", "occurred_at": at,
                       "post_id": raiser["post_id"], "traveller": side["identity"] if evidence else "",
                       "subject": other["subject"], "score": score, "thresholds_version": t.label,
                       "revision": state.fact_revision}
                      for n, (side, other) in enumerate(((a, b), (b, a))))
    return LinkOutput(state, record, facts=facts)


def link_row(link: dict[str, Any]) -> dict[str, Any]:
    """The dedup_links row of a link state; ``version`` lets a decided state win over a replayed open one."""
    import uuid

    updated: datetime = link["updated_at"]
    version = STATUS_RANK[link["status"]] * 10**13 + int(updated.timestamp() * 1000)
    event = link["event_id"]
    return {**link, "event_id": uuid.UUID(str(event)) if event else uuid.UUID(int=0), "version": version}


class AdjudicationRejected(InvalidMessage):
    """An adjudication decision that cannot be applied to its link: dead-lettered with code, field and reason."""


def adjudicate(link: dict[str, Any] | None, decision: dict[str, Any], officer_token: str) -> dict[str, Any] | None:
    """The DECIDE fields for an officer's decision on ``link`` (its row), ``None`` for a replay, or a rejection."""
    if link is None:
        raise AdjudicationRejected("unknown_link", "link_id", "no link with this id was raised")
    status = "CONFIRMED" if decision["decision"] == "CONFIRM" else "REJECTED"
    if link["status"] == status and link["officer_token"] == officer_token:
        return None  # the same decision again (a replay): nothing changes
    if link["status"] in DECIDED:
        raise AdjudicationRejected("already_decided", "link_id", f"the link is already {link['status']}")
    if not decision["officer_id"].strip():
        raise AdjudicationRejected("missing_officer", "officer_id", "a decision needs the officer's id")
    decided_at: datetime = decision["decided_at"]
    if decided_at < link["raised_at"]:
        raise AdjudicationRejected("before_link", "decided_at", "decided before the link was raised")
    return {"status": status, "officer_token": officer_token, "decided_at": decided_at.astimezone(UTC)}
