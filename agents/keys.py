"""Pseudonymisation keys per purpose, behind a KMS-shaped interface.

Each purpose of the privacy policy (operations, analytics, regional) has its own
keys, so a token made for one purpose never equals, and cannot be joined with, a
token of the same value made for another. Every token travels with the id of the
key that made it (``analytics-2``). A purpose has one *active* key (new tokens)
and, after a rotation, *retiring* keys that stay live until retired, so tokens
made before the rotation can still be recomputed and resolved during the overlap.

:class:`KeyProvider` is the interface a KMS would implement; :class:`FileKeyring`
is the local one: a JSON file (mode 0600, in the secrets dir) created on first
use with fresh random keys. Key material never appears in code, logs, reprs or
test fixtures.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from agents.privacy import Policy, policy
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
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(doc, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

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
