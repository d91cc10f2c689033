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
create missing ones, destroy). :class:`SqliteSubjectKeys` is the local one: a
SQLite file in the secrets directory (0600) with ``secure_delete`` on, so a
destroyed key's bytes are overwritten in the database file, and no write-ahead
log that would keep copies. It must not be backed up with the data it protects
(a KMS or HSM gives that guarantee in production).
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Collection, Sequence
from pathlib import Path
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


class SqliteSubjectKeys:
    """Per-subject keys in a local SQLite file (mode 0600, secure_delete, no WAL).

    Safe across threads and processes (SQLite's locking); ``:memory:`` gives a
    throw-away store for tests.
    """

    def __init__(self, path: Path | str) -> None:
        """Open (or create) the store."""
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            os.chmod(Path(self.path).parent, 0o700)
            if not Path(self.path).exists():
                os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600))
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, timeout=30.0, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA secure_delete = ON")
        self._db.execute("PRAGMA journal_mode = TRUNCATE")
        self._db.execute("CREATE TABLE IF NOT EXISTS subject_keys (name TEXT PRIMARY KEY, material BLOB NOT NULL,"
                         " created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))) WITHOUT ROWID")

    def __repr__(self) -> str:
        """Never the material."""
        return f"SqliteSubjectKeys({self.path!r})"

    def _select(self, names: list[str]) -> dict[str, bytes]:
        found: dict[str, bytes] = {}
        for s in range(0, len(names), 500):
            chunk = names[s:s + 500]
            marks = ",".join("?" * len(chunk))
            found.update(self._db.execute(f"SELECT name, material FROM subject_keys WHERE name IN ({marks})",  # noqa: S608 (placeholders only)
                                          chunk).fetchall())
        return found

    def keys(self, names: Collection[str], create: bool = False) -> dict[str, bytes]:
        """The keys of ``names`` that exist; with ``create`` the missing ones are made (one transaction)."""
        wanted = sorted(set(names))
        with self._lock:
            found = self._select(wanted)
            missing = [n for n in wanted if n not in found]
            if create and missing:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    self._db.executemany("INSERT OR IGNORE INTO subject_keys (name, material) VALUES (?, ?)",
                                         [(n, AESGCM.generate_key(256)) for n in missing])
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                found.update(self._select(missing))  # another process may have made some first: theirs count
        return found

    def destroy(self, names: Collection[str]) -> list[str]:
        """Delete the keys (their pages overwritten: secure_delete); the names that had one."""
        wanted = sorted(set(names))
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                had = sorted(self._select(wanted))
                self._db.executemany("DELETE FROM subject_keys WHERE name = ?", [(n,) for n in had])
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return had

    def count(self) -> int:
        """Keys held."""
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM subject_keys").fetchone()[0])

    def close(self) -> None:
        """Close the database."""
        self._db.close()


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
