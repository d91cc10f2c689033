"""The local key stores, standing in for a KMS: pseudonymisation keys per purpose, and a key per person.

:class:`FileKeyring` implements :class:`agents.keys.KeyProvider`: a JSON file (mode 0600, in the
secrets dir) created on first use with one fresh random key per purpose of the privacy policy;
rotation and retirement rewrite it whole under a lock, so concurrent processes never see half a
file. :class:`SqliteSubjectKeys` implements :class:`agents.sealing.SubjectKeys`: a SQLite file
(0600) with ``secure_delete`` on, so a destroyed key's bytes are overwritten in the database file,
and no write-ahead log that would keep copies. It must not be backed up with the data it protects
(a KMS or HSM gives that guarantee in production). Key material never appears in a repr, a log or
an error.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import secrets
import sqlite3
import threading
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from agents.keys import KeyRefused
from agents.privacy import Policy, policy
from streams.settings import write_private


class FileKeyring:
    """Keys in a local JSON file (mode 0600); created with one fresh key per purpose on first use.

    Rotation and retirement rewrite the file atomically under a lock, so
    concurrent processes never see half a file. A worker sees a rotation when it
    next calls :meth:`reload_if_changed`.
    """

    def __init__(self, path: Path, pol: Policy | None = None) -> None:
        """Open (or create) the keyring at ``path``."""
        self.path = path
        self.policy = pol or policy()
        self._mtime = 0
        self._keys: dict[str, dict[str, Any]] = {}
        with self._locked():
            if not path.exists():
                self._write({"keys": [self._new_key(p, 1) for p in self.policy.purposes]})
        self.reload_if_changed()

    def __repr__(self) -> str:
        """Key ids only, never material."""
        return f"FileKeyring({self.path}, {sorted(self._keys)})"

    # -- KeyProvider ------------------------------------------------------------------------------------------
    def active(self, purpose: str) -> str:
        """Id of the active key of ``purpose``."""
        ids = [k for k, v in self._keys.items() if v["purpose"] == purpose and v["state"] == "active"]
        if not ids:
            raise KeyRefused(f"no active key for purpose {purpose!r}")
        return ids[0]

    def live(self, purpose: str) -> list[str]:
        """Active key first, then retiring keys, newest first."""
        ids = [k for k, v in self._keys.items() if v["purpose"] == purpose]
        return sorted(ids, key=lambda k: (self._keys[k]["state"] != "active", -self._keys[k]["generation"]))

    def material(self, key_id: str) -> bytes:
        """Secret bytes of a live key; :class:`KeyRefused` for a retired or unknown id (the id is not secret)."""
        if key_id not in self._keys:
            raise KeyRefused(f"key {key_id!r} is not live (retired or unknown)")
        return base64.b64decode(self._keys[key_id]["secret"])

    # -- administration ---------------------------------------------------------------------------------------
    def rotate(self, purpose: str, force: bool = False) -> str:
        """Make a new active key for ``purpose``; the old one stays live (retiring) until :meth:`retire`."""
        if purpose not in self.policy.purposes:
            raise KeyRefused(f"unknown purpose {purpose!r}; the policy has {sorted(self.policy.purposes)}")
        if self.policy.purposes[purpose].rotation != "online" and not force:
            raise KeyRefused(f"the {purpose} key keys the pipeline's state (dedup gallery, rule windows): rotating it "
                            "is a state migration, not an online rotation (policy: rotation = "
                            f"{self.policy.purposes[purpose].rotation!r})")
        with self._locked():
            doc = self._read()
            mine = [k for k in doc["keys"] if k["purpose"] == purpose]
            generation = max((k["generation"] for k in mine), default=0) + 1
            for k in mine:
                k["state"] = "retiring"
            new = self._new_key(purpose, generation)
            doc["keys"].append(new)
            self._write(doc)
        self.reload_if_changed()
        return str(new["id"])

    def retire(self, key_id: str) -> None:
        """Destroy a retiring key: tokens it made can no longer be recomputed from identities."""
        with self._locked():
            doc = self._read()
            match = [k for k in doc["keys"] if k["id"] == key_id]
            if not match:
                raise KeyRefused(f"key {key_id!r} is not live (retired or unknown)")
            if match[0]["state"] == "active":
                raise KeyRefused(f"key {key_id!r} is active: rotate {match[0]['purpose']} first")
            doc["keys"] = [k for k in doc["keys"] if k["id"] != key_id]
            self._write(doc)
        self.reload_if_changed()

    def describe(self) -> list[dict[str, Any]]:
        """Id, purpose, state and creation time of every live key (no material)."""
        return [{k: v for k, v in key.items() if k != "secret"} | {"id": key_id}
                for key_id, key in sorted(self._keys.items())]

    def reload_if_changed(self) -> bool:
        """Re-read the file if another process rotated or retired a key; whether it changed."""
        mtime = self.path.stat().st_mtime_ns
        if mtime == self._mtime:
            return False
        self._keys = {k["id"]: k for k in self._read()["keys"]}
        self._mtime = mtime
        return True

    # -- file -------------------------------------------------------------------------------------------------
    @staticmethod
    def _new_key(purpose: str, generation: int) -> dict[str, Any]:
        return {"id": f"{purpose}-{generation}", "purpose": purpose, "generation": generation, "state": "active",
                "created": datetime.now(UTC).isoformat(timespec="seconds"),
                "secret": base64.b64encode(secrets.token_bytes(32)).decode()}

    def _read(self) -> dict[str, Any]:
        return dict(json.loads(self.path.read_text()))

    def _write(self, doc: dict[str, Any]) -> None:
        write_private(self.path, json.dumps(doc, indent=1))

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(self.path.parent, 0o700)
        with os.fdopen(os.open(self.path.with_suffix(".lock"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600),
                       "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)


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
