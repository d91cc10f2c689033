"""Per-subject sealing: what operations must be able to read back is encrypted with a key of its own person.

Erasure by crypto-shredding rests on this module. Every value that holds a
person's recoverable data (a gallery template, a probe's template in transit,
an identity in the vault) is sealed with AES-256-GCM under a key that belongs to
that person alone: ``person:<operations document token>`` or
``subject:<biometric subject id>``. Destroying the key (``lintas erase``) makes
every copy unreadable at once: compacted and not-yet-compacted topic segments,
replicas on other brokers, and backups of them.

A sealed value is ``key name length (2 bytes) | key name | 12-byte nonce |
ciphertext+tag``; the associated data binds it to its record (subject, probe or
token), so a sealed value cannot be moved to another record unnoticed.

Keys live in a :class:`SubjectKeys` store, a KMS-shaped interface (fetch keys,
create missing ones, destroy); the local one is :class:`streams.keystores.SqliteSubjectKeys`.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Sequence
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from schemas.errors import LintasError


class SealError(LintasError):
    """A sealed value that cannot be opened: its key destroyed (erased), wrong, tampered or moved."""

    code = "seal_error"


class KeyDestroyed(SealError):
    """The value's subject key no longer exists: the subject was erased (or never had one)."""

    code = "key_destroyed"


def person_key(token: str) -> str:
    """Key name of a person known by their operations document (or name) token."""
    return f"person:{token}"


def subject_key(subject: str) -> str:
    """Key name of a biometric subject (gallery enrolment)."""
    return f"subject:{subject}"


class SubjectKeys(Protocol):
    """A KMS-shaped store of per-subject data keys."""

    def keys(self, names: Collection[str], create: bool = False) -> dict[str, bytes]:
        """The keys of ``names`` that exist (all of them with ``create``: missing ones made now)."""
        ...

    def destroy(self, names: Collection[str]) -> list[str]:
        """Destroy the keys of ``names``; the names that had a key."""
        ...


class SubjectSealer:
    """Seal and open values under their subjects' keys, a batch at a time (one key-store call per batch)."""

    def __init__(self, store: SubjectKeys) -> None:
        """Seal with keys from ``store``."""
        self.store = store

    def seal(self, items: Sequence[tuple[bytes, str, str]]) -> list[bytes]:
        """Seal each ``(plaintext, record, key name)``; missing keys are created."""
        keys = self.store.keys({name for _, _, name in items}, create=True)
        out = []
        for plaintext, record, name in items:
            nonce = os.urandom(12)
            head = name.encode()
            out.append(len(head).to_bytes(2, "big") + head + nonce
                       + AESGCM(keys[name]).encrypt(nonce, plaintext, record.encode()))
        return out

    def open(self, items: Sequence[tuple[bytes, str]]) -> list[bytes | SealError]:
        """Open each ``(sealed, record)``: the plaintext, or the :class:`SealError` saying why not (never the bytes)."""
        parsed = [_parse(sealed) for sealed, _ in items]
        keys = self.store.keys({p[0] for p in parsed if p is not None})
        out: list[bytes | SealError] = []
        for (_, record), p in zip(items, parsed, strict=True):
            if p is None:
                out.append(SealError("not a sealed value"))
                continue
            name, nonce, body = p
            if name not in keys:
                out.append(KeyDestroyed(f"no key {name.partition(':')[0]}:… (erased or never created)"))
                continue
            try:
                out.append(bytes(AESGCM(keys[name]).decrypt(nonce, body, record.encode())))
            except InvalidTag:
                out.append(SealError("sealed value failed authentication (wrong key, tampered, or another record's)"))
        return out

    def open_one(self, sealed: bytes, record: str) -> bytes:
        """Open one value, or raise its :class:`SealError`."""
        result = self.open([(sealed, record)])[0]
        if isinstance(result, SealError):
            raise result
        return result


def key_name(sealed: bytes) -> str | None:
    """The key name a sealed value needs (no key material involved); None if it is not a sealed value."""
    p = _parse(sealed)
    return p[0] if p else None


def _parse(sealed: bytes) -> tuple[str, bytes, bytes] | None:
    if len(sealed) < 2:
        return None
    n = int.from_bytes(sealed[:2], "big")
    if len(sealed) < 2 + n + 12 + 16:
        return None
    return sealed[2:2 + n].decode(errors="replace"), sealed[2 + n:14 + n], sealed[14 + n:]
