"""Pseudonymisation keys per purpose, behind a KMS-shaped interface.

Each purpose of the privacy policy (operations, analytics, regional) has its own
keys, so a token made for one purpose never equals, and cannot be joined with, a
token of the same value made for another. Every token travels with the id of the
key that made it (``analytics-2``). A purpose has one *active* key (new tokens)
and, after a rotation, *retiring* keys that stay live until retired, so tokens
made before the rotation can still be recomputed and resolved during the overlap.

:class:`KeyProvider` is the interface a KMS would implement; the local one is
:class:`streams.keystores.FileKeyring`. Key material never appears in code, logs,
reprs or test fixtures.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from agents.pseudonymise import Tokeniser
from schemas.errors import LintasError


class KeyRefused(LintasError):
    """Refused: unknown purpose or key, rotating a purpose that needs a migration, retiring an active key."""

    code = "key_error"


class KeyProvider(Protocol):
    """What Lintas needs from a key store (a KMS or :class:`FileKeyring`)."""

    def active(self, purpose: str) -> str:
        """Id of the key that makes new tokens for ``purpose``."""

    def live(self, purpose: str) -> list[str]:
        """Ids of every key of ``purpose`` that can still make tokens: the active one first."""

    def material(self, key_id: str) -> bytes:
        """The secret bytes of a live key."""


@dataclass(frozen=True)
class Purposes:
    """The active tokeniser of each purpose, as the pipeline uses them."""

    operations: Tokeniser
    analytics: Tokeniser
    regional: Tokeniser

    @classmethod
    def from_provider(cls, keys: KeyProvider) -> Purposes:
        """Tokenisers of the active keys."""
        return cls(*(tokeniser(keys, p) for p in ("operations", "analytics", "regional")))

    @classmethod
    def single(cls, tok: Tokeniser) -> Purposes:
        """One tokeniser for every purpose: only for tests and benchmarks that measure rules, not separation."""
        return cls(tok, tok, tok)


def tokeniser(keys: KeyProvider, purpose: str, key_id: str | None = None) -> Tokeniser:
    """The tokeniser of ``purpose``'s active key, or of one of its live keys."""
    key_id = key_id or keys.active(purpose)
    return Tokeniser(keys.material(key_id), key_id)


def live_tokenisers(keys: KeyProvider, purpose: str) -> list[Tokeniser]:
    """A tokeniser per live key of ``purpose`` (active first): to find tokens made before a rotation."""
    return [tokeniser(keys, purpose, key_id) for key_id in keys.live(purpose)]
