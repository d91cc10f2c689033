"""Templates at rest and in transit between dedup agents are sealed: AES-256-GCM with a key from settings.

A sealed value is ``key id length | key id | 12-byte nonce | ciphertext+tag``. The
associated data binds it to its record (the subject or probe id), so a sealed
template cannot be moved to another record unnoticed. Opening fails loudly on a
wrong key, a tampered byte or a swapped record; the error never shows the bytes.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from streams.errors import LintasError


class SealError(LintasError):
    """A sealed value that cannot be opened: wrong key id, wrong key, tampered or moved."""

    code = "seal_error"


@dataclass(frozen=True)
class Sealer:
    """Seal and open bytes with one key. ``secret`` may be any string; the AES key is its SHA-256."""

    secret: bytes
    key_id: str

    def __post_init__(self) -> None:
        """Derive the AES key once."""
        object.__setattr__(self, "_aead", AESGCM(hashlib.sha256(b"lintas-gallery\x1f" + self.secret).digest()))
        object.__setattr__(self, "_prefix", bytes([len(self.key_id)]) + self.key_id.encode())

    def seal(self, plaintext: bytes, record: str) -> bytes:
        """Encrypt ``plaintext`` bound to ``record``."""
        nonce = os.urandom(12)
        return self._prefix + nonce + self._aead.encrypt(nonce, plaintext, record.encode())  # type: ignore[attr-defined]

    def open(self, sealed: bytes, record: str) -> bytes:
        """Decrypt, or :class:`SealError` saying which check failed."""
        n = sealed[0] if sealed else 0
        key_id = sealed[1:1 + n].decode(errors="replace")
        if key_id != self.key_id:
            raise SealError(f"sealed with key {key_id!r}, this worker holds {self.key_id!r}")
        nonce, body = sealed[1 + n:13 + n], sealed[13 + n:]
        try:
            return bytes(self._aead.decrypt(nonce, body, record.encode()))  # type: ignore[attr-defined]
        except InvalidTag:
            raise SealError("sealed value failed authentication (wrong key, tampered, or another record's)") from None
