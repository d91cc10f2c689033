"""Where posts' signing keys live (agents/signing.py signs and checks): one file per post, mode 0600.

The local stack makes a key for every post it knows (``lintas stack up``) and for any other post the
first time the local gateway sends for it. In production a post holds only its own key and the worker
reads every post's from the directory its secret store mounts (``LINTAS_POST_KEYS``).
"""

from __future__ import annotations

import secrets
from pathlib import Path

from agents.signing import POST_ID
from streams.settings import SecretMissing, Settings, write_secret_file


def key_path(settings: Settings, post_id: str) -> Path:
    """The file of one post's key."""
    if not POST_ID.match(post_id):
        raise ValueError("post id: letters, digits, '.', '_' or '-' only (it names the post's key file)")
    return _key_file(settings.post_keys_dir, post_id)


def _key_file(directory: Path, post_id: str) -> Path:
    return directory / f"{post_id}.key"


def _read_key(path: Path) -> bytes:
    """A key file's 32 bytes (hex); FileNotFoundError if it has none, ValueError if it is not a key."""
    return bytes.fromhex(path.read_text().strip())


def post_key(settings: Settings, post_id: str) -> bytes:
    """A post's own key, which must exist (a post's process never makes one: the stack's admin does)."""
    path = key_path(settings, post_id)
    try:
        return _read_key(path)
    except FileNotFoundError:
        raise SecretMissing(f"signing key of post {post_id}", path, "LINTAS_POST_KEYS") from None


def ensure_post_key(settings: Settings, post_id: str) -> bytes:
    """A post's key, made (32 random bytes) if it has none yet."""
    path = key_path(settings, post_id)
    if not path.is_file():
        write_secret_file(path, secrets.token_hex(32))
    return _read_key(path)


class PostKeys:
    """Every post's key as the worker reads them: each file once.

    A post without one is looked for again each time, never remembered as missing: a post provisioned a
    moment ago must not be refused because of when its first event came.
    """

    def __init__(self, directory: Path) -> None:
        """Read keys from ``directory`` on first use."""
        self.directory = directory
        self._keys: dict[str, bytes] = {}

    def __call__(self, post_id: str) -> bytes | None:
        """The post's key, or None if it has none."""
        key = self._keys.get(post_id)
        if key is None:
            try:
                key = self._keys[post_id] = _read_key(_key_file(self.directory, post_id))
            except (FileNotFoundError, ValueError):
                return None
        return key
