"""One-time nonces of the console's decide and disclose forms, kept server side (the accounts' SQLite file).

Each form rendered on a case page carries a fresh nonce bound to the officer, the case, the form
(an action, or ``disclose``) and the case version shown. The first submission marks it used; a
replayed form (the browser's back button and resend, a copied request) finds it used and is refused,
even with a valid CSRF token. The version the officer saw is taken from the nonce, not from the form.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from streams.console.accounts import digest, private_db

NONCE_TTL_S = 3600.0  # as long as Flask-WTF's CSRF token lives: a page left open longer is reloaded


@dataclass(frozen=True)
class Claim:
    """What a used nonce was issued for."""

    case_id: str
    form: str
    case_version: int


class FormNonces:
    """Issue and redeem one-time form nonces in ``path`` (the officers' file)."""

    def __init__(self, path: Path, *, clock: Callable[[], float] = time.time) -> None:
        """Use (or create) the file; ``clock`` gives epoch seconds."""
        self.path, self.clock = path, clock

    def issue(self, username: str, case_id: str, form: str, case_version: int) -> str:
        """A fresh nonce for one form of one case page."""
        nonce = secrets.token_urlsafe(24)
        now = self.clock()
        db = private_db(self.path)
        try:
            with db:
                db.execute("DELETE FROM form_nonces WHERE issued_at < ?", (now - 24 * 3600,))
                db.execute("INSERT INTO form_nonces VALUES (?, ?, ?, ?, ?, ?, NULL)",
                           (digest(nonce), username, case_id, form, case_version, now))
        finally:
            db.close()
        return nonce

    def redeem(self, nonce: str, username: str, case_id: str, form: str) -> Claim | None:
        """Mark the nonce used and return what it was issued for; ``None`` if unknown, used, expired or not theirs."""
        if not nonce:
            return None
        now = self.clock()
        db = private_db(self.path)
        try:
            with db:
                rows = db.execute(
                    "UPDATE form_nonces SET used_at = ? WHERE nonce_hash = ? AND username = ? AND case_id = ? "
                    "AND form = ? AND used_at IS NULL AND issued_at > ? RETURNING case_version",
                    (now, digest(nonce), username, case_id, form, now - NONCE_TTL_S)).fetchall()
        finally:
            db.close()
        return Claim(case_id, form, int(rows[0][0])) if rows else None
