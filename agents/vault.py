"""The identity vault: who a pseudonymous person is, for operations only, sealed under that person's own key.

Everything past ingest carries operations tokens; an officer reviewing an alert or a
dedup link must still be able to learn who ``doc:<token>`` is. The vault holds, per
person token, the traveller record as presented (document, names, date of birth, sex,
nationality) as JSON sealed with the person's key (:mod:`agents.sealing`), on the
compacted ``identity.vault`` topic keyed by the token. Nothing else in Lintas can be
turned back into an identity, so destroying the person's key (``lintas erase``)
leaves no readable identity anywhere: not in the topic's old segments, replicas or
backups.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from datetime import date
from typing import Any

import orjson

from agents.pseudonymise import Tokeniser, person_token
from agents.sealing import SubjectSealer, person_key

# What the vault holds, sealed per person: the traveller record as presented.
VAULT_CLASSES = ("CHILD", "DIRECT_IDENTIFIER", "QUASI_IDENTIFIER")


def travellers(record: dict[str, Any], source: str) -> list[dict[str, Any]]:
    """The persons of a decoded crossing (``source='crossing'``, its traveller) or landing (every person)."""
    if source == "crossing":
        return [record["traveller"]]
    return [p["traveller"] for p in record.get("persons") or []]


def identities(record: dict[str, Any], source: str, tok: Tokeniser) -> dict[str, dict[str, Any]]:
    """Person operations token → the identity presented, for every person of the event."""
    return {person_token(tok, t): t for t in travellers(record, source)}


def _plain(value: Any) -> Any:
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(f"not JSON: {type(value).__name__}")


def _json(identity: dict[str, Any]) -> bytes:
    """The identity as sorted JSON (dates as ISO dates), the same bytes for the same identity."""
    return orjson.dumps(identity, default=_plain, option=orjson.OPT_SORT_KEYS)


def sealed_entries(people: dict[str, dict[str, Any]], sealer: SubjectSealer) -> list[tuple[str, bytes]]:
    """(token, sealed identity) records for the vault topic, each under the person's key (created if new)."""
    items = [(_json(identity), token, person_key(token)) for token, identity in people.items()]
    return list(zip(people, sealer.seal(items), strict=True))


def open_entry(sealer: SubjectSealer, token: str, sealed: bytes) -> dict[str, Any]:
    """The identity behind ``token``; :class:`~agents.sealing.KeyDestroyed` once the person was erased."""
    return json.loads(sealer.open_one(sealed, token))  # type: ignore[no-any-return]


class Recent:
    """Tokens whose identity this worker vaulted lately (bounded): a person crossing daily is written once."""

    def __init__(self, capacity: int = 200_000) -> None:
        """Remember up to ``capacity`` persons."""
        self.capacity = capacity
        self._seen: OrderedDict[str, bytes] = OrderedDict()

    def fresh(self, people: dict[str, dict[str, Any]], keyed: set[str]) -> dict[str, dict[str, Any]]:
        """The persons to vault now: not vaulted lately with this exact identity, or without a key (new or erased).

        ``keyed``: the tokens whose person key exists. They are remembered from now on.
        """
        out = {}
        for token, identity in people.items():
            digest = hashlib.blake2b(_json(identity), digest_size=16).digest()
            if token in keyed and self._seen.get(token) == digest:
                self._seen.move_to_end(token)
                continue
            self._seen[token] = digest
            out[token] = identity
            if len(self._seen) > self.capacity:
                self._seen.popitem(last=False)
        return out
