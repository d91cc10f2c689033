"""Where posts' signing keys live (agents/signing.py signs and checks): one file per post, mode 0600.

The local stack makes a key for every post it knows (``lintas stack up``) and for any other post the
first time the local gateway sends for it. In production a post holds only its own key and the worker
reads every post's from the directory its secret store mounts (``LINTAS_POST_KEYS``).
"""

from __future__ import annotations

import secrets
import time
from pathlib import Path

from agents.signing import POST_ID
from streams.settings import SecretMissing, Settings, write_secret_file


def key_path(settings: Settings, post_id: str) -> Path:
    """The file of one post's key."""
    if not POST_ID.match(post_id):
        raise ValueError("post id: letters, digits, '.', '_' or '-' only (it names the post's key file)")
    return settings.post_keys_dir / f"{post_id}.key"


def post_key(settings: Settings, post_id: str) -> bytes:
    """A post's own key, which must exist (a post's process never makes one: the stack's admin does)."""
    path = key_path(settings, post_id)
    try:
        return bytes.fromhex(path.read_text().strip())
    except FileNotFoundError:
        raise SecretMissing(f"signing key of post {post_id}", path, "LINTAS_POST_KEYS") from None


def ensure_post_key(settings: Settings, post_id: str) -> bytes:
    """A post's key, made (32 random bytes) if it has none yet."""
    path = key_path(settings, post_id)
    if not path.is_file():
        write_secret_file(path, secrets.token_hex(32))
    return bytes.fromhex(path.read_text().strip())


class PostKeys:
    """Every post's key as the worker reads them: each file once, an unknown post looked for again after a while."""

    def __init__(self, directory: Path, recheck_s: float = 10.0) -> None:
        """Read keys from ``directory`` on first use."""
        self.directory, self.recheck_s = directory, recheck_s
        self._keys: dict[str, bytes] = {}
        self._missing: dict[str, float] = {}

    def __call__(self, post_id: str) -> bytes | None:
        """The post's key, or None if it has none (a post provisioned since is found after ``recheck_s``)."""
        key = self._keys.get(post_id)
        if key is not None:
            return key
        now = time.monotonic()
        if now - self._missing.get(post_id, -1e9) < self.recheck_s:
            return None
        try:
            key = bytes.fromhex((self.directory / f"{post_id}.key").read_text().strip())
        except (FileNotFoundError, ValueError):
            self._missing[post_id] = now
            return None
        self._keys[post_id] = key
        return key
