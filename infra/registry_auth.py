"""Who may use the local schema registry: the users file, its password hashes, and HTTP basic auth.

The users file is JSON, mode 0600, one entry per user, passwords never stored::

    {"lintas-registry-read": {"password_hash": "scrypt$16384$8$1$<salt hex>$<hash hex>", "access": "read"}}

An access level is ``read``, ``write`` or ``admin``, each allowing what the one before does and
more (which request needs which level is in ``schema_registry._ROUTE_TABLE``). The server re-reads the
file when it changes, so rotating a password needs no restart.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import json
import logging
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, cast

from infra.serving import ReloadedFile
from streams.settings import write_private

log = logging.getLogger("lintas.schema_registry")

Access = Literal["read", "write", "admin"]
ACCESS_LEVELS: tuple[Access, ...] = ("read", "write", "admin")  # each includes the ones before it

# scrypt at n=2**14, r=8 (16 MiB, some tens of milliseconds): hard to brute-force, and paid once per
# user and password thanks to the cache of verified passwords in RegistryUsers
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1


def allows(granted: Access, needed: Access) -> bool:
    """True if a user with ``granted`` access may do what needs ``needed``."""
    return ACCESS_LEVELS.index(granted) >= ACCESS_LEVELS.index(needed)


def hash_password(password: str) -> str:
    """A salted scrypt hash of ``password``, with its parameters: ``scrypt$n$r$p$salt$hash`` (hex)."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${salt.hex()}${digest.hex()}"


def verify_password(password: str, password_hash: str) -> bool:
    """True if ``password`` is the one ``password_hash`` was made from."""
    salt, n, r, p, expected = _scrypt_parameters(password_hash)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, dklen=len(expected))
    return hmac.compare_digest(digest, expected)


def _scrypt_parameters(password_hash: str) -> tuple[bytes, int, int, int, bytes]:
    """Salt, n, r, p and the expected digest of a hash made by :func:`hash_password`; ValueError if it is not one."""
    scheme, n, r, p, salt, expected = password_hash.split("$")  # ValueError if not six fields
    if scheme != "scrypt":
        raise ValueError(f"unknown password hash scheme {scheme!r}")
    return bytes.fromhex(salt), int(n), int(r), int(p), bytes.fromhex(expected)


@functools.cache
def _unknown_user_hash() -> str:
    # checked against when the user does not exist, so an unknown name costs as long as a wrong password
    return hash_password(secrets.token_urlsafe(16))


def write_users_file(path: Path, users: dict[str, tuple[str, Access]]) -> None:
    """Write ``{user: (password, access)}`` as a users file (hashes only, mode 0600), replacing it atomically.

    The server reloads on the new file's mtime and never sees it half written.
    """
    entries = {user: {"password_hash": hash_password(password), "access": access}
               for user, (password, access) in users.items()}
    write_private(path, json.dumps(entries, indent=2))


@dataclass
class _Loaded:
    """One reading of the users file and the passwords verified against it."""

    users: dict[str, tuple[str, Access]]  # user -> (password hash, access)
    verified: dict[str, bytes] = field(default_factory=dict)  # user -> sha256 of the password that verified


def _load(path: Path) -> _Loaded:
    """Read a users file; ValueError (or OSError) if it is not one."""
    raw = json.loads(path.read_text())
    users: dict[str, tuple[str, Access]] = {}
    try:
        for user, spec in raw.items():
            access, password_hash = spec["access"], str(spec["password_hash"])
            _scrypt_parameters(password_hash)
            if access not in ACCESS_LEVELS:
                raise ValueError(f"unknown access level {access!r}")
            users[str(user)] = (password_hash, cast(Access, access))
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"users file {path}: not {{user: {{password_hash, access}}}} ({exc})") from None
    if path.stat().st_mode & 0o077:
        log.warning("users file %s is readable by other users: chmod 600 it", path)
    return _Loaded(users)


class RegistryUsers:
    """The users file, re-read when it changes, checking basic-auth credentials against it."""

    def __init__(self, path: Path) -> None:
        """Read the file now: a server never starts with users it cannot read (OSError, ValueError)."""
        self.path = path
        self._file = ReloadedFile(path, _load, log)

    def _current(self) -> _Loaded:
        return self._file.current()

    def authenticate(self, authorization: str | None) -> tuple[str, Access] | None:
        """The user and access level a basic ``Authorization`` header proves, or None."""
        credentials = _basic_credentials(authorization)
        if credentials is None:
            return None
        user, password = credentials
        loaded = self._current()
        password_hash, access = loaded.users.get(user, (_unknown_user_hash(), "read"))
        fingerprint = hashlib.sha256(password.encode()).digest()
        cached = loaded.verified.get(user)
        if cached is not None and hmac.compare_digest(cached, fingerprint):
            return user, access
        if not verify_password(password, password_hash) or user not in loaded.users:
            return None
        # cached on this reading of the file only: a reload starts a new cache, so a rotated password stops working
        loaded.verified[user] = fingerprint
        return user, access


def _basic_credentials(authorization: str | None) -> tuple[str, str] | None:
    scheme, _, encoded = (authorization or "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, colon, password = base64.b64decode(encoded.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (user, password) if colon else None
