"""Right to erasure (UU PDP 27/2022): what ``lintas erase`` deletes, anonymises and shreds for one person (pure).

A person is named by their travel document (``IDN:X1234567``) or, for someone who
presented none (a landed person), by name (``name:Given Names/Surname``). From that:

- their tokens under every *live* key of each purpose (a rotation's overlap included),
- their biometric subjects (found by the I/O side in ``dedup_decisions``),
- the ClickHouse mutations: their own rows deleted; their tokens in other people's
  rows (an escort list, a candidate list, an alert's subjects) blanked, so the others'
  rows stay whole and correct otherwise,
- the keys to destroy (crypto-shredding: their vault identity and every sealed
  template, wherever copies of them are, become unreadable).

The proof names the person only by a hash of their operations token.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from agents.pseudonymise import Tokeniser, document_token
from agents.sealing import person_key, subject_key
from schemas.errors import LintasError


class ErasureRequestError(LintasError):
    """An erasure request that names no person Lintas can look up; says which part and why, never the value."""

    code = "erasure_request"


@dataclass(frozen=True)
class ErasureTarget:
    """Who to erase: a document (issuing state, number) or a name (given names, surname)."""

    kind: str  # "document" or "name"
    parts: tuple[str, str]

    @classmethod
    def parse(cls, text: str) -> ErasureTarget:
        """``STATE:NUMBER`` or ``name:GIVEN NAMES/SURNAME``."""
        head, sep, rest = text.strip().partition(":")
        if not sep or not rest.strip():
            raise ErasureRequestError("person: expected STATE:NUMBER (e.g. IDN:X1234567) or name:GIVEN/SURNAME")
        if head.lower() == "name":
            given, slash, surname = rest.partition("/")
            if not slash or not surname.strip():
                raise ErasureRequestError("person: a name needs given names and surname as name:GIVEN/SURNAME")
            return cls("name", (given.strip(), surname.strip()))
        if len(head) != 3 or not head.isalpha():
            raise ErasureRequestError("person: the issuing state must be a 3-letter ICAO code, e.g. IDN")
        return cls("document", (head.upper(), rest.strip()))

    def token(self, tok: Tokeniser) -> str:
        """The person's token under ``tok`` (as :func:`agents.pseudonymise.person_token` makes it)."""
        if self.kind == "document":
            return document_token(tok, *self.parts)
        return tok.token("name", *self.parts)


@dataclass(frozen=True)
class Refs:
    """A person's references: operations and analytics tokens (every live key) and biometric subjects."""

    operations: tuple[str, ...]
    analytics: tuple[str, ...]
    subjects: tuple[str, ...] = ()

    @classmethod
    def of(cls, person: ErasureTarget, operations: Sequence[Tokeniser], analytics: Sequence[Tokeniser]) -> Refs:
        """Tokens under every live key of each purpose."""
        return cls(tuple(person.token(t) for t in operations), tuple(person.token(t) for t in analytics))

    @property
    def pseudonyms(self) -> list[str]:
        """Operations tokens and subject ids: what other people's alerts and rule state may name."""
        return [*self.operations, *self.subjects]

    def keys(self) -> list[str]:
        """The subject keys to destroy: the person's (vault, probes) and each biometric subject's (gallery)."""
        return [person_key(t) for t in self.operations] + [subject_key(s) for s in self.subjects]

    def reference(self) -> str:
        """What the proof names the person by: a hash of their operations tokens, not the tokens."""
        return hashlib.sha256("\x1f".join(sorted(self.operations)).encode()).hexdigest()


@dataclass(frozen=True)
class Mutation:
    """One ClickHouse change: delete the person's rows, or blank their tokens in others' rows."""

    table: str
    action: str  # "delete" or "anonymise"
    where: str
    update: str = ""

    def count_sql(self) -> str:
        """How many rows it touches (before) or still would (after: must be 0)."""
        return f"SELECT count() FROM {self.table} WHERE {self.where}"  # noqa: S608 (fixed table and clause)

    def sql(self) -> str:
        """The mutation, applied synchronously."""
        if self.action == "delete":
            return f"ALTER TABLE {self.table} DELETE WHERE {self.where} SETTINGS mutations_sync = 2"
        return f"ALTER TABLE {self.table} UPDATE {self.update} WHERE {self.where} SETTINGS mutations_sync = 2"


def _blank(column: str, refs: str) -> str:
    return f"{column} = arrayMap(x -> if(has({{{refs}:Array(String)}}, x), '', x), {column})"


# Parameters: ops (operations tokens), analytics (analytics tokens), subjects, pseudonyms (ops + subjects).
MUTATIONS: tuple[Mutation, ...] = (
    Mutation("crossings", "delete", "document_token IN {analytics:Array(String)} "
                                    "OR (document_token = '' AND name_token IN {analytics:Array(String)})"),
    Mutation("crossings", "anonymise", "hasAny(escort_tokens, {analytics:Array(String)})",
             _blank("escort_tokens", "analytics")),
    Mutation("dedup_decisions", "delete",
             "identity_token IN {ops:Array(String)} OR subject_id IN {subjects:Array(String)}"),
    Mutation("dedup_decisions", "anonymise", "hasAny(candidate_subjects, {subjects:Array(String)})",
             _blank("candidate_subjects", "subjects")),
    Mutation("dedup_links", "delete",
             "identity_token IN {ops:Array(String)} OR subject_identity_token IN {ops:Array(String)} "
             "OR subject_id IN {subjects:Array(String)} OR linked_subject_id IN {subjects:Array(String)}"),
    Mutation("dedup_searches", "delete", "subject_id IN {subjects:Array(String)}"),
    Mutation("alerts", "delete", "key_token IN {pseudonyms:Array(String)}"),
    Mutation("stays", "delete", "traveller_token IN {ops:Array(String)}"),
    Mutation("alerts", "anonymise", "hasAny(subjects, {pseudonyms:Array(String)})",
             "subjects = arrayFilter(x -> NOT has({pseudonyms:Array(String)}, x), subjects)"),
    # their own cases go with their decisions (the ids are hashes of the key: the decisions go first)
    Mutation("case_decisions", "delete", "case_id IN (SELECT case_id FROM cases WHERE key_token IN "
                                         "{pseudonyms:Array(String)})"),
    Mutation("cases", "delete", "key_token IN {pseudonyms:Array(String)}"),
    Mutation("cases", "anonymise", "hasAny(subjects, {pseudonyms:Array(String)})",
             "subjects = arrayFilter(x -> NOT has({pseudonyms:Array(String)}, x), subjects)"),
)


def parameters(refs: Refs) -> dict[str, Any]:
    """The mutations' query parameters."""
    return {"ops": list(refs.operations), "analytics": list(refs.analytics), "subjects": list(refs.subjects),
            "pseudonyms": refs.pseudonyms}


def proof_digest(body: dict[str, Any]) -> str:
    """SHA-256 of the proof's canonical JSON (without the digest itself)."""
    import json

    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()
