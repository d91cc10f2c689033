"""Officers' accounts of the review console: argon2id hashes, roles, posts, lockouts and sessions (SQLite, 0600).

A reviewer sees the cases of their posts; a supervisor sees every case. ``attempts`` wrong
passwords in a row lock an account for ``lockout_minutes``; while it is locked even the right
password is refused (and not checked), and a success resets the count. Sessions are server side:
the browser holds a random id, the file only its SHA-256, so logging out ends the session for good.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import secrets
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from schemas.errors import LintasError
from streams.settings import Settings

ROLES = ("reviewer", "supervisor")
USERNAME = re.compile(r"^[a-z][a-z0-9._-]{1,31}$")
POST_ID = re.compile(r"^[A-Z]{2}(-[A-Z0-9]{2,8}){1,2}$")  # a border post (ID-BTH) or landing site (ID-AC-LSM)
MIN_PASSWORD = 12
SESSION_HOURS = 12.0

SCHEMA = """
CREATE TABLE IF NOT EXISTS officers (
    username TEXT PRIMARY KEY, password_hash TEXT NOT NULL, role TEXT NOT NULL, posts TEXT NOT NULL,
    failed INTEGER NOT NULL DEFAULT 0, locked_until REAL, created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS sessions (
    session_hash TEXT PRIMARY KEY, username TEXT NOT NULL, expires_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS form_nonces (
    nonce_hash TEXT PRIMARY KEY, username TEXT NOT NULL, case_id TEXT NOT NULL, form TEXT NOT NULL,
    case_version INTEGER NOT NULL, issued_at REAL NOT NULL, used_at REAL
);
"""

log = logging.getLogger("lintas.console")
_HASHER = PasswordHasher()  # argon2id, the library's current recommended parameters
_DUMMY_HASH = _HASHER.hash(secrets.token_urlsafe(16))  # checked for unknown names, so they take as long


class AccountError(LintasError):
    """An account that cannot be made or changed as asked (names the field, never a password)."""

    code = "officer_account"


@dataclass(frozen=True)
class Officer:
    """An officer's account, without its hash."""

    username: str
    role: str
    posts: tuple[str, ...]
    failed: int = 0
    locked_until: float | None = None

    @property
    def sees_all(self) -> bool:
        """Supervisors see every post's cases."""
        return self.role == "supervisor"


class Login(Enum):
    """What a sign-in attempt came to."""

    OK = "ok"
    REFUSED = "refused"  # unknown name or wrong password: the same answer for both
    LOCKED = "locked"  # too many wrong passwords: refused whatever the password


def digest(value: str) -> str:
    """SHA-256 of a session id or nonce: the file never holds a live one."""
    return hashlib.sha256(value.encode()).hexdigest()


def private_db(path: Path) -> sqlite3.Connection:
    """The console's SQLite file, created mode 0600 in a 0700 directory, with its tables."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    if not path.exists():
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    db = sqlite3.connect(path, timeout=30.0, isolation_level=None)
    db.execute("PRAGMA secure_delete = ON")
    db.execute("PRAGMA journal_mode = TRUNCATE")
    db.executescript(SCHEMA)
    return db


def check_new_account(username: str, role: str, posts: tuple[str, ...], password: str) -> None:
    """A new account's fields: :class:`AccountError` naming the first one at fault."""
    if not USERNAME.match(username):
        raise AccountError("username: 2-32 characters, lower-case letters, digits, . _ -; starting with a letter")
    if role not in ROLES:
        raise AccountError(f"role: one of {', '.join(ROLES)}")
    bad = [p for p in posts if not POST_ID.match(p)]
    if bad:
        raise AccountError(f"posts: {bad[0]!r} is not a post id like ID-BTM")
    if role == "reviewer" and not posts:
        raise AccountError("posts: a reviewer needs at least one post (the cases they see)")
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"password: at least {MIN_PASSWORD} characters")


class OfficerStore:
    """Accounts and sessions in ``path``; a connection per call, so threads and processes may share the file."""

    def __init__(self, path: Path, *, attempts: int = 5, lockout_minutes: float = 15.0,
                 clock: Callable[[], float] = time.time) -> None:
        """Use (or create) the file; ``clock`` gives epoch seconds (tests pass their own)."""
        self.path, self.attempts, self.lockout_s, self.clock = path, attempts, lockout_minutes * 60, clock
        private_db(path).close()

    @classmethod
    def from_settings(cls, settings: Settings) -> OfficerStore:
        """The store at ``settings.officers_path`` with the settings' lockout rule."""
        return cls(settings.officers_path, attempts=settings.console_lockout_attempts,
                   lockout_minutes=settings.console_lockout_minutes)

    @contextmanager
    def _db(self, write: bool = False) -> Iterator[sqlite3.Connection]:
        db = private_db(self.path)
        try:
            if write:
                db.execute("BEGIN IMMEDIATE")
            yield db
            if write:
                db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        finally:
            db.close()

    # -- accounts ---------------------------------------------------------------------------------------------
    def add(self, username: str, password: str, role: str, posts: tuple[str, ...]) -> Officer:
        """A new account; :class:`AccountError` if a field is bad or the name is taken."""
        check_new_account(username, role, posts, password)
        with self._db(write=True) as db:
            if db.execute("SELECT 1 FROM officers WHERE username = ?", (username,)).fetchone():
                raise AccountError(f"username: {username} already has an account")
            db.execute("INSERT INTO officers (username, password_hash, role, posts, created_at) "
                       "VALUES (?, ?, ?, ?, ?)", (username, _HASHER.hash(password), role, ",".join(posts),
                                                  self.clock()))
        log.info("officer account created: %s (%s)", username, role)
        return Officer(username, role, posts)

    def get(self, username: str) -> Officer | None:
        """The account, or ``None``."""
        with self._db() as db:
            row = db.execute("SELECT username, role, posts, failed, locked_until FROM officers WHERE username = ?",
                             (username,)).fetchone()
        return _officer(row) if row else None

    def officers(self) -> list[Officer]:
        """Every account, by name."""
        with self._db() as db:
            rows = db.execute("SELECT username, role, posts, failed, locked_until FROM officers "
                              "ORDER BY username").fetchall()
        return [_officer(r) for r in rows]

    def unlock(self, username: str) -> None:
        """Lift a lockout and reset the failed count; :class:`AccountError` for an unknown name."""
        with self._db(write=True) as db:
            if not db.execute("UPDATE officers SET failed = 0, locked_until = NULL WHERE username = ?",
                              (username,)).rowcount:
                raise AccountError(f"username: no account {username}")
        log.info("officer account unlocked: %s", username)

    def is_locked(self, officer: Officer) -> bool:
        """Whether the account is locked now."""
        return officer.locked_until is not None and officer.locked_until > self.clock()

    # -- sign-in ----------------------------------------------------------------------------------------------
    def authenticate(self, username: str, password: str) -> tuple[Login, Officer | None]:
        """Check a sign-in, counting wrong passwords and locking the account at ``attempts`` in a row."""
        with self._db(write=True) as db:
            row = db.execute("SELECT password_hash, locked_until FROM officers WHERE username = ?",
                             (username,)).fetchone()
            if row is None:
                _verify(_DUMMY_HASH, password)
                log.info("sign-in refused: no such account")  # the name typed may be a password: not logged
                return Login.REFUSED, None
            stored, locked_until = row
            if locked_until is not None and locked_until > self.clock():
                log.info("sign-in refused: %s is locked", username)
                return Login.LOCKED, None
            if not _verify(stored, password):
                return self._wrong_password(db, username), None
            db.execute("UPDATE officers SET failed = 0, locked_until = NULL WHERE username = ?", (username,))
            if _HASHER.check_needs_rehash(stored):
                db.execute("UPDATE officers SET password_hash = ? WHERE username = ?",
                           (_HASHER.hash(password), username))
        log.info("signed in: %s", username)
        return Login.OK, self.get(username)

    def _wrong_password(self, db: sqlite3.Connection, username: str) -> Login:
        failed = db.execute("UPDATE officers SET failed = failed + 1 WHERE username = ? RETURNING failed",
                            (username,)).fetchall()[0][0]
        if failed < self.attempts:
            log.info("sign-in refused: wrong password for %s (%d of %d)", username, failed, self.attempts)
            return Login.REFUSED
        db.execute("UPDATE officers SET failed = 0, locked_until = ? WHERE username = ?",
                   (self.clock() + self.lockout_s, username))
        log.warning("account locked: %s, after %d wrong passwords, for %.0f minutes", username, failed,
                    self.lockout_s / 60)
        return Login.LOCKED

    # -- sessions ---------------------------------------------------------------------------------------------
    def open_session(self, username: str) -> str:
        """A new session id for a signed-in officer (the browser keeps it; the file keeps its hash)."""
        session_id = secrets.token_urlsafe(32)
        now = self.clock()
        with self._db(write=True) as db:
            db.execute("DELETE FROM sessions WHERE expires_at <= ?", (now,))
            db.execute("INSERT INTO sessions VALUES (?, ?, ?)", (digest(session_id), username,
                                                                 now + SESSION_HOURS * 3600))
        return session_id

    def session_officer(self, session_id: str) -> Officer | None:
        """The officer of a live session, or ``None`` (expired, ended, or the account is locked)."""
        with self._db() as db:
            row = db.execute("SELECT username FROM sessions WHERE session_hash = ? AND expires_at > ?",
                             (digest(session_id), self.clock())).fetchone()
        officer = self.get(row[0]) if row else None
        return officer if officer is not None and not self.is_locked(officer) else None

    def close_session(self, session_id: str) -> None:
        """End a session (log out)."""
        with self._db(write=True) as db:
            db.execute("DELETE FROM sessions WHERE session_hash = ?", (digest(session_id),))


def _verify(stored: str, password: str) -> bool:
    try:
        return bool(_HASHER.verify(stored, password))
    except (VerificationError, InvalidHashError):
        return False


def _officer(row: tuple[str, str, str, int, float | None]) -> Officer:
    username, role, posts, failed, locked_until = row
    return Officer(username, role, tuple(p for p in posts.split(",") if p), failed, locked_until)
